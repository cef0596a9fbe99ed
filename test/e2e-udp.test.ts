/**
 * End to end, UDP to UDP: a real `oi` process between real loopback UDP
 * clients and backends.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { writeFileSync } from "node:fs";
import { startOi, writeTempFile } from "./helpers/oi-process.ts";
import { randomBytes } from "./helpers/peers.ts";
import {
  cleanUpAfterEachTest,
  endedResults,
  freeUdpPort,
  oi,
  onCleanup,
  startUdpBackend,
  tcpBackend,
  UdpClient,
  until,
} from "./helpers/udp.ts";

cleanUpAfterEachTest();

const SIZES = [0, 1, 1400, 8000, 65507];

function bytesEqual(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return a !== undefined && b !== undefined && Buffer.from(a).equals(Buffer.from(b));
}

describe("udp -> udp", () => {
  test("several clients get exactly their own replies, sizes 0 to 65507, from one stable source each", async () => {
    const backend = await startUdpBackend();
    const port = await freeUdpPort();
    await oi(`127.0.0.1 ${port}/udp 127.0.0.1 ${backend.port}/udp\n`);

    const clients = await Promise.all(Array.from({ length: 4 }, () => UdpClient.open("127.0.0.1", port)));
    const sent = clients.map(() => SIZES.map((size) => randomBytes(size)));
    // One datagram in flight at a time: two 64 KiB datagrams at once can overflow a default
    // socket receive buffer (208 KiB of kernel memory) and be lost, with or without oi.
    for (let i = 0; i < SIZES.length; i++) {
      for (const [c, client] of clients.entries()) {
        client.send(sent[c]![i]!);
        await client.waitCount(i + 1);
      }
    }

    clients.forEach((client, c) => {
      expect(client.received.map((item) => item.data.length)).toEqual(SIZES);
      client.received.forEach((item, i) => expect(bytesEqual(item.data, sent[c]![i])).toBe(true));
      // Replies come from the address the client sent to.
      for (const item of client.received) expect(item.port).toBe(port);
    });
    // Nothing added (no empty probe datagrams): the backend saw exactly what was sent.
    expect(backend.received.length).toBe(clients.length * SIZES.length);
    // One upstream source per client, distinct across clients. Sends were sequential, so the
    // backend's k-th datagram is size k / clients of client k % clients.
    const n = clients.length;
    const sourcesOf = clients.map((_, c) => new Set(backend.received.filter((_, k) => k % n === c).map((item) => item.port)));
    for (const [c, sources] of sourcesOf.entries()) {
      expect(sources.size).toBe(1);
      backend.received.forEach((item, k) => {
        if (k % n === c) expect(bytesEqual(item.data, sent[c]![Math.floor(k / n)])).toBe(true);
      });
    }
    expect(new Set(sourcesOf.flatMap((sources) => [...sources])).size).toBe(clients.length);
  });

  test("an idle session expires ([timeout=1]) and a later datagram starts a new one", async () => {
    const backend = await startUdpBackend();
    const port = await freeUdpPort();
    const forwarder = await oi(`127.0.0.1 ${port}/udp 127.0.0.1 ${backend.port}/udp [timeout=1]\n`, ["-v"]);
    const client = await UdpClient.open("127.0.0.1", port);

    client.send("one");
    await client.waitCount(1);
    await forwarder.stdout.waitFor(/timeout in=3 out=3 \d+ms/, 3000);
    const [line] = endedResults(forwarder.stdout.text, port);
    expect(line).toBe("timeout");

    client.send("two");
    await client.waitCount(2);
    expect(new TextDecoder().decode(client.received[1]!.data)).toBe("two");
    // The second session has its own upstream socket.
    expect(backend.sources().length).toBe(2);
  });

  test("a flood of sources past max_sessions evicts the least recently used; descriptors stay bounded", async () => {
    const backend = await startUdpBackend();
    const port = await freeUdpPort();
    const forwarder = await oi(`127.0.0.1 ${port}/udp 127.0.0.1 ${backend.port}/udp [max_sessions=50]\n`, ["-v"]);
    const fds = () => readdirSync(`/proc/${forwarder.proc.pid}/fd`).length;
    const baseline = fds();

    // A client that keeps talking stays among the most recent sessions and is never evicted.
    const steady = await UdpClient.open("127.0.0.1", port);
    let steadyReplies = 0;
    let maxFds = 0;
    // Batches of 25 new sources: every source gets its reply before it can be evicted.
    for (let batch = 0; batch < 20; batch++) {
      const flood = await Promise.all(Array.from({ length: 25 }, () => UdpClient.open("127.0.0.1", port)));
      for (const client of flood) client.send("x");
      steady.send("steady");
      steadyReplies++;
      await Promise.all(flood.map((client) => client.waitCount(1)));
      await steady.waitCount(steadyReplies);
      maxFds = Math.max(maxFds, fds());
      // Flood sockets stay open until the test ends, so no source port is reused by the next batch.
    }

    // 501 sessions were opened into a table of 50: 451 evictions, each logged.
    await until(() => endedResults(forwarder.stdout.text, port).length >= 451, 5000, "451 evictions in the log");
    const results = endedResults(forwarder.stdout.text, port);
    expect(results.length).toBe(451);
    expect(results.every((result) => result === "error: evicted")).toBe(true);
    // The steady client kept one session, hence one upstream source, throughout.
    const steadySources = new Set(
      backend.received.filter((item) => new TextDecoder().decode(item.data) === "steady").map((item) => item.port),
    );
    expect(steadySources.size).toBe(1);
    // One descriptor per session at most, whatever the number of sources.
    expect(maxFds - baseline).toBeLessThanOrEqual(50 + 5);

    // The rule still serves new clients.
    const late = await UdpClient.open("127.0.0.1", port);
    late.send("late");
    await late.waitCount(1);
  });

  test("access rules apply to each new source; a denied source is logged once and gets nothing", async () => {
    const backend = await startUdpBackend();
    const port = await freeUdpPort();
    const forwarder = await oi(`0.0.0.0 ${port}/udp 127.0.0.1 ${backend.port}/udp\ndeny 127.0.0.2\n`, ["-v"]);

    const denied = await UdpClient.open("127.0.0.1", port, "127.0.0.2");
    for (let i = 0; i < 5; i++) denied.send("no");
    const allowed = await UdpClient.open("127.0.0.1", port, "127.0.0.1");
    allowed.send("yes");
    await allowed.waitCount(1);
    await Bun.sleep(100);

    expect(denied.received.length).toBe(0);
    expect(backend.received.map((item) => new TextDecoder().decode(item.data))).toEqual(["yes"]);
    const deniedLines = forwarder.stdout.text
      .split("\n")
      .filter((line) => line.includes("127.0.0.2") && line.includes("denied"));
    expect(deniedLines.length).toBe(1);
  });

  test("a backend answering ICMP port unreachable does not kill the session or the rule", async () => {
    const backendPort = await freeUdpPort();
    const port = await freeUdpPort();
    const forwarder = await oi(`127.0.0.1 ${port}/udp 127.0.0.1 ${backendPort}/udp [timeout=1]\n`, ["-v"]);

    // Nothing listens yet: each datagram draws a port unreachable.
    const client = await UdpClient.open("127.0.0.1", port);
    for (let i = 0; i < 5; i++) {
      client.send(`early ${i}`);
      await Bun.sleep(20);
    }
    const backend = await startUdpBackend("127.0.0.1", undefined, backendPort);
    client.send("after");
    await client.waitCount(1);
    expect(new TextDecoder().decode(client.received[0]!.data)).toBe("after");
    // Same session: no session ended in between.
    expect(endedResults(forwarder.stdout.text, port)).toEqual([]);
    backend.close();

    // A session whose backend only ever refused ends as "refused" when it goes idle.
    const other = await UdpClient.open("127.0.0.1", port);
    for (let i = 0; i < 3; i++) {
      other.send("anyone?");
      await Bun.sleep(20);
    }
    await until(() => endedResults(forwarder.stdout.text, port).length >= 2, 4000, "both sessions to end");
    expect(endedResults(forwarder.stdout.text, port).sort()).toEqual(["refused", "timeout"]);
  });

  test("on SIGTERM, open sessions end after a second of silence, not after the grace period", async () => {
    const backend = await startUdpBackend();
    const port = await freeUdpPort();
    const forwarder = await oi(`127.0.0.1 ${port}/udp 127.0.0.1 ${backend.port}/udp\n`, ["-v", "--grace", "10"]);
    const client = await UdpClient.open("127.0.0.1", port);
    client.send("hello");
    await client.waitCount(1);

    const started = Date.now();
    forwarder.signal("SIGTERM");
    expect(await forwarder.proc.exited).toBe(0);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(900);
    expect(waited).toBeLessThan(3000);
    expect(endedResults(forwarder.stdout.text, port)).toEqual(["timeout"]);
  });

  test("a reload keeps the socket: open sessions keep their backend, new ones follow the new rule", async () => {
    const tagged = (tag: string) => (data: Uint8Array) => new TextEncoder().encode(`${tag} ${new TextDecoder().decode(data)}`);
    const first = await startUdpBackend("127.0.0.1", tagged("first"));
    const second = await startUdpBackend("127.0.0.1", tagged("second"));
    const tcp = tcpBackend((peer) => {
      peer.onData = (_, chunk) => void peer.send(`tcp ${new TextDecoder().decode(chunk)}`);
    });
    const port = await freeUdpPort();
    const path = writeTempFile("oi.conf", `127.0.0.1 ${port}/udp 127.0.0.1 ${first.port}/udp\n`);
    const forwarder = await startOi(path);
    onCleanup(() => forwarder.stop());
    const text = (data: Uint8Array | undefined) => new TextDecoder().decode(data);

    const old = await UdpClient.open("127.0.0.1", port);
    old.send("a");
    await old.waitCount(1);

    writeFileSync(path, `127.0.0.1 ${port}/udp 127.0.0.1 ${second.port}/udp\n`);
    forwarder.signal("SIGHUP");
    await forwarder.stdout.waitFor("reloaded: 0 listener(s) started, 1 kept", 5000);
    old.send("b");
    await old.waitCount(2);
    const fresh = await UdpClient.open("127.0.0.1", port);
    fresh.send("c");
    await fresh.waitCount(1);

    writeFileSync(path, `127.0.0.1 ${port}/udp 127.0.0.1 ${tcp.port}/tcp\n`);
    forwarder.signal("SIGHUP");
    const reloads = () => (forwarder.stdout.text.match(/reloaded: 0 listener\(s\) started, 1 kept/g) ?? []).length;
    await until(() => reloads() === 2, 5000, "the second reload");
    const viaTcp = await UdpClient.open("127.0.0.1", port);
    viaTcp.send("d");
    await viaTcp.waitCount(1);

    expect(old.received.map((item) => text(item.data))).toEqual(["first a", "first b"]);
    expect(text(fresh.received[0]?.data)).toBe("second c");
    expect(text(viaTcp.received[0]?.data)).toBe("tcp d");
  });

  test("IPv6 on both sides, and the TOML protocol = \"udp\"", async () => {
    const backend = await startUdpBackend("::1");
    const port = await freeUdpPort("::1");
    const toml = [
      "[[forwarding_rules]]",
      'bind_address = "::1"',
      `bind_port = ${port}`,
      'connect_address = "::1"',
      `connect_port = ${backend.port}`,
      'protocol = "udp"',
    ];
    await oi(`${toml.join("\n")}\n`, [], "oi.toml");
    const client = await UdpClient.open("::1", port);
    const payload = randomBytes(1400);
    client.send(payload);
    await client.waitCount(1);
    expect(bytesEqual(client.received[0]!.data, payload)).toBe(true);
    expect(backend.received[0]!.address).toBe("::1");
  });

  test("a host name as backend is resolved per session", async () => {
    const backend = await startUdpBackend();
    const port = await freeUdpPort();
    await oi(`127.0.0.1 ${port}/udp localhost ${backend.port}/udp [src=127.0.0.1]\n`);
    const client = await UdpClient.open("127.0.0.1", port);
    client.send("by name");
    await client.waitCount(1);
    expect(new TextDecoder().decode(client.received[0]!.data)).toBe("by name");
  });
});
