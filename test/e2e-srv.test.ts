/**
 * Backends from DNS SRV records and the global `dns-servers`, end to end
 * against a real dnsmasq on a loopback port: weights split the clients,
 * a higher priority is a backup that serves only while the lower ones are
 * down, a changed record set is followed after its TTL, and ordinary A
 * lookups go to the given server too (the names exist nowhere else).
 */
import { describe, expect, test } from "bun:test";
import { cleanUpAfterEachTest, greeting, oi, onCleanup } from "./helpers/harness.ts";
import { type Dnsmasq, type DnsRecords, startDnsmasq } from "./helpers/dnsmasq.ts";
import { type Backend, freePort, startBackend } from "./helpers/peers.ts";
import { type OiProcess, runOi, writeTempFile } from "./helpers/oi-process.ts";
import { missingTools, testName } from "./helpers/servers.ts";
import { freeUdpPort, startUdpBackend, UdpClient } from "./helpers/udp.ts";
import { lookupSrv } from "../src/srv.ts";

cleanUpAfterEachTest();

const skip = missingTools(["dnsmasq"]);
const SRV = "_svc._tcp.x.test";

/** A backend that greets each connection with `name` and counts it. */
function counted(name: string, counts: Map<string, number>): Backend {
  const server = startBackend((peer) => {
    counts.set(name, (counts.get(name) ?? 0) + 1);
    void peer.send(name, true);
  });
  onCleanup(() => server.stop());
  return server;
}

/** Every target of the test's names is 127.0.0.1: ports tell the backends apart. */
function records(srv: Array<[target: string, port: number, priority: number, weight: number]>, ttl: number, extraHosts: string[] = []): DnsRecords {
  const targets = [...new Set(srv.map(([target]) => target)), ...extraHosts];
  return {
    srv: srv.map(([target, port, priority, weight]) => `${SRV},${target},${port},${priority},${weight}`),
    hosts: targets.map((target) => `${target},127.0.0.1`),
    ttl,
  };
}

async function startWithSrv(dns: Dnsmasq, entries: number, options = ""): Promise<OiProcess> {
  const port = freePort();
  const process = await oi(`dns-servers 127.0.0.1:${dns.port}\n127.0.0.1 ${port} srv:${SRV}${options}\n`, ["-d"]);
  // Each SRV target becomes a backend `srv:NAME[n]`, logged when it joins.
  await process.stdout.waitFor(new RegExp(`(a target of srv:${SRV.replaceAll(".", "\\.")}[^\\n]*\\n[^]*){${entries}}`), 10_000);
  (process as OiProcess & { port: number }).port = port;
  return process;
}

const portOf = (process: OiProcess) => (process as OiProcess & { port: number }).port;

async function greetings(port: number, count: number): Promise<string[]> {
  const names: string[] = [];
  for (let i = 0; i < count; i++) names.push(await greeting(port));
  return names;
}

