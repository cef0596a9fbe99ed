/**
 * Unit tests of the pieces under the UDP forwarders: len16 frame reading,
 * the bounded queue towards a TCP socket, and the session list's LRU order
 * and idle sweep.
 */
import { describe, expect, test } from "bun:test";
import { FrameReader, QUEUE_LIMIT_BYTES, StreamQueue } from "../src/udp/framing.ts";
import { SessionList, type Tracked } from "../src/udp/sessions.ts";
import { randomBytes } from "./helpers/peers.ts";
import { concat } from "./helpers/bytes.ts";
import { frame } from "./helpers/udp.ts";

function collect(): { frames: Uint8Array[]; frame(datagram: Uint8Array): void } {
  const frames: Uint8Array[] = [];
  return { frames, frame: (datagram) => frames.push(datagram.slice()) };
}

describe("FrameReader", () => {
  test("any chunking of a len16 stream gives back the same datagrams", () => {
    const datagrams = [0, 1, 2, 255, 256, 1400, 0, 65535, 3].map((size) => randomBytes(size));
    const stream = concat(...datagrams.map(frame));
    for (let trial = 0; trial < 30; trial++) {
      const reader = new FrameReader();
      const sink = collect();
      let at = 0;
      while (at < stream.length) {
        // Chunk sizes from 1 byte up, so cuts land inside lengths and payloads alike.
        const size = trial === 0 ? 1 : 1 + Math.floor(Math.random() * (trial < 15 ? 7 : 70_000));
        expect(reader.feed(stream.subarray(at, at + size), 65535, sink)).toBe(true);
        at += size;
      }
      expect(reader.midFrame).toBe(false);
      expect(sink.frames.map((d) => d.length)).toEqual(datagrams.map((d) => d.length));
      expect(sink.frames.every((d, i) => Buffer.from(d).equals(Buffer.from(datagrams[i]!)))).toBe(true);
    }
  });

  test("a frame longer than the maximum is malformed; a stream cut inside a frame is mid-frame", () => {
    const reader = new FrameReader();
    const sink = collect();
    expect(reader.feed(frame(randomBytes(100)), 100, sink)).toBe(true);
    expect(reader.feed(frame(randomBytes(101)), 100, sink)).toBe(false);
    expect(sink.frames.length).toBe(1);

    const cut = new FrameReader();
    cut.feed(new Uint8Array([0]), 100, sink);
    expect(cut.midFrame).toBe(true);
    cut.feed(new Uint8Array([2, 7]), 100, sink);
    expect(cut.midFrame).toBe(true);
    cut.feed(new Uint8Array([8]), 100, sink);
    expect(cut.midFrame).toBe(false);
    expect([...sink.frames[1]!]).toEqual([7, 8]);
  });
});

/** A socket whose kernel takes at most `room` bytes until given more. */
class FakeSocket {
  written: Uint8Array[] = [];
  constructor(public room: number) {}
  write(data: Uint8Array, byteOffset = 0, byteLength = data.length - byteOffset): number {
    const take = Math.min(this.room, byteLength);
    this.written.push(data.slice(byteOffset, byteOffset + take));
    this.room -= take;
    return take;
  }
}

describe("StreamQueue", () => {
  test("framed: partial writes keep the tail; flush delivers everything in order", () => {
    const queue = new StreamQueue(true);
    const socket = new FakeSocket(5);
    const datagrams = [randomBytes(10), randomBytes(0), randomBytes(300)];
    expect(queue.send(socket, datagrams[0]!)).toBe("queued");
    expect(queue.send(socket, datagrams[1]!)).toBe("queued");
    expect(queue.send(socket, datagrams[2]!)).toBe("queued");
    socket.room = 100;
    expect(queue.flush(socket)).toBe("queued");
    socket.room = 10_000;
    expect(queue.flush(socket)).toBe("sent");
    expect(queue.empty).toBe(true);
    expect(Buffer.from(concat(...socket.written)).equals(Buffer.from(concat(...datagrams.map(frame))))).toBe(true);
  });

  test("raw: nothing written before the socket exists; past the bound datagrams are dropped", () => {
    const queue = new StreamQueue(false);
    const chunk = randomBytes(64 * 1024);
    let queued = 0;
    while (queue.send(undefined, chunk) === "queued") queued++;
    expect(queued).toBe(QUEUE_LIMIT_BYTES / chunk.length);
    expect(queue.dropped).toBe(1);
    const socket = new FakeSocket(Number.POSITIVE_INFINITY);
    expect(queue.flush(socket)).toBe("sent");
    expect(concat(...socket.written).length).toBe(queued * chunk.length);
    // Empty again: the next datagram goes straight through.
    expect(queue.send(socket, chunk)).toBe("sent");
  });

  test("a closed socket is reported", () => {
    const queue = new StreamQueue(false);
    expect(queue.send({ write: () => -1 }, randomBytes(3))).toBe("closed");
  });
});

class Entry implements Tracked<Entry> {
  newer: Entry | undefined = undefined;
  older: Entry | undefined = undefined;
  lastSeen = 0;
  bytesIn = 0;
  bytesOut = 0;
  constructor(
    readonly name: string,
    readonly idleMs: number,
  ) {}
}

describe("SessionList", () => {
  test("touch keeps LRU order; the sweep expires idle entries, each after its own timeout", () => {
    const expired: string[] = [];
    const list: SessionList<Entry> = new SessionList<Entry>((entry) => {
      expired.push(entry.name);
      list.remove(entry);
    });
    const [a, b, c] = [new Entry("a", 1000), new Entry("b", 5000), new Entry("c", 1000)];
    list.add(a, 0);
    list.add(b, 0);
    list.add(c, 0);
    expect(list.oldest).toBe(a);
    list.touch(a, 500);
    expect(list.oldest).toBe(b);
    expect(list.newest).toBe(a);

    list.sweep(1200);
    // c idle 1200 ms >= 1000; b idle 1200 < 5000; a idle 700.
    expect(expired).toEqual(["c"]);
    list.sweep(5000);
    expect(expired).toEqual(["c", "b", "a"]);
    expect(list.size).toBe(0);
    expect(list.oldest).toBeUndefined();
    expect(list.newest).toBeUndefined();
  });
});
