/**
 * Rules with a UDP side and several backends: the balancer's choice per
 * session, passive health from ICMP refusals, failover, the PROXY protocol
 * on UDP and cross-protocol legs, reloads, source addresses and keepalive.
 * Real sockets on loopback; most tests serve the rule inside the test
 * process (the real Server and forwarders) so they can read the balancer's
 * counts and the session records the log and metrics are built from.
 */
import { describe, expect, test } from "bun:test";
import { BackendPool } from "../src/balance/pool.ts";
import { parseProxyHeader } from "../src/proxy-protocol.ts";
import { startBlackhole } from "./helpers/blackhole.ts";
import { connectPeer, freePort, type Peer } from "./helpers/peers.ts";
import {
  cleanUpAfterEachTest,
  endedSessions,
  freeUdpPort,
  inProcessOi,
  oi,
  onCleanup,
  startUdpBackend,
  tcpBackend,
  type UdpBackend,
  UdpClient,
  until,
} from "./helpers/udp.ts";

cleanUpAfterEachTest();

const encoder = new TextEncoder();
const text = (data: Uint8Array | undefined) => new TextDecoder().decode(data);

interface BackendEntry {
  port: number;
  name?: string;
  weight?: number;
  source?: string;
}

interface RuleSpec {
  name: string;
  port: number;
  protocol: "udp" | "udptotcp" | "tcptoudp";
  backends: BackendEntry[];
  options?: Record<string, string | number | boolean>;
  balance?: Record<string, string | number>;
}

const tomlValue = (value: string | number | boolean) => (typeof value === "string" ? JSON.stringify(value) : String(value));

/** One TOML forwarding rule listening on 127.0.0.1. */
function toml(spec: RuleSpec): string {
  const entries = spec.backends.map((backend) => {
    const fields = [`address = "127.0.0.1"`, `port = ${backend.port}`];
    if (backend.name !== undefined) fields.push(`name = ${JSON.stringify(backend.name)}`);
    if (backend.weight !== undefined) fields.push(`weight = ${backend.weight}`);
    if (backend.source !== undefined) fields.push(`source_address = ${JSON.stringify(backend.source)}`);
    return `{ ${fields.join(", ")} }`;
  });
  const lines = [
    "[[forwarding_rules]]",
    `name = ${JSON.stringify(spec.name)}`,
    'bind_address = "127.0.0.1"',
    `bind_port = ${spec.port}`,
    `protocol = "${spec.protocol}"`,
    `connect = [${entries.join(", ")}]`,
    ...Object.entries(spec.options ?? {}).map(([key, value]) => `${key} = ${tomlValue(value)}`),
  ];
  if (spec.balance !== undefined) {
    lines.push("[forwarding_rules.load_balancing]", ...Object.entries(spec.balance).map(([key, value]) => `${key} = ${tomlValue(value)}`));
  }
  return `${lines.join("\n")}\n`;
}

/** UDP backends that answer every datagram with their own name. */
async function namedUdpBackends(names: string[]): Promise<UdpBackend[]> {
  return Promise.all(names.map((name) => startUdpBackend("127.0.0.1", () => encoder.encode(name))));
}

/** One session: a fresh client socket (its own source port, from `localHost`), one datagram, the reply's text. */
async function session(port: number, localHost?: string, payload = "hi"): Promise<string> {
  const client = await UdpClient.open("127.0.0.1", port, localHost);
  client.send(payload);
  await client.waitCount(1, 5000, `the reply to a session from ${localHost ?? "127.0.0.1"}`);
  return text(client.received[0]?.data);
}

function tally(picks: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const pick of picks) counts[pick] = (counts[pick] ?? 0) + 1;
  return counts;
}

/** A UDP backend that records every datagram and answers each with "ok". */
async function recordingUdpBackend(): Promise<UdpBackend> {
  return startUdpBackend("127.0.0.1", () => encoder.encode("ok"));
}

const WEIGHTS = { a: 3, b: 2, c: 1 };

