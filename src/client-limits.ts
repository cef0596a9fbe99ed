/**
 * @module The per-client connection limits of one rule: `maxconn-client`
 * (connections, or UDP sessions, open at once per client) and
 * `connrate-client=N/S` (new ones per client in any S seconds). One client
 * is what clients.ts says (an IPv4 address, an IPv6 /64). A forwarder asks
 * `admit` at the admission edge and gives the hold back once, when the
 * connection or session ends; nothing here runs per byte.
 *
 * The rate is a sliding window kept exactly: each client keeps the times of
 * its admissions of the last S seconds (at most N of them, in a ring that
 * grows as needed), and a new connection is admitted while fewer than N are
 * in the window. So no S-second window ever holds more than N admissions,
 * and a client refused for its rate is admitted again exactly when its
 * oldest admission in the window is S seconds old. Only admitted
 * connections count: a refused attempt does not push the window on.
 *
 * Memory: a client with open connections is always remembered (forgetting
 * it would let it past its `maxconn-client`); there are at most as many of
 * those as connections open on the rule, which the rule's and the global
 * limits bound. A client without open connections is kept only for its rate
 * window, in a least-recently-used table of `clientTableSize` entries: a
 * flood of sources pushes out the clients seen longest ago (which then
 * start from an empty window), never grows the table.
 */
import { ClientTable, clientKey } from "./clients.ts";
import type { LimitReason } from "./session.ts";
import type { ConnectionRate, ForwardRule } from "./types.ts";

/** Why a client limit refused a connection (the log names the limit; the metrics count both as "client"). */
export type ClientRefusal = Extract<LimitReason, "client-connections" | "client-rate">;

/** The first ring of admission times a client gets: it grows (doubling) only for clients that come back within the window. */
const FIRST_RING = 1;

/** Admission times of one client within its window, oldest first, in a ring. */
class RateWindow {
  // A plain array: in JSC a typed array costs an object and a buffer, about 3 times the memory for a few entries.
  private times: number[] = new Array<number>(FIRST_RING).fill(0);
  private head = 0;
  size = 0;

  /** Forget admissions at or before `cutoff`: they are out of the window. */
  prune(cutoff: number): void {
    const times = this.times;
    while (this.size > 0 && times[this.head]! <= cutoff) {
      this.head = (this.head + 1) % times.length;
      this.size--;
    }
  }

  /** Record an admission at `now`; the ring grows up to `limit` entries. */
  push(now: number, limit: number): void {
    if (this.size === this.times.length) this.grow(Math.max(this.size + 1, Math.min(limit, this.size * 2)));
    this.times[(this.head + this.size) % this.times.length] = now;
    this.size++;
  }

  /** Take back the newest admission (a later check refused the connection after all). */
  pop(): void {
    if (this.size > 0) this.size--;
  }

  private grow(capacity: number): void {
    const next = new Array<number>(capacity).fill(0);
    for (let i = 0; i < this.size; i++) next[i] = this.times[(this.head + i) % this.times.length]!;
    this.times = next;
    this.head = 0;
  }
}

/** What oi keeps about one client of one rule. */
class ClientState {
  open = 0;
  window: RateWindow | undefined = undefined;
  /** When a refusal of this client was last reported (UDP reports at most one a second per client). */
  lastReport = Number.NEGATIVE_INFINITY;
  constructor(readonly key: string) {}
}

/**
 * What an admitted connection holds of its client's limits: `release` when
 * it ends (once; later calls do nothing), or `cancel` when a later check
 * refuses it at once (its admission then does not count against the rate).
 */
export class ClientHold {
  constructor(
    private limiter: ClientLimiter | undefined,
    private readonly state: ClientState | undefined,
  ) {}

  release(): void {
    const limiter = this.limiter;
    this.limiter = undefined;
    if (limiter !== undefined && this.state !== undefined) limiter.release(this.state, false);
  }

  cancel(): void {
    const limiter = this.limiter;
    this.limiter = undefined;
    if (limiter !== undefined && this.state !== undefined) limiter.release(this.state, true);
  }
}

/** The hold of a connection on a rule without per-client limits. */
export const NO_CLIENT_HOLD = new ClientHold(undefined, undefined);

