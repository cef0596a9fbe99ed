/**
 * @module Starts and stops the forwarders a config describes. Binding is all
 * or nothing: if one listener cannot bind, the ones already bound are closed
 * and the reason names the rule's file and line.
 */
import { consola } from "consola";
import { formatEndpoint } from "./endpoint.ts";
import { type ConnectionEvents, TcpForwarder } from "./tcp/forwarder.ts";
import type { Config } from "./types.ts";

export class BindError extends Error {}

export interface RunningServer {
  readonly forwarders: readonly TcpForwarder[];
  /** Stop accepting on every rule; open connections carry on. */
  stop(): void;
}

export function startServer(config: Config, events: ConnectionEvents): RunningServer {
  const forwarders: TcpForwarder[] = [];
  // Accepted so rinetd configs load unchanged; saying so beats silently writing nothing.
  if (config.logFile !== undefined) consola.warn(`${config.file}: logfile ${config.logFile} is not written yet by this version of oi (use -v for a console log)`);
  if (config.pidFile !== undefined) consola.warn(`${config.file}: pid file ${config.pidFile} is not written yet by this version of oi`);
  for (const rule of config.rules) {
    if (rule.mode !== "tcp") {
      consola.warn(
        `${rule.at.file}:${rule.at.line}: ${rule.mode} rule ${formatEndpoint(rule.bind)} -> ${formatEndpoint(rule.connect)} is valid but not served yet: this version of oi forwards TCP only`,
      );
      continue;
    }
    const forwarder = new TcpForwarder(rule, config.globalAccess, events);
    try {
      forwarder.start();
    } catch (error) {
      for (const started of forwarders) started.stop();
      const reason = error instanceof Error ? error.message : String(error);
      throw new BindError(
        `${rule.at.file}:${rule.at.line}: cannot listen on ${formatEndpoint(rule.bind)}: ${reason}`,
      );
    }
    forwarders.push(forwarder);
  }
  return {
    forwarders,
    stop() {
      for (const forwarder of forwarders) forwarder.stop();
    },
  };
}
