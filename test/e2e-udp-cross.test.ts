/**
 * End to end, cross-protocol rules: UDP clients to TCP backends, TCP clients
 * to UDP backends, with and without `len16` framing, and two `oi` processes
 * carrying UDP over a TCP hop.
 */
import { describe, expect, test } from "bun:test";
import { connectPeer, freePort, type Peer, randomBytes } from "./helpers/peers.ts";
import { concat } from "./helpers/bytes.ts";
import {
  cleanUpAfterEachTest,
  endedResults,
  frame,
  freeUdpPort,
  oi,
  startUdpBackend,
  tcpBackend as backend,
  UdpClient,
  unframe,
  until,
} from "./helpers/udp.ts";

cleanUpAfterEachTest();

const text = (data: Uint8Array) => new TextDecoder().decode(data);
const same = (a: Uint8Array | undefined, b: Uint8Array | undefined) =>
  a !== undefined && b !== undefined && Buffer.from(a).equals(Buffer.from(b));

/** Resolves when `peer` has received `count` bytes in all. */
async function bytesFrom(peer: Peer, count: number, ms = 5000): Promise<Uint8Array> {
  await until(() => peer.received >= count, ms, `${count} bytes (have ${peer.received})`);
  return concat(...peer.keep ?? []);
}

describe("udp -> tcp", () => {
  test("one connection per client, datagrams in order, replies in datagrams of max_datagram", async () => {
    const reply = randomBytes(5000);
    const server = backend((peer) => {
      peer.keep = [];
      // Answer once the client's three datagrams (6 bytes) are in.
      peer.onData = (p) => {
        if (p.received === 6) void p.send(reply);
      };
    });
    const port = await freeUdpPort();
    await oi(`127.0.0.1 ${port}/udp 127.0.0.1 ${server.port}/tcp [max_datagram=1000]\n`);

    const clients = await Promise.all([UdpClient.open("127.0.0.1", port), UdpClient.open("127.0.0.1", port)]);
    // Sent at once: the first datagrams wait while the connection is being made.
    for (const [c, client] of clients.entries()) for (const part of ["a", "b", "c"]) client.send(`${part}${c}`);
    for (const client of clients) await client.waitCount(5);

    expect(server.connections.length).toBe(2);
    const streams = server.connections.map((peer) => text(concat(...peer.keep ?? []))).sort();
    expect(streams).toEqual(["a0b0c0", "a1b1c1"]);
    for (const client of clients) {
      expect(client.received.map((item) => item.data.length)).toEqual([1000, 1000, 1000, 1000, 1000]);
      expect(same(concat(...client.received.map((item) => item.data)), reply)).toBe(true);
    }
  });

  test("with len16 framing each datagram crosses whole, sizes 0 to 65507, both ways", async () => {
    const server = backend((peer) => {
      peer.keep = [];
      // Echo every whole frame back as it completes.
      let consumed = 0;
      peer.onData = (p) => {
        const stream = concat(...p.keep ?? []);
        let end = consumed;
        while (stream.length - end >= 2) {
          const length = ((stream[end] ?? 0) << 8) | (stream[end + 1] ?? 0);
          if (stream.length - end - 2 < length) break;
          end += 2 + length;
        }
        if (end > consumed) void p.send(stream.slice(consumed, end));
        consumed = end;
      };
    });
    const port = await freeUdpPort();
    await oi(`127.0.0.1 ${port}/udp 127.0.0.1 ${server.port}/tcp [frame=len16]\n`);
    const client = await UdpClient.open("127.0.0.1", port);
    const sizes = [0, 1, 1400, 8000, 65507, 0, 3];
    const sent = sizes.map((size) => randomBytes(size));
    for (const [i, datagram] of sent.entries()) {
      client.send(datagram);
      await client.waitCount(i + 1);
    }
    expect(client.received.map((item) => item.data.length)).toEqual(sizes);
    client.received.forEach((item, i) => expect(same(item.data, sent[i])).toBe(true));
    // On the wire: exactly the frames, nothing else.
    const frames = unframe(concat(...server.connections[0]?.keep ?? []));
    expect(frames.map((payload) => payload.length)).toEqual(sizes);
  });

  test("the backend closing ends the session; the next datagram opens a new connection", async () => {
    const server = backend((peer) => {
      peer.keep = [];
      peer.onData = (p) => void p.send(`bye ${text(concat(...p.keep ?? []))}`, true);
    });
    const port = await freeUdpPort();
    const forwarder = await oi(`127.0.0.1 ${port}/udp 127.0.0.1 ${server.port}/tcp\n`, ["-v"]);
    const client = await UdpClient.open("127.0.0.1", port);
    client.send("one");
    await client.waitCount(1);
    await until(() => endedResults(forwarder.stdout.text, port).length === 1, 3000, "the session to end");
    expect(endedResults(forwarder.stdout.text, port)).toEqual(["done"]);
    client.send("two");
    await client.waitCount(2);
    expect(client.received.map((item) => text(item.data))).toEqual(["bye one", "bye two"]);
    expect(server.connections.length).toBe(2);
  });

  test("a refused backend ends the session as refused; the idle timeout closes the connection", async () => {
    const deadPort = freePort();
    const server = backend();
    const [dead, live] = [await freeUdpPort(), await freeUdpPort()];
    const forwarder = await oi(
      `127.0.0.1 ${dead}/udp 127.0.0.1 ${deadPort}/tcp\n127.0.0.1 ${live}/udp 127.0.0.1 ${server.port}/tcp [timeout=1]\n`,
      ["-v"],
    );
    const refused = await UdpClient.open("127.0.0.1", dead);
    refused.send("anyone?");
    await until(() => endedResults(forwarder.stdout.text, dead).length === 1, 3000, "the refusal");
    expect(endedResults(forwarder.stdout.text, dead)).toEqual(["refused"]);

    const client = await UdpClient.open("127.0.0.1", live);
    client.send("hello");
    const far = await server.nextConnection();
    await far.waitEnd(3000);
    // Ended with a FIN, not a reset.
    expect(far.sawEnd).toBe(true);
    expect(far.closeError).toBeUndefined();
    await until(() => endedResults(forwarder.stdout.text, live).length === 1, 3000, "the idle session in the log");
    expect(endedResults(forwarder.stdout.text, live)).toEqual(["timeout"]);
  });
});

