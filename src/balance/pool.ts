/**
 * @module Choosing a backend for a new connection when a rule has several:
 * the balancing algorithm, passive health (consecutive connect failures put
 * a backend out for a while), the failover order of retries, client
 * affinity, and the per-backend counters the metrics read.
 *
 * The pool never touches a socket. A forwarder tells it what happened, at
 * the edges of a connection only:
 *
 *     pick ──► failed                      the connect failed (try the next pick)
 *     pick ──► opened ──► closed           connected, later ended (bytes counted)
 *     pick ──► closed(i, 0, 0)             given up before the outcome (client left)
 *
 * A pick counts as an active connection from the moment it is made, so
 * `leastconn` sees connections still being set up and a burst of clients
 * does not all land on the backend that was idlest before the burst.
 *
 * An optional prober (probe.ts) adds active checks through `setProbeResult`.
 * Everything here is synchronous and allocation-free per pick, except the
 * affinity entry of a client seen for the first time.
 */
import { AffinityTable } from "./affinity.ts";
import { fnv1a32, hash32, rendezvousScore } from "./hash.ts";

export type Algorithm = "roundrobin" | "leastconn" | "random" | "iphash";

export const ALGORITHMS: readonly Algorithm[] = ["roundrobin", "leastconn", "random", "iphash"];

export interface BackendSpec {
  /** For logs and metrics. */
  name: string;
  /** Relative share of new connections (> 0). */
  weight: number;
  /**
   * Stable identity for `iphash` (the name, or "host:port"): the same key
   * keeps the same clients across restarts and config reloads, whatever
   * the backend's position in the list.
   */
  key: string;
  /**
   * Failover tier (an SRV record's priority): only the lowest tier that has
   * a backend up serves; higher ones are backups. Default 0.
   */
  tier?: number;
}

export interface PoolOptions {
  algorithm: Algorithm;
  /** Consecutive failed connects (or probes) that put a backend out. */
  healthThreshold: number;
  /** How long a backend put out by failed connects is skipped before it gets a trial. */
  recoveryTimeoutMs: number;
  /** Same client IP → same backend for this long after its last connection; 0 turns affinity off. */
  affinityTtlMs: number;
  affinityMaxEntries: number;
  /** Connect attempts per client, the first included (default: `defaultMaxAttempts`). */
  maxAttempts?: number;
  /** Milliseconds on a monotonic clock (default performance.now); injectable for tests. */
  now?: () => number;
  /** Uniform in [0, 1) (default Math.random); injectable for tests. */
  random?: () => number;
  /** Called when a backend is marked down and when it is marked up again (for the log). */
  onHealthChange?: (index: number, backend: BackendStatus, healthy: boolean) => void;
}

/** rinetd-uv's defaults (its `load_balancing` section). */
export const POOL_DEFAULTS = {
  algorithm: "roundrobin",
  healthThreshold: 3,
  recoveryTimeoutMs: 30_000,
  affinityTtlMs: 0,
  affinityMaxEntries: 10_000,
} as const satisfies PoolOptions;

/** `tried` is a bitmask in a 32-bit integer: one bit per backend. */
export const MAX_BACKENDS = 32;

/**
 * Connect attempts per client when not configured: every backend once, but
 * at most 3, so a client waits for at most three connect timeouts when
 * everything is failing.
 */
export function defaultMaxAttempts(backendCount: number): number {
  return Math.min(backendCount, 3);
}

/** `tried` with backend `index` added: pass the result to the next `pick` of the same client. */
export function markTried(tried: number, index: number): number {
  return tried | (1 << index);
}

/**
 * An operator's say over a backend (the admin API): `ready` takes
 * connections, `drain` takes no new ones (open ones finish), `maint` is
 * drain with its health probes stopped too.
 */
export type AdminState = "ready" | "drain" | "maint";