async function weightedRule(algorithm: string, balance: Record<string, string | number> = {}) {
  const [a, b, c] = await namedUdpBackends(["a", "b", "c"]);
  const port = await freeUdpPort();
  const backends = [
    { port: a!.port, name: "a", weight: WEIGHTS.a },
    { port: b!.port, name: "b", weight: WEIGHTS.b },
    { port: c!.port, name: "c", weight: WEIGHTS.c },
  ];
  const served = await inProcessOi(toml({ name: "weighted", port, protocol: "udp", backends, balance: { algorithm, ...balance } }));
  return { port, served, backends };
}

describe("udp: each new session picks its backend with the rule's balancer", () => {
  test("roundrobin: 60 sessions over weights 3:2:1 go exactly 30/20/10, in smooth order", async () => {
    const { port, served } = await weightedRule("roundrobin");
    const picks: string[] = [];
    for (let i = 0; i < 60; i++) picks.push(await session(port));

    // nginx's smooth weighted round robin: a b a c b a, ten times.
    expect(picks.slice(0, 6)).toEqual(["a", "b", "a", "c", "b", "a"]);
    expect(picks).toEqual(Array.from({ length: 10 }, () => ["a", "b", "a", "c", "b", "a"]).flat());
    expect(tally(picks)).toEqual({ a: 30, b: 20, c: 10 });
    const open = served.statuses("weighted");
    expect(open.map((status) => status.active)).toEqual([30, 20, 10]);
    expect(open.map((status) => status.totalConnections)).toEqual([30, 20, 10]);

    // The record of each session names the backend that answered it; every pick is released at the end.
    served.server.closeAll();
    expect(served.records.length).toBe(60);
    expect(tally(served.records.map((record) => record.backend?.name ?? "none"))).toEqual({ a: 30, b: 20, c: 10 });
    expect(served.statuses("weighted").map((status) => status.active)).toEqual([0, 0, 0]);
  });

  test("leastconn: sessions stay open, so 60 of them end up exactly 30/20/10 (active per weight)", async () => {
    const { port, served } = await weightedRule("leastconn");
    const picks: string[] = [];
    for (let i = 0; i < 60; i++) picks.push(await session(port));
    expect(tally(picks)).toEqual({ a: 30, b: 20, c: 10 });
    expect(served.statuses("weighted").map((status) => status.active)).toEqual([30, 20, 10]);
  });

  test("random: 600 sessions land within ±60 of 300/200/100 (over 5 standard deviations)", async () => {
    const { port } = await weightedRule("random");
    const picks: string[] = [];
    for (let i = 0; i < 600; i++) picks.push(await session(port));
    const counts = tally(picks);
    expect(Math.abs((counts.a ?? 0) - 300)).toBeLessThanOrEqual(60);
    expect(Math.abs((counts.b ?? 0) - 200)).toBeLessThanOrEqual(60);
    expect(Math.abs((counts.c ?? 0) - 100)).toBeLessThanOrEqual(60);
  });

  test("iphash: 30 client addresses × 2 sessions: each address always on one backend, the one the balancer hashes it to", async () => {
    const { port, backends } = await weightedRule("iphash");
    const addresses = Array.from({ length: 30 }, (_, i) => `127.0.0.${10 + i}`);
    const first: string[] = [];
    for (const address of addresses) first.push(await session(port, address));
    const second: string[] = [];
    for (const address of addresses) second.push(await session(port, address));
    expect(second).toEqual(first);

    // The same choice as a pool of the same backends makes for the client's IP (ports play no part;
    // named backends are hashed by name, so they keep their clients when their address changes).
    const reference = new BackendPool(
      backends.map((backend) => ({ name: backend.name, weight: backend.weight, key: backend.name })),
      { algorithm: "iphash", healthThreshold: 3, recoveryTimeoutMs: 30_000, affinityTtlMs: 0, affinityMaxEntries: 100 },
    );
    const expected = addresses.map((address) => {
      const index = reference.pick(address) ?? -1;
      reference.closed(index, 0, 0);
      return backends[index]?.name ?? "(none)";
    });
    expect(first).toEqual(expected);
    // Weight 3 of 6: about half the addresses (a 4-sigma band; the backends' ports vary per run).
    const onA = first.filter((name) => name === "a").length;
    expect(onA).toBeGreaterThanOrEqual(4);
    expect(onA).toBeLessThanOrEqual(26);
  });

  test("affinity: with affinity_ttl a client address keeps the backend of its first session", async () => {
    const { port } = await weightedRule("roundrobin", { affinity_ttl: 60 });
    const addresses = ["127.0.0.21", "127.0.0.22", "127.0.0.23"];
    const picks: Record<string, string[]> = {};
    for (let round = 0; round < 4; round++) {
      for (const address of addresses) (picks[address] ??= []).push(await session(port, address));
    }
    // First sessions follow round robin (a b a); every later one sticks.
    expect(picks).toEqual({
      "127.0.0.21": ["a", "a", "a", "a"],
      "127.0.0.22": ["b", "b", "b", "b"],
      "127.0.0.23": ["a", "a", "a", "a"],
    });
  });

  test("a session keeps its backend for its life; after a reload new sessions use the new backends", async () => {
    const [a, b, c] = await namedUdpBackends(["a", "b", "c"]);
    const port = await freeUdpPort();
    const before = toml({ name: "r", port, protocol: "udp", backends: [{ port: a!.port, name: "a" }, { port: b!.port, name: "b" }] });
    const served = await inProcessOi(before);
    const clients = await Promise.all([0, 1].map(() => UdpClient.open("127.0.0.1", port)));
    for (const [i, client] of clients.entries()) {
      client.send("one");
      await client.waitCount(1);
      expect(text(client.received[0]?.data)).toBe(["a", "b"][i]!);
    }

    await served.reload(toml({ name: "r", port, protocol: "udp", backends: [{ port: c!.port, name: "c" }] }));
    for (const client of clients) {
      client.send("two");
      await client.waitCount(2);
    }
    expect(clients.map((client) => text(client.received[1]?.data))).toEqual(["a", "b"]);
    expect(await session(port)).toBe("c");
    served.server.closeAll();
    expect(served.records.map((record) => record.backend?.name).sort()).toEqual(["a", "b", "c"]);
  });
});

