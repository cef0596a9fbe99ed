/**
 * Per-client limits end to end, with clients bound to 127.0.0.2, 127.0.0.3
 * and ::1: maxconn-client refuses a client's N+1th connection while its first
 * N carry bytes intact and other clients are served; connrate-client's
 * window; the global default; UDP sessions and TCP-to-UDP; the address of a
 * PROXY header; a reload keeps the counts; the metrics and the log say it
 * was the per-client limit; and a flood of distinct sources leaves the
 * per-client table bounded.
 */
import { describe, expect, test } from "bun:test";
import { encodeProxyV1 } from "../src/proxy-protocol.ts";
import { backend, cleanUpAfterEachTest, oi, oiOnFile, until } from "./helpers/harness.ts";
import { writeTempFile } from "./helpers/oi-process.ts";
import { connectExpectingClose, connectPeer, freePort, type Peer, randomBytes, sha256 } from "./helpers/peers.ts";
import { freeUdpPort, startUdpBackend, UdpClient } from "./helpers/udp.ts";
import { floodAddress, floodDistinctSources, rssAnonKiB } from "./helpers/udp-flood.ts";
import { readFileSync, writeFileSync } from "node:fs";

cleanUpAfterEachTest();

function sample(metrics: string, name: string, labels: string): number | undefined {
  const line = metrics.split("\n").find((each) => each.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.split(" ").pop());
}

async function limited(metricsPort: number, rule: string, reason: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return sample(text, "oi_limited_total", `rule="${rule}",mode="${rule.endsWith("/udp") ? "udp" : "tcp"}",reason="${reason}"`);
}

/** A connection that oi admitted: it is still open a moment after connecting. */
async function admitted(port: number, from: string, host = "127.0.0.1"): Promise<Peer> {
  const peer = await connectPeer(host, port, from);
  await Bun.sleep(150);
  expect(peer.closed).toBe(false);
  return peer;
}

/** A connection oi refused: closed at once, without a byte. */
async function refused(port: number, from: string, host = "127.0.0.1"): Promise<void> {
  expect(await connectExpectingClose(host, port, from, 3000)).toBe(0);
}

/** Bytes both ways through each of `clients`: every backend connection got what its client sent, and each client what the backend sent. */
async function bytesIntact(clients: Peer[], backendPeers: () => Peer[], reply: Uint8Array): Promise<void> {
  const payloads = clients.map(() => randomBytes(256 * 1024));
  await Promise.all(clients.map((client, i) => client.send(payloads[i]!)));
  await until(() => backendPeers().reduce((sum, peer) => sum + peer.received, 0) >= payloads.length * 256 * 1024, 5000, "the payloads at the backend");
  expect(new Set(backendPeers().filter((peer) => peer.received > 0).map((peer) => peer.digest()))).toEqual(new Set(payloads.map(sha256)));
  await until(() => clients.every((client) => client.received === reply.length), 5000, "the replies at the clients");
  for (const client of clients) expect(client.digest()).toBe(sha256(reply));
}

