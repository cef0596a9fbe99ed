/**
 * Status reporting as rinetd-uv documents it, on one running `oi` with a TCP,
 * a UDP and a unix socket rule: the JSON status file (key names and nesting
 * of rinetd-uv's), replaced atomically every `statusinterval` seconds, its
 * counts matching the traffic sent and the Prometheus view of the same
 * counters; the `STATS:` line every `statsloginterval` seconds; the text
 * format after a SIGHUP reload; and a stderr free of errors and warnings
 * through all of it.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cleanUpAfterEachTest, onCleanup, until } from "../helpers/harness.ts";
import { startOi, tempDir } from "../helpers/oi-process.ts";
import { freePort } from "../helpers/peers.ts";
import { freeUdpPort, startUdpBackend, UdpClient } from "../helpers/udp.ts";
import { echoBackend, fetchMetrics, heldConnection, metricSum, roundTrip } from "./ops-helpers.ts";

cleanUpAfterEachTest();

interface StatusRule {
  name: string;
  connections_active: number;
  connections_total: number;
  bytes_in: number;
  bytes_out: number;
  backends: Array<{ name: string; healthy: boolean; connections_active: number; connections_total: number; bytes_in: number; bytes_out: number }>;
}

interface StatusJson {
  timestamp: string;
  version: string;
  uptime_seconds: number;
  config_reloads: number;
  connections: Record<"active" | "active_tcp" | "active_udp" | "active_unix" | "total" | "total_tcp" | "total_udp" | "total_unix", number>;
  traffic: { bytes_in: number; bytes_out: number };
  errors: { accept: number; connect: number; denied: number };
  rules: StatusRule[];
}

/**
 * Read the status file as fast as possible for `ms` (a tight loop, bounded in
 * time): every read must parse, and the inode must change as oi renames new
 * files over it.
 */
function hammer(path: string, ms: number): { reads: number; unparsable: string[]; inodes: Set<number> } {
  const unparsable: string[] = [];
  const inodes = new Set<number>();
  let reads = 0;
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    reads++;
    let text = "";
    try {
      inodes.add(statSync(path).ino);
      text = readFileSync(path, "utf8");
      JSON.parse(text);
    } catch (error) {
      unparsable.push(`${String(error)}: ${JSON.stringify(text.slice(-80))}`);
    }
  }
  return { reads, unparsable, inodes };
}