describe("backends from DNS SRV records", () => {
  test.skipIf(skip !== undefined)(testName("weights 1 and 3 split the clients 1:3; the priority-10 backup takes none", skip), async () => {
    const counts = new Map<string, number>();
    const [a, b, c] = [counted("a", counts), counted("b", counts), counted("c", counts)];
    const dns = await startDnsmasq(records([["a.x.test", a.port, 0, 1], ["b.x.test", b.port, 0, 3], ["c.x.test", c.port, 10, 1]], 60));
    const process = await startWithSrv(dns, 3, " [lb=random]");
    const answered = await greetings(portOf(process), 400);
    expect(answered.every((name) => name === "a" || name === "b")).toBe(true);
    // Expected 100 and 300 (binomial standard deviation about 8.7): within 4 of them, and the backup never.
    expect(Math.abs((counts.get("a") ?? 0) - 100)).toBeLessThan(35);
    expect(Math.abs((counts.get("b") ?? 0) - 300)).toBeLessThan(35);
    expect(counts.get("c")).toBeUndefined();
  });

  test.skipIf(skip !== undefined)(testName("with both primaries stopped, the backup serves", skip), async () => {
    const counts = new Map<string, number>();
    const [a, b, c] = [counted("a", counts), counted("b", counts), counted("c", counts)];
    const dns = await startDnsmasq(records([["a.x.test", a.port, 0, 1], ["b.x.test", b.port, 0, 3], ["c.x.test", c.port, 10, 1]], 60));
    const process = await startWithSrv(dns, 3);
    expect(new Set(await greetings(portOf(process), 8))).toEqual(new Set(["a", "b"]));
    a.stop();
    b.stop();
    // Every client is served: by the backup, after its failed tries of the primaries until those are marked down.
    const answered = await greetings(portOf(process), 20);
    expect(answered).toEqual(Array(20).fill("c"));
    expect(process.stdout.text + process.stderr.text).toMatch(/out of service/);
  });

  test.skipIf(skip !== undefined)(testName("with probes, stopped primaries are taken out before a client meets them", skip), async () => {
    const counts = new Map<string, number>();
    const [a, b, c] = [counted("a", counts), counted("b", counts), counted("c", counts)];
    const dns = await startDnsmasq(records([["a.x.test", a.port, 0, 1], ["b.x.test", b.port, 0, 3], ["c.x.test", c.port, 10, 1]], 60));
    const process = await startWithSrv(dns, 3, " [probe=0.2,probe_timeout=0.2,health_threshold=1]");
    expect(new Set(await greetings(portOf(process), 8))).toEqual(new Set(["a", "b"]));
    a.stop();
    b.stop();
    // Every entry is probed, whatever its slot: both primaries are found down.
    await process.stderr.waitFor(/(backend srv:_svc\._tcp\.x\.test\[\d\] is out of service[^]*){2}/, 10_000);
    expect(await greetings(portOf(process), 10)).toEqual(Array(10).fill("c"));
  });

  test.skipIf(skip !== undefined)(testName("primaries drained through the admin API: the backup serves; metrics show each target", skip), async () => {
    const counts = new Map<string, number>();
    const [a, b, c] = [counted("a", counts), counted("b", counts), counted("c", counts)];
    const dns = await startDnsmasq(records([["a.x.test", a.port, 0, 1], ["b.x.test", b.port, 0, 3], ["c.x.test", c.port, 10, 1]], 60));
    const [port, adminPort] = [freePort(), freePort()];
    const process = await oi(`admin 127.0.0.1:${adminPort}\ndns-servers 127.0.0.1:${dns.port}\n127.0.0.1 ${port} srv:${SRV}\n`);
    const rule = `127.0.0.1:${port}/tcp`;
    // The log says which entry is which target: `backend srv:NAME[n] -> a.x.test:PORT (a target of ...)`.
    await process.stdout.waitFor(/(backend \S+ -> [abc]\.x\.test:\d+[^]*){3}/, 10_000);
    const entryOf = (target: string) => new RegExp(`backend (\\S+) -> ${target}\\.x\\.test:`).exec(process.stdout.text)?.[1] ?? "";
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    for (const target of ["a", "b", "c"]) expect(metrics).toContain(`oi_backend_up{rule="${rule}",backend="${entryOf(target)}"} 1`);
    const setState = async (target: string, state: string) => {
      const url = `http://127.0.0.1:${adminPort}/api/v1/rules/${encodeURIComponent(rule)}/backends/${encodeURIComponent(entryOf(target))}`;
      const response = await fetch(url, { method: "POST", body: JSON.stringify({ state }) });
      expect(response.status).toBe(200);
    };
    expect(new Set(await greetings(port, 8))).toEqual(new Set(["a", "b"]));
    await setState("a", "drain");
    expect(await greetings(port, 4)).toEqual(Array(4).fill("b"));
    await setState("b", "maint");
    expect(await greetings(port, 10)).toEqual(Array(10).fill("c"));
    await setState("a", "ready");
    expect(await greetings(port, 4)).toEqual(Array(4).fill("a"));
  });

  test.skipIf(skip !== undefined)(testName("a changed record set is picked up after its TTL, and the vanished targets drained", skip), async () => {
    const counts = new Map<string, number>();
    const [a, b, d] = [counted("a", counts), counted("b", counts), counted("d", counts)];
    const dns = await startDnsmasq(records([["a.x.test", a.port, 0, 1], ["b.x.test", b.port, 0, 1]], 2));
    const process = await startWithSrv(dns, 2);
    expect(new Set(await greetings(portOf(process), 4))).toEqual(new Set(["a", "b"]));
    await dns.restart(records([["d.x.test", d.port, 0, 1]], 2));
    const deadline = Date.now() + 15_000;
    while ((await greeting(portOf(process))) !== "d") {
      if (Date.now() > deadline) throw new Error(`the new record set was not picked up:\n${process.stdout.text}`);
      await Bun.sleep(100);
    }
    // The TTL is 2 s: oi asked again within a few seconds, not at dns-refresh's 600.
    expect(Date.now()).toBeLessThan(deadline);
    expect(await greetings(portOf(process), 10)).toEqual(Array(10).fill("d"));
    expect(process.stdout.text).toMatch(/removed: a\.x\.test:\d+ is no longer a target of srv:_svc\._tcp\.x\.test/);
  });
});

describe("UDP", () => {
  test.skipIf(skip !== undefined)(testName("a _udp SRV name gives UDP backends: datagrams reach the target's port", skip), async () => {
    const echo = await startUdpBackend();
    const dns = await startDnsmasq({ srv: [`_echo._udp.x.test,u.x.test,${echo.port},0,1`], hosts: ["u.x.test,127.0.0.1"], ttl: 60 });
    const port = await freeUdpPort();
    const process = await oi(`dns-servers 127.0.0.1:${dns.port}\n127.0.0.1 ${port}/udp srv:_echo._udp.x.test\n`);
    await process.stdout.waitFor(/backend srv:_echo\._udp\.x\.test\[0\] -> u\.x\.test:\d+/, 10_000);
    const client = await UdpClient.open("127.0.0.1", port);
    client.send("ping");
    await client.waitCount(1);
    expect(new TextDecoder().decode(client.received[0]?.data)).toBe("ping");
    expect(echo.received).toHaveLength(1);
  });
});

