/**
 * A flood of UDP clients from distinct source addresses: one socket bound to
 * each of 127.1.0.0, 127.1.0.1, ... in turn (all of 127.0.0.0/8 is local on
 * Linux), one datagram each, then closed. Paced by what the far side
 * confirms (the backend's count of datagrams), so the flood runs as fast as
 * oi takes new sessions and no datagram is lost to a full receive buffer.
 */
import { readFileSync } from "node:fs";

/** The i-th source address of a flood: 127.1.0.0 upwards (up to 16 million of them). */
export function floodAddress(i: number): string {
  return `127.${1 + ((i >> 16) & 255)}.${(i >> 8) & 255}.${i & 255}`;
}

export interface FloodResult {
  sent: number;
  /** Datagrams never confirmed (given up after a second without progress). */
  lost: number;
  ms: number;
}

/**
 * Send one datagram from each of `count` distinct addresses to
 * 127.0.0.1:`port`, keeping at most `window` unconfirmed (`confirmed` counts
 * what arrived at the far end). `every` is called after each `step` sources
 * (for memory samples). Bounded: it stops at `deadlineMs`.
 */
export async function floodDistinctSources(options: {
  port: number;
  count: number;
  confirmed: () => number;
  window?: number;
  step?: number;
  every?: (sent: number) => void | Promise<void>;
  deadlineMs?: number;
}): Promise<FloodResult> {
  const { port, count, confirmed } = options;
  const window = options.window ?? 64;
  const step = options.step ?? 10_000;
  const started = performance.now();
  const deadline = Date.now() + (options.deadlineMs ?? 120_000);
  const payload = new Uint8Array([1]);
  let lost = 0;
  let sent = 0;
  for (; sent < count && Date.now() < deadline; sent++) {
    const socket = await Bun.udpSocket({ hostname: floodAddress(sent), port: 0 });
    socket.send(payload, port, "127.0.0.1");
    socket.close();
    if (sent - confirmed() - lost >= window) {
      let progressAt = Date.now();
      let last = confirmed();
      while (sent - confirmed() - lost >= window) {
        await Bun.sleep(1);
        const now = confirmed();
        if (now !== last) {
          last = now;
          progressAt = Date.now();
        } else if (Date.now() - progressAt > 1000) {
          lost = sent - now;
        }
      }
    }
    if ((sent + 1) % step === 0) await options.every?.(sent + 1);
  }
  // The last ones: wait for them (or give them up) too.
  const endBy = Date.now() + 2000;
  while (confirmed() + lost < sent && Date.now() < endBy) await Bun.sleep(5);
  lost = sent - confirmed();
  return { sent, lost, ms: performance.now() - started };
}

/** Private memory of process `pid` (RssAnon), in KiB. */
export function rssAnonKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /RssAnon:\s+(\d+) kB/.exec(status);
  if (match === null) throw new Error("no RssAnon in /proc status");
  return Number(match[1]);
}
