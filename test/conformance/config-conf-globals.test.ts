/**
 * rinetd's and rinetd-uv's global `.conf` directives, each shown by its
 * effect on a running `oi` (one process shares one config where it can), and
 * rinetd-uv's range checks, each shown by `oi check`.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { startBlackhole } from "../helpers/blackhole.ts";
import { backend, cleanUpAfterEachTest, oi, onCleanup, until } from "../helpers/harness.ts";
import { tempDir } from "../helpers/oi-process.ts";
import { connectExpectingClose, connectPeer, freePort } from "../helpers/peers.ts";
import { freeUdpPort, startUdpBackend, UdpClient } from "../helpers/udp.ts";
import { check, issuesIn } from "./config-helpers.ts";

cleanUpAfterEachTest();

describe(".conf global directives at work", () => {
  test("logfile, logcommon, pidfile (quoted paths), status file, stats log, connect-timeout, max-udp-connections, buffersize", async () => {
    // A directory with a space: only a quoted path can name it.
    const dir = join(tempDir(), "with space");
    mkdirSync(dir);
    const [logPath, pidPath, statusPath] = [join(dir, "oi log.txt"), join(dir, "oi.pid"), join(dir, "status.txt")];
    const server = backend((peer) => void peer.send("hello", true));
    const hole = await startBlackhole();
    onCleanup(() => hole.close());
    const echo = await startUdpBackend();
    const [tcpPort, slowPort, udpPort] = [freePort(), freePort(), await freeUdpPort()];
    const proc = await oi(
      [
        `logfile "${logPath}"`,
        "logcommon",
        `pidfile "${pidPath}"   # rinetd-uv's name`,
        `statusfile "${statusPath}"`,
        "statusinterval 1",
        "statusformat text",
        "statsloginterval 1",
        "connect-timeout 1",
        "max-udp-connections 2",
        "buffersize 1024",
        `127.0.0.1 ${tcpPort} 127.0.0.1 ${server.port}`,
        `127.0.0.1 ${slowPort} 127.0.0.1 ${hole.port}`,
        `127.0.0.1 ${udpPort}/udp 127.0.0.1 ${echo.port}/udp`,
        "",
      ].join("\n"),
    );

    // pidfile: the running process's id.
    expect(readFileSync(pidPath, "utf8").trim()).toBe(String(proc.proc.pid));

    // logfile + logcommon: a finished connection is one common-log-format line (no tabs, [date], "GET ...").
    const client = await connectPeer("127.0.0.1", tcpPort);
    await client.waitEnd();
    client.socket?.end();
    await until(() => existsSync(logPath) && readFileSync(logPath, "utf8").includes("GET"), 3000, "the log line");
    const line = readFileSync(logPath, "utf8").trim().split("\n")[0] ?? "";
    expect(line).toMatch(/^127\.0\.0\.1 - - \[[^\]]+\] "GET \S+ HTTP\/1\.0" 200 5 /);
    expect(line).not.toContain("\t");

    // connect-timeout 1: a backend that never answers the handshake costs the client about a second, not the kernel's two minutes.
    const started = performance.now();
    await connectExpectingClose("127.0.0.1", slowPort, undefined, 5000);
    expect(performance.now() - started).toBeGreaterThan(800);
    expect(performance.now() - started).toBeLessThan(3000);

    // buffersize 1024: a datagram that fits goes through; a longer one is dropped, not cut.
    const fits = await UdpClient.open("127.0.0.1", udpPort);
    fits.send(new Uint8Array(1000).fill(1));
    await fits.waitCount(1);
    fits.send(new Uint8Array(1500).fill(2));
    fits.send(new Uint8Array(10).fill(3));
    await fits.waitCount(2);
    expect(fits.received.map((item) => item.data.length)).toEqual([1000, 10]);

    // max-udp-connections 2: a third client evicts the least recently used session; its next datagram opens a new one.
    const [second, third] = [await UdpClient.open("127.0.0.1", udpPort), await UdpClient.open("127.0.0.1", udpPort)];
    second.send("b");
    await second.waitCount(1);
    third.send("c");
    await third.waitCount(1);
    fits.send("a again");
    await fits.waitCount(3);
    expect(echo.sources().length).toBe(4);

    // statusfile/statusinterval/statusformat text, statsloginterval: both appear within a couple of intervals.
    await until(() => existsSync(statusPath), 3000, "the status file");
    expect(readFileSync(statusPath, "utf8").trimStart().startsWith("{")).toBe(false);
    await proc.stdout.waitFor("STATS", 3000).catch(() => proc.stderr.waitFor("STATS", 100));

    // pidfile is removed when oi stops.
    expect(await proc.stop()).toBe(0);
    expect(existsSync(pidPath)).toBe(false);
  });

  test("rinetd's pidlogfile; tuning knobs without effect in oi are accepted with a warning naming them; listen-backlog is taken", async () => {
    const pidPath = join(tempDir(), "rinetd.pid");
    const server = backend((peer) => void peer.send("ok", true));
    const port = freePort();
    const proc = await oi(
      [
        `pidlogfile ${pidPath}`,
        "pool-min-free 64",
        "pool-max-free 1024",
        "pool-trim-delay 60000",
        "listen-backlog 128",
        "dns-refresh 600",
        `127.0.0.1 ${port} 127.0.0.1 ${server.port}`,
        "",
      ].join("\n"),
    );
    expect(readFileSync(pidPath, "utf8").trim()).toBe(String(proc.proc.pid));
    for (const name of ["pool-min-free", "pool-max-free", "pool-trim-delay"]) {
      expect(proc.stderr.text + proc.stdout.text).toContain(`${name} has no effect in oi`);
    }
    // Taken: direct sockets listen with the backlog asked for (see e2e-sockets.test.ts).
    expect(proc.stderr.text + proc.stdout.text).not.toContain("listen-backlog");
    const client = await connectPeer("127.0.0.1", port);
    client.keep = [];
    await client.waitEnd();
    expect(client.text()).toBe("ok");
    client.socket?.end();
  });
});

describe(".conf global directives: rinetd-uv's ranges", () => {
  test("every value out of range is an error on its line; the limits themselves are accepted", async () => {
    const lines = [
      "buffersize 1023", // 1
      "buffersize 1048577", // 2
      "pool-min-free 10001", // 3
      "pool-max-free 0", // 4
      "pool-max-free 100001", // 5
      "pool-trim-delay 99", // 6
      "pool-trim-delay 300001", // 7
      "listen-backlog 0", // 8
      "listen-backlog 65536", // 9
      "connect-timeout 86401", // 10
      "max-udp-connections 0", // 11
      "max-udp-connections 1000001", // 12
      "dns-refresh -1", // 13
      "dns-multi-ip-expand maybe", // 14
      "dns-multi-ip-proto ipv5", // 15
      "statusformat xml", // 16
      "statusinterval 0", // 17
      "statsloginterval x", // 18
      "statusfile /tmp/x.json", // 19
      'logfile "/var/log/unclosed', // 20
      "pool-min-free -1", // 21
      "",
    ];
    const result = await check("ranges.conf", lines.join("\n"));
    expect(result.code).toBe(1);
    const reasons = issuesIn(result);
    expect(reasons.map(([line]) => line)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21]);
    expect(reasons).toContainEqual([1, "buffersize must be a whole number from 1024 to 1048576, got '1023'"]);
    expect(reasons).toContainEqual([3, "pool-min-free must be a whole number from 0 to 10000, got '10001'"]);
    expect(reasons).toContainEqual([4, "pool-max-free must be a whole number from 1 to 100000, got '0'"]);
    expect(reasons).toContainEqual([6, "pool-trim-delay must be a whole number from 100 to 300000, got '99'"]);
    expect(reasons).toContainEqual([9, "listen-backlog must be a whole number from 1 to 65535, got '65536'"]);
    expect(reasons).toContainEqual([10, "connect_timeout must be a number of seconds from 0 (the system's own timeout) to 86400, got '86401'"]);
    expect(reasons).toContainEqual([12, "max-udp-connections must be a whole number from 1 to 1000000, got '1000001'"]);
    expect(reasons).toContainEqual([15, "dns-multi-ip-proto must be one of ipv4, ipv6, any, got 'ipv5'"]);
    expect(reasons).toContainEqual([20, `unclosed '"' in '"/var/log/unclosed'`]);

    const limits = [
      "buffersize 1024",
      "buffersize 1048576",
      "pool-min-free 0",
      "pool-max-free 100000",
      "pool-trim-delay 100",
      "pool-trim-delay 300000",
      "listen-backlog 1",
      "listen-backlog 65535",
      "connect-timeout 0",
      "connect-timeout 86400",
      "max-udp-connections 1000000",
      "dns-refresh 0",
      "dns-multi-ip-expand off",
      "dns-multi-ip-proto any",
      "",
    ];
    const accepted = await check("limits.conf", limits.join("\n"));
    expect(accepted.stderr).not.toContain("must be");
    expect(accepted.code).toBe(0);
  });

  test("a config error: non-zero exit before anything is bound, FILE:LINE on stderr", async () => {
    // Hold the port the valid rule would bind: had oi tried to bind it, the message would be a bind error.
    const held = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    onCleanup(() => held.stop(true));
    const result = await check("bad.conf", `127.0.0.1 ${held.port} 127.0.0.1 9\nbuffersize 10\n`, []);
    const start = await import("../helpers/oi-process.ts").then(({ runOi }) => runOi(["-c", result.path]));
    expect(start.code).not.toBe(0);
    expect(start.stderr).toContain(`${result.path}:2: buffersize must be a whole number from 1024 to 1048576, got '10'`);
    expect(start.stderr).not.toMatch(/in use|EADDRINUSE/i);
    expect(start.stdout).not.toContain("listening");
  });
});
