/**
 * @module What a relay asks of the bandwidth limits of one direction of one
 * connection: how many bytes may move now, that some did, and to be told
 * when more may. A byte must be allowed by every limit that applies (the
 * connection's own, its rule's, its client's): the budget is the tightest of
 * its buckets. The policy (rates, bursts, refill timers, turns among the
 * connections sharing a limit) is the buckets' (bucket.ts).
 */
import type { BucketWaiter, TokenBucket } from "./bucket.ts";

export class Budget implements BucketWaiter {
  gone = false;
  wanted = 0;
  /** The bucket this budget waits on, if any (at most one at a time). */
  private waitingOn: TokenBucket | undefined = undefined;
  /** The bucket that allowed the least at the last `allowance`: the one to wait on. */
  private tightest: TokenBucket | undefined = undefined;

  constructor(
    private readonly buckets: readonly TokenBucket[],
    /** Called when the budget may allow more again (the relay writes what it holds). */
    private readonly resume: () => void,
  ) {}

  /** Bytes of `wanted` that may move now (0 while waiting its turn). */
  allowance(wanted: number): number {
    let allowed = wanted;
    this.tightest = undefined;
    const buckets = this.buckets;
    for (let i = 0; i < buckets.length; i++) {
      const bucket = buckets[i]!;
      const available = bucket.available(this);
      if (available < allowed) {
        allowed = available;
        this.tightest = bucket;
      }
    }
    return allowed;
  }

  /** `bytes` moved (at most what `allowance` gave). */
  spend(bytes: number): void {
    const buckets = this.buckets;
    for (let i = 0; i < buckets.length; i++) buckets[i]!.spend(bytes);
  }

  /**
   * Whether a datagram of `bytes` may go now (UDP: it goes whole or is
   * dropped, never waits). It passes when every limit holds its size, or a
   * full burst when it is larger than that; it is then spent whole, so an
   * oversized datagram leaves a debt the next ones pay.
   */
  admitDatagram(bytes: number): boolean {
    const buckets = this.buckets;
    for (let i = 0; i < buckets.length; i++) if (!buckets[i]!.holds(bytes)) return false;
    this.spend(bytes);
    return true;
  }

  /** The tightest limit held back `wanted` bytes: wait for it to refill (`resume` is called then). */
  waitForRefill(wanted: number): void {
    this.wanted = wanted;
    if (this.waitingOn !== undefined || this.gone) return;
    const bucket = this.tightest ?? this.buckets[0]!;
    this.waitingOn = bucket;
    bucket.wait(this);
  }

  refilled(): void {
    this.waitingOn = undefined;
    this.resume();
  }

  /** The connection ended: it leaves any queue it is in (at its next turn). */
  close(): void {
    this.gone = true;
  }
}
