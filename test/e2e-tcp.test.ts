/**
 * End to end: a real `oi` process between real loopback clients and backends.
 * The data-path suites run on each way of moving bytes: the plain relay,
 * `splice on` (splice(2) in a worker) and `splice auto`, on oi's direct
 * sockets and on Bun's, which must all behave the same.
 */
import { describe, expect, test } from "bun:test";
import { startBlackhole } from "./helpers/blackhole.ts";
import { backend, cleanUpAfterEachTest, oi, onCleanup, until } from "./helpers/harness.ts";
import { connectExpectingClose, connectPeer, freePort, randomBytes, sha256, withTimeout } from "./helpers/peers.ts";

cleanUpAfterEachTest();

const MiB = 1024 * 1024;

/**
 * The ways oi can move a relay's bytes (through JavaScript, or spliced in a
 * worker) on either socket layer (its direct sockets, the default here, or
 * Bun's), as the global directives that pick each.
 */
const RELAY_PATHS = [
  { name: "plain relay", directive: "splice off\n" },
  { name: "splice on", directive: "splice on\n" },
  // The default: handed over mid-stream, once a relay has carried 1 MiB in large reads.
  { name: "splice auto (the default)", directive: "" },
  { name: "plain relay on Bun's sockets", directive: "sockets bun\nsplice off\n" },
  { name: "splice auto on Bun's sockets", directive: "sockets bun\n" },
] as const;