describe("tcp -> udp", () => {
  test("client bytes leave in datagrams of at most max_datagram; replies are written to the stream", async () => {
    const echo = await startUdpBackend();
    const port = freePort();
    await oi(`127.0.0.1 ${port}/tcp 127.0.0.1 ${echo.port}/udp [max_datagram=1000]\n`);

    const payload = randomBytes(10_000);
    const client = await connectPeer("127.0.0.1", port);
    client.keep = [];
    await client.send(payload);
    const back = await bytesFrom(client, payload.length);
    expect(same(back, payload)).toBe(true);
    expect(echo.received.every((item) => item.data.length <= 1000 && item.data.length > 0)).toBe(true);
    expect(same(concat(...echo.received.map((item) => item.data)), payload)).toBe(true);

    // A second connection has its own UDP socket.
    const second = await connectPeer("127.0.0.1", port);
    second.keep = [];
    await second.send("second");
    expect(text(await bytesFrom(second, 6))).toBe("second");
    expect(echo.sources().length).toBe(2);
  });

  test("with len16 framing, frames split anywhere become whole datagrams, and replies come back framed", async () => {
    const echo = await startUdpBackend();
    const port = freePort();
    await oi(`127.0.0.1 ${port}/tcp 127.0.0.1 ${echo.port}/udp [frame=len16]\n`);
    const sizes = [0, 5, 1400, 0, 8000, 65507, 2];
    const datagrams = sizes.map((size) => randomBytes(size));
    const stream = concat(...datagrams.map(frame));

    const client = await connectPeer("127.0.0.1", port);
    client.keep = [];
    // Cut the stream at awkward places: inside a length, right after one, inside a payload.
    const cuts = [1, 2, 3, 9, 1500, 1501, 20000, stream.length];
    let at = 0;
    for (const cut of cuts) {
      await client.send(stream.subarray(at, cut));
      at = cut;
      await Bun.sleep(5);
    }
    await echo.waitCount(sizes.length);
    expect(echo.received.map((item) => item.data.length)).toEqual(sizes);
    echo.received.forEach((item, i) => expect(same(item.data, datagrams[i])).toBe(true));

    const back = await bytesFrom(client, stream.length);
    const replies = unframe(back);
    expect(replies.map((payload) => payload.length)).toEqual(sizes);
    replies.forEach((payload, i) => expect(same(payload, datagrams[i])).toBe(true));
  });

  test("a malformed frame closes that connection only, and is logged", async () => {
    const echo = await startUdpBackend();
    const port = freePort();
    const rule = `127.0.0.1 ${port}/tcp 127.0.0.1 ${echo.port}/udp [frame=len16,max_datagram=100]\n`;
    const forwarder = await oi(rule, ["-v"]);
    const good = await connectPeer("127.0.0.1", port);
    good.keep = [];
    const bad = await connectPeer("127.0.0.1", port);
    await bad.send(frame(randomBytes(200)));
    await bad.waitClosed(3000);
    await good.send(frame(new TextEncoder().encode("fine")));
    expect(unframe(await bytesFrom(good, 6)).map(text)).toEqual(["fine"]);
    await until(() => endedResults(forwarder.stdout.text, port).length === 1, 3000, "the log line");
    expect(endedResults(forwarder.stdout.text, port)).toEqual(["error: malformed frame"]);
    expect(echo.received.map((item) => text(item.data))).toEqual(["fine"]);
  });

  test("the client's FIN ends the session; the idle timeout closes a silent one", async () => {
    const echo = await startUdpBackend();
    const port = freePort();
    const forwarder = await oi(`127.0.0.1 ${port}/tcp 127.0.0.1 ${echo.port}/udp [timeout=1]\n`, ["-v"]);

    const leaving = await connectPeer("127.0.0.1", port);
    await leaving.send("last words", true);
    await leaving.waitClosed(3000);
    await echo.waitCount(1);

    const silent = await connectPeer("127.0.0.1", port);
    const started = Date.now();
    await silent.waitEnd(4000);
    expect(silent.sawEnd).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    await until(() => endedResults(forwarder.stdout.text, port).length === 2, 3000, "both sessions in the log");
    expect(endedResults(forwarder.stdout.text, port)).toEqual(["done", "timeout"]);
  });
});

