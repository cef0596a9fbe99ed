/**
 * @module What crosses between the supervisor (main thread) and the
 * forwarding worker threads: the config (its access patterns travel as the
 * text the user wrote and are compiled again in the worker, since compiled
 * matchers cannot be copied between threads), session events in batches, the
 * live figures the metrics need, and the requests and replies that drive
 * start-up, reload and shutdown.
 */
import { compilePattern } from "../access.ts";
import { listenerKey } from "../config/validate.ts";
import type { ApplySummary } from "../server.ts";
import type { BackendStatus } from "../balance/pool.ts";
import type { BackendChange } from "../backends.ts";
import type { Refusal, SessionRecord } from "../session.ts";
import type { AccessList, AccessRule, Backend, Config, ForwardRule } from "../types.ts";

interface WireAccessRule {
  kind: AccessRule["kind"];
  pattern: string;
  at: AccessRule["at"];
}

interface WireAccessList {
  allow: WireAccessRule[];
  deny: WireAccessRule[];
}

export type WireRule = Omit<ForwardRule, "access"> & { access: WireAccessList };
export type WireConfig = Omit<Config, "rules" | "globalAccess"> & { rules: WireRule[]; globalAccess: WireAccessList };

function accessToWire(list: AccessList): WireAccessList {
  const rule = (entry: AccessRule): WireAccessRule => ({ kind: entry.kind, pattern: entry.pattern.text, at: entry.at });
  return { allow: list.allow.map(rule), deny: list.deny.map(rule) };
}

function accessFromWire(list: WireAccessList): AccessList {
  const rule = (entry: WireAccessRule): AccessRule => {
    const pattern = compilePattern(entry.pattern);
    // The supervisor loaded this very text without error: a failure here is a bug, not bad input.
    if (typeof pattern === "string") throw new Error(`${entry.at.file}:${entry.at.line}: ${pattern}`);
    return { kind: entry.kind, pattern, at: entry.at };
  };
  return { allow: list.allow.map(rule), deny: list.deny.map(rule) };
}

export function configToWire(config: Config): WireConfig {
  return {
    ...config,
    globalAccess: accessToWire(config.globalAccess),
    rules: config.rules.map((rule) => ({ ...rule, access: accessToWire(rule.access) })),
  };
}

export function configFromWire(wire: WireConfig): Config {
  return {
    ...wire,
    globalAccess: accessFromWire(wire.globalAccess),
    rules: wire.rules.map((rule) => ({ ...rule, access: accessFromWire(rule.access) })),
  };
}

/**
 * Whether every worker could serve `rule`, each with its own SO_REUSEPORT
 * listener. The others are served by worker 0 alone: UDP binds (Bun's UDP
 * sockets cannot share a port), unix sockets (one path, one listener),
 * cross-protocol rules (their UDP side keeps per-client state), rules with
 * client affinity over several backends (the affinity table is per thread,
 * so a client must always reach the same one), rules with per-client
 * connection limits (the same: a client's count must see all its
 * connections), and rules with a shared bandwidth limit (`rate-rule`,
 * `rate-client`: their buckets are per thread, so every connection they
 * cover must be in the same one).
 */
export function servedByAll(rule: ForwardRule): boolean {
  const affinity = rule.backends.length > 1 && rule.balance.affinityTtl > 0;
  const perClient = rule.maxConnectionsPerClient !== undefined || rule.connectionRatePerClient !== undefined;
  const sharedRate = rule.rateRule !== undefined || rule.rateClient !== undefined;
  return rule.mode === "tcp" && rule.bind.transport === "tcp" && !affinity && !perClient && !sharedRate;
}

/**
 * The rules every worker serves: a listener is served whole, so the rules
 * sharing one (chosen by first bytes) are served by every worker only when
 * each of them can be; else worker 0 serves them all.
 */
export function rulesServedByAll(rules: readonly ForwardRule[]): Set<ForwardRule> {
  const alone = new Set<string>();
  for (const rule of rules) if (!servedByAll(rule)) alone.add(listenerKey(rule));
  return new Set(rules.filter((rule) => !alone.has(listenerKey(rule))));
}

/**
 * Which config a rule belongs to (`generation`, counted by the supervisor)
 * and its position in it; the name finds it in a newer config when the
 * supervisor no longer keeps that one.
 */
export interface RuleRef {
  generation: number;
  index: number;
  name: string;
}

/** Session events as the worker batches them; the supervisor turns them back into SessionEvents calls. */
export type WireEvent =
  | { kind: "started"; rule: RuleRef; offset: number | undefined }
  | { kind: "denied"; rule: RuleRef; address: string; port: number; reason: Refusal }
  // A SessionRecord whose rule travels as a reference.
  | (Omit<SessionRecord, "rule"> & { kind: "ended"; rule: RuleRef });

/** A forwarder's live figures: connections open now and their bytes so far. */
export interface LiveForwarder {
  rule: RuleRef;
  active: number;
  bytesIn: number;
  bytesOut: number;
  /** Datagram rules: [dropped over a bandwidth limit, dropped otherwise]. */
  dropped?: [number, number];
}

export interface LiveBackends {
  rule: RuleRef;
  statuses: BackendStatus[];
}

export interface LiveFigures {
  forwarders: LiveForwarder[];
  backends: LiveBackends[];
  /** Connections and sessions open in this worker, on current and removed rules. */
  active: number;
}

/** Requests from the supervisor; each is answered by one reply with the same `request` number. */
export type Request =
  | { type: "apply"; request: number; generation: number; config: WireConfig; slots: Array<[index: number, slot: number]> }
  | { type: "forget-addresses"; request: number }
  | { type: "live"; request: number }
  | { type: "stop-accepting"; request: number }
  | { type: "drain"; request: number }
  | { type: "close-all"; request: number }
  /** The admin API drains a backend or sets its weight: every worker balances on its own, so each is told. */
  | { type: "change-backend"; request: number; rule: string; backend: string; change: BackendChange };

/** The first message a worker gets: who it is and where the shared counts are. */
export interface WorkerInit {
  type: "init";
  id: number;
  counts: SharedArrayBuffer;
  descriptorBudget: number;
}

export type Reply =
  | { type: "reply"; request: number; ok: true; summary?: ApplySummary; live?: LiveFigures; found?: boolean }
  | { type: "reply"; request: number; ok: false; message: string };

/** Unprompted messages from a worker. */
export type Notice =
  | { type: "events"; events: WireEvent[] }
  | { type: "log"; level: LogLevelName; text: string };

export type LogLevelName = "info" | "warn" | "error" | "debug";

export type FromWorker = Reply | Notice;
export type ToWorker = WorkerInit | Request;
