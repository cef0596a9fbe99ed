/**
 * @module The console view of connections: with `--verbose`, one line per
 * finished or refused connection. Called at the edges of a connection only.
 */
import { consola } from "consola";
import { formatEndpoint } from "./endpoint.ts";
import type { ConnectionEvents } from "./tcp/forwarder.ts";

export function consoleConnectionEvents(verbose: boolean): ConnectionEvents {
  if (!verbose) return { denied() {}, ended() {} };
  return {
    denied(rule, clientAddress) {
      consola.info(`${clientAddress} -> ${formatEndpoint(rule.bind)} denied`);
    },
    ended(rule, relay) {
      const ms = Date.now() - relay.startedAt;
      consola.info(
        `${relay.clientAddress} -> ${formatEndpoint(rule.bind)} -> ${formatEndpoint(rule.connect)} ${relay.result} in=${relay.bytesIn} out=${relay.bytesOut} ${ms}ms`,
      );
    },
  };
}
