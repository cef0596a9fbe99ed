/**
 * @module Building blocks of the config model shared by every parser: empty
 * values to start from, and the mapping between a rule's mode and its two
 * transports.
 */

import type { AccessList, Config, ConfigFormat, RuleMode, Transport } from "../types.ts";

export function emptyAccessList(): AccessList {
  return { allow: [], deny: [] };
}

export function emptyConfig(file: string, format: ConfigFormat): Config {
  return {
    file,
    format,
    rules: [],
    globalAccess: emptyAccessList(),
    logFile: undefined,
    pidFile: undefined,
    logFormat: "rinetd",
    maxConnections: undefined,
    metrics: undefined,
  };
}

/** The mode named by the bind side's transport, then the connect side's. */
export function modeOf(bind: Transport, connect: Transport): RuleMode {
  if (bind === connect) return bind;
  return bind === "udp" ? "udptotcp" : "tcptoudp";
}

/** [bind transport, connect transport] for a mode, as oxidinetd's `protocol` sets them. */
export function transportsOf(mode: RuleMode): [Transport, Transport] {
  switch (mode) {
    case "tcp":
      return ["tcp", "tcp"];
    case "udp":
      return ["udp", "udp"];
    case "udptotcp":
      return ["udp", "tcp"];
    case "tcptoudp":
      return ["tcp", "udp"];
  }
}