describe("udp: passive health from ICMP port unreachable", () => {
  test("a closed backend port is failed over, counted, and skipped after health_threshold; no session is lost", async () => {
    const [a, b] = await namedUdpBackends(["a", "b"]);
    const dead = await freeUdpPort();
    const port = await freeUdpPort();
    const served = await inProcessOi(
      toml({
        name: "health",
        port,
        protocol: "udp",
        backends: [
          { port: a!.port, name: "a" },
          { port: dead, name: "dead" },
          { port: b!.port, name: "b" },
        ],
        options: { timeout: 1 },
        balance: { health_threshold: 3, recovery_timeout: 60 },
      }),
    );
    const replies: string[] = [];
    for (let i = 0; i < 30; i++) replies.push(await session(port, undefined, `session ${i}`));

    // Every session got its first datagram answered, by a live backend: the datagram the dead one
    // refused was sent again to the next pick.
    expect(replies.length).toBe(30);
    expect(replies.every((name) => name === "a" || name === "b")).toBe(true);
    expect(a!.received.length + b!.received.length).toBe(30);
    const [, down] = served.statuses("health");
    // Picked (and refused) exactly health_threshold times, then out: never picked again.
    expect(down?.totalFailures).toBe(3);
    expect(down?.healthy).toBe(false);
    expect(down?.totalConnections).toBe(0);

    await until(() => served.records.length === 30, 5000, "every session to go idle");
    expect(served.records.every((record) => record.backend?.name === "a" || record.backend?.name === "b")).toBe(true);
    expect(served.records.every((record) => record.result === "timeout")).toBe(true);
    expect(served.statuses("health").map((status) => status.active)).toEqual([0, 0, 0]);
    expect(served.statuses("health").map((status) => status.totalConnections)).toEqual([
      served.records.filter((record) => record.backend?.name === "a").length,
      0,
      served.records.filter((record) => record.backend?.name === "b").length,
    ]);
  });

  test("when every backend refused, the session stays on the last one and works as soon as it comes back", async () => {
    const [first, second] = [await freeUdpPort(), await freeUdpPort()];
    const port = await freeUdpPort();
    const served = await inProcessOi(
      toml({ name: "down", port, protocol: "udp", backends: [{ port: first, name: "first" }, { port: second, name: "second" }] }),
    );
    const client = await UdpClient.open("127.0.0.1", port);
    client.send("anyone?");
    await until(() => served.statuses("down").every((status) => status.totalFailures === 1), 3000, "both backends to refuse");

    // Both come up; the session, still the same one, is answered by the one it stayed on.
    await startUdpBackend("127.0.0.1", () => encoder.encode("first"), first);
    await startUdpBackend("127.0.0.1", () => encoder.encode("second"), second);
    client.send("now?");
    await client.waitCount(1);
    expect(text(client.received[0]?.data)).toBe("second");
    expect(served.records.length).toBe(0);

    served.server.closeAll();
    expect(served.records.map((record) => [record.backend?.name, record.bytesOut])).toEqual([["second", 6]]);
    expect(served.statuses("down").map((status) => status.active)).toEqual([0, 0]);
  });

  test("a backend that takes datagrams without ever answering (syslog-like) is reached, not failed", async () => {
    const silent = await startUdpBackend("127.0.0.1", () => undefined);
    const port = await freeUdpPort();
    const served = await inProcessOi(toml({ name: "quiet", port, protocol: "udp", backends: [{ port: silent.port, name: "quiet" }], options: { timeout: 1 } }));
    const client = await UdpClient.open("127.0.0.1", port);
    for (let i = 0; i < 3; i++) client.send(`line ${i}`);
    await until(() => served.records.length === 1, 4000, "the session to go idle");
    expect(silent.received.map((item) => text(item.data))).toEqual(["line 0", "line 1", "line 2"]);
    expect(served.records[0]?.backend?.name).toBe("quiet");
    expect(served.records[0]?.result).toBe("timeout");
    const [status] = served.statuses("quiet");
    expect([status?.totalConnections, status?.totalFailures, status?.active, status?.bytesIn]).toEqual([1, 0, 0, 18]);
  });

  test("a backend that goes away under an answered session ends it as refused; the client's next datagram picks again", async () => {
    const [a, b] = await namedUdpBackends(["a", "b"]);
    const port = await freeUdpPort();
    const served = await inProcessOi(toml({ name: "gone-later", port, protocol: "udp", backends: [{ port: a!.port, name: "a" }, { port: b!.port, name: "b" }] }));
    const client = await UdpClient.open("127.0.0.1", port);
    client.send("one");
    await client.waitCount(1);
    expect(text(client.received[0]?.data)).toBe("a");

    a!.close();
    client.send("lost with a");
    await until(() => served.records.length === 1, 3000, "the session to end");
    expect([served.records[0]?.backend?.name, served.records[0]?.result]).toEqual(["a", "refused"]);
    // Same client port, new session: on b (a new pick of a would be refused and failed over to b).
    client.send("two");
    await client.waitCount(2);
    expect(text(client.received[1]?.data)).toBe("b");
  });

  test("a silent backend that dies later: what it was sent in the last 2 s goes to the next backend", async () => {
    const quiet = await startUdpBackend("127.0.0.1", () => undefined);
    const live = await recordingUdpBackend();
    const port = await freeUdpPort();
    const served = await inProcessOi(toml({ name: "shipper", port, protocol: "udp", backends: [{ port: quiet.port, name: "quiet" }, { port: live.port, name: "live" }] }));
    const client = await UdpClient.open("127.0.0.1", port);
    client.send("old line");
    await until(() => quiet.received.length === 1, 3000, "the first line at the quiet backend");
    await Bun.sleep(2100);
    quiet.close();
    client.send("new line");
    await client.waitCount(1);
    // The line from before the window was delivered (as far as UDP can tell) and is not sent twice.
    expect(live.received.map((item) => text(item.data))).toEqual(["new line"]);
    expect(served.statuses("shipper")[0]?.totalFailures).toBe(1);
    expect(served.records.length).toBe(0);
    served.server.closeAll();
    expect(served.records[0]?.backend?.name).toBe("live");
  });

  test("a session whose only backend never answered ends as refused, with no backend", async () => {
    const dead = await freeUdpPort();
    const port = await freeUdpPort();
    const served = await inProcessOi(toml({ name: "gone", port, protocol: "udp", backends: [{ port: dead }], options: { timeout: 1 } }));
    const client = await UdpClient.open("127.0.0.1", port);
    client.send("anyone?");
    await until(() => served.records.length === 1, 4000, "the session to end");
    expect(served.records[0]?.result).toBe("refused");
    expect(served.records[0]?.backend).toBeUndefined();
    expect(served.statuses("gone")[0]?.active).toBe(0);
  });
});