/** What the metrics, the status view and the log read about one backend. */
export interface BackendStatus {
  readonly name: string;
  readonly key: string;
  readonly weight: number;
  readonly state: AdminState;
  /** False while the backend is out (after failed connects or probes) and its trial time has not come. */
  readonly healthy: boolean;
  /** Connections picked for it and not yet ended: connecting or connected. */
  readonly active: number;
  /** Failed connects since its last success. */
  readonly consecutiveFailures: number;
  /** Failed probes since its last successful one (always 0 without a prober). */
  readonly probeFailures: number;
  /** Connections that reached it. */
  readonly totalConnections: number;
  /** Connects to it that failed. */
  readonly totalFailures: number;
  /** Bytes received from clients of finished connections (as in SessionRecord). */
  readonly bytesIn: number;
  /** Bytes received from it and sent towards clients, of finished connections. */
  readonly bytesOut: number;
}

/** "Down until a probe succeeds": failed probes do not expire with time. */
const UNTIL_PROBE_SUCCEEDS = Number.POSITIVE_INFINITY;

class BackendState implements BackendStatus {
  state: AdminState = "ready";
  active = 0;
  consecutiveFailures = 0;
  probeFailures = 0;
  totalConnections = 0;
  totalFailures = 0;
  bytesIn = 0;
  bytesOut = 0;
  /** Out of rotation until this time (0: in rotation; past: on trial). */
  downUntil = 0;
  /** Marked down and not yet seen succeeding: what onHealthChange reports transitions of. */
  markedDown = false;
  /** Smooth weighted round robin's running weight. */
  currentWeight = 0;
  /** See BackendSpec.tier. */
  tier = 0;
  /** The seed `iphash` hashes clients under, from the key. */
  readonly hashSeed: number;

  constructor(
    readonly name: string,
    readonly key: string,
    public weight: number,
    private readonly now: () => number,
  ) {
    this.hashSeed = fnv1a32(key);
  }

  get healthy(): boolean {
    return this.downUntil <= this.now();
  }
}

export class BackendPool {
  private readonly states: BackendState[];
  /**
   * Backends taken out of the pool for good (a DNS name no longer lists
   * their address): never picked again, but still counted until their
   * connections end, and their slot reused by the next `add` once idle.
   */
  private retired = 0;
  /** Backends drained or in maintenance (see AdminState): skipped by every pick, as retired ones are. */
  private held = 0;
  private readonly algorithm: Algorithm;
  private readonly threshold: number;
  private readonly recoveryMs: number;
  private readonly affinity: AffinityTable | undefined;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly onHealthChange: PoolOptions["onHealthChange"];
  /** Where `leastconn` starts looking, so ties rotate. */
  private cursor = 0;
  private readonly fixedAttempts: number | undefined;
  /** Some backend has a tier other than 0: picks look at tiers (a pool without them skips that loop). */
  private tiered = false;

  constructor(backends: readonly BackendSpec[], options: PoolOptions) {
    if (backends.length === 0) throw new RangeError("a backend pool needs at least one backend");
    if (backends.length > MAX_BACKENDS) {
      throw new RangeError(`a backend pool holds at most ${MAX_BACKENDS} backends, not ${backends.length}`);
    }
    if (!ALGORITHMS.includes(options.algorithm)) throw new RangeError(`unknown algorithm "${options.algorithm}"`);
    if (!Number.isInteger(options.healthThreshold) || options.healthThreshold < 1) {
      throw new RangeError(`health threshold must be a positive integer, not ${options.healthThreshold}`);
    }
    if (!(options.recoveryTimeoutMs >= 0)) throw new RangeError(`recovery timeout must be >= 0, not ${options.recoveryTimeoutMs}`);
    if (!(options.affinityTtlMs >= 0)) throw new RangeError(`affinity TTL must be >= 0, not ${options.affinityTtlMs}`);
    const now = options.now ?? (() => performance.now());
    this.states = backends.map((spec) => {
      if (!(spec.weight > 0) || !Number.isFinite(spec.weight)) {
        throw new RangeError(`backend "${spec.name}": weight must be a positive number, not ${spec.weight}`);
      }
      const state = new BackendState(spec.name, spec.key, spec.weight, now);
      state.tier = spec.tier ?? 0;
      return state;
    });
    this.tiered = this.states.some((state) => state.tier !== 0);
    this.algorithm = options.algorithm;
    this.threshold = options.healthThreshold;
    this.recoveryMs = options.recoveryTimeoutMs;
    this.affinity =
      options.affinityTtlMs > 0 ? new AffinityTable(options.affinityTtlMs, options.affinityMaxEntries) : undefined;
    this.now = now;
    this.random = options.random ?? Math.random;
    this.onHealthChange = options.onHealthChange;
    const attempts = options.maxAttempts;
    if (attempts !== undefined && (!Number.isInteger(attempts) || attempts < 1)) {
      throw new RangeError(`max attempts must be a positive integer, not ${attempts}`);
    }
    this.fixedAttempts = attempts;
  }

