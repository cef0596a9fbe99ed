/**
 * @module The sessions of one rule ordered by last use, and their idle
 * timeout. Every session is a node of one intrusive doubly linked list kept
 * newest first: touching a session (any datagram or chunk, either way) moves
 * it to the front in O(1), so the least recently used one, the eviction
 * victim, is always the tail, and an idle sweep walks from the tail only over
 * sessions that may have expired. One interval timer per rule, running only
 * while the rule has sessions, replaces a timer per session or per datagram.
 */

/** What the list needs on each session: its links, its last activity and its own timeout. */
export interface Tracked<T> {
  newer: T | undefined;
  older: T | undefined;
  /** Date.now() at the last datagram or chunk, either way. */
  lastSeen: number;
  /** Idle timeout of the rule this session started under, in ms (a reload does not change it). */
  readonly idleMs: number;
  /** Bytes from the client and to the client so far. */
  readonly bytesIn: number;
  readonly bytesOut: number;
}

/** Longest pause between two sweeps: expiry happens between `timeout` and `timeout` + this. */
const MAX_SWEEP_PERIOD_MS = 1000;

export class SessionList<T extends Tracked<T>> {
  size = 0;
  newest: T | undefined = undefined;
  oldest: T | undefined = undefined;
  private timer: Timer | undefined = undefined;
  /**
   * Shortest idle timeout of any session ever added. A session used more
   * recently than this cannot have expired whatever its own timeout, so the
   * sweep stops there even when a reload left sessions with mixed timeouts.
   */
  private shortestIdleMs = Number.POSITIVE_INFINITY;
  private periodMs = MAX_SWEEP_PERIOD_MS;
  /** Idle time after which any session expires (set when the rule stops accepting). */
  private capMs = Number.POSITIVE_INFINITY;

  /** `expire` must end the session, which calls `remove`. */
  constructor(private readonly expire: (session: T) => void) {}

  /** Bytes [from clients, to clients] of every session in the list (for metrics). */
  byteTotals(): [number, number] {
    let bytesIn = 0;
    let bytesOut = 0;
    for (let session = this.newest; session !== undefined; session = session.older) {
      bytesIn += session.bytesIn;
      bytesOut += session.bytesOut;
    }
    return [bytesIn, bytesOut];
  }

  add(session: T, now: number): void {
    session.lastSeen = now;
    session.older = this.newest;
    session.newer = undefined;
    if (this.newest !== undefined) this.newest.newer = session;
    else this.oldest = session;
    this.newest = session;
    this.size++;
    this.noteIdle(session.idleMs);
    this.timer ??= setInterval(() => this.sweep(), this.periodMs);
  }

  /**
   * From now on a session idle for `ms` expires whatever its own timeout: a
   * rule that stopped accepting lets its sessions finish an exchange in
   * progress, not wait out the full timeout.
   */
  capIdle(ms: number): void {
    this.capMs = Math.min(this.capMs, ms);
    this.noteIdle(ms);
    if (this.timer === undefined && this.size > 0) this.timer = setInterval(() => this.sweep(), this.periodMs);
  }

  /** Activity on `session`: it becomes the most recently used. */
  touch(session: T, now: number): void {
    session.lastSeen = now;
    if (this.newest === session) return;
    this.unlink(session);
    session.older = this.newest;
    session.newer = undefined;
    if (this.newest !== undefined) this.newest.newer = session;
    else this.oldest = session;
    this.newest = session;
  }

  remove(session: T): void {
    this.unlink(session);
    session.newer = undefined;
    session.older = undefined;
    this.size--;
    if (this.size === 0) this.stopTimer();
  }

  /** End every session idle for its timeout or longer. */
  sweep(now = Date.now()): void {
    let session = this.oldest;
    while (session !== undefined) {
      const idle = now - session.lastSeen;
      if (idle < this.shortestIdleMs) return;
      const next = session.newer;
      if (idle >= Math.min(session.idleMs, this.capMs)) this.expire(session);
      session = next;
    }
  }

  /** Sweep often enough for the shortest timeout seen: a quarter of it, at most a second. */
  private noteIdle(ms: number): void {
    if (ms >= this.shortestIdleMs) return;
    this.shortestIdleMs = ms;
    const period = Math.max(10, Math.min(MAX_SWEEP_PERIOD_MS, Math.floor(ms / 4)));
    if (period === this.periodMs) return;
    this.periodMs = period;
    if (this.timer !== undefined) {
      this.stopTimer();
      this.timer = setInterval(() => this.sweep(), this.periodMs);
    }
  }

  private unlink(session: T): void {
    const { newer, older } = session;
    if (newer !== undefined) newer.older = older;
    else this.newest = older;
    if (older !== undefined) older.newer = newer;
    else this.oldest = newer;
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}
