/**
 * @module What an impaired link does to each packet, decided with a seeded
 * generator so that a run can be repeated: drop it (random loss, or the
 * link is down), deliver it after a delay (a base, a uniform jitter, and
 * for a share of packets an extra delay that reorders them), and deliver a
 * share of them twice. The kernel of this machine has no `sch_netem`; this
 * is the part of netem the fault bench needs, applied by a TUN shim
 * (shim-worker.ts).
 *
 * The settings live in a SharedArrayBuffer so the bench can change them
 * (and take the link down and up) while the shim's thread runs.
 */
export { seededRandom } from "../../test/helpers/seeded-random.ts";

/** Float64 slots of the shared settings. */
export const enum Setting {
  Loss = 0,
  DelayMs = 1,
  JitterMs = 2,
  ReorderShare = 3,
  ReorderExtraMs = 4,
  DuplicateShare = 5,
  /** 1 while the link is down: every packet is dropped. */
  Down = 6,
  /** 1 asks the shim to stop. */
  Stop = 7,
}
const SETTINGS = 8;

/** Float64 slots of the shared counters, written by the shim. */
export const enum Counter {
  Packets = 0,
  Dropped = 1,
  Duplicated = 2,
  Delivered = 3,
  /** Writes the kernel refused (a full TUN queue): also losses. */
  WriteErrors = 4,
}
const COUNTERS = 5;

export interface Impairment {
  /** Share of packets dropped, 0..1. */
  loss: number;
  delayMs: number;
  /** Each packet's delay is delayMs ± up to jitterMs, uniformly. */
  jitterMs: number;
  /** Share of packets held `reorderExtraMs` longer than the rest, so later ones pass them. */
  reorderShare: number;
  reorderExtraMs: number;
  /** Share of packets delivered twice. */
  duplicateShare: number;
}

export const NO_IMPAIRMENT: Impairment = { loss: 0, delayMs: 0, jitterMs: 0, reorderShare: 0, reorderExtraMs: 0, duplicateShare: 0 };

export class SharedImpairment {
  readonly settings: Float64Array;
  readonly counters: Float64Array;

  constructor(buffer = new SharedArrayBuffer((SETTINGS + COUNTERS) * 8)) {
    this.settings = new Float64Array(buffer, 0, SETTINGS);
    this.counters = new Float64Array(buffer, SETTINGS * 8, COUNTERS);
  }

  get buffer(): SharedArrayBuffer {
    return this.settings.buffer as SharedArrayBuffer;
  }

  set(impairment: Impairment): void {
    this.settings[Setting.Loss] = impairment.loss;
    this.settings[Setting.DelayMs] = impairment.delayMs;
    this.settings[Setting.JitterMs] = impairment.jitterMs;
    this.settings[Setting.ReorderShare] = impairment.reorderShare;
    this.settings[Setting.ReorderExtraMs] = impairment.reorderExtraMs;
    this.settings[Setting.DuplicateShare] = impairment.duplicateShare;
  }

  setDown(down: boolean): void {
    this.settings[Setting.Down] = down ? 1 : 0;
  }

  stop(): void {
    this.settings[Setting.Stop] = 1;
  }

  snapshot(): Record<"packets" | "dropped" | "duplicated" | "delivered" | "writeErrors", number> {
    const c = this.counters;
    return { packets: c[Counter.Packets]!, dropped: c[Counter.Dropped]!, duplicated: c[Counter.Duplicated]!, delivered: c[Counter.Delivered]!, writeErrors: c[Counter.WriteErrors]! };
  }
}

/**
 * The fate of one packet: undefined when it is dropped, else the delays (ms)
 * after which a copy of it is delivered (two entries when duplicated).
 */
export function decide(settings: Float64Array, random: () => number): number[] | undefined {
  if (settings[Setting.Down] === 1) return undefined;
  if (random() < settings[Setting.Loss]!) return undefined;
  const jitter = settings[Setting.JitterMs]!;
  let delay = settings[Setting.DelayMs]! + (jitter > 0 ? (2 * random() - 1) * jitter : 0);
  if (random() < settings[Setting.ReorderShare]!) delay += settings[Setting.ReorderExtraMs]!;
  delay = Math.max(0, delay);
  return random() < settings[Setting.DuplicateShare]! ? [delay, delay + 0.1] : [delay];
}