  /** Every slot, retired ones included (see `isRetired`): indexes are those `pick` returns. */
  get backends(): ReadonlyArray<BackendStatus> {
    return this.states;
  }

  /** Connect attempts per client, the first included. */
  get maxAttempts(): number {
    return this.fixedAttempts ?? defaultMaxAttempts(this.liveCount);
  }

  /** Backends that may be picked (not retired). */
  get liveCount(): number {
    let count = 0;
    for (let i = 0; i < this.states.length; i++) if ((this.retired & (1 << i)) === 0) count++;
    return count;
  }

  isRetired(index: number): boolean {
    return (this.retired & (1 << index)) !== 0;
  }

  /**
   * A backend joins the pool (a DNS name now lists one more address): in
   * the slot of a retired backend whose connections have all ended, else in
   * a new one. Its index, or undefined when the pool is full.
   */
  add(spec: BackendSpec): number | undefined {
    if (!(spec.weight > 0) || !Number.isFinite(spec.weight)) {
      throw new RangeError(`backend "${spec.name}": weight must be a positive number, not ${spec.weight}`);
    }
    const state = new BackendState(spec.name, spec.key, spec.weight, this.now);
    state.tier = spec.tier ?? 0;
    if (state.tier !== 0) this.tiered = true;
    for (let i = 0; i < this.states.length; i++) {
      if (this.isRetired(i) && this.states[i]!.active === 0) {
        this.states[i] = state;
        this.retired &= ~(1 << i);
        this.held &= ~(1 << i);
        return i;
      }
    }
    if (this.states.length >= MAX_BACKENDS) return undefined;
    this.states.push(state);
    return this.states.length - 1;
  }

  /** Backend `index` leaves the pool: no new connection goes to it; those it has finish. */
  retire(index: number): void {
    this.stateOf(index);
    this.retired |= 1 << index;
  }

  /** Backend `index` takes new connections again (ready), or no more (drain, maint); open ones are not touched. */
  setState(index: number, state: AdminState): void {
    this.stateOf(index).state = state;
    if (state === "ready") this.held &= ~(1 << index);
    else this.held |= 1 << index;
  }

  /** Backend `index`'s share of new connections from now on (> 0). */
  setWeight(index: number, weight: number): void {
    if (!(weight > 0) || !Number.isFinite(weight)) throw new RangeError(`weight must be a positive number, not ${weight}`);
    const state = this.stateOf(index);
    state.weight = weight;
    state.currentWeight = 0;
  }

  /** Backend `index`'s failover tier from now on (see BackendSpec.tier). */
  setTier(index: number, tier: number): void {
    this.stateOf(index).tier = tier;
    if (tier !== 0) this.tiered = true;
  }

  /** Clients remembered for affinity (0 when affinity is off). */
  get affinitySize(): number {
    return this.affinity?.size ?? 0;
  }