/** A datagram of `size` random bytes whose first 4 bytes are `index`. */
function numbered(index: number, size: number): Uint8Array {
  const data = randomBytes(size);
  new DataView(data.buffer).setUint32(0, index);
  return data;
}

/** The frames of `stream` must be whole copies of `sent` datagrams, in order, some possibly missing. */
function expectOrderedSubset(frames: Uint8Array[], sent: Uint8Array[]): void {
  let last = -1;
  for (const payload of frames) {
    const index = new DataView(payload.buffer, payload.byteOffset).getUint32(0);
    expect(index).toBeGreaterThan(last);
    expect(same(payload, sent[index])).toBe(true);
    last = index;
  }
}

/** Resolves once `peer` has received nothing new for `quietMs`. */
async function settled(peer: Peer, quietMs = 300, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  let seen = -1;
  while (peer.received !== seen) {
    if (Date.now() > deadline) throw new Error("the stream did not settle");
    seen = peer.received;
    await Bun.sleep(quietMs);
  }
}

describe("bounded queues", () => {
  test("udp -> tcp: a backend not reading costs a bounded queue; datagrams past it are dropped whole", async () => {
    const server = backend((peer) => {
      peer.keep = [];
      peer.socket?.pause();
    });
    const port = await freeUdpPort();
    await oi(`127.0.0.1 ${port}/udp 127.0.0.1 ${server.port}/tcp [frame=len16]\n`);
    const client = await UdpClient.open("127.0.0.1", port);

    // 24 MB: more than the kernel's TCP buffers on loopback plus oi's 256 KiB queue.
    const sent = Array.from({ length: 6000 }, (_, i) => numbered(i, 4000));
    for (const [i, datagram] of sent.entries()) {
      client.send(datagram);
      if (i % 50 === 49) await Bun.sleep(1);
    }
    const far = await server.nextConnection();
    far.socket?.resume();
    await settled(far);
    const frames = unframe(concat(...far.keep ?? []));
    expect(frames.length).toBeGreaterThan(0);
    expect(frames.length).toBeLessThan(sent.length);
    expectOrderedSubset(frames, sent);

    // The session still works once the backend reads again.
    const before = far.received;
    client.send(numbered(sent.length, 10));
    await until(() => far.received === before + 12, 3000, "the datagram sent after the stall");
  });

  test("tcp -> udp: a client not reading costs a bounded queue; datagrams past it are dropped whole", async () => {
    const sent = Array.from({ length: 6000 }, (_, i) => numbered(i, 4000));
    let burstSent = false;
    const echo = await startUdpBackend("127.0.0.1", (data) => {
      if (text(data) !== "burst") return data;
      void (async () => {
        for (const [i, datagram] of sent.entries()) {
          echo.socket.send(datagram, echo.received[0]!.port, "127.0.0.1");
          if (i % 20 === 19) await Bun.sleep(1);
        }
        burstSent = true;
      })();
      return undefined;
    });
    const port = freePort();
    await oi(`127.0.0.1 ${port}/tcp 127.0.0.1 ${echo.port}/udp [frame=len16]\n`);
    const client = await connectPeer("127.0.0.1", port);
    client.keep = [];
    client.socket?.pause();
    await client.send(frame(new TextEncoder().encode("burst")));
    // Let the whole burst arrive at oi while the client reads nothing.
    await until(() => burstSent, 5000, "the burst to be sent");
    await Bun.sleep(100);
    client.socket?.resume();
    await settled(client);
    const frames = unframe(concat(...client.keep));
    expect(frames.length).toBeGreaterThan(0);
    expect(frames.length).toBeLessThan(sent.length);
    expectOrderedSubset(frames, sent);

    const before = client.received;
    await client.send(frame(new TextEncoder().encode("after")));
    await until(() => client.received === before + 7, 3000, "the reply sent after the stall");
  });
});