export class ClientLimiter {
  /** Clients with open connections: never forgotten while they have some. */
  private readonly active = new Map<string, ClientState>();
  /** Clients without open connections, kept for their rate window only. */
  private recent: ClientTable<ClientState>;
  private maxOpen = Number.POSITIVE_INFINITY;
  private rate: ConnectionRate | undefined = undefined;
  private windowMs = 0;
  /** Off while the rule has no per-client limit (a reload turned them off): every client is admitted, uncounted. */
  private enabled = true;

  constructor(
    limits: Pick<ForwardRule, "maxConnectionsPerClient" | "connectionRatePerClient" | "clientTableSize">,
    /** The clock, in ms (monotonic); tests give their own. */
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.recent = new ClientTable(limits.clientTableSize);
    this.configure(limits);
  }

  /** Whether `rule` has any per-client connection limit. */
  static applies(rule: Pick<ForwardRule, "maxConnectionsPerClient" | "connectionRatePerClient">): boolean {
    return rule.maxConnectionsPerClient !== undefined || rule.connectionRatePerClient !== undefined;
  }

  /**
   * New limits (a reload kept the rule): what clients have open, and their
   * windows, carry over; the new limits apply to new connections.
   */
  configure(limits: Pick<ForwardRule, "maxConnectionsPerClient" | "connectionRatePerClient" | "clientTableSize">): void {
    this.maxOpen = limits.maxConnectionsPerClient ?? Number.POSITIVE_INFINITY;
    this.rate = limits.connectionRatePerClient;
    this.windowMs = this.rate === undefined ? 0 : this.rate.seconds * 1000;
    this.enabled = ClientLimiter.applies(limits);
    // A new size starts a new table: idle clients' windows are forgotten (those with open connections are kept).
    if (limits.clientTableSize !== this.recent.maxEntries) this.recent = new ClientTable(limits.clientTableSize);
    if (this.rate === undefined) this.recent.clear();
  }

  /**
   * The limiter a forwarder keeps across reloads: made when its rule first
   * has a per-client limit, then kept and reconfigured (holds of open
   * connections point at it), also while a reload has turned the limits off.
   */
  static follow(current: ClientLimiter | undefined, rule: ForwardRule): ClientLimiter | undefined {
    if (current !== undefined) {
      current.configure(rule);
      return current;
    }
    return ClientLimiter.applies(rule) ? new ClientLimiter(rule) : undefined;
  }

  /** Clients remembered now: those with open connections and those kept for their rate. */
  get size(): number {
    return this.active.size + this.recent.size;
  }

  /** Admit a new connection of the client at `address`, or say which limit refuses it. */
  admit(address: string): ClientHold | ClientRefusal {
    if (!this.enabled) return NO_CLIENT_HOLD;
    const key = clientKey(address);
    const state = this.active.get(key) ?? this.recent.peek(key) ?? new ClientState(key);
    if (state.open >= this.maxOpen) return "client-connections";
    const rate = this.rate;
    if (rate !== undefined) {
      const now = this.clock();
      const window = (state.window ??= new RateWindow());
      window.prune(now - this.windowMs);
      if (window.size >= rate.connections) {
        // Remembered (and made recent) even when refused, so its window is not forgotten first.
        if (state.open === 0) this.recent.touch(key, () => state);
        return "client-rate";
      }
      window.push(now, rate.connections);
    }
    if (state.open++ === 0) {
      this.recent.delete(key);
      this.active.set(key, state);
    }
    return new ClientHold(this, state);
  }

  /**
   * Whether a refusal of the client at `address` should be reported now:
   * at most once a second per client (a UDP client refused sends many
   * datagrams, each of which would be a refusal).
   */
  shouldReport(address: string): boolean {
    const key = clientKey(address);
    const state = this.active.get(key) ?? this.recent.peek(key);
    if (state === undefined) return true;
    const now = this.clock();
    if (now - state.lastReport < 1000) return false;
    state.lastReport = now;
    return true;
  }

  /** A connection of `state`'s client ended (`cancelled`: refused after all, so its admission is taken back too). */
  release(state: ClientState, cancelled: boolean): void {
    if (cancelled) state.window?.pop();
    if (--state.open > 0) return;
    state.open = 0;
    if (this.active.get(state.key) === state) this.active.delete(state.key);
    // A client without open connections is kept only while its window has something in it.
    const window = state.window;
    if (this.rate === undefined || window === undefined) return;
    window.prune(this.clock() - this.windowMs);
    if (window.size > 0) this.recent.touch(state.key, () => state);
  }
}