  /**
   * The backend for a new connection of `client` (its IP address as text,
   * without port), skipping those in `tried` (see `markTried`). Healthy
   * backends first; when every untried one is out, one of them anyway
   * (fail-open: a backend that may answer beats refusing the client).
   * Undefined once every backend has been tried. The pick counts as an
   * active connection until `failed` or `closed`.
   */
  pick(client: string, tried = 0): number | undefined {
    const states = this.states;
    const now = this.now();
    // Backups wait while a backend of a lower tier is up (and not yet tried by this client).
    if (this.tiered) tried |= this.otherTiers(tried | this.retired | this.held, now);

    // Affinity applies to a client's first attempt; a retry means its backend just failed.
    if (this.affinity !== undefined && tried === 0) {
      const remembered = this.affinity.lookup(client, now);
      if (remembered !== undefined && (tried & (1 << remembered)) === 0 && !this.isRetired(remembered) && (this.held & (1 << remembered)) === 0 && (states[remembered]?.downUntil ?? 0) <= now) {
        return this.chosen(remembered, client, now);
      }
    }
    // Retired, drained and maintained backends count as tried: never picked, not even fail-open.
    tried |= this.retired | this.held;

    let down = 0;
    let untried = 0;
    let healthyUntried = 0;
    for (let i = 0; i < states.length; i++) {
      const bit = 1 << i;
      if ((tried & bit) !== 0) continue;
      untried++;
      if ((states[i]?.downUntil ?? 0) > now) down |= bit;
      else healthyUntried++;
    }
    if (untried === 0) return undefined;
    const excluded = healthyUntried > 0 ? tried | down : tried;

    let index: number;
    switch (this.algorithm) {
      case "roundrobin":
        index = this.smoothRoundRobin(excluded);
        break;
      case "leastconn":
        index = this.leastConnections(excluded);
        break;
      case "random":
        index = this.weightedRandom(excluded);
        break;
      case "iphash":
        index = this.rendezvous(client, excluded);
        break;
    }
    return this.chosen(index, client, now);
  }

  /**
   * The backends outside the tier that serves now: the lowest tier with a
   * backend up among those not in `unavailable`; when every one of those is
   * down, the lowest tier with any (fail-open, as within one tier).
   */
  private otherTiers(unavailable: number, now: number): number {
    const states = this.states;
    let lowestUp = Number.POSITIVE_INFINITY;
    let lowestAny = Number.POSITIVE_INFINITY;
    for (let i = 0; i < states.length; i++) {
      if ((unavailable & (1 << i)) !== 0) continue;
      const state = states[i]!;
      if (state.tier < lowestAny) lowestAny = state.tier;
      if (state.downUntil <= now && state.tier < lowestUp) lowestUp = state.tier;
    }
    const serving = lowestUp !== Number.POSITIVE_INFINITY ? lowestUp : lowestAny;
    let others = 0;
    for (let i = 0; i < states.length; i++) if (states[i]!.tier !== serving) others |= 1 << i;
    return others;
  }

  /** A connection to backend `index` was established: it is healthy, whatever it was before. */
  opened(index: number): void {
    const state = this.stateOf(index);
    state.totalConnections++;
    state.consecutiveFailures = 0;
    this.markUp(index, state);
  }

  /**
   * A connect to backend `index` failed (refused, unreachable, timed out).
   * After `healthThreshold` in a row it is out for `recoveryTimeout`; then
   * it is eligible again, and a single further failure puts it out again
   * (the failure count is only reset by a success).
   */
  failed(index: number): void {
    const state = this.stateOf(index);
    if (state.active > 0) state.active--;
    state.totalFailures++;
    state.consecutiveFailures++;
    if (state.consecutiveFailures < this.threshold) return;
    // A backend a prober put out stays out until a probe (or a connection) succeeds.
    if (state.downUntil !== UNTIL_PROBE_SUCCEEDS) state.downUntil = this.now() + this.recoveryMs;
    this.markDown(index, state);
  }

  /** A connection picked for `index` ended (or was given up before connecting): bytes as in SessionRecord. */
  closed(index: number, bytesIn: number, bytesOut: number): void {
    const state = this.stateOf(index);
    if (state.active > 0) state.active--;
    state.bytesIn += bytesIn;
    state.bytesOut += bytesOut;
  }

  /**
   * An active check's result. `healthThreshold` failed probes in a row put
   * the backend out until a probe succeeds (no timed trial: the prober
   * decides); one successful probe puts it back, and also clears failed
   * connects, since a backend that accepts the probe accepts connections.
   */
  setProbeResult(index: number, up: boolean): void {
    const state = this.stateOf(index);
    if (up) {
      state.probeFailures = 0;
      state.consecutiveFailures = 0;
      this.markUp(index, state);
      return;
    }
    state.probeFailures++;
    if (state.probeFailures < this.threshold) return;
    state.downUntil = UNTIL_PROBE_SUCCEEDS;
    this.markDown(index, state);
  }