describe("maxconn-client", () => {
  test("the N+1th connection of a client is refused; its first N keep working, bytes intact; other clients are served", async () => {
    const reply = randomBytes(128 * 1024);
    const server = backend((peer) => void peer.send(reply));
    const [port, metricsPort] = [freePort(), freePort()];
    const logFile = writeTempFile("client-limits.log", "");
    const process = await oi(`logfile ${logFile}\nmetrics 127.0.0.1:${metricsPort}\n:: ${port} 127.0.0.1 ${server.port} [maxconn-client=2]\n`, ["-v"]);
    const rule = `[::]:${port}/tcp`;
    const first = [await admitted(port, "127.0.0.2"), await admitted(port, "127.0.0.2")];
    await refused(port, "127.0.0.2");
    await refused(port, "127.0.0.2");
    // Another IPv4 client, and an IPv6 one (::1, its /64), each with their own count.
    const others = [await admitted(port, "127.0.0.3"), await admitted(port, "127.0.0.3"), await admitted(port, "::1", "::1"), await admitted(port, "::1", "::1")];
    await refused(port, "::1", "::1");
    await refused(port, "127.0.0.3");
    expect(server.connections).toHaveLength(6);
    await bytesIntact([...first, ...others], () => server.connections, reply);
    await process.stdout.waitFor("refused: client connection limit", 2000);
    // The log file names the limit on each refused connection's line (written within a second).
    await until(() => (readFileSync(logFile, "utf8").match(/error: client connection limit/g) ?? []).length === 4, 3000, "4 refusals in the log file");
    expect(await limited(metricsPort, rule, "client")).toBe(4);
    expect(await limited(metricsPort, rule, "rule")).toBe(0);
    expect(await limited(metricsPort, rule, "global")).toBe(0);

    // Closing one frees its place (a reset, so the backend's side goes at once); the client's other connection is untouched.
    first[0]!.socket?.terminate();
    await until(() => server.connections.filter((peer) => !peer.closed).length === 5, 3000, "the closed connection's backend side to go");
    const again = await admitted(port, "127.0.0.2");
    await refused(port, "127.0.0.2");
    expect(first[1]!.closed).toBe(false);
    expect(again.closed).toBe(false);
    expect(await limited(metricsPort, rule, "client")).toBe(5);
  });

  test("spliced relays (splice on) give their place back when they end", async () => {
    const server = backend((peer) => {
      peer.onEnd = (p) => void p.send("bye", true);
    });
    const port = freePort();
    await oi(`splice on\n127.0.0.1 ${port} 127.0.0.1 ${server.port} [maxconn-client=1]\n`);
    for (let round = 0; round < 3; round++) {
      const client = await admitted(port, "127.0.0.2");
      await refused(port, "127.0.0.2");
      const payload = randomBytes(2 * 1024 * 1024);
      await client.send(payload, true);
      await client.waitClosed(5000);
      const peer = server.connections[round]!;
      expect(peer.digest()).toBe(sha256(payload));
      await until(() => peer.closed, 3000, "the backend side to close");
      await Bun.sleep(100);
    }
  });

  test("a global default applies to rules without their own; a rule's own wins", async () => {
    const server = backend();
    const [plain, own] = [freePort(), freePort()];
    await oi(`maxconn-client 1\n127.0.0.1 ${plain} 127.0.0.1 ${server.port}\n127.0.0.1 ${own} 127.0.0.1 ${server.port} [maxconn-client=3]\n`);
    await admitted(plain, "127.0.0.2");
    await refused(plain, "127.0.0.2");
    for (let i = 0; i < 3; i++) await admitted(own, "127.0.0.2");
    await refused(own, "127.0.0.2");
    await admitted(plain, "127.0.0.3");
  });

  test("with accept_proxy, the client is the address in the PROXY header", async () => {
    const server = backend();
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port} [accept_proxy,maxconn-client=1]\n`);
    const proxied = async (address: string) => {
      const peer = await connectPeer("127.0.0.1", port, "127.0.0.2");
      await peer.send(encodeProxyV1({ address, port: 1000 }, { address: "127.0.0.1", port }));
      await Bun.sleep(200);
      return peer;
    };
    expect((await proxied("198.51.100.7")).closed).toBe(false);
    expect((await proxied("198.51.100.7")).closed).toBe(true);
    expect((await proxied("198.51.100.8")).closed).toBe(false);
    expect(server.connections).toHaveLength(2);
  });

  test("a reload keeps the counts of a kept rule: connections open before it still count", async () => {
    const server = backend();
    const port = freePort();
    const path = writeTempFile("reload.conf", `127.0.0.1 ${port} 127.0.0.1 ${server.port} [maxconn-client=2]\n`);
    const process = await oiOnFile(path);
    await admitted(port, "127.0.0.2");
    await admitted(port, "127.0.0.2");
    writeFileSync(path, `127.0.0.1 ${port} 127.0.0.1 ${server.port} [maxconn-client=3]\n`);
    process.signal("SIGHUP");
    await process.stdout.waitFor("reload", 5000);
    await Bun.sleep(200);
    await admitted(port, "127.0.0.2");
    await refused(port, "127.0.0.2");
  });

  test("TCP to UDP: a client's connections are counted as for TCP", async () => {
    const echo = await startUdpBackend();
    const port = freePort();
    await oi(`127.0.0.1 ${port}/tcp 127.0.0.1 ${echo.port}/udp [maxconn-client=1]\n`);
    const first = await admitted(port, "127.0.0.2");
    await refused(port, "127.0.0.2");
    await admitted(port, "127.0.0.3");
    first.keep = [];
    await first.send("ping");
    await until(() => first.text() === "ping", 3000, "the echo");
    first.socket?.end();
    await first.waitClosed(3000);
    await Bun.sleep(300);
    await admitted(port, "127.0.0.2");
  });

  test("--workers 2: the count holds however the kernel spreads a client's connections", async () => {
    const server = backend();
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port} [maxconn-client=3]\n`, ["--workers", "2"]);
    const attempts = await Promise.allSettled(Array.from({ length: 10 }, () => connectPeer("127.0.0.1", port, "127.0.0.2")));
    await Bun.sleep(400);
    const open = attempts.filter((attempt) => attempt.status === "fulfilled" && !attempt.value.closed);
    expect(open).toHaveLength(3);
    expect(server.connections).toHaveLength(3);
  });
});