describe("udptotcp with several backends", () => {
  test("a refusing backend: every session ends up on the live one, and the refused one goes out after its failures", async () => {
    const live = tcpBackend((peer) => {
      peer.onData = (_, chunk) => void peer.send(`live ${text(chunk)}`);
    });
    const dead = freePort();
    const port = await freeUdpPort();
    const served = await inProcessOi(
      toml({
        name: "cross",
        port,
        protocol: "udptotcp",
        backends: [
          { port: dead, name: "dead" },
          { port: live.port, name: "live" },
        ],
      }),
    );
    const replies: string[] = [];
    for (let i = 0; i < 10; i++) replies.push(await session(port, undefined, `n${i}`));
    expect(replies).toEqual(Array.from({ length: 10 }, (_, i) => `live n${i}`));
    expect(live.connections.length).toBe(10);
    const [down, up] = served.statuses("cross");
    expect(down?.totalFailures).toBe(3);
    expect(down?.healthy).toBe(false);
    expect(up?.totalConnections).toBe(10);
    served.server.closeAll();
    expect(served.records.map((record) => record.backend?.name)).toEqual(Array.from({ length: 10 }, () => "live"));
    expect(served.statuses("cross").map((status) => status.active)).toEqual([0, 0]);
  });

  test("a backend that never answers the handshake is given up after connect_timeout, per attempt; nothing the client sent is lost", async () => {
    const hole = await startBlackhole();
    onCleanup(() => hole.close());
    const live = tcpBackend((peer) => {
      peer.onData = (_, chunk) => void peer.send(`live ${text(chunk)}`);
    });
    const port = await freeUdpPort();
    const served = await inProcessOi(
      toml({
        name: "slow",
        port,
        protocol: "udptotcp",
        backends: [
          { port: hole.port, name: "hole" },
          { port: live.port, name: "live" },
        ],
        options: { connect_timeout: 0.3 },
      }),
    );
    const client = await UdpClient.open("127.0.0.1", port);
    const started = Date.now();
    client.send("queued while connecting");
    await client.waitCount(1, 5000);
    const waited = Date.now() - started;
    expect(text(client.received[0]?.data)).toBe("live queued while connecting");
    expect(waited).toBeGreaterThanOrEqual(280);
    expect(waited).toBeLessThan(2000);
    expect(served.statuses("slow")[0]?.totalFailures).toBe(1);
  });
});

