/**
 * Several backends behind one TCP rule, end to end: how clients are spread
 * (each algorithm), failover when a backend dies, active probes, iphash
 * stability across a reload that adds a backend, and the per-backend metrics.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { backend, cleanUpAfterEachTest, oi, onCleanup, until } from "./helpers/harness.ts";
import { startOi, writeTempFile } from "./helpers/oi-process.ts";
import { type Backend, connectPeer, freePort, startBackend } from "./helpers/peers.ts";

cleanUpAfterEachTest();

/** A backend that greets each connection with `name` and closes its side. */
function named(name: string, port?: number): Backend {
  const server = startBackend((peer) => void peer.send(name, true), "127.0.0.1", port);
  onCleanup(() => server.stop());
  return server;
}

/** Which backend answers a new connection to `port` (from `from`, a loopback address). */
async function whoAnswers(port: number, from?: string): Promise<string> {
  const client = await connectPeer("127.0.0.1", port, from);
  client.keep = [];
  await client.waitEnd(5000);
  client.socket?.end();
  return client.text();
}

function tally(names: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of names) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

async function answers(port: number, count: number): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < count; i++) names.push(await whoAnswers(port));
  return names;
}

describe("spreading clients over weighted backends", () => {
  test("roundrobin: smooth, exactly 3:2:1", async () => {
    const [a, b, c] = [named("a"), named("b"), named("c")];
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1:${a.port}*3,127.0.0.1:${b.port}*2,127.0.0.1:${c.port}\n`);
    const names = await answers(port, 60);
    expect(tally(names)).toEqual({ a: 30, b: 20, c: 10 });
    // Smooth: the heaviest never takes more than 3 in a row.
    expect(names.join("")).not.toContain("aaaa");
  });

  test("random: each share within tolerance of its weight", async () => {
    const [a, b, c] = [named("a"), named("b"), named("c")];
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1:${a.port}*3,127.0.0.1:${b.port}*2,127.0.0.1:${c.port} [lb=random]\n`);
    const counts = tally(await answers(port, 300));
    // Expected 150/100/50; a binomial standard deviation is at most about 9: allow 4 of them.
    expect(Math.abs((counts.a ?? 0) - 150)).toBeLessThan(36);
    expect(Math.abs((counts.b ?? 0) - 100)).toBeLessThan(36);
    expect(Math.abs((counts.c ?? 0) - 50)).toBeLessThan(36);
  });

  test("leastconn: held connections fill the backends in proportion to their weights", async () => {
    const servers = ["a", "b", "c"].map((name) => {
      const server = startBackend((peer) => void peer.send(name));
      onCleanup(() => server.stop());
      return server;
    });
    const port = freePort();
    await oi(`127.0.0.1 ${port} ${servers.map((server, i) => `127.0.0.1:${server.port}*${3 - i}`).join(",")} [lb=leastconn]\n`);
    for (let i = 0; i < 30; i++) {
      const client = await connectPeer("127.0.0.1", port);
      await until(() => client.received > 0, 3000, "a greeting");
    }
    expect(servers.map((server) => server.connections.length)).toEqual([15, 10, 5]);
  });

  test("iphash: a client address always reaches the same backend", async () => {
    const [a, b, c] = [named("a"), named("b"), named("c")];
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1:${a.port},127.0.0.1:${b.port},127.0.0.1:${c.port} [lb=iphash]\n`);
    const first = new Map<string, string>();
    for (let host = 2; host <= 31; host++) first.set(`127.0.0.${host}`, await whoAnswers(port, `127.0.0.${host}`));
    for (const [client, name] of first) expect(await whoAnswers(port, client)).toBe(name);
    // 30 clients over 3 backends: every backend gets some.
    expect(new Set(first.values()).size).toBe(3);
  });

  test("iphash: adding a backend by reload moves only about its share of clients, all to it", async () => {
    const [a, b, c, d] = [named("a"), named("b"), named("c"), named("d")];
    const port = freePort();
    const list = `127.0.0.1:${a.port},127.0.0.1:${b.port},127.0.0.1:${c.port}`;
    const path = writeTempFile("iphash.conf", `127.0.0.1 ${port} ${list} [lb=iphash]\n`);
    const process = await startOi(path);
    onCleanup(() => process.stop());
    const clients = Array.from({ length: 60 }, (_, i) => `127.0.${1 + Math.floor(i / 30)}.${2 + (i % 30)}`);
    const before = new Map<string, string>();
    for (const client of clients) before.set(client, await whoAnswers(port, client));

    writeFileSync(path, `127.0.0.1 ${port} ${list},127.0.0.1:${d.port} [lb=iphash]\n`);
    process.signal("SIGHUP");
    await process.stdout.waitFor("reloaded", 5000);
    let moved = 0;
    for (const client of clients) {
      const now = await whoAnswers(port, client);
      if (now !== before.get(client)) {
        moved++;
        expect(now).toBe("d");
      }
    }
    // A quarter of 60 is 15: allow generous noise, but far from "everyone moves".
    expect(moved).toBeGreaterThan(3);
    expect(moved).toBeLessThan(30);
  });
});

describe("health", () => {
  test("a backend that dies mid-run: its clients fail over, none is refused", async () => {
    const a = named("a");
    const doomedPort = freePort();
    const doomed = named("b", doomedPort);
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1:${a.port},127.0.0.1:${doomedPort}\n`);
    expect(tally(await answers(port, 10))).toEqual({ a: 5, b: 5 });
    doomed.stop();
    const after = await answers(port, 20);
    expect(after.every((name) => name === "a")).toBe(true);
  });

  test("active probes take a dead backend out before any client meets it, and put it back when it answers", async () => {
    const a = named("a");
    const downPort = freePort();
    const port = freePort();
    const metricsPort = freePort();
    const process = await oi(
      `metrics 127.0.0.1:${metricsPort}\n127.0.0.1 ${port} 127.0.0.1:${a.port},127.0.0.1:${downPort} [probe=0.1,probe_timeout=0.1,health_threshold=2]\n`,
    );
    const stateOf = async (backendPort: number) => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const match = new RegExp(`oi_backend_up\\{rule="[^"]+",backend="127\\.0\\.0\\.1:${backendPort}"\\} (\\d)`).exec(text);
      return match?.[1];
    };
    const deadline = Date.now() + 3000;
    while ((await stateOf(downPort)) !== "0" && Date.now() < deadline) await Bun.sleep(50);
    expect(await stateOf(downPort)).toBe("0");
    await process.stderr.waitFor("out of service", 1000);
    // No client was needed to find out: every connection now goes to the live backend at once.
    expect(tally(await answers(port, 6))).toEqual({ a: 6 });

    named("b", downPort);
    const back = Date.now() + 3000;
    while ((await stateOf(downPort)) !== "1" && Date.now() < back) await Bun.sleep(50);
    expect(await stateOf(downPort)).toBe("1");
    expect(tally(await answers(port, 6))).toEqual({ a: 3, b: 3 });
  });
});

