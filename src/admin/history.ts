/**
 * @module The last few minutes of each rule's traffic, for the dashboard's
 * charts: sampled every 2 s while an admin server runs, so a page opened
 * now draws the minutes before it was opened too. Bounded: a ring of
 * HISTORY_SAMPLES samples of a few numbers per rule.
 */
import type { RuleSnapshot } from "../metrics.ts";

export const HISTORY_INTERVAL_MS = 2000;
/** Five minutes at one sample per interval. */
export const HISTORY_SAMPLES = 150;

/** One rule's counters at one sample: bytes so far (from clients, to clients) and connections open then. */
export type RuleSample = [bytesIn: number, bytesOut: number, active: number];

export interface HistorySample {
  /** ms since the epoch. */
  time: number;
  rules: Record<string, RuleSample>;
}

export class TrafficHistory {
  private readonly ring: HistorySample[] = [];
  private timer: Timer | undefined;
  private sampling = false;

  constructor(
    /** The rules' counters now (asks worker threads first when there are any). */
    private readonly snapshot: () => Promise<readonly RuleSnapshot[]>,
    private readonly capacity = HISTORY_SAMPLES,
    private readonly intervalMs = HISTORY_INTERVAL_MS,
  ) {}

  /** Start sampling (a second call changes nothing). */
  start(): void {
    if (this.timer !== undefined) return;
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.intervalMs);
    // Sampling never keeps the process alive by itself.
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Oldest first; only those taken after `since` (ms since the epoch) when given. */
  samples(since = 0): HistorySample[] {
    return this.ring.filter((sample) => sample.time > since);
  }

  private async sample(): Promise<void> {
    // A slow refresh (workers) must not pile samples up.
    if (this.sampling) return;
    this.sampling = true;
    try {
      const rules: Record<string, RuleSample> = {};
      for (const rule of await this.snapshot()) rules[rule.name] = [rule.bytesIn, rule.bytesOut, rule.active];
      this.ring.push({ time: Date.now(), rules });
      if (this.ring.length > this.capacity) this.ring.shift();
    } catch {
      // A sample missed (workers busy with a reload): the chart has a gap, nothing else.
    } finally {
      this.sampling = false;
    }
  }
}
