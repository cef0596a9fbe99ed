/**
 * @module One bandwidth limit in one direction: a token bucket, and the
 * queue of those waiting for it to refill.
 *
 * Tokens are bytes. They are added by elapsed time (performance.now), never
 * by a ticking timer, up to a burst of one tenth of a second's worth, so a
 * connection that was quiet may send at most that much at once. A timer runs
 * only while someone waits: it fires when the bucket holds a quantum again
 * and serves the waiters in turn (first come, first served), each taking at
 * most one quantum while others wait, so the connections sharing a limit
 * get fair shares. A newcomer does not jump the queue: while anyone waits,
 * only the one being served may take tokens.
 */

/** The largest burst: this many seconds' worth of the rate. */
export const BURST_SECONDS = 0.1;
/** A waiter takes at most this much per turn while others wait (less at low rates, see quantum). */
const MAX_QUANTUM_BYTES = 64 * 1024;

/** Someone who waits for tokens: told when it is its turn, skipped once gone. */
export interface BucketWaiter {
  /** It no longer wants tokens (its connection ended). */
  readonly gone: boolean;
  /** Bytes it waits to move; the timer waits for this much (or a quantum) before serving it. */
  readonly wanted: number;
  /** It is this waiter's turn: take what `available` gives now. */
  refilled(): void;
}

export class TokenBucket {
  /** Bytes per second. */
  private rate = 0;
  /** Bytes per millisecond. */
  private perMs = 0;
  private capacity = 0;
  private quantum = 0;
  /** Half a burst: what a waiter alone waits for (fewer, larger writes; still within the burst). */
  private halfBurst = 0;
  private tokens = 0;
  private updatedAt = performance.now();
  private readonly waiters: BucketWaiter[] = [];
  /** The waiter whose turn it is (during its `refilled` call). */
  private serving: BucketWaiter | undefined = undefined;
  private timer: Timer | undefined = undefined;

  constructor(bytesPerSecond: number) {
    this.setRate(bytesPerSecond);
    // A new limit starts full: a first burst is allowed, as after any quiet spell.
    this.tokens = this.capacity;
  }

  get bytesPerSecond(): number {
    return this.rate;
  }

  /** Follow a new rate (a reload); tokens above the new burst are dropped. */
  setRate(bytesPerSecond: number): void {
    this.refill();
    this.rate = bytesPerSecond;
    this.perMs = bytesPerSecond / 1000;
    this.capacity = Math.max(1, bytesPerSecond * BURST_SECONDS);
    // Half a burst at most, so a served waiter leaves room for the next before the bucket is full again.
    this.halfBurst = Math.max(1, Math.floor(this.capacity / 2));
    this.quantum = Math.min(MAX_QUANTUM_BYTES, this.halfBurst);
    if (this.tokens > this.capacity) this.tokens = this.capacity;
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.arm();
    }
  }

  /** Whole bytes `asker` may move now: 0 while others wait ahead of it. */
  available(asker: BucketWaiter): number {
    this.refill();
    // Below zero only after a datagram larger than what was left (see holds): nothing may move until it is paid.
    const tokens = this.tokens > 0 ? Math.floor(this.tokens) : 0;
    if (this.serving === asker) return this.waiters.length === 0 ? tokens : Math.min(tokens, this.quantum);
    return this.waiters.length === 0 ? tokens : 0;
  }

  /** Whether the bucket holds `bytes` (or is full, for more than a burst): for a datagram, which goes whole or not at all. */
  holds(bytes: number): boolean {
    this.refill();
    return this.tokens >= (bytes < this.capacity ? bytes : this.capacity);
  }

  /** `bytes` moved: take them out (after `available` allowed them). */
  spend(bytes: number): void {
    this.tokens -= bytes;
  }

  /** Queue `waiter` for its turn once the bucket refills (it is told by `refilled`). */
  wait(waiter: BucketWaiter): void {
    this.waiters.push(waiter);
    this.arm();
  }

  private refill(): void {
    const now = performance.now();
    const tokens = this.tokens + (now - this.updatedAt) * this.perMs;
    this.tokens = tokens > this.capacity ? this.capacity : tokens;
    this.updatedAt = now;
  }

  /** Start the timer for the first waiter, unless it runs already. */
  private arm(): void {
    if (this.timer !== undefined || this.waiters.length === 0) return;
    this.refill();
    const needed = this.turnSize(this.waiters[0]!);
    const delayMs = this.tokens >= needed ? 0 : (needed - this.tokens) / this.perMs;
    this.timer = setTimeout(serveWaiters, delayMs, this);
  }

  /**
   * Tokens a waiter's turn needs: a quantum while others wait too, half a
   * burst when it waits alone (each turn costs a timer and a write: fewer
   * and larger at high rates), or less when it waits for less.
   */
  private turnSize(waiter: BucketWaiter): number {
    const most = this.waiters.length > 1 ? this.quantum : this.halfBurst;
    return Math.min(most, Math.max(1, waiter.wanted));
  }

  /** The timer fired: serve the waiters in turn while tokens last, each waiter once. */
  serve(): void {
    this.timer = undefined;
    this.refill();
    const waiters = this.waiters;
    // A waiter that goes back to the queue (more to send) waits for the next round.
    let turns = waiters.length;
    while (turns-- > 0 && waiters.length > 0) {
      const head = waiters[0]!;
      // Not enough for the head's turn: it keeps its place until the timer says there is.
      if (!head.gone && this.tokens < this.turnSize(head)) break;
      const waiter = waiters.shift()!;
      if (waiter.gone) continue;
      this.serving = waiter;
      try {
        waiter.refilled();
      } finally {
        this.serving = undefined;
      }
    }
    this.dropGone();
    this.arm();
  }

  /** Waiters whose connection ended leave the queue (so a timer never runs for nobody). */
  private dropGone(): void {
    const waiters = this.waiters;
    if (waiters.length > 0 && waiters[0]!.gone) {
      let kept = 0;
      for (const waiter of waiters) if (!waiter.gone) waiters[kept++] = waiter;
      waiters.length = kept;
    }
  }

  /** Stop the timer (the limit is no longer used). */
  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.waiters.length = 0;
  }
}

function serveWaiters(bucket: TokenBucket): void {
  bucket.serve();
}
