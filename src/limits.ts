/**
 * @module Admission of new connections against the process-wide bounds: the
 * global `maxconn` and the file-descriptor limit. Bun's event loop ignores
 * accept errors, so a listener at the descriptor limit (EMFILE) would spin at
 * full CPU without telling anyone; oi therefore keeps its own count of the
 * descriptors its connections hold and refuses new clients (accepting, then
 * closing them at once) while there are too few left. Open connections are
 * never touched; clients are admitted again as soon as descriptors free up.
 */
import { readdirSync, readFileSync } from "node:fs";
import { consola } from "consola";
import { isAllowed, parseClientAddress } from "./access.ts";
import { type ClientHold, type ClientLimiter, NO_CLIENT_HOLD } from "./client-limits.ts";
import type { Refusal } from "./session.ts";
import type { AccessList, ForwardRule } from "./types.ts";

/** Descriptors kept free beyond what connections use: accept itself, the log, metrics, reloads. */
const HEADROOM_MAX = 64;
const WARN_INTERVAL_MS = 10_000;

/** The soft limit on open files, from /proc (Linux); undefined when it cannot be read or is unlimited. */
export function descriptorLimit(): number | undefined {
  try {
    const limits = readFileSync("/proc/self/limits", "utf8");
    const match = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
    return match?.[1] === undefined || match[1] === "unlimited" ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}

/** Descriptors this process has open now (Linux); undefined when /proc is not there. */
export function openDescriptors(): number | undefined {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return undefined;
  }
}

/** Descriptors connections may hold in all, from this process's limit and what it has open now; Infinity when unknown. */
export function computeDescriptorBudget(): number {
  const limit = descriptorLimit();
  if (limit === undefined) return Number.POSITIVE_INFINITY;
  const headroom = Math.min(HEADROOM_MAX, Math.ceil(limit / 8));
  return Math.max(0, limit - (openDescriptors() ?? 0) - headroom);
}

/** Where the counts live in `Admission.counts`; per-rule counts (workers only) follow. */
const CONNECTIONS = 0;
const DESCRIPTORS = 1;
export const FIRST_RULE_SLOT = 2;

/** Add `amount` to `counts[index]` unless that would pass `limit`; exact when several threads share the array. */
function reserve(counts: Int32Array, index: number, amount: number, limit: number): boolean {
  for (;;) {
    const now = Atomics.load(counts, index);
    if (now + amount > limit) return false;
    if (Atomics.compareExchange(counts, index, now, now + amount) === now) return true;
  }
}

/**
 * The counts live in an Int32Array so that worker threads (src/workers/) can
 * share one over a SharedArrayBuffer: the global bounds then hold across all
 * of them exactly. A rule served by several workers gets a slot of its own
 * there for its `maxconn` (`shareRule`); other rules are counted by their
 * forwarder, as with one worker.
 */
export class Admission {
  private lastWarning = 0;
  private readonly ruleSlots = new WeakMap<ForwardRule, number>();

  /**
   * @param descriptorBudget descriptors connections may hold in all; Infinity when the limit is unknown.
   * @param counts the counts, from 0; give a view of a SharedArrayBuffer to share them between threads.
   */
  constructor(
    public maxConnections: number | undefined,
    readonly descriptorBudget: number = computeDescriptorBudget(),
    private readonly counts: Int32Array = new Int32Array(FIRST_RULE_SLOT),
  ) {}

  /** Connections (and UDP sessions) open now. */
  get open(): number {
    return Atomics.load(this.counts, CONNECTIONS);
  }

  /** Descriptors this thread's listening sockets hold, counted against the budget. */
  private listenerDescriptors = 0;

  /**
   * This thread listens on `sockets` sockets now (one per port; a port range
   * has many): they hold descriptors that connections cannot have, so the
   * budget left for connections shrinks (or grows back) by as many.
   */
  holdForListeners(sockets: number): void {
    Atomics.add(this.counts, DESCRIPTORS, sockets - this.listenerDescriptors);
    this.listenerDescriptors = sockets;
  }

  /** Count `rule`'s connections in `counts[slot]` (shared by every worker serving the rule). */
  shareRule(rule: ForwardRule, slot: number): void {
    this.ruleSlots.set(rule, slot);
  }

