/**
 * What an audit of the three manuals, line by line, found untested or wrong:
 *
 * - rinetd-uv's UDP idle timeout is 10 s; rinetd's 72 s. A YAML file is
 *   rinetd-uv's alone, so its UDP rules take 10 s; a `.conf` keeps 72 s.
 * - rinetd-uv: "0.0.0.0 and :: effectively mean the same", so two rules on
 *   a wildcard and an address it covers cannot both bind; found at load,
 *   with the line, as for an exact duplicate. Its own YAML example binds
 *   `0.0.0.0:443` and `[::]:443` in one rule: `::` then takes IPv6 only.
 * - The default config files, in rinetd-uv's order, then rinetd's.
 * - Access rules do not apply to clients of a unix socket listener (they
 *   have no IP address): rinetd-uv's manual says they are ignored.
 * - The text status report, line by line as rinetd-uv's manual shows it,
 *   and the STATS line's error counts (accept/connect/denied) when they are
 *   not zero.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_CONFIG_PATHS, resolveConfigPath } from "../../src/cli.ts";
import { describeRule } from "../../src/config/describe.ts";
import { personalityOf } from "../../src/personality.ts";
import { linesAndReasons, textLoader } from "../helpers/config.ts";
import { cleanUpAfterEachTest, onCleanup, until } from "../helpers/harness.ts";
import { startOi, tempDir } from "../helpers/oi-process.ts";
import { connectExpectingClose, freePort } from "../helpers/peers.ts";
import { echoBackend, roundTrip } from "./ops-helpers.ts";

cleanUpAfterEachTest();
const load = textLoader();

describe("defaults of each manual", () => {
  test("UDP session timeout: rinetd-uv's 10 s in YAML, rinetd's 72 s in .conf; a rule's own timeout wins in both", async () => {
    const yaml = await load(
      "timeouts.yaml",
      'rules:\n  - name: dns\n    bind: "127.0.0.1:5300/udp"\n    connect: "127.0.0.1:53/udp"\n' +
        '  - name: long\n    bind: "127.0.0.1:5301/udp"\n    connect: "127.0.0.1:53/udp"\n    timeout: 3600\n',
    );
    expect(yaml.errors).toEqual([]);
    expect(yaml.config?.rules.map((rule) => rule.timeout)).toEqual([10, 3600]);
    const conf = await load("timeouts.conf", "127.0.0.1 5300/udp 127.0.0.1 53/udp\n127.0.0.1 5301/udp 127.0.0.1 53/udp [timeout=3600]\n");
    expect(conf.config?.rules.map((rule) => rule.timeout)).toEqual([72, 3600]);
  });

  test("without -c: /etc/oi/oi.conf, then rinetd-uv's .yaml, .yml, .conf, then rinetd's /etc/rinetd.conf", () => {
    expect(DEFAULT_CONFIG_PATHS).toEqual(["/etc/oi/oi.conf", "/etc/rinetd-uv.yaml", "/etc/rinetd-uv.yml", "/etc/rinetd-uv.conf", "/etc/rinetd.conf"]);
    const only = (...present: string[]) => (path: string) => present.includes(path);
    expect(resolveConfigPath(undefined, only("/etc/rinetd.conf"))).toBe("/etc/rinetd.conf");
    expect(resolveConfigPath(undefined, only("/etc/rinetd.conf", "/etc/rinetd-uv.conf"))).toBe("/etc/rinetd-uv.conf");
    expect(resolveConfigPath(undefined, only("/etc/rinetd-uv.conf", "/etc/rinetd-uv.yml"))).toBe("/etc/rinetd-uv.yml");
    expect(resolveConfigPath(undefined, only("/etc/rinetd-uv.yml", "/etc/rinetd-uv.yaml"))).toBe("/etc/rinetd-uv.yaml");
    expect(resolveConfigPath(undefined, only("/etc/rinetd-uv.yaml", "/etc/oi/oi.conf"))).toBe("/etc/oi/oi.conf");
    // None there: oi's own, so the error names the file oi looked for first.
    expect(resolveConfigPath(undefined, only())).toBe("/etc/oi/oi.conf");
    expect(resolveConfigPath("/tmp/given.conf", only("/etc/rinetd.conf"))).toBe("/tmp/given.conf");
  });

  test("started as rinetd or rinetd-uv (by the name in argv[0]): that program's default config, pid file and going to the background", () => {
    const only = (...present: string[]) => (path: string) => present.includes(path);
    const rinetd = personalityOf("/usr/sbin/rinetd");
    expect(rinetd).toMatchObject({ name: "rinetd", pidFile: "/var/run/rinetd.pid", detaches: true });
    // rinetd reads its own file only, even where oi's or rinetd-uv's exist.
    expect(resolveConfigPath(undefined, only("/etc/oi/oi.conf", "/etc/rinetd-uv.yaml", "/etc/rinetd.conf"), rinetd.configPaths)).toBe("/etc/rinetd.conf");
    const uv = personalityOf("rinetd-uv");
    expect(uv).toMatchObject({ name: "rinetd-uv", pidFile: "/var/run/rinetd-uv.pid", detaches: true });
    expect(resolveConfigPath(undefined, only("/etc/rinetd.conf", "/etc/rinetd-uv.conf", "/etc/rinetd-uv.yml"), uv.configPaths)).toBe("/etc/rinetd-uv.yml");
    // Any other name is oi (oxidinetd's binary is called oi too): foreground, no pid file of its own choosing.
    for (const name of ["oi", "/usr/local/bin/oi", "bun", "rinetd.sh", "my-rinetd"]) {
      expect(personalityOf(name)).toMatchObject({ name: "oi", pidFile: undefined, detaches: false });
    }
  });
});

describe("binds a wildcard covers", () => {
  test("an address under 0.0.0.0 or :: on the same port and protocol is an error at load, naming the earlier rule's line", async () => {
    const result = await load(
      "overlap.conf",
      [
        "0.0.0.0 7001 10.0.0.1 80", // 1
        "127.0.0.1 7001 10.0.0.1 81", // 2: under 0.0.0.0
        ":: 7002 10.0.0.1 80", // 3
        "::1 7002 10.0.0.1 81", // 4: under ::
        "127.0.0.1 7002 10.0.0.1 81", // 5: :: is dual-stack
        "0.0.0.0 7003/udp 10.0.0.1 53/udp", // 6
        ":: 7003/udp 10.0.0.1 53/udp", // 7: no IPv6-only switch for UDP
        "127.0.0.1 7001/udp 10.0.0.1 53/udp", // 8: another protocol, fine
        "0.0.0.0 7004 10.0.0.1 80", // 9
        "::1 7004 10.0.0.1 80", // 10: IPv6, not under 0.0.0.0
        "",
      ].join("\n"),
    );
    expect(result.config).toBeUndefined();
    const overlap = (line: number, bind: string, wildcard: string, earlier: number): [number, string] => [
      line,
      `bind ${bind} overlaps ${wildcard} (a wildcard address takes the port on every address it covers) of the rule on line ${earlier}`,
    ];
    expect(linesAndReasons(result.errors)).toEqual([
      overlap(2, "127.0.0.1:7001/tcp", "0.0.0.0:7001/tcp", 1),
      overlap(4, "[::1]:7002/tcp", "[::]:7002/tcp", 3),
      overlap(5, "127.0.0.1:7002/tcp", "[::]:7002/tcp", 3),
      overlap(7, "[::]:7003/udp", "0.0.0.0:7003/udp", 6),
    ]);
  });

  test("0.0.0.0 and :: on one TCP port (rinetd-uv's fan-in example): both load, :: listens for IPv6 only", async () => {
    const result = await load(
      "fan-in.yaml",
      'rules:\n  - name: web\n    bind:\n      - "0.0.0.0:7443/tcp"\n      - "[::]:7443/tcp"\n    connect: "10.0.0.1:8443"\n',
    );
    expect(result.errors).toEqual([]);
    const [ipv4, ipv6] = result.config?.rules ?? [];
    expect(ipv4?.bindIpv6Only).toBeUndefined();
    expect(ipv6?.bindIpv6Only).toBe(true);
    expect(describeRule(ipv6!)).toContain("ipv6_only");
    // A second rule on [::]:7443 is still a duplicate.
    const twice = await load("twice.conf", "0.0.0.0 7443 10.0.0.1 80\n:: 7443 10.0.0.1 80\n[::] 7443 10.0.0.1 81\n");
    expect(linesAndReasons(twice.errors)).toEqual([[3, "duplicate bind: [::]:7443/tcp is already bound by the rule on line 2 (rules on one bind are chosen by sni=, host= or protocol=; only one may have none, the default)"]]);
  });
});

describe("a running oi, as rinetd-uv documents it", () => {
  test("unix listener clients pass access rules; text status report and STATS line, with a denied client", async () => {
    const dir = tempDir();
    const statusPath = join(dir, "status.txt");
    const socketPath = join(dir, "in.sock");
    const echo = echoBackend();
    const [tcpPort, deadPort] = [freePort(), freePort()];
    const configPath = join(dir, "oi.conf");
    writeFileSync(
      configPath,
      [
        `statusfile ${statusPath}`,
        "statusinterval 1",
        "statusformat text",
        "statsloginterval 1",
        // Only 10.* may connect, globally: a unix client has no address and is let through.
        "allow 10.*",
        `unix:${socketPath} 127.0.0.1 ${echo.port}`,
        "deny *",
        `127.0.0.1 ${tcpPort} 127.0.0.1 ${deadPort}`,
        "",
      ].join("\n"),
    );
    const forwarder = await startOi(configPath);
    onCleanup(() => forwarder.stop());

    expect(await roundTrip({ unix: socketPath }, "u".repeat(2000), 5000, false)).toBe(2000);
    // Denied by the global allow list: closed at once.
    await connectExpectingClose("127.0.0.1", tcpPort);

    let text = "";
    await until(
      () => {
        // The first report appears one interval after start.
        if (!existsSync(statusPath)) return false;
        text = readFileSync(statusPath, "utf8");
        return text.includes("Denied: 1") && text.includes("Total: 1 (TCP: 0, UDP: 0, Unix: 1)");
      },
      4000,
      `the text report to count the unix connection and the denied client (last:\n${text})`,
    );
    // rinetd-uv's layout, line by line (its title names the program).
    expect(text).toMatch(
      new RegExp(
        [
          "^oi Status Report",
          "Updated: \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d",
          "Version: \\S+",
          "Uptime: \\d+:\\d\\d:\\d\\d",
          "Config reloads: 0",
          "",
          "CONNECTIONS",
          "Active: 0 \\(TCP: 0, UDP: 0, Unix: 0\\)",
          "Total: 1 \\(TCP: 0, UDP: 0, Unix: 1\\)",
          "",
          "TRAFFIC",
          "Bytes in: 2\\.0K",
          "Bytes out: 2\\.0K",
          "",
          "ERRORS",
          "Accept: 0",
          "Connect: 0",
          "Denied: 1",
          "",
          "SERVERS",
          "Count: 2",
          "",
          "RULES",
          "",
        ].join("\n"),
      ),
    );
    expect(text).toMatch(/^ {4}Active: 0, Total: 1, Traffic: 2\.0K\/2\.0K$/m);
    await forwarder.stdout.waitFor(/STATS: uptime=\d+s conns=0\/1 tcp=0\/0 udp=0\/0 unix=0\/1 traffic=2\.0K\/2\.0K errors=0\/0\/1/, 3000);
    expect(await forwarder.stop()).toBe(0);
  });
});