describe("connrate-client", () => {
  test("the N+1th new connection within S seconds is refused; admitted again once S seconds have passed", async () => {
    const server = backend();
    const [port, metricsPort] = [freePort(), freePort()];
    await oi(`metrics 127.0.0.1:${metricsPort}\n127.0.0.1 ${port} 127.0.0.1 ${server.port} [connrate-client=3/2]\n`, ["-v"]);
    const started = Date.now();
    for (let i = 0; i < 3; i++) (await admitted(port, "127.0.0.2")).socket?.end();
    await refused(port, "127.0.0.2");
    await admitted(port, "127.0.0.3");
    expect(Date.now() - started).toBeLessThan(2000);
    expect(await limited(metricsPort, `127.0.0.1:${port}/tcp`, "client")).toBe(1);
    await Bun.sleep(started + 2300 - Date.now());
    await admitted(port, "127.0.0.2");
  });
});

describe("UDP", () => {
  test("maxconn-client counts a client's sessions: the datagram that would open one more is dropped; an ended session frees its place", async () => {
    const echo = await startUdpBackend();
    const [port, metricsPort] = [await freeUdpPort(), freePort()];
    const process = await oi(`metrics 127.0.0.1:${metricsPort}\n127.0.0.1 ${port}/udp 127.0.0.1 ${echo.port}/udp [maxconn-client=2,timeout=1]\n`, ["-v"]);
    const clients = await Promise.all([1, 2, 3].map(() => UdpClient.open("127.0.0.1", port, "127.0.0.2")));
    const other = await UdpClient.open("127.0.0.1", port, "127.0.0.3");
    for (const client of [...clients, other]) client.send("hello");
    await clients[0]!.waitCount(1, 2000);
    await clients[1]!.waitCount(1, 2000);
    await other.waitCount(1, 2000);
    await Bun.sleep(200);
    expect(clients[2]!.received).toHaveLength(0);
    expect(echo.received).toHaveLength(3);
    await process.stdout.waitFor("refused: client connection limit", 2000);
    expect(await limited(metricsPort, `127.0.0.1:${port}/udp`, "client")).toBe(1);
    // The first two sessions time out (1 s); then the third source may open one.
    await until(() => /127\.0\.0\.2:\d+ -> \S+ -> \S+ timeout/.test(process.stdout.text), 4000, "the sessions to time out");
    await until(() => (process.stdout.text.match(/127\.0\.0\.2:\d+ -> \S+ -> \S+ timeout/g) ?? []).length === 2, 3000, "both sessions to time out");
    clients[2]!.send("again");
    await clients[2]!.waitCount(1, 2000);
  });

  test("a flood of 200,000 distinct sources: the per-client table stays within its bound and memory stays bounded", async () => {
    let received = 0;
    const sink = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, socket: { data: () => void received++ } });
    const port = await freeUdpPort();
    const sources = 200_000;
    // Sessions are evicted past 500, so flooded clients fall back to the table, which keeps the 1000 most recent.
    const process = await oi(`client-table-size 1000\n127.0.0.1 ${port}/udp 127.0.0.1 ${sink.port}/udp [maxconn-client=2,connrate-client=1/60,max_sessions=500]\n`);
    try {
      const flood = await floodDistinctSources({ port, count: sources, confirmed: () => received, deadlineMs: 45_000 });
      expect(flood.sent).toBe(sources);
      expect(flood.lost).toBe(0);
      const memory = rssAnonKiB(process.proc.pid);
      // Far above what oi needs here (about 60-90 MiB, most of it garbage of the evicted sessions, not yet collected).
      expect(memory).toBeLessThan(256 * 1024);
      // Each flooded client used its one connection per minute. One of the last 1000 is remembered: refused.
      const recent = await Bun.udpSocket({ hostname: floodAddress(sources - 700), port: 0 });
      recent.send("x", port, "127.0.0.1");
      recent.close();
      // The first one was forgotten long ago (the table is bounded): it starts afresh and is admitted.
      const first = await Bun.udpSocket({ hostname: floodAddress(0), port: 0 });
      first.send("x", port, "127.0.0.1");
      first.close();
      await until(() => received === sources + 1, 2000, "the forgotten client's datagram");
      await Bun.sleep(200);
      expect(received).toBe(sources + 1);
    } finally {
      sink.close();
    }
  }, 60_000);
});