  private chosen(index: number, client: string, now: number): number {
    this.stateOf(index).active++;
    this.affinity?.remember(client, index, now);
    return index;
  }

  private markUp(index: number, state: BackendState): void {
    state.downUntil = 0;
    if (!state.markedDown) return;
    state.markedDown = false;
    this.onHealthChange?.(index, state, true);
  }

  private markDown(index: number, state: BackendState): void {
    if (state.markedDown) return;
    state.markedDown = true;
    this.onHealthChange?.(index, state, false);
  }

  private stateOf(index: number): BackendState {
    const state = this.states[index];
    if (state === undefined) throw new RangeError(`no backend ${index} in a pool of ${this.states.length}`);
    return state;
  }

  /**
   * nginx's smooth weighted round robin: each pick adds every candidate's
   * weight to its running weight, takes the highest, and subtracts the
   * total from the winner. Weights 5:1:1 give a a b a c a a, never five in
   * a row, and each backend gets exactly its share of every cycle.
   */
  private smoothRoundRobin(excluded: number): number {
    const states = this.states;
    let best = -1;
    let bestWeight = Number.NEGATIVE_INFINITY;
    let total = 0;
    for (let i = 0; i < states.length; i++) {
      if ((excluded & (1 << i)) !== 0) continue;
      const state = states[i]!;
      state.currentWeight += state.weight;
      total += state.weight;
      if (state.currentWeight > bestWeight) {
        best = i;
        bestWeight = state.currentWeight;
      }
    }
    states[best]!.currentWeight -= total;
    return best;
  }

  /**
   * Fewest active connections relative to weight (compared as
   * active_a * weight_b < active_b * weight_a, without division); among
   * equals the heavier backend, then the first found from a cursor that
   * moves past each winner, so equal idle backends take turns.
   */
  private leastConnections(excluded: number): number {
    const states = this.states;
    const count = states.length;
    let best = -1;
    for (let k = 0; k < count; k++) {
      let i = this.cursor + k;
      if (i >= count) i -= count;
      if ((excluded & (1 << i)) !== 0) continue;
      if (best < 0) {
        best = i;
        continue;
      }
      const candidate = states[i]!;
      const leader = states[best]!;
      const load = candidate.active * leader.weight;
      const leaderLoad = leader.active * candidate.weight;
      if (load < leaderLoad || (load === leaderLoad && candidate.weight > leader.weight)) best = i;
    }
    this.cursor = best + 1 === count ? 0 : best + 1;
    return best;
  }

  /** Backend i with probability weight_i / (sum of candidate weights). */
  private weightedRandom(excluded: number): number {
    const states = this.states;
    let total = 0;
    let last = -1;
    for (let i = 0; i < states.length; i++) {
      if ((excluded & (1 << i)) !== 0) continue;
      total += states[i]!.weight;
      last = i;
    }
    let point = this.random() * total;
    for (let i = 0; i < states.length; i++) {
      if ((excluded & (1 << i)) !== 0) continue;
      point -= states[i]!.weight;
      if (point < 0) return i;
    }
    // Only reachable through rounding when the draw is within an ulp of the total.
    return last;
  }

  /**
   * Weighted rendezvous hashing over the backends' keys: the client goes to
   * the candidate with the highest score, which depends only on the client
   * and that backend. An unhealthy or already tried backend drops out and
   * its clients spread over the rest; everyone else stays put.
   */
  private rendezvous(client: string, excluded: number): number {
    const states = this.states;
    let best = -1;
    let bestScore = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < states.length; i++) {
      if ((excluded & (1 << i)) !== 0) continue;
      const state = states[i]!;
      const score = rendezvousScore(hash32(client, state.hashSeed), state.weight);
      if (score > bestScore) {
        best = i;
        bestScore = score;
      }
    }
    return best;
  }
}