  /** Count a new connection needing `descriptors` descriptors, or say no. */
  admit(descriptors: number): boolean {
    if (!reserve(this.counts, CONNECTIONS, 1, this.maxConnections ?? Number.POSITIVE_INFINITY)) {
      this.warn(`global connection limit reached (maxconn ${this.maxConnections}): refusing new clients until some close`);
      return false;
    }
    if (!reserve(this.counts, DESCRIPTORS, descriptors, this.descriptorBudget)) {
      Atomics.sub(this.counts, CONNECTIONS, 1);
      this.warn(
        `file descriptor limit nearly reached (${Atomics.load(this.counts, DESCRIPTORS)} held by connections, budget ${this.descriptorBudget}; raise it with ulimit -n): refusing new clients until some close`,
      );
      return false;
    }
    return true;
  }

  /**
   * Admit a connection on `rule` against its `maxconn` too: `openOnRule` is
   * what its forwarder carries now, unless the rule is shared between workers.
   */
  admitOnRule(rule: ForwardRule, openOnRule: number, descriptors: number): "ok" | "rule" | "global" {
    const slot = this.ruleSlots.get(rule);
    const max = rule.maxConnections ?? Number.POSITIVE_INFINITY;
    if (slot === undefined) {
      if (openOnRule >= max) return "rule";
      return this.admit(descriptors) ? "ok" : "global";
    }
    if (!reserve(this.counts, slot, 1, max)) return "rule";
    if (this.admit(descriptors)) return "ok";
    Atomics.sub(this.counts, slot, 1);
    return "global";
  }

  /**
   * More descriptors for a connection already counted (a relay moving to the
   * splice worker); false, and nothing counted, when the budget has no room.
   */
  reserveDescriptors(descriptors: number): boolean {
    return reserve(this.counts, DESCRIPTORS, descriptors, this.descriptorBudget);
  }

  /** Give back descriptors `reserveDescriptors` counted but that were not used after all. */
  returnDescriptors(descriptors: number): void {
    Atomics.sub(this.counts, DESCRIPTORS, descriptors);
  }

  /** A connection ended; `rule` is the one it was admitted on by `admitOnRule`. */
  release(descriptors: number, rule?: ForwardRule): void {
    Atomics.sub(this.counts, CONNECTIONS, 1);
    Atomics.sub(this.counts, DESCRIPTORS, descriptors);
    const slot = rule === undefined ? undefined : this.ruleSlots.get(rule);
    if (slot !== undefined) Atomics.sub(this.counts, slot, 1);
  }

  private warn(message: string): void {
    const now = Date.now();
    if (now - this.lastWarning < WARN_INTERVAL_MS) return;
    this.lastWarning = now;
    consola.warn(message);
  }
}

/** Whether any allow or deny rule applies to a rule's clients. */
function hasAccessRules(global: AccessList, rule: AccessList): boolean {
  return global.allow.length + global.deny.length + rule.allow.length + rule.deny.length > 0;
}

/**
 * Whether a new client may open a connection or session on `rule`: the
 * allow/deny rules first (a client without an address, on a unix socket, has
 * only the socket file's permissions), then its per-client limits (`clients`,
 * when the rule has any), then the rule's `maxconn` (against `openOnRule`),
 * then the global bounds, which count it when it is admitted. Admitted: the
 * hold on its client's limits, to release once when it ends (the global
 * counts are released through `admission` as before). Refused: why.
 */
export function admitClient(
  address: string,
  rule: ForwardRule,
  globalAccess: AccessList,
  openOnRule: number,
  admission: Admission,
  descriptors: number,
  clients: ClientLimiter | undefined,
): ClientHold | Refusal {
  // With no allow or deny rule to apply there is nothing to parse the address for (it costs a parse per connection).
  if (address !== "" && hasAccessRules(globalAccess, rule.access)) {
    const client = parseClientAddress(address);
    if (client === undefined || !isAllowed(client, globalAccess, rule.access)) return "denied";
  }
  // A unix socket client has no address to be counted by (each would be the same "client").
  const hold = clients === undefined || address === "" ? NO_CLIENT_HOLD : clients.admit(address);
  if (typeof hold === "string") return hold;
  const counted = admission.admitOnRule(rule, openOnRule, descriptors);
  if (counted === "ok") return hold;
  hold.cancel();
  return counted;
}
