/**
 * @module The TUN shim's thread: two TUN devices' descriptors (one end of
 * the impaired link each), packets read from one written to the other after
 * impairment.ts decided their fate. A poll(2) loop through bun:ffi whose
 * timeout is the next delayed packet's due time; the settings are re-read
 * every round, so the bench can change them while it runs.
 *
 * Message in: { fds: [number, number], buffer: SharedArrayBuffer, seed: number }.
 * Message out: "stopped" once the loop ended (the descriptors stay open: the owner closes them).
 */
import { dlopen, FFIType as T, ptr } from "bun:ffi";
import { Counter, Setting, SharedImpairment, decide, seededRandom } from "./impairment.ts";

declare const self: Worker;

const POLLIN = 1;
const MTU_BUFFER = 65_536;

interface Due {
  at: number;
  to: number;
  packet: Uint8Array;
}

self.onmessage = (event: MessageEvent<{ fds: [number, number]; buffer: SharedArrayBuffer; seed: number }>) => {
  const { fds, buffer, seed } = event.data;
  const shared = new SharedImpairment(buffer);
  const { settings, counters } = shared;
  const random = seededRandom(seed);
  const { symbols: c } = dlopen("libc.so.6", {
    poll: { args: [T.ptr, T.u64, T.i32], returns: T.i32 },
    read: { args: [T.i32, T.ptr, T.u64], returns: T.i64 },
    write: { args: [T.i32, T.ptr, T.u64], returns: T.i64 },
  });
  // struct pollfd { int fd; short events; short revents; } x 2
  const pollfds = new DataView(new ArrayBuffer(16));
  const pollBytes = new Uint8Array(pollfds.buffer);
  const pollPointer = ptr(pollBytes);
  for (let i = 0; i < 2; i++) {
    pollfds.setInt32(i * 8, fds[i]!, true);
    pollfds.setInt16(i * 8 + 4, POLLIN, true);
  }
  const buf = new Uint8Array(MTU_BUFFER);
  const bufPointer = ptr(buf);
  // Delayed packets in order of their due time (insertion keeps the order: the queue stays short).
  const queue: Due[] = [];
  const enqueue = (due: Due) => {
    let i = queue.length;
    while (i > 0 && queue[i - 1]!.at > due.at) i--;
    queue.splice(i, 0, due);
  };
  const send = (to: number, packet: Uint8Array) => {
    const written = Number(c.write(to, ptr(packet), packet.length));
    if (written === packet.length) counters[Counter.Delivered]!++;
    else counters[Counter.WriteErrors]!++;
  };

  while (settings[Setting.Stop] !== 1) {
    const now = performance.now();
    while (queue.length > 0 && queue[0]!.at <= now) {
      const due = queue.shift()!;
      send(due.to, due.packet);
    }
    const wait = queue.length > 0 ? Math.max(0, Math.ceil(queue[0]!.at - now)) : 20;
    pollfds.setInt16(6, 0, true);
    pollfds.setInt16(14, 0, true);
    const ready = c.poll(pollPointer, 2, Math.min(wait, 20));
    if (ready <= 0) continue;
    for (let side = 0; side < 2; side++) {
      if ((pollfds.getInt16(side * 8 + 6, true) & POLLIN) === 0) continue;
      const from = fds[side]!;
      const to = fds[1 - side]!;
      // Several packets per wake-up; the descriptors are non-blocking, so a read past the last one says EAGAIN (-1).
      for (let n = 0; n < 64; n++) {
        const length = Number(c.read(from, bufPointer, MTU_BUFFER));
        if (length <= 0) break;
        counters[Counter.Packets]!++;
        const fate = decide(settings, random);
        if (fate === undefined) {
          counters[Counter.Dropped]!++;
          continue;
        }
        if (fate.length > 1) counters[Counter.Duplicated]!++;
        const arrived = performance.now();
        for (const delay of fate) {
          // An undelayed packet with nothing queued ahead of it goes at once, without a copy.
          if (delay === 0 && queue.length === 0) send(to, buf.subarray(0, length));
          else enqueue({ at: arrived + delay, to, packet: buf.slice(0, length) });
        }
      }
    }
  }
  postMessage("stopped");
};
