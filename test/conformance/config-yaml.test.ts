/**
 * rinetd-uv's YAML config: its `global` options and `status` block, rules
 * with fan-in binds, weighted backends with names and `src`, balancing with
 * health and affinity, rule-level `mode`, `timeout`, `keepalive`, and
 * `allow`/`deny`, each shown by its effect on one running `oi`; then the
 * errors: every bad value names its rule and key, syntax errors their line.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Socket } from "bun";
import { startBlackhole } from "../helpers/blackhole.ts";
import { backend, cleanUpAfterEachTest, oi, onCleanup, until } from "../helpers/harness.ts";
import { tempDir } from "../helpers/oi-process.ts";
import { connectExpectingClose, connectPeer, freePort, Peer } from "../helpers/peers.ts";
import { freeUdpPort, startUdpBackend, UdpClient } from "../helpers/udp.ts";
import { check, issuesIn } from "./config-helpers.ts";

cleanUpAfterEachTest();

async function answer(port: number, localAddress?: string): Promise<string> {
  const client = await connectPeer("127.0.0.1", port, localAddress);
  client.keep = [];
  await client.waitEnd();
  client.socket?.end();
  return client.text();
}

async function sockets(filter: string): Promise<string> {
  const proc = Bun.spawn(["ss", "-tnoH", "state", "established", filter], { stdout: "pipe" });
  return (await new Response(proc.stdout).text()).trim();
}

describe("rinetd-uv YAML at work", () => {
  test("global options, status block, fan-in, weights, names, src, balancing, affinity, access, mode, timeout, keepalive", async () => {
    const dir = tempDir();
    const fromAddresses: Record<string, string[]> = { a: [], b: [] };
    const [a, b] = ["a", "b"].map((name) =>
      backend((peer) => {
        fromAddresses[name]?.push(peer.socket?.remoteAddress ?? "");
        void peer.send(name, true);
      }),
    );
    const dead = freePort();
    const hole = await startBlackhole();
    onCleanup(() => hole.close());
    const echo = await startUdpBackend();
    const held = backend();
    const ports = { in1: freePort(), in2: freePort(), weighted: freePort(), sticky: freePort(), failover: freePort(), guarded: freePort(), slow: freePort(), plain: freePort(), kept: freePort() };
    const udpPort = await freeUdpPort();
    const socketPath = join(dir, "in.sock");
    const files = { log: join(dir, "oi.log"), pid: join(dir, "oi.pid"), status: join(dir, "status.json") };
    const yaml = `
global:
  log_file: "${files.log}"
  log_common: true
  pid_file: ${files.pid}
  buffer_size: 1024
  pool_min_free: 64
  pool_max_free: 1024
  pool_trim_delay: 60000
  listen_backlog: 128
  connect_timeout: 1
  max_udp_connections: 1000
  dns_refresh: 600
  dns_multi_ip_expand: true
  dns_multi_ip_proto: ipv4
  status:
    enabled: true
    file: ${files.status}
    interval: 1
    format: json
  stats_log_interval: 1
  access:
    deny: ["127.0.0.9"]
rules:
  - name: fan-in
    bind:
      - "127.0.0.1:${ports.in1}/tcp"
      - "127.0.0.1:${ports.in2}"
    connect: "127.0.0.1:${a!.port}"
  - name: weighted
    bind: "127.0.0.1:${ports.weighted}/tcp"
    connect:
      - dest: "127.0.0.1:${a!.port}"
        name: alpha
        weight: 2
      - dest: "127.0.0.1:${b!.port}/tcp"
        weight: 1
        src: 127.0.0.4
        dns_refresh: 60
    load_balancing:
      algorithm: roundrobin
  - name: sticky
    bind: "127.0.0.1:${ports.sticky}"
    connect: ["127.0.0.1:${a!.port}", "127.0.0.1:${b!.port}"]
    load_balancing: { algorithm: roundrobin, affinity_ttl: 60, affinity_max_entries: 100 }
  - name: failover
    bind: "127.0.0.1:${ports.failover}"
    connect:
      - dest: "127.0.0.1:${dead}"
        name: gone
      - dest: "127.0.0.1:${b!.port}"
    load_balancing: { algorithm: roundrobin, health_threshold: 1, recovery_timeout: 3600 }
  - name: guarded
    bind: "127.0.0.1:${ports.guarded}"
    connect: "127.0.0.1:${a!.port}"
    access:
      allow: "127.0.0.1"
  - name: slow
    bind: "127.0.0.1:${ports.slow}"
    connect: "127.0.0.1:${hole.port}"
  - name: plain
    bind: "127.0.0.1:${ports.plain}"
    connect: "127.0.0.1:${held.port}"
    keepalive: false
  - name: kept
    bind: "127.0.0.1:${ports.kept}"
    connect: "127.0.0.1:${held.port}"
  - name: datagrams
    bind: "127.0.0.1:${udpPort}/udp"
    connect: "127.0.0.1:${echo.port}"
    timeout: 1
  - name: local
    bind: "unix:${socketPath}"
    connect: "127.0.0.1:${a!.port}"
    mode: "0600"
`;
    const proc = await oi(yaml, [], "oi.yaml");
    expect(readFileSync(files.pid, "utf8").trim()).toBe(String(proc.proc.pid));

    // bind as a list: both listeners feed the one rule.
    expect([await answer(ports.in1), await answer(ports.in2)]).toEqual(["a", "a"]);
    // weights 2:1, and the second backend's own src.
    const shares: string[] = [];
    for (let i = 0; i < 6; i++) shares.push(await answer(ports.weighted));
    expect(shares.filter((name) => name === "a").length).toBe(4);
    expect(fromAddresses.b).toEqual(["127.0.0.4", "127.0.0.4"]);
    // affinity_ttl: one client keeps its backend.
    const sticky = [await answer(ports.sticky), await answer(ports.sticky), await answer(ports.sticky)];
    expect(new Set(sticky).size).toBe(1);
    // health_threshold 1: one failed connect takes a backend out (the client is failed over); recovery_timeout keeps it out.
    expect(await answer(ports.failover)).toBe("b");
    expect(await answer(ports.failover)).toBe("b");
    // global deny, rule allow.
    expect(await connectExpectingClose("127.0.0.1", ports.in1, "127.0.0.9")).toBe(0);
    expect(await connectExpectingClose("127.0.0.1", ports.guarded, "127.0.0.5")).toBe(0);
    expect(await answer(ports.guarded)).toBe("a");
    // connect_timeout 1 (global).
    const started = performance.now();
    await connectExpectingClose("127.0.0.1", ports.slow, undefined, 5000);
    expect(performance.now() - started).toBeLessThan(3000);
    // mode on the socket file.
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
    const viaUnix = new Peer();
    viaUnix.keep = [];
    await Bun.connect<Peer>({
      unix: socketPath,
      allowHalfOpen: true,
      data: viaUnix,
      socket: {
        open: (socket: Socket<Peer>) => viaUnix.attach(socket),
        data: (socket: Socket<Peer>, chunk: Uint8Array) => socket.data.gotData(Buffer.from(chunk)),
        end: (socket: Socket<Peer>) => socket.data.gotEnd(),
        close: (socket: Socket<Peer>) => socket.data.gotClose(undefined),
      },
    });
    await viaUnix.waitEnd();
    viaUnix.socket?.end();
    expect(viaUnix.text()).toBe("a");
    // keepalive: on by default for YAML TCP rules (rinetd-uv's), off where the rule says false.
    if (Bun.which("ss") !== null) {
      const open = await connectPeer("127.0.0.1", ports.plain);
      const fanIn = await connectPeer("127.0.0.1", ports.kept);
      onCleanup(() => {
        open.socket?.terminate();
        fanIn.socket?.terminate();
      });
      await until(() => held.connections.length === 2, 3000, "the held connections");
      expect(await sockets(`( sport = :${ports.plain} )`)).not.toMatch(/keepalive/);
      expect(await sockets(`( sport = :${ports.kept} )`)).toMatch(/timer:\(keepalive,/);
    }
    // UDP: a connect without /proto takes the bind's; buffer_size drops what does not fit; timeout ends silent sessions.
    const client = await UdpClient.open("127.0.0.1", udpPort);
    client.send(new Uint8Array(2000));
    client.send("fits");
    await client.waitCount(1);
    expect(client.received.map((item) => item.data.length)).toEqual([4]);
    await Bun.sleep(1500);
    client.send("again");
    await client.waitCount(2);
    expect(echo.sources().length).toBe(2);

    // log_file + log_common, the status block, stats_log_interval.
    expect(readFileSync(files.log, "utf8")).toMatch(/^127\.0\.0\.1 - - \[/);
    await until(() => existsSync(files.status), 3000, "the status file");
    const status = readFileSync(files.status, "utf8");
    expect(() => JSON.parse(status)).not.toThrow();
    expect(status).toContain('"alpha"');
    expect(status).toContain('"weighted-backend-2"');
    expect(status).toMatch(/"gone"[^}]*"healthy":\s*false/);
    await proc.stdout.waitFor("STATS", 3000).catch(() => proc.stderr.waitFor("STATS", 100));
  });
});

describe("rinetd-uv YAML errors", () => {
  test("out of range, wrong type, missing: each names its rule and key, on its line", async () => {
    const text = [
      "global:", // 1
      "  buffer_size: 512", // 2
      "  listen_backlog: 0", // 3
      "  pool_max_free: 0", // 4
      "  status:", // 5
      "    enabled: true", // 6
      "    file: /tmp/s.json", // 7
      "    interval: soon", // 8
      "rules:", // 9
      "  - name: web", // 10
      '    bind: "0.0.0.0:80"', // 11
      "    connect:", // 12
      '      - dest: "10.0.0.1:80"', // 13
      "        weight: 101", // 14
      '      - dest: "10.0.0.2:80"', // 15
      "        weight: 0", // 16
      "      - weight: 1", // 17
      "    load_balancing:", // 18
      "      health_threshold: 0", // 19
      "      recovery_timeout: 86401", // 20
      "      affinity_ttl: 2592001", // 21
      "      affinity_max_entries: 99", // 22
      "    timeout: x", // 23
      '    mode: "999"', // 24
      "  - name: web", // 25
      '    bind: "0.0.0.0:81"', // 26
      '    connect: "10.0.0.1:80"', // 27
      '  - bind: "0.0.0.0:82"', // 28
      '    connect: "10.0.0.1:80"', // 29
      "  - name: nothing", // 30
      "",
    ].join("\n");
    const result = await check("errors.yaml", text);
    expect(result.code).toBe(1);
    expect(issuesIn(result)).toEqual([
      [2, "buffersize must be a whole number from 1024 to 1048576, got '512'"],
      [3, "listen-backlog must be a whole number from 1 to 65535, got '0'"],
      [4, "pool-max-free must be a whole number from 1 to 100000, got '0'"],
      [8, "global.status.interval must be an integer, got a string"],
      [14, "rule 'web': weight must be a whole number from 1 to 100, got 101"],
      [16, "rule 'web': weight must be a whole number from 1 to 100, got 0"],
      [17, "rule 'web': rules[0].connect[2] is missing dest"],
      [19, "rule 'web': health_threshold must be a whole number from 1 to 100, got '0'"],
      [20, "rule 'web': recovery_timeout must be a whole number from 1 to 86400, got '86401'"],
      [21, "rule 'web': affinity_ttl must be a whole number from 0 to 2592000, got '2592001'"],
      [22, "rule 'web': affinity_max_entries must be a whole number from 100 to 10000000, got '99'"],
      [23, "rule 'web': rules[0].timeout must be an integer, got a string"],
      [24, "rule 'web': mode must be octal permissions like 0660, got '999'"],
      [25, "rule 'web': duplicate rule name 'web': the rule on line 10 has it already"],
      [28, "rules[2] is missing name"],
      [30, "rule 'nothing': rules[3] is missing bind"],
      [30, "rule 'nothing': rules[3] is missing connect"],
    ]);
  });

  test("syntax errors (a tab, bad indentation, an unclosed quote) are reported with their line", async () => {
    const cases: Array<[string, number]> = [
      ["rules:\n  - name: a\n\tbind: x\n", 3],
      ['global:\n  log_file: /x\n pid_file: /y\nrules: []\n', 3],
      ['rules:\n  - name: a\n    bind: "0.0.0.0:80\n    connect: x\n', 3],
    ];
    for (const [text, line] of cases) {
      const result = await check("syntax.yaml", text);
      expect(result.code).toBe(1);
      const issues = issuesIn(result);
      expect(issues.length).toBe(1);
      expect(issues[0]?.[0]).toBe(line);
      expect(issues[0]?.[1]).toStartWith("YAML syntax error: ");
    }
  });
});
