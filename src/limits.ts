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

export class Admission {
  private connections = 0;
  private descriptors = 0;
  private lastWarning = 0;
  /** Descriptors connections may hold in all; Infinity when the limit is unknown. */
  readonly descriptorBudget: number;

  constructor(public maxConnections: number | undefined) {
    const limit = descriptorLimit();
    if (limit === undefined) {
      this.descriptorBudget = Number.POSITIVE_INFINITY;
    } else {
      const headroom = Math.min(HEADROOM_MAX, Math.ceil(limit / 8));
      this.descriptorBudget = Math.max(0, limit - (openDescriptors() ?? 0) - headroom);
    }
  }

  /** Connections (and UDP sessions) open now. */
  get open(): number {
    return this.connections;
  }

  /** Count a new connection needing `descriptors` descriptors, or say no. */
  admit(descriptors: number): boolean {
    if (this.maxConnections !== undefined && this.connections >= this.maxConnections) {
      this.warn(`global connection limit reached (maxconn ${this.maxConnections}): refusing new clients until some close`);
      return false;
    }
    if (this.descriptors + descriptors > this.descriptorBudget) {
      this.warn(
        `file descriptor limit nearly reached (${this.descriptors} held by connections, budget ${this.descriptorBudget}; raise it with ulimit -n): refusing new clients until some close`,
      );
      return false;
    }
    this.connections++;
    this.descriptors += descriptors;
    return true;
  }

  release(descriptors: number): void {
    this.connections--;
    this.descriptors -= descriptors;
  }

  private warn(message: string): void {
    const now = Date.now();
    if (now - this.lastWarning < WARN_INTERVAL_MS) return;
    this.lastWarning = now;
    consola.warn(message);
  }
}

/**
 * Whether a new client may open a connection or session on `rule`: the
 * allow/deny rules first (a client without an address, on a unix socket, has
 * only the socket file's permissions), then the rule's `maxconn` (against
 * `openOnRule`), then the global bounds, which count it when it is admitted.
 */
export function admitClient(
  address: string,
  rule: ForwardRule,
  globalAccess: AccessList,
  openOnRule: number,
  admission: Admission,
  descriptors: number,
): "ok" | "denied" | "limit" {
  if (address !== "") {
    const client = parseClientAddress(address);
    if (client === undefined || !isAllowed(client, globalAccess, rule.access)) return "denied";
  }
  if (rule.maxConnections !== undefined && openOnRule >= rule.maxConnections) return "limit";
  return admission.admit(descriptors) ? "ok" : "limit";
}
