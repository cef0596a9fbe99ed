/**
 * @module The console view of connections: with `--verbose`, one line per
 * finished or refused connection or UDP session.
 */
import { consola } from "consola";
import { formatEndpoint, portAt } from "./endpoint.ts";
import { formatHostPort } from "./ip.ts";
import { refusalWords, type SessionEvents } from "./session.ts";
import type { Endpoint } from "./types.ts";

export function consoleSessionEvents(verbose: boolean): SessionEvents {
  if (!verbose) return { denied() {}, started() {}, ended() {} };
  return {
    denied(rule, address, port, reason) {
      consola.info(`${formatHostPort(address, port)} -> ${formatEndpoint(rule.bind)} ${reason === "denied" ? "denied" : `refused: ${refusalWords(reason)}`}`);
    },
    started() {},
    ended(record) {
      const { rule, offset } = record;
      // Of a port range, the ports this connection used.
      const used = (endpoint: Endpoint) => (endpoint.portEnd === undefined || offset === undefined ? endpoint : portAt(endpoint, offset));
      const backend = record.backend === undefined ? "(no backend)" : formatEndpoint(used(record.backend.endpoint));
      consola.info(
        `${formatHostPort(record.clientAddress, record.clientPort)} -> ${formatEndpoint(used(rule.bind))} -> ${backend} ${record.result} in=${record.bytesIn} out=${record.bytesOut} ${record.endedAt - record.startedAt}ms`,
      );
    },
  };
}