describe("status file and stats log (rinetd-uv's statusfile, statusinterval, statusformat, statsloginterval)", () => {
  test("JSON counts match the TCP, UDP and unix traffic sent, the file is never half-written, text after a reload, stderr stays clean", async () => {
    const dir = tempDir();
    const statusPath = join(dir, "status.json");
    const unixPath = join(dir, "in.sock");
    const tcpEcho = echoBackend();
    const udpEcho = await startUdpBackend();
    const [tcpPort, udpPort, metricsPort] = [freePort(), await freeUdpPort(), freePort()];
    const config = (format: "json" | "text") =>
      [
        `statusfile ${statusPath}`,
        "statusinterval 1",
        `statusformat ${format}`,
        "statsloginterval 1",
        `metrics 127.0.0.1:${metricsPort}`,
        `127.0.0.1 ${tcpPort} 127.0.0.1 ${tcpEcho.port}`,
        `127.0.0.1 ${udpPort}/udp 127.0.0.1 ${udpEcho.port}/udp`,
        `unix:${unixPath} 127.0.0.1 ${tcpEcho.port}`,
        "",
      ].join("\n");
    const configPath = join(dir, "oi.conf");
    writeFileSync(configPath, config("json"));
    const forwarder = await startOi(configPath);
    onCleanup(() => forwarder.stop());

    // TCP: 5 finished connections of 1000 bytes each way, and one held open after 10.
    for (let i = 0; i < 5; i++) expect(await roundTrip({ port: tcpPort }, "t".repeat(1000))).toBe(1000);
    const closeHeld = await heldConnection(tcpPort, "h".repeat(10));
    // UDP: 3 sessions (3 client sockets), 2 datagrams of 100 bytes each, all echoed.
    for (let i = 0; i < 3; i++) {
      const client = await UdpClient.open("127.0.0.1", udpPort);
      client.send("u".repeat(100));
      await client.waitCount(1);
      client.send("u".repeat(100));
      await client.waitCount(2);
    }
    // Unix socket: 2 connections of 300 bytes (closed after the echo: a half-close from a client of a unix listener is not relayed yet).
    for (let i = 0; i < 2; i++) expect(await roundTrip({ unix: unixPath }, "x".repeat(300), 5000, false)).toBe(300);
    const bytes = 5 * 1000 + 10 + 3 * 200 + 2 * 300;

    let status: StatusJson | undefined;
    await until(
      () => {
        // The first file appears one interval after start.
        if (!existsSync(statusPath)) return false;
        status = JSON.parse(readFileSync(statusPath, "utf8")) as StatusJson;
        return status.connections.total === 11 && status.traffic.bytes_out === bytes;
      },
      4000,
      `the status file to count the traffic (last: ${JSON.stringify(status?.connections)})`,
    );
    const json = status!;
    expect(Object.keys(json)).toEqual(expect.arrayContaining(["timestamp", "version", "uptime_seconds", "config_reloads", "connections", "traffic", "errors", "rules"]));
    expect(json.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(json.config_reloads).toBe(0);
    expect(json.connections).toEqual({ active: 4, active_tcp: 1, active_udp: 3, active_unix: 0, total: 11, total_tcp: 6, total_udp: 3, total_unix: 2 });
    expect(json.traffic).toEqual({ bytes_in: bytes, bytes_out: bytes });
    expect(json.errors).toMatchObject({ accept: 0, connect: 0, denied: 0 });
    const totals = json.rules.map((rule) => rule.connections_total).sort();
    expect(totals).toEqual([2, 3, 6]);
    for (const rule of json.rules) {
      expect(rule.backends).toHaveLength(1);
      expect(rule.backends[0]).toMatchObject({ healthy: true, connections_total: rule.connections_total });
    }
    const unixRule = json.rules.find((rule) => rule.connections_total === 2)!;
    expect([unixRule.bytes_in, unixRule.bytes_out, unixRule.backends[0]!.bytes_in]).toEqual([600, 600, 600]);

    // The Prometheus endpoint reads the same counters.
    const metrics = await fetchMetrics(metricsPort);
    expect(metricSum(metrics, "oi_connections_total")).toBe(json.connections.total);
    expect(metricSum(metrics, "oi_connections_active")).toBe(json.connections.active);
    expect(metricSum(metrics, "oi_bytes_total", { direction: "in" })).toBe(json.traffic.bytes_in);
    expect(metricSum(metrics, "oi_bytes_total", { direction: "out" })).toBe(json.traffic.bytes_out);

    // Replaced whole, never written in place: a reader in a tight loop across two rewrites sees only whole JSON.
    // statusinterval 1: at least one rewrite falls within 1.3 s.
    const reading = hammer(statusPath, 1300);
    expect(reading.unparsable).toEqual([]);
    expect(reading.reads).toBeGreaterThan(100);
    expect(reading.inodes.size).toBeGreaterThanOrEqual(2);

    // The one-line summary, in rinetd-uv's order: conns, per protocol, traffic, errors=accept/connect/denied.
    await forwarder.stdout.waitFor(/STATS: uptime=\d+s conns=4\/11 tcp=1\/6 udp=3\/3 unix=0\/2 traffic=6\.1K\/6\.1K errors=0\/0\/0/, 3000);

    // A reload switches the format; the counters carry on.
    closeHeld();
    writeFileSync(configPath, config("text"));
    forwarder.signal("SIGHUP");
    await forwarder.stdout.waitFor("reloaded", 5000);
    let text = "";
    await until(
      () => {
        text = readFileSync(statusPath, "utf8");
        return text.includes("Config reloads: 1") && text.includes("Active: 3 (TCP: 0, UDP: 3, Unix: 0)");
      },
      4000,
      "the text status report",
    );
    expect(text).toContain("Total: 11 (TCP: 6, UDP: 3, Unix: 2)");
    expect(text).toMatch(/^ERRORS\nAccept: 0\nConnect: 0\nDenied: 0$/m);

    expect(await forwarder.stop()).toBe(0);
    // Nothing went wrong, so nothing on stderr says it did.
    expect(forwarder.stderr.text).not.toMatch(/error|warn/i);
  });

  test("the file first appears one statusinterval after start, as rinetd-uv's, with the counts of what came before; a last one at exit", async () => {
    const dir = tempDir();
    const statusPath = join(dir, "status.json");
    const echo = echoBackend();
    const port = freePort();
    writeFileSync(join(dir, "oi.conf"), `statusfile ${statusPath}\nstatusinterval 2\n127.0.0.1 ${port} 127.0.0.1 ${echo.port}\n`);
    const forwarder = await startOi(join(dir, "oi.conf"));
    onCleanup(() => forwarder.stop());
    const listening = Date.now();
    // Three connections straight away, as a script would make before waiting for the file.
    for (let i = 0; i < 3; i++) expect(await roundTrip({ port }, "abc")).toBe(3);
    // Not there during the first interval (checked up to 1.5 s of its 2)...
    while (Date.now() - listening < 1500) {
      expect(existsSync(statusPath)).toBe(false);
      await Bun.sleep(20);
    }
    // ...and there right after it, already counting the three.
    await until(() => existsSync(statusPath), 2500, "the status file to appear");
    const first = JSON.parse(readFileSync(statusPath, "utf8")) as StatusJson;
    expect(first.connections.total).toBe(3);
    expect(first.traffic).toEqual({ bytes_in: 9, bytes_out: 9 });

    // One more connection, then SIGTERM before the next interval: the file written at exit counts it.
    expect(await roundTrip({ port }, "defg")).toBe(4);
    expect(await forwarder.stop()).toBe(0);
    const last = JSON.parse(readFileSync(statusPath, "utf8")) as StatusJson;
    expect(last.connections.total).toBe(4);
  });
});