for (const { name, directive } of RELAY_PATHS) {
  describe(name, () => {
    describe("byte integrity", () => {
      test("32 MiB each way at once arrive intact and in order (SHA-256 both directions)", async () => {
        const up = randomBytes(32 * MiB);
        const down = randomBytes(32 * MiB);
        const server = backend((peer) => void peer.send(down, true));
        const port = freePort();
        await oi(`${directive}127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);

        const client = await connectPeer("127.0.0.1", port);
        const sending = client.send(up, true);
        const far = await server.nextConnection();
        await withTimeout(sending, 30000, "the client's upload");
        await client.waitClosed(30000);
        await far.waitClosed(30000);

        expect(far.received).toBe(up.length);
        expect(far.digest()).toBe(sha256(up));
        expect(client.received).toBe(down.length);
        expect(client.digest()).toBe(sha256(down));
        // Both directions ended with FINs, not resets.
        expect(client.closeError).toBeUndefined();
        expect(far.closeError).toBeUndefined();
      });

      test("200 concurrent connections each get their own bytes back", async () => {
        // The backend answers each connection, after its FIN, with the hash of what it received.
        const server = backend((peer) => {
          peer.onEnd = (p) => void p.send(p.digest(), true);
        });
        const port = freePort();
        await oi(`${directive}127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);

        const payloads = Array.from({ length: 200 }, (_, i) => randomBytes(64 * 1024 + i));
        const replies = await Promise.all(
          payloads.map(async (payload) => {
            const client = await connectPeer("127.0.0.1", port);
            client.keep = [];
            await client.send(payload, true);
            await client.waitClosed(30000);
            return client.text();
          }),
        );
        expect(replies).toEqual(payloads.map(sha256));
        expect(server.connections.length).toBe(200);
      });
    });

    describe("half-close", () => {
      test("a backend that answers only after the client's FIN gets the FIN and its answer gets back", async () => {
        const server = backend((peer) => {
          peer.onEnd = (p) => void p.send(`received ${p.received} bytes, sha256 ${p.digest()}`, true);
        });
        const port = freePort();
        await oi(`${directive}127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);

        const payload = randomBytes(3 * MiB);
        const client = await connectPeer("127.0.0.1", port);
        client.keep = [];
        await client.send(payload, true);
        await client.waitClosed();
        expect(client.text()).toBe(`received ${payload.length} bytes, sha256 ${sha256(payload)}`);
        expect(client.closeError).toBeUndefined();
      });

      test("after the backend's FIN the client can still send, and the backend receives it all", async () => {
        const server = backend((peer) => void peer.send("early goodbye", true));
        const port = freePort();
        await oi(`${directive}127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);

        const client = await connectPeer("127.0.0.1", port);
        client.keep = [];
        await client.waitEnd();
        expect(client.sawEnd).toBe(true);
        expect(client.closed).toBe(false);
        expect(client.text()).toBe("early goodbye");

        const payload = randomBytes(2 * MiB);
        await client.send(payload, true);
        const far = await server.nextConnection();
        await far.waitClosed();
        await client.waitClosed();
        expect(far.received).toBe(payload.length);
        expect(far.digest()).toBe(sha256(payload));
      });
    });

    describe("resets", () => {
      test("a client reset aborts the backend leg", async () => {
        const server = backend();
        const port = freePort();
        await oi(`${directive}127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
        const client = await connectPeer("127.0.0.1", port);
        await client.send("hello");
        const far = await server.nextConnection();
        await until(() => far.received === 5, 5000, "the first bytes");
        client.socket?.terminate();
        await far.waitClosed(5000);
        expect(far.closeError).toBeDefined();
      });

      test("a backend reset aborts the client leg", async () => {
        const server = backend();
        const port = freePort();
        await oi(`${directive}127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
        const client = await connectPeer("127.0.0.1", port);
        const far = await server.nextConnection();
        far.socket?.terminate();
        await client.waitClosed(5000);
        expect(client.closeError).toBeDefined();
      });
    });

    describe("backpressure", () => {
      test("a backend that does not read throttles the client and oi's memory stays flat", async () => {
        const server = backend((peer) => peer.socket?.pause());
        const port = freePort();
        const forwarder = await oi(`${directive}127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);

        // 1 MiB of random bytes repeated: cheap to build, still hashed end to end.
        const block = randomBytes(MiB);
        const payload = new Uint8Array(192 * MiB);
        for (let offset = 0; offset < payload.length; offset += MiB) payload.set(block, offset);

        const client = await connectPeer("127.0.0.1", port);
        const baseline = forwarder.rssKiB();
        const sending = client.send(payload, true);
        const far = await server.nextConnection();

        // Wait until the client is stalled: its sent count stops moving for half a second.
        let last = -1;
        let peakKiB = baseline;
        for (let i = 0; i < 100 && client.sent !== last; i++) {
          last = client.sent;
          await Bun.sleep(500);
          peakKiB = Math.max(peakKiB, forwarder.rssKiB());
        }
        expect(client.sent).toBeLessThan(64 * MiB);
        expect(peakKiB - baseline).toBeLessThan(48 * 1024);

        // Let the backend read: everything still arrives, intact.
        far.socket?.resume();
        await withTimeout(sending, 60000, "the client's upload");
        await far.waitEnd(60000);
        expect(far.received).toBe(payload.length);
        expect(far.digest()).toBe(sha256(payload));
      });
    });

    describe("verbose", () => {
      test("-v logs each connection with its bytes and result", async () => {
        const server = backend((peer) => {
          peer.onEnd = (p) => void p.send("12345", true);
        });
        const port = freePort();
        const forwarder = await oi(`${directive}127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, ["-v"]);
        const client = await connectPeer("127.0.0.1", port);
        await client.send("abc", true);
        await client.waitClosed();
        await forwarder.stdout.waitFor(/127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+\/tcp -> 127\.0\.0\.1:\d+\/tcp done in=3 out=5/, 5000);
      });
    });
  });
}

describe("unreachable backends", () => {
  test("a refused backend closes the client promptly and oi keeps serving", async () => {
    const goodBackend = backend((peer) => void peer.send("still here", true));
    const deadPort = freePort();
    const [deadRule, goodRule] = [freePort(), freePort()];
    await oi(`127.0.0.1 ${deadRule} 127.0.0.1 ${deadPort}\n127.0.0.1 ${goodRule} 127.0.0.1 ${goodBackend.port}\n`);

    for (let attempt = 0; attempt < 3; attempt++) {
      const started = Date.now();
      expect(await connectExpectingClose("127.0.0.1", deadRule, undefined, 3000)).toBe(0);
      expect(Date.now() - started).toBeLessThan(2000);
    }
    const client = await connectPeer("127.0.0.1", goodRule);
    client.keep = [];
    await client.waitEnd();
    expect(client.text()).toBe("still here");
  });

  test("a backend that never answers the handshake is given up after connect_timeout", async () => {
    const hole = await startBlackhole();
    onCleanup(() => hole.close());
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1 ${hole.port} [connect_timeout=1]\n`);

    const started = Date.now();
    const client = await connectPeer("127.0.0.1", port);
    await client.waitClosed(5000);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(900);
    expect(waited).toBeLessThan(3000);
  });
});

describe("bytes sent before the backend answers", () => {
  test("are held within a bound (the client is paused) and arrive intact once a backend answers", async () => {
    // The first backend never answers the handshake: the client waits a second, then fails over.
    const hole = await startBlackhole();
    onCleanup(() => hole.close());
    const server = backend(() => {});
    const port = freePort();
    const forwarder = await oi(`127.0.0.1 ${port} 127.0.0.1:${hole.port},127.0.0.1:${server.port} [connect_timeout=1]\n`);

    const payload = randomBytes(32 * MiB);
    const client = await connectPeer("127.0.0.1", port);
    const baseline = forwarder.rssKiB();
    const sending = client.send(payload, true);
    await Bun.sleep(600);
    // Still connecting: what oi took is bounded by kernel buffers plus its small hold, not the upload.
    expect(server.connections.length).toBe(0);
    expect(client.sent).toBeLessThan(payload.length);
    expect(forwarder.rssKiB() - baseline).toBeLessThan(16 * 1024);

    const far = await server.nextConnection();
    await withTimeout(sending, 30000, "the client's upload");
    await far.waitEnd(30000);
    expect(far.received).toBe(payload.length);
    expect(far.digest()).toBe(sha256(payload));
  });
});

describe("access control", () => {
  test("per-rule allow admits listed clients only; denied ones never reach the backend", async () => {
    const server = backend((peer) => void peer.send("welcome", true));
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port}\nallow 127.0.0.2\n`);

    expect(await connectExpectingClose("127.0.0.1", port, "127.0.0.3", 3000)).toBe(0);

    const allowed = await connectPeer("127.0.0.1", port, "127.0.0.2");
    allowed.keep = [];
    await allowed.waitEnd();
    expect(allowed.text()).toBe("welcome");
    expect(server.connections.length).toBe(1);
    expect(server.connections[0]!.socket?.remoteAddress).toBe("127.0.0.1");
  });

  test("a global deny refuses a client on every rule; others pass", async () => {
    const server = backend((peer) => void peer.send("ok", true));
    const [first, second] = [freePort(), freePort()];
    await oi(
      `deny 127.0.0.4\n127.0.0.1 ${first} 127.0.0.1 ${server.port}\n127.0.0.1 ${second} 127.0.0.1 ${server.port}\n`,
    );
    for (const port of [first, second]) {
      expect(await connectExpectingClose("127.0.0.1", port, "127.0.0.4", 3000)).toBe(0);
    }
    const allowed = await connectPeer("127.0.0.1", second, "127.0.0.5");
    allowed.keep = [];
    await allowed.waitEnd();
    expect(allowed.text()).toBe("ok");
    expect(server.connections.length).toBe(1);
  });
});

describe("addresses", () => {
  test("IPv6 on both legs", async () => {
    const server = backend((peer) => void peer.send(`hello ${peer.socket?.remoteAddress}`, true), "::1");
    const port = freePort("::1");
    await oi(`::1 ${port} ::1 ${server.port}\n`);
    const client = await connectPeer("::1", port);
    client.keep = [];
    await client.waitEnd();
    expect(client.text()).toBe("hello ::1");
  });

  test("[src=ADDR] sets the upstream connection's source address", async () => {
    const server = backend((peer) => void peer.send(`from ${peer.socket?.remoteAddress}`, true));
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port} [src=127.0.0.7]\n`);
    const client = await connectPeer("127.0.0.1", port);
    client.keep = [];
    await client.waitEnd();
    expect(client.text()).toBe("from 127.0.0.7");
  });

  test("a hostname as connect address is resolved", async () => {
    const server = backend((peer) => void peer.send("by name", true));
    const port = freePort();
    await oi(`127.0.0.1 ${port} localhost ${server.port}\n`);
    const client = await connectPeer("127.0.0.1", port);
    client.keep = [];
    await client.waitEnd();
    expect(client.text()).toBe("by name");
  });
});