describe("dns-servers", () => {
  test.skipIf(skip !== undefined)(testName("an ordinary backend host name is looked up at the given server", skip), async () => {
    const counts = new Map<string, number>();
    const a = counted("a", counts);
    // plain.x.test exists only in this dnsmasq: reaching the backend proves the lookup went there.
    const dns = await startDnsmasq({ hosts: ["plain.x.test,127.0.0.1"], ttl: 60 });
    const port = freePort();
    const process = await oi(`dns-servers 127.0.0.1:${dns.port}\n127.0.0.1 ${port} plain.x.test ${a.port}\n`, ["-d"]);
    expect(await greeting(port)).toBe("a");
    expect(process.stdout.text).toMatch(/DNS plain\.x\.test -> 127\.0\.0\.1 \(kept 60s\)/);
  });
});

describe("dns-multi-ip-expand through the same machinery", () => {
  test.skipIf(skip !== undefined)(testName("a name's addresses become backends, and follow the records", skip), async () => {
    const one = startBackend((peer) => void peer.send("one", true), "127.0.0.1");
    onCleanup(() => one.stop());
    // The same port on a second loopback address: the name's second A record.
    const two = startBackend((peer) => void peer.send("two", true), "127.0.0.2", one.port);
    onCleanup(() => two.stop());
    const dns = await startDnsmasq({ hosts: ["multi.x.test,127.0.0.1", "multi.x.test,127.0.0.2"], ttl: 1 });
    const port = freePort();
    const process = await oi(`dns-servers 127.0.0.1:${dns.port}\ndns-multi-ip-expand on\ndns-refresh 1\n127.0.0.1 ${port} multi.x.test ${one.port}\n`);
    await process.stdout.waitFor(/(backend multi\.x\.test:\d+\[\d\] -> 127\.0\.0\.[12] \(an address of multi\.x\.test\)[^]*){2}/, 10_000);
    expect(new Set(await greetings(port, 6))).toEqual(new Set(["one", "two"]));
    await dns.restart({ hosts: ["multi.x.test,127.0.0.2"], ttl: 1 });
    await process.stdout.waitFor(/removed: 127\.0\.0\.1 is no longer an address of multi\.x\.test/, 10_000);
    expect(await greetings(port, 6)).toEqual(Array(6).fill("two"));
  });
});

describe("oi check", () => {
  test.skipIf(skip !== undefined)(testName("shows what an srv: backend's records list now; --no-resolve asks nothing", skip), async () => {
    const dns = await startDnsmasq(records([["a.x.test", 8001, 0, 1], ["c.x.test", 8003, 10, 2]], 30));
    const path = writeTempFile("check.conf", `dns-servers 127.0.0.1:${dns.port}\n127.0.0.1 8080 srv:${SRV}\n127.0.0.1 8081 srv:_none._tcp.x.test\n`);
    const checked = await runOi(["check", "-c", path]);
    expect(checked.code).toBe(0);
    expect(checked.stdout).toContain(`dns servers: 127.0.0.1:${dns.port} (every lookup)`);
    expect(checked.stdout).toContain(`127.0.0.1:8080 -> srv:${SRV}`);
    expect(checked.stdout).toContain(`srv:${SRV} now lists a.x.test:8001 weight 1 priority 0, c.x.test:8003 weight 2 priority 10 (TTL 30s)`);
    expect(checked.stderr).toContain(`check.conf:3: SRV name 'srv:_none._tcp.x.test' has no usable records here (EREFUSED)`);
    const offline = await runOi(["check", "--no-resolve", "-c", path]);
    expect(offline.code).toBe(0);
    expect(offline.stdout).not.toContain("now lists");
    expect(offline.stderr).not.toContain("no usable records");
  });
});

describe("lookupSrv", () => {
  test.skipIf(skip !== undefined)(testName("an answer too long for UDP is fetched again over TCP (its TTL then unknown)", skip), async () => {
    const long = Array.from({ length: 30 }, (_, i) => `_big._tcp.x.test,target-${i}.a-rather-long-domain-name.x.test,${8000 + i},0,1`);
    const dns = await startDnsmasq({ srv: [...long, `${SRV},a.x.test,8001,0,1`], hosts: ["a.x.test,127.0.0.1"], ttl: 9 });
    const server = [{ host: "127.0.0.1", port: dns.port }];
    const small = await lookupSrv(SRV, server);
    expect(small).toEqual([{ priority: 0, weight: 1, port: 8001, target: "a.x.test", ttl: 9 }]);
    const big = await lookupSrv("_big._tcp.x.test", server);
    expect(big).toHaveLength(30);
    expect(new Set(big.map((record) => record.port)).size).toBe(30);
    expect(big.every((record) => record.ttl === Number.POSITIVE_INFINITY)).toBe(true);
  });
});
