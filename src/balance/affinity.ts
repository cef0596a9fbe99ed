/**
 * @module Client affinity: which backend each client IP was last sent to,
 * for `affinityTtl` after its last connection, in a table bounded by
 * `affinityMaxEntries`. A Map keeps insertion order, so deleting and
 * re-inserting a client on every use keeps it in least-recently-used order;
 * and since every use also restarts the client's timer with the same TTL,
 * that order is also the order of expiry. Eviction at the bound and the
 * removal of expired entries therefore both happen at the front.
 */

interface AffinityEntry {
  index: number;
  expiresAt: number;
}

/** Expired entries removed from the front per new client: keeps pace with inserts at O(1) each. */
const SWEEP_PER_INSERT = 2;

export class AffinityTable {
  private readonly entries = new Map<string, AffinityEntry>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
  ) {
    if (!(ttlMs > 0)) throw new RangeError(`affinity TTL must be positive, not ${ttlMs}`);
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError(`affinity table size must be a positive integer, not ${maxEntries}`);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  /** The backend remembered for `client`, if its time is not over (an expired entry is dropped). */
  lookup(client: string, now: number): number | undefined {
    const entry = this.entries.get(client);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= now) {
      this.entries.delete(client);
      return undefined;
    }
    return entry.index;
  }

  /** Remember (or refresh) `client` → `index` for another TTL, as the most recently used. */
  remember(client: string, index: number, now: number): void {
    const entry = this.entries.get(client);
    if (entry !== undefined) {
      // Re-inserting moves it to the back: the Map's order stays LRU order.
      this.entries.delete(client);
      entry.index = index;
      entry.expiresAt = now + this.ttlMs;
      this.entries.set(client, entry);
      return;
    }
    this.sweep(now);
    if (this.entries.size >= this.maxEntries) this.evictOldest();
    this.entries.set(client, { index, expiresAt: now + this.ttlMs });
  }

  /** Forget every client (a backend list change makes the indexes meaningless). */
  clear(): void {
    this.entries.clear();
  }

  private sweep(now: number): void {
    let budget = SWEEP_PER_INSERT;
    for (const [client, entry] of this.entries) {
      if (budget-- === 0 || entry.expiresAt > now) return;
      this.entries.delete(client);
    }
  }

  private evictOldest(): void {
    const oldest = this.entries.keys().next();
    if (oldest.done !== true) this.entries.delete(oldest.value);
  }
}