describe("oi -> oi tunnel", () => {
  test("10,000 datagrams of random sizes cross udp -> len16/TCP -> udp and back, every byte intact", async () => {
    const echo = await startUdpBackend();
    const tcpPort = freePort();
    const udpPort = await freeUdpPort();
    await oi(`127.0.0.1 ${tcpPort}/tcp 127.0.0.1 ${echo.port}/udp [frame=len16]\n`);
    await oi(`127.0.0.1 ${udpPort}/udp 127.0.0.1 ${tcpPort}/tcp [frame=len16]\n`);
    const client = await UdpClient.open("127.0.0.1", udpPort);

    const COUNT = 10_000;
    const sizes = Array.from({ length: COUNT }, (_, i) => {
      if (i === 0) return 0;
      if (i === 1) return 65507;
      const kind = Math.random();
      if (kind < 0.7) return Math.floor(Math.random() * 1501);
      if (kind < 0.95) return 1500 + Math.floor(Math.random() * 7500);
      return 9000 + Math.floor(Math.random() * (65507 - 9000 + 1));
    });
    const datagrams = sizes.map((size) => randomBytes(size));

    // A window keeps what is in flight within every socket buffer on the way (208 KiB of
    // kernel memory each by default), so loopback loses nothing and no loss is tolerated:
    // each reply must be the next datagram, whole and in order.
    const WINDOW_DATAGRAMS = 32;
    const WINDOW_BYTES = 64 * 1024;
    let next = 0;
    let checked = 0;
    let inFlight = 0;
    const started = Date.now();
    while (checked < COUNT) {
      while (
        next < COUNT &&
        next - checked < WINDOW_DATAGRAMS &&
        (next === checked || inFlight + (sizes[next] ?? 0) <= WINDOW_BYTES)
      ) {
        client.send(datagrams[next]!);
        inFlight += sizes[next] ?? 0;
        next++;
      }
      await client.waitCount(checked + 1, 5000, `reply ${checked} (datagram of ${sizes[checked]} bytes)`);
      while (checked < client.received.length) {
        const reply = client.received[checked]!.data;
        if (!same(reply, datagrams[checked])) {
          throw new Error(`reply ${checked} differs from what was sent (${reply.length} bytes, sent ${sizes[checked]})`);
        }
        inFlight -= sizes[checked] ?? 0;
        checked++;
      }
      expect(Date.now() - started).toBeLessThan(45_000);
    }
    expect(client.received.length).toBe(COUNT);
    expect(echo.received.length).toBe(COUNT);
  }, 60_000);
});