test.skipIf(Bun.which("ss") === null)("[keepalive=S] sets TCP keepalive on both legs; rules without it have none", async () => {
  const [server, other] = [backend(), backend()];
  const [withIt, without] = [freePort(), freePort()];
  await oi(`127.0.0.1 ${withIt} 127.0.0.1 ${server.port} [keepalive=45]\n127.0.0.1 ${without} 127.0.0.1 ${other.port}\n`);
  const kept = await connectPeer("127.0.0.1", withIt);
  const plain = await connectPeer("127.0.0.1", without);
  await until(() => server.connections.length === 1 && other.connections.length === 1, 3000, "both connections");
  const sockets = async (filter: string) => {
    const proc = Bun.spawn(["ss", "-tnoH", "state", "established", filter], { stdout: "pipe" });
    return (await new Response(proc.stdout).text()).trim();
  };
  // oi's end of the client leg (sport = the rule's port) and of the backend leg (dport = the backend, from that connection's source port).
  expect(await sockets(`( sport = :${withIt} )`)).toMatch(/timer:\(keepalive,/);
  expect(await sockets(`( sport = :${without} )`)).not.toMatch(/keepalive/);
  expect(await sockets(`( sport = :${server.connections[0]?.socket?.remotePort} )`)).toMatch(/timer:\(keepalive,/);
  expect(await sockets(`( sport = :${other.connections[0]?.socket?.remotePort} )`)).not.toMatch(/keepalive/);
  kept.socket?.terminate();
  plain.socket?.terminate();
});

describe("metrics per backend", () => {
  test("connections, bytes and health of each backend", async () => {
    const a = named("a");
    const b = named("bb");
    const port = freePort();
    const metricsPort = freePort();
    await oi(`metrics 127.0.0.1:${metricsPort}\n127.0.0.1 ${port} 127.0.0.1:${a.port},127.0.0.1:${b.port}\n`);
    await answers(port, 4);
    // Let the last connections' ends be counted.
    await Bun.sleep(100);
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const rule = `rule="127.0.0.1:${port}/tcp"`;
    expect(text).toContain(`oi_backend_up{${rule},backend="127.0.0.1:${a.port}"} 1\n`);
    expect(text).toContain(`oi_backend_connections_total{${rule},backend="127.0.0.1:${a.port}"} 2\n`);
    expect(text).toContain(`oi_backend_connections_total{${rule},backend="127.0.0.1:${b.port}"} 2\n`);
    expect(text).toContain(`oi_backend_bytes_total{${rule},backend="127.0.0.1:${b.port}",direction="out"} 4\n`);
    expect(text).toContain(`oi_backend_bytes_total{${rule},backend="127.0.0.1:${a.port}",direction="out"} 2\n`);
  });
});