/** Datagrams `backend` got from one source, in order. */
function fromSource(backend: UdpBackend, source: string): Uint8Array[] {
  return backend.received.filter((item) => `${item.address}:${item.port}` === source).map((item) => item.data);
}

describe("PROXY protocol v2 on UDP backends", () => {
  test("the first datagram of each session starts with a v2 DGRAM header naming the client; later ones are as sent", async () => {
    const backends = [await recordingUdpBackend(), await recordingUdpBackend()];
    const port = await freeUdpPort();
    await inProcessOi(
      toml({
        name: "pp",
        port,
        protocol: "udp",
        backends: backends.map((backend) => ({ port: backend.port })),
        options: { proxy_protocol: "v2" },
      }),
    );
    const clientHosts = ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"];
    const clients = await Promise.all(clientHosts.map((host) => UdpClient.open("127.0.0.1", port, host)));
    // The first client's first datagram is empty: the header alone is its datagram.
    const payloads = clients.map((_, i) => [i === 0 ? "" : `first ${i}`, `second ${i}`, `third ${i}`]);
    for (let k = 0; k < 3; k++) {
      for (const [i, client] of clients.entries()) {
        client.send(payloads[i]![k]!);
        await client.waitCount(k + 1);
      }
    }

    // Round robin: clients 0 and 2 on the first backend, 1 and 3 on the second; one source per session.
    for (const backend of backends) expect(backend.sources().length).toBe(2);
    for (const [i, client] of clients.entries()) {
      const backend = backends[i % 2]!;
      const source = backend.sources()[Math.floor(i / 2)]!;
      const [first, ...rest] = fromSource(backend, source);
      const header = parseProxyHeader(first!);
      if (header.status !== "ok") throw new Error(`no header: ${JSON.stringify(header)}`);
      expect(header.version).toBe(2);
      expect(header.transport).toBe("udp");
      expect(header.source).toEqual({ address: clientHosts[i]!, port: client.port });
      expect(header.destination).toEqual({ address: "127.0.0.1", port });
      expect(text(first!.subarray(header.headerLength))).toBe(payloads[i]![0]!);
      expect(rest.map(text)).toEqual([payloads[i]![1]!, payloads[i]![2]!]);
      for (const datagram of rest) expect(parseProxyHeader(datagram).status).toBe("invalid");
    }
  });

  test("after a failover the live backend's first datagram of the session carries the header", async () => {
    const live = await recordingUdpBackend();
    const dead = await freeUdpPort();
    const port = await freeUdpPort();
    await inProcessOi(
      toml({
        name: "ppfail",
        port,
        protocol: "udp",
        backends: [{ port: dead }, { port: live.port }],
        options: { proxy_protocol: "v2" },
      }),
    );
    const client = await UdpClient.open("127.0.0.1", port, "127.0.0.7");
    client.send("hello");
    await client.waitCount(1);
    client.send("again");
    await client.waitCount(2);
    const [first, second] = live.received.map((item) => item.data);
    const header = parseProxyHeader(first!);
    if (header.status !== "ok") throw new Error("no header on the resent datagram");
    expect(header.source).toEqual({ address: "127.0.0.7", port: client.port });
    expect(text(first!.subarray(header.headerLength))).toBe("hello");
    expect(text(second)).toBe("again");
  });
});

