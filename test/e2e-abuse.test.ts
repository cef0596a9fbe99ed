/**
 * Abusive clients, at the size that fits in a test (bench/abuse.ts measures
 * 10,000 of them): clients that trickle one byte at a time to a rule that
 * peeks (SNI) or waits for a PROXY header are closed by the peek and header
 * timeouts while a well-behaved client keeps being served; clients that never
 * read cannot grow oi's memory; a UDP client never receives more than its
 * backend sent.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { clientHello, serverNameExtension } from "./helpers/client-hello.ts";
import {
  openDescriptors,
  probeLatency,
  slowClientsElsewhere,
  startEndlessSource,
  startRepeatingUdpEcho,
  udpAmplification,
  zeroWindowClients,
} from "./helpers/abuse.ts";
import { backend, cleanUpAfterEachTest, oi, onCleanup, until } from "./helpers/harness.ts";
import { freePort } from "./helpers/peers.ts";
import { rssAnonKiB } from "./helpers/udp-flood.ts";

afterEach(cleanUpAfterEachTest);

const SLOW_CLIENTS = 500;

/** An echo backend, as the probe expects, that closes when its client does (the harness's backends allow half-open). */
function echoBackend() {
  return backend((peer) => {
    peer.onData = (p, chunk) => void p.socket?.write(chunk);
    peer.onEnd = (p) => void p.socket?.end();
  });
}

describe("clients that trickle one byte at a time", () => {
  for (const kind of ["sni", "proxy"] as const) {
    const what = kind === "sni" ? "a rule chosen by SNI (peek-timeout 1 s)" : "an accept_proxy rule (5 s header wait)";
    test(`${SLOW_CLIENTS} of them to ${what} are all closed by the timeout, hold no backend, and a normal client is served meanwhile`, async () => {
      const echo = echoBackend();
      const port = freePort();
      const options = kind === "sni" ? "[sni=abuse.test,peek-timeout=1]" : "[accept_proxy]";
      const forwarder = await oi(`127.0.0.1 ${port} 127.0.0.1 ${echo.port} ${options}\n`);
      const payload = new TextEncoder().encode("a well-behaved request\n");
      const request =
        kind === "sni"
          ? clientHello({ extensions: [serverNameExtension("abuse.test")] })
          : new Uint8Array([...new TextEncoder().encode("PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n"), ...payload]);
      const expectBack = kind === "sni" ? request.length : payload.length;
      const timeoutMs = kind === "sni" ? 1000 : 5000;

      const baselineFds = openDescriptors(forwarder.proc.pid);
      const baselineKiB = rssAnonKiB(forwarder.proc.pid);
      let peakKiB = baselineKiB;
      const sampler = setInterval(() => (peakKiB = Math.max(peakKiB, rssAnonKiB(forwarder.proc.pid))), 100);
      onCleanup(() => clearInterval(sampler));

      let slowDone!: () => void;
      const slowOver = new Promise<void>((wake) => (slowDone = wake));
      const probing = probeLatency("127.0.0.1", port, request, 100, slowOver, expectBack);
      const slow = await slowClientsElsewhere({
        host: "127.0.0.1",
        port,
        count: SLOW_CLIENTS,
        bytes: request,
        intervalMs: 10_000,
        giveUpMs: timeoutMs + 10_000,
      }).finally(slowDone);
      const probe = await probing;
      clearInterval(sampler);

      expect(slow.opened).toBe(SLOW_CLIENTS);
      expect(slow.outlived).toBe(0);
      expect(slow.bytesReceived).toBe(0);
      // Closed by the timeout, not before it (a byte every 10 s is not an error in itself) and not long after.
      expect(slow.closedAfterMs[0]!).toBeGreaterThanOrEqual(timeoutMs - 100);
      expect(slow.closedAfterMs.at(-1)!).toBeLessThan(timeoutMs + 5000);
      // None of them reached the backend: a peeking or header-reading rule connects only once it knows.
      expect(echo.connections.length).toBe(probe.times.length + probe.failures.length);
      // Everyone else is served all along.
      expect(probe.failures).toEqual([]);
      expect(probe.times.length).toBeGreaterThan(5);
      expect(probe.times.at(-1)!).toBeLessThan(2000);
      // About 3.5 KiB per waiting connection was measured (bench/abuse.ts); the bound leaves room for a loaded machine.
      expect(peakKiB - baselineKiB).toBeLessThan(32 * 1024);
      await until(() => openDescriptors(forwarder.proc.pid) <= baselineFds, 5000, `oi's descriptors back to their baseline of ${baselineFds}`).catch((error: Error) => {
        throw new Error(`${error.message}: ${openDescriptors(forwarder.proc.pid)} open`);
      });
    }, 60_000);
  }
});

describe("clients that never read", () => {
  test("20 clients of an endless backend that never read: oi stops reading the backend and its memory stays flat", async () => {
    const source = startEndlessSource();
    onCleanup(() => source.stop());
    const port = freePort();
    const forwarder = await oi(`127.0.0.1 ${port} 127.0.0.1 ${source.port}\n`);
    const baselineKiB = rssAnonKiB(forwarder.proc.pid);
    let peakKiB = baselineKiB;
    const sampler = setInterval(() => (peakKiB = Math.max(peakKiB, rssAnonKiB(forwarder.proc.pid))), 100);
    onCleanup(() => clearInterval(sampler));

    const held = await zeroWindowClients("127.0.0.1", port, 20, 15_000, source, { untilStillMs: 1000 });
    clearInterval(sampler);
    expect(held.connected).toBe(20);
    // Every leg filled up and the backend was made to wait: nothing moved in the last second.
    expect(held.backendBytesLastSecond).toBe(0);
    // What the backend could write is what the kernel buffers hold, not what oi kept.
    expect(held.backendBytes).toBeGreaterThan(20 * 1024 * 1024);
    expect(peakKiB - baselineKiB).toBeLessThan(24 * 1024);
  }, 60_000);
});

describe("UDP", () => {
  test("a client never receives more than its backend sent (0, 1 or 3 answers per datagram)", async () => {
    const udpBackend = await startRepeatingUdpEcho();
    onCleanup(() => udpBackend.close());
    const port = freePort();
    await oi(`127.0.0.1 ${port}/udp 127.0.0.1 ${udpBackend.port}/udp\n`);
    for (const replies of [0, 1, 3]) {
      const row = await udpAmplification("127.0.0.1", port, udpBackend, replies, 300);
      expect(row.clientBytes).toBeLessThanOrEqual(row.backendBytes);
      if (replies === 0) expect(row.clientBytes).toBe(0);
      // On loopback, paced: what the backend sent arrives (a datagram or two may be lost to a full buffer).
      else expect(row.clientBytes).toBeGreaterThan(0.9 * row.backendBytes);
      expect(row.backendBytes).toBeLessThanOrEqual(replies * row.sent * 100);
    }
  }, 60_000);
});
