/**
 * @module What every forwarder (TCP, UDP, cross-protocol) reports about the
 * connections and sessions it carries. The console log, the log file and the
 * metrics all read these records; forwarders report only at the edges of a
 * session (accept, refusal, end), never per chunk.
 */
import type { Backend, ForwardRule } from "./types.ts";

/**
 * How a connection or UDP session ended, in the words of rinetd's log:
 * `done`, `denied`, `refused` (backend refused or unreachable), `timeout`
 * (connect or idle timeout), or `error: <what>`.
 */
export type SessionResult = "done" | "denied" | "refused" | "timeout" | `error: ${string}`;

export interface SessionRecord {
  rule: ForwardRule;
  /** The backend the session was connected to; undefined when none was reached. */
  backend: Backend | undefined;
  clientAddress: string;
  clientPort: number;
  /** Bytes received from the client. */
  bytesIn: number;
  /** Bytes received from the backend, sent towards the client. */
  bytesOut: number;
  /** Date.now() at accept (TCP) or at the session's first datagram (UDP). */
  startedAt: number;
  endedAt: number;
  result: SessionResult;
  /** The client's port's offset in its rule's bind range (from 0); absent or 0 on a bind of one port. */
  offset?: number;
}

/**
 * Which limit refused a client: `rule` its rule's maxconn (or the rule had
 * stopped accepting), `global` the global maxconn or the descriptor budget,
 * `client-connections` and `client-rate` the rule's maxconn-client and
 * connrate-client (src/client-limits.ts).
 */
export type LimitReason = "rule" | "global" | "client-connections" | "client-rate";

/**
 * Why a client was refused before any backend was contacted: the allow/deny
 * rules, a peer outside the rule's `proxy-from` (reset before its PROXY
 * header is read), or a limit.
 */
export type Refusal = "denied" | "untrusted-proxy" | LimitReason;

/** The `reason` label of `oi_limited_total`: both per-client limits are "client". */
export type LimitLabel = "rule" | "global" | "client";
export const LIMIT_LABELS: readonly LimitLabel[] = ["rule", "global", "client"];

export function limitLabel(reason: LimitReason): LimitLabel {
  return reason === "client-connections" || reason === "client-rate" ? "client" : reason;
}

/** How the logs word a refusal after `refused: ` (a limit) or as `denied`. */
export function refusalWords(reason: Refusal): string {
  switch (reason) {
    case "denied":
      return "denied";
    case "client-connections":
      return "client connection limit";
    case "client-rate":
      return "client connection rate";
    case "untrusted-proxy":
      return "PROXY header from a source not in proxy-from";
    default:
      return "connection limit";
  }
}

export interface SessionEvents {
  /** A client was refused by the access rules (or a limit) before any backend was contacted. */
  denied(rule: ForwardRule, clientAddress: string, clientPort: number, reason: Refusal): void;
  /** A connection or session was accepted (it counts as active until `ended`); `offset`: its port's in the bind's range. */
  started(rule: ForwardRule, offset?: number): void;
  ended(record: SessionRecord): void;
}

/** Several listeners of session events as one (console log, log file, metrics). */
export function fanOut(listeners: SessionEvents[]): SessionEvents {
  return {
    denied(rule, address, port, reason) {
      for (const listener of listeners) listener.denied(rule, address, port, reason);
    },
    started(rule, offset) {
      for (const listener of listeners) listener.started(rule, offset);
    },
    ended(record) {
      for (const listener of listeners) listener.ended(record);
    },
  };
}