describe("PROXY protocol on cross-protocol rules", () => {
  test("tcptoudp with proxy=v2: each connection's first datagram names the TCP client; connections are balanced", async () => {
    const backends = [await recordingUdpBackend(), await recordingUdpBackend()];
    const port = freePort();
    const served = await inProcessOi(
      toml({
        name: "t2u",
        port,
        protocol: "tcptoudp",
        backends: backends.map((backend, i) => ({ port: backend.port, name: `u${i}` })),
        options: { proxy_protocol: "v2", keepalive: 30 },
      }),
    );
    const peers: Peer[] = [];
    for (let i = 0; i < 4; i++) {
      const peer = await connectPeer("127.0.0.1", port, `127.0.0.${30 + i}`);
      peer.keep = [];
      onCleanup(() => peer.socket?.terminate());
      await peer.send(`hello ${i}`);
      await until(() => peer.received >= 2, 3000, "the first reply");
      await peer.send(`world ${i}`);
      await until(() => peer.received >= 4, 3000, "the second reply");
      peers.push(peer);
    }
    for (const [i, peer] of peers.entries()) {
      const backend = backends[i % 2]!;
      const source = backend.sources()[Math.floor(i / 2)]!;
      const [first, ...rest] = fromSource(backend, source);
      const header = parseProxyHeader(first!);
      if (header.status !== "ok") throw new Error("no header");
      expect(header.transport).toBe("udp");
      expect(header.source).toEqual({ address: `127.0.0.${30 + i}`, port: peer.socket?.localPort ?? -1 });
      expect(header.destination).toEqual({ address: "127.0.0.1", port });
      expect(text(first!.subarray(header.headerLength))).toBe(`hello ${i}`);
      expect(rest.map(text)).toEqual([`world ${i}`]);
    }
    for (const peer of peers) await peer.send("", true);
    await until(() => served.records.length === 4, 3000, "the connections to end");
    expect(served.records.map((record) => record.backend?.name).sort()).toEqual(["u0", "u0", "u1", "u1"]);
    expect(served.statuses("t2u").map((status) => status.active)).toEqual([0, 0]);
  });

  test("tcptoudp with accept_proxy: each client's PROXY header is stripped and its address is the one sent on (three clients, one listener)", async () => {
    const backend = await recordingUdpBackend();
    const port = freePort();
    const served = await inProcessOi(
      toml({
        name: "relayed",
        port,
        protocol: "tcptoudp",
        backends: [{ port: backend.port }],
        options: { proxy_protocol: "v2", accept_proxy: true },
      }),
    );
    // One after another on the same listener: the first client's header must not change how later ones are read.
    for (let i = 0; i < 3; i++) {
      const peer = await connectPeer("127.0.0.1", port);
      peer.keep = [];
      onCleanup(() => peer.socket?.terminate());
      await peer.send(`PROXY TCP4 203.0.113.${7 + i} 198.51.100.1 ${4000 + i} 53\r\npayload ${i}`);
      await until(() => peer.received >= 2, 3000, `the reply to client ${i}`);
      const header = parseProxyHeader(backend.received[i]!.data);
      if (header.status !== "ok") throw new Error("no header");
      expect(header.source).toEqual({ address: `203.0.113.${7 + i}`, port: 4000 + i });
      expect(header.destination).toEqual({ address: "198.51.100.1", port: 53 });
      expect(text(backend.received[i]!.data.subarray(header.headerLength))).toBe(`payload ${i}`);
      await peer.send("", true);
      await until(() => served.records.length === i + 1, 3000, `connection ${i} to end`);
      expect(served.records[i]?.clientAddress).toBe(`203.0.113.${7 + i}`);
    }
  });

  test("udptotcp with proxy=v1: the TCP leg starts with the header line, then the datagrams", async () => {
    const seen: Peer[] = [];
    const server = tcpBackend((peer) => {
      peer.keep = [];
      seen.push(peer);
      peer.onData = () => void peer.send("ok");
    });
    const port = await freeUdpPort();
    const forwarder = await oi(
      toml({ name: "v1", port, protocol: "udptotcp", backends: [{ port: server.port }], options: { proxy_protocol: "v1", timeout: 1 } }),
      ["-v"],
      "oi.toml",
    );
    const client = await UdpClient.open("127.0.0.1", port, "127.0.0.8");
    client.send("one");
    await client.waitCount(1);
    client.send("two");
    await until(() => seen[0]?.text().endsWith("two") === true, 3000, "both datagrams at the backend");
    expect(seen[0]?.text()).toBe(`PROXY TCP4 127.0.0.8 127.0.0.1 ${client.port} ${port}\r\nonetwo`);
    await forwarder.stdout.waitFor(/timeout in=6/, 4000);
    expect(endedSessions(forwarder.stdout.text, port)).toEqual([
      { client: `127.0.0.8:${client.port}`, backend: `127.0.0.1:${server.port}/tcp`, result: "timeout" },
    ]);
  });

  test("udptotcp with proxy=v2 and len16 framing: a STREAM header, then the frames", async () => {
    const seen: Peer[] = [];
    const server = tcpBackend((peer) => {
      peer.keep = [];
      seen.push(peer);
    });
    const port = await freeUdpPort();
    await inProcessOi(
      toml({ name: "v2", port, protocol: "udptotcp", backends: [{ port: server.port }], options: { proxy_protocol: "v2", framing: "len16" } }),
    );
    const client = await UdpClient.open("127.0.0.1", port, "127.0.0.9");
    client.send("abc");
    await until(() => (seen[0]?.received ?? 0) >= 28 + 5, 3000, "header and frame at the backend");
    const stream = Buffer.concat(seen[0]?.keep ?? []);
    const header = parseProxyHeader(stream);
    if (header.status !== "ok") throw new Error("no header");
    expect(header.transport).toBe("tcp");
    expect(header.source).toEqual({ address: "127.0.0.9", port: client.port });
    expect(header.destination).toEqual({ address: "127.0.0.1", port });
    expect([...stream.subarray(header.headerLength)]).toEqual([0, 3, ...encoder.encode("abc")]);
  });
});

describe("source addresses and keepalive", () => {
  test("each backend's source_address binds its upstream socket (udp and udptotcp)", async () => {
    const udpBackend = await recordingUdpBackend();
    const udpPort = await freeUdpPort();
    const tcpSources: string[] = [];
    const server = tcpBackend((peer) => {
      tcpSources.push(peer.socket?.remoteAddress ?? "");
      peer.onData = () => void peer.send("ok");
    });
    const crossPort = await freeUdpPort();
    await inProcessOi(
      toml({ name: "src-udp", port: udpPort, protocol: "udp", backends: [{ port: udpBackend.port, source: "127.0.0.41" }] }) +
        toml({ name: "src-tcp", port: crossPort, protocol: "udptotcp", backends: [{ port: server.port, source: "127.0.0.42" }] }),
    );
    expect(await session(udpPort)).toBe("ok");
    expect(await session(crossPort)).toBe("ok");
    expect(udpBackend.received[0]?.address).toBe("127.0.0.41");
    expect(tcpSources).toEqual(["127.0.0.42"]);
  });

  test.skipIf(Bun.which("ss") === null)("keepalive is set on the TCP legs: the udptotcp backend leg and the tcptoudp client leg", async () => {
    const server = tcpBackend((peer) => {
      peer.onData = () => void peer.send("ok");
    });
    const echo = await recordingUdpBackend();
    const crossPort = await freeUdpPort();
    const tcpPort = freePort();
    await inProcessOi(
      toml({ name: "ka-u2t", port: crossPort, protocol: "udptotcp", backends: [{ port: server.port }], options: { keepalive: 45 } }) +
        toml({ name: "ka-t2u", port: tcpPort, protocol: "tcptoudp", backends: [{ port: echo.port }], options: { keepalive: 45 } }),
    );
    expect(await session(crossPort)).toBe("ok");
    const peer = await connectPeer("127.0.0.1", tcpPort);
    onCleanup(() => peer.socket?.terminate());
    await peer.send("x");
    await until(() => peer.received >= 2, 3000, "the reply");

    const timers = async (filter: string) => {
      const proc = Bun.spawn(["ss", "-tnoH", "state", "established", filter], { stdout: "pipe" });
      return (await new Response(proc.stdout).text()).trim();
    };
    // oi's end of each TCP leg: towards the backend (dport), and the accepted client (sport).
    expect(await timers(`( dport = :${server.port} )`)).toMatch(/timer:\(keepalive,/);
    expect(await timers(`( sport = :${tcpPort} )`)).toMatch(/timer:\(keepalive,/);
  });
});
