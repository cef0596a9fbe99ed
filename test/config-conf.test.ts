import { describe, expect, test } from "bun:test";
import { describeConfig, formatIssue } from "../src/config/describe.ts";
import { loadConfig } from "../src/config/load.ts";
import { fallbackServices, parseServices } from "../src/config/services.ts";
import type { RuleMode } from "../src/types.ts";
import { DEFAULT_CONNECT_TIMEOUT_SECONDS, DEFAULT_UDP_TIMEOUT_SECONDS } from "../src/types.ts";
import { NO_ACCESS, linesAndReasons, plainConfig, plainRule, textLoader, OTHER_OPTION_DEFAULTS } from "./helpers/config.ts";

const FIXTURES = `${import.meta.dir}/fixtures`;
const loadText = textLoader();

/** The one rule of a config that must load, flattened. */
async function onlyRule(text: string) {
  const result = await loadText("rule.conf", text);
  expect(linesAndReasons(result.errors)).toEqual([]);
  const rule = result.config?.rules[0];
  if (rule === undefined) throw new Error("no rule loaded");
  return plainRule(rule);
}

/** The errors of a config that must not load. */
async function errorsOf(text: string): Promise<Array<[number, string]>> {
  const result = await loadText("errors.conf", text);
  expect(result.config).toBeUndefined();
  return linesAndReasons(result.errors);
}

describe("valid .conf files", () => {
  test("the shape of rinetd's shipped sample: comments, a log file, no rules", async () => {
    const result = await loadConfig(`${FIXTURES}/rinetd-debian-style.conf`);
    expect(result.errors).toEqual([]);
    expect(result.warnings).toEqual([]);
    expect(result.config === undefined ? undefined : plainConfig(result.config)).toEqual({
      format: "conf",
      globalAccess: NO_ACCESS,
      logFile: "/var/log/rinetd.log",
      pidFile: undefined,
      logFormat: "rinetd",
      rules: [],
    });
  });

  test("oxidinetd's README .conf example", async () => {
    const result = await loadConfig(`${FIXTURES}/oxidinetd-readme.conf`);
    expect(result.errors).toEqual([]);
    const config = result.config;
    if (config === undefined) throw new Error("not loaded");
    expect(plainConfig(config).globalAccess).toEqual({ allow: [["192.168.1.*", 2]], deny: [["192.168.1.50", 3]] });
    expect(config.rules.map((rule) => [rule.mode, rule.bind.port, rule.backends[0]?.endpoint.host, rule.backends[0]?.endpoint.port])).toEqual([
      ["tcp", 80, "192.168.1.2", 80],
      ["tcp", 53, "8.8.8.8", 53],
    ]);
  });

  test("every feature of the grammar", async () => {
    const path = `${FIXTURES}/every-feature.conf`;
    const result = await loadConfig(path);
    expect(result.errors).toEqual([]);
    expect(linesAndReasons(result.warnings)).toEqual([
      [
        22,
        "this rule forwards UDP to TCP, as rinetd does when the connect port has no suffix; write '80/udp' to forward UDP to UDP",
      ],
    ]);
    const config = result.config;
    if (config === undefined) throw new Error("not loaded");
    expect(config.file).toBe(path);
    const defaults = { timeout: DEFAULT_UDP_TIMEOUT_SECONDS, connectTimeout: DEFAULT_CONNECT_TIMEOUT_SECONDS };
    expect(plainConfig(config)).toEqual({
      format: "conf",
      globalAccess: {
        allow: [
          ["192.168.2.*", 4],
          ["10.0.0.0/8", 5],
          ["fe80:*", 7],
        ],
        deny: [
          ["192.168.2.1?", 6],
          ["2001:618:*:e43f", 8],
        ],
      },
      logFile: "/var/log/oi.log",
      pidFile: "/run/oi.pid",
      logFormat: "common",
      rules: [
        {
          index: 0,
          ...OTHER_OPTION_DEFAULTS,
          line: 11,
          mode: "tcp",
          bind: { host: "0.0.0.0", port: 8000, transport: "tcp" },
          connect: { host: "10.1.1.2", port: 80, transport: "tcp" },
          ...defaults,
          sourceAddress: undefined,
          access: { allow: [["203.0.113.*", 12]], deny: [["203.0.113.7", 13]] },
        },
        {
          index: 1,
          ...OTHER_OPTION_DEFAULTS,
          line: 16,
          mode: "tcp",
          bind: { host: "206.125.69.81", port: 80, transport: "tcp" },
          connect: { host: "backend.example.com", port: 443, transport: "tcp" },
          timeout: 30,
          connectTimeout: DEFAULT_CONNECT_TIMEOUT_SECONDS,
          sourceAddress: "10.1.1.2",
          access: NO_ACCESS,
        },
        {
          index: 2,
          ...OTHER_OPTION_DEFAULTS,
          line: 19,
          mode: "udp",
          bind: { host: "0.0.0.0", port: 53, transport: "udp" },
          connect: { host: "8.8.8.8", port: 53, transport: "udp" },
          timeout: 1200,
          connectTimeout: 2.5,
          sourceAddress: undefined,
          access: NO_ACCESS,
        },
        {
          index: 3,
          ...OTHER_OPTION_DEFAULTS,
          line: 22,
          mode: "udptotcp",
          bind: { host: "0.0.0.0", port: 8000, transport: "udp" },
          connect: { host: "10.1.1.2", port: 80, transport: "tcp" },
          timeout: 3600,
          connectTimeout: DEFAULT_CONNECT_TIMEOUT_SECONDS,
          sourceAddress: undefined,
          access: NO_ACCESS,
        },
        {
          index: 4,
          ...OTHER_OPTION_DEFAULTS,
          line: 25,
          mode: "tcptoudp",
          bind: { host: "127.0.0.1", port: 8081, transport: "tcp" },
          connect: { host: "127.0.0.1", port: 9091, transport: "udp" },
          ...defaults,
          sourceAddress: undefined,
          access: NO_ACCESS,
        },
        {
          index: 5,
          ...OTHER_OPTION_DEFAULTS,
          line: 28,
          mode: "tcp",
          bind: { host: "::", port: 8080, transport: "tcp" },
          connect: { host: "::1", port: 80, transport: "tcp" },
          timeout: DEFAULT_UDP_TIMEOUT_SECONDS,
          connectTimeout: 5,
          sourceAddress: undefined,
          access: NO_ACCESS,
        },
        {
          index: 6,
          ...OTHER_OPTION_DEFAULTS,
          line: 29,
          mode: "tcp",
          bind: { host: "::1", port: 8443, transport: "tcp" },
          connect: { host: "2001:db8::10", port: 443, transport: "tcp" },
          ...defaults,
          sourceAddress: "2001:db8::1",
          access: { allow: [], deny: [["::1", 30]] },
        },
      ],
    });
  });

  test("the four modes come from the two suffixes; no suffix is TCP", async () => {
    const modes: Array<[string, RuleMode]> = [
      ["0.0.0.0 1 10.0.0.1 1", "tcp"],
      ["0.0.0.0 1/tcp 10.0.0.1 1/tcp", "tcp"],
      ["0.0.0.0 1/udp 10.0.0.1 1/udp", "udp"],
      ["0.0.0.0 1/udp 10.0.0.1 1/tcp", "udptotcp"],
      ["0.0.0.0 1/udp 10.0.0.1 1", "udptotcp"],
      ["0.0.0.0 1 10.0.0.1 1/udp", "tcptoudp"],
      ["0.0.0.0 1/TCP 10.0.0.1 1/UDP", "tcptoudp"],
    ];
    for (const [line, mode] of modes) expect((await onlyRule(`${line}\n`)).mode).toBe(mode);
  });

  test("the UDP-to-TCP warning is only for an unsuffixed connect port", async () => {
    const explicit = await loadText("explicit.conf", "0.0.0.0 53/udp 10.0.0.1 53/tcp\n");
    expect(explicit.warnings).toEqual([]);
    const implicit = await loadText("implicit.conf", "\n0.0.0.0 53/udp 10.0.0.1 53\n");
    expect(linesAndReasons(implicit.warnings)).toEqual([
      [
        2,
        "this rule forwards UDP to TCP, as rinetd does when the connect port has no suffix; write '53/udp' to forward UDP to UDP",
      ],
    ]);
    expect(implicit.config?.rules[0]?.mode).toBe("udptotcp");
  });

  test("service names resolve for the transport asked", async () => {
    const rule = await onlyRule("0.0.0.0 domain/udp 10.0.0.1 domain/udp\n");
    expect([rule.bind.port, rule.connect?.port]).toEqual([53, 53]);
    const web = await onlyRule("0.0.0.0 http 10.0.0.1 HTTPS/tcp\n");
    expect([web.bind.port, web.connect?.port]).toEqual([80, 443]);
  });

  test("comments anywhere, blank lines, tabs, CRLF line ends and keywords in any case", async () => {
    const result = await loadText(
      "layout.conf",
      "  # comment\r\n\r\n\tAllow\t10.*   # trailing\r\n0.0.0.0\t\t80 10.0.0.1 80#no space before the comment\r\nDeNy 10.0.0.9\r\nLOGFILE /tmp/x.log\r\nPidLogFile /tmp/x.pid\r\n",
    );
    expect(result.errors).toEqual([]);
    const config = result.config;
    if (config === undefined) throw new Error("not loaded");
    expect(plainConfig(config).globalAccess).toEqual({ allow: [["10.*", 3]], deny: [] });
    expect(config.rules.map((rule) => plainRule(rule).access)).toEqual([{ allow: [], deny: [["10.0.0.9", 5]] }]);
    expect([config.logFile, config.pidFile]).toEqual(["/tmp/x.log", "/tmp/x.pid"]);
  });

  test("allow and deny after a rule go to the most recent rule only", async () => {
    const result = await loadText(
      "per-rule.conf",
      ["deny 10.0.0.1", "0.0.0.0 80 10.0.0.1 80", "allow 10.0.0.*", "0.0.0.0 81 10.0.0.1 81", "deny 10.0.0.2", ""].join("\n"),
    );
    const config = result.config;
    if (config === undefined) throw new Error("not loaded");
    expect(plainConfig(config).globalAccess).toEqual({ allow: [], deny: [["10.0.0.1", 1]] });
    expect(config.rules.map((rule) => plainRule(rule).access)).toEqual([
      { allow: [["10.0.0.*", 3]], deny: [] },
      { allow: [], deny: [["10.0.0.2", 5]] },
    ]);
  });

  test("option spellings: one group with spaces, several groups, bracketed IPv6 source", async () => {
    const one = await onlyRule("0.0.0.0 80 10.0.0.1 80 [ timeout = 5 ,connect_timeout=0.5 , src = 10.0.0.9 ]\n");
    expect([one.timeout, one.connectTimeout, one.sourceAddress]).toEqual([5, 0.5, "10.0.0.9"]);
    const several = await onlyRule("0.0.0.0 80 10.0.0.1 80 [timeout=5] [src=[::1]][connect_timeout=3]\n");
    expect([several.timeout, several.connectTimeout, several.sourceAddress]).toEqual([5, 3, "::1"]);
  });

  test("addresses: IPv4, IPv6 bare and bracketed, host names kept as written", async () => {
    const rule = await onlyRule("[::] 80 Backend-1.Example.COM. 80\n");
    expect([rule.bind.host, rule.connect?.host]).toEqual(["::", "Backend-1.Example.COM."]);
  });

  test("describeConfig prints the normalized rules", async () => {
    const result = await loadText(
      "describe.conf",
      ["allow 10.0.0.*", "0.0.0.0 80 10.1.1.2 80", "deny 10.0.0.5", ":: 53/udp ::1 53/udp [timeout=9,src=::2]", "logfile /var/log/oi.log", ""].join("\n"),
    );
    if (result.config === undefined) throw new Error("not loaded");
    expect(describeConfig(result.config)).toBe(
      [
        `${result.path}: rinetd .conf format, 2 forwarding rules`,
        "global access: allow 10.0.0.*",
        "log file: /var/log/oi.log",
        "log format: rinetd",
        "pid file: none",
        "max connections: descriptor limit",
        "metrics: off",
        // rinetd-uv's default: a STATS line a minute.
        "stats log: every 60s",
        "splice: auto (TCP relays that carry bulk move to a splice(2) worker)",
        "sockets: auto (TCP rules on oi's own system calls where they work here, else Bun's sockets)",
        `${result.path}:2  tcp  0.0.0.0:80 -> 10.1.1.2:80  connect_timeout=10s  deny 10.0.0.5`,
        `${result.path}:4  udp  [::]:53 -> [::1]:53  timeout=9s  src=::2  max_sessions=5000  max_datagram=65507`,
      ].join("\n"),
    );
  });
});

describe(".conf errors, each with its line", () => {
  test("wrong number of fields says how many and the expected form", async () => {
    expect(await errorsOf("\n0.0.0.0 80 10.0.0.1\n")).toEqual([
      [2, "wrong number of fields: found 3, expected 4 (bindaddress bindport connectaddress connectport [options])"],
    ]);
    expect(await errorsOf("0.0.0.0 80 10.0.0.1 80 81\n")).toEqual([
      [1, "wrong number of fields: found 5, expected 4 (bindaddress bindport connectaddress connectport [options])"],
    ]);
    expect(await errorsOf("0.0.0.0 80\n")).toEqual([
      [1, "wrong number of fields: found 2, expected 4 (bindaddress bindport connectaddress connectport [options])"],
    ]);
  });

  test("unknown directive", async () => {
    expect(await errorsOf("# not a directive anywhere\nfrobnicate 65536\n")).toEqual([[2, "unknown directive 'frobnicate'"]]);
  });

  test("keyword argument counts", async () => {
    expect(await errorsOf("allow\ndeny 1.2.3.4 5.6.7.8\nlogfile\npidlogfile a b\nlogcommon yes\n")).toEqual([
      [1, "allow takes one pattern (allow PATTERN), found 0"],
      [2, "deny takes one pattern (deny PATTERN), found 2"],
      [3, "logfile takes one path (logfile PATH), found 0 arguments"],
      [4, "pidlogfile takes one path (pidlogfile PATH), found 2 arguments"],
      [5, "logcommon takes no argument, found 1"],
    ]);
  });

  test("port out of range", async () => {
    expect(await errorsOf("0.0.0.0 0 10.0.0.1 65536\n")).toEqual([
      [1, "bind port 0 is out of range (1..65535)"],
      [1, "connect port 65536 is out of range (1..65535)"],
    ]);
  });

  test("unknown service, or a service not defined for the transport", async () => {
    expect(await errorsOf("0.0.0.0 nosuchservice 10.0.0.1 http/udp\n")).toEqual([
      [1, "bind port 'nosuchservice' is neither a port number nor a known tcp service name"],
      [1, "connect port 'http/udp' is neither a port number nor a known udp service name"],
    ]);
  });

  test("unknown protocol suffix", async () => {
    expect(await errorsOf("0.0.0.0 80/sctp 10.0.0.1 80\n")).toEqual([
      [1, "bind port '80/sctp': unknown protocol 'sctp' (write /tcp or /udp)"],
    ]);
  });

  test("bad addresses", async () => {
    expect(await errorsOf("1.2.3 80 bad_host!.com 80\n[10.0.0.1] 81 fe80::1%eth0 80\n::1::2 82 [example.com] 80\n")).toEqual([
      [1, "bind address '1.2.3' is not a valid IPv4 address"],
      [1, "connect address 'bad_host!.com' is not a valid IP address or host name"],
      [2, "bind address '[10.0.0.1]': brackets are only for IPv6 addresses"],
      [2, "connect address 'fe80::1%eth0': zone ids (%interface) are not supported"],
      [3, "bind address '::1::2' is not a valid IPv6 address"],
      [3, "connect address '[example.com]' is not a valid IPv6 address"],
    ]);
  });

  test("bad patterns, global and per rule, with the compiler's reason", async () => {
    expect(await errorsOf("allow example.com\n0.0.0.0 80 10.0.0.1 80\ndeny 10.0.0.0/40\n")).toEqual([
      [1, "bad allow pattern 'example.com': host names are not permitted in allow/deny rules (rinetd)"],
      [3, "bad deny pattern '10.0.0.0/40': bad CIDR prefix length '40' (0..32 for IPv4)"],
    ]);
  });

  test("unknown option", async () => {
    expect(await errorsOf("0.0.0.0 80 10.0.0.1 80 [speed=fast]\n")).toEqual([
      [1, "unknown option 'speed' (known: timeout, src, connect_timeout, maxconn, maxconn-client, connrate-client, idle, max_sessions, frame, max_datagram, proxy, accept_proxy, proxy-from, keepalive, mode, dns_refresh, lb, health_threshold, recovery_timeout, affinity_ttl, affinity_max_entries, probe, probe_timeout, sni, host, protocol, peek-timeout, tls-cert, tls-key, tls-alpn, tls-connect, tls-ca, tls-servername, tls-verify, rate, rate-rule, rate-client)"],
    ]);
  });

  test("malformed option values", async () => {
    expect(
      await errorsOf(
        [
          "0.0.0.0 80 10.0.0.1 80 [timeout=0]",
          "0.0.0.0 81 10.0.0.1 80 [timeout=1.5]",
          "0.0.0.0 82 10.0.0.1 80 [connect_timeout=-1]",
          "0.0.0.0 83 10.0.0.1 80 [connect_timeout=soon]",
          "0.0.0.0 84 10.0.0.1 80 [src=example.com]",
          "0.0.0.0 85 10.0.0.1 80 [timeout]",
          "0.0.0.0 86 10.0.0.1 80 [timeout=1,timeout=2]",
          "0.0.0.0 87 10.0.0.1 80 []",
          "0.0.0.0 88 10.0.0.1 80 [timeout=1,]",
          "0.0.0.0 89 10.0.0.1 80 [timeout=1",
          "0.0.0.0 90 10.0.0.1 80 [timeout=1] extra",
          "",
        ].join("\n"),
      ),
    ).toEqual([
      [1, "timeout must be a positive whole number of seconds, got '0'"],
      [2, "timeout must be a positive whole number of seconds, got '1.5'"],
      [3, "connect_timeout must be a number of seconds from 0 (the system's own timeout) to 86400, got '-1'"],
      [4, "connect_timeout must be a number of seconds from 0 (the system's own timeout) to 86400, got 'soon'"],
      [5, "source address 'example.com' must be an IP address"],
      [6, "option 'timeout' needs a value (timeout=...)"],
      [7, "option 'timeout' is given twice"],
      [8, "empty option group '[]'"],
      [9, "empty option (stray ',' in the option list)"],
      [10, "unclosed '[' in '[timeout=1'"],
      [11, "unexpected 'extra' after the options (options are written [name=value,...])"],
    ]);
  });

  test("duplicate bind: same address (by bytes or without case), port and transport", async () => {
    expect(
      await errorsOf(
        [
          ":: 80 10.0.0.1 80",
          "0::0 80 10.0.0.1 80",
          "Gateway.Example 81 10.0.0.1 80",
          "gateway.example 81 10.0.0.1 80",
          "0.0.0.0 82/udp 10.0.0.1 80/udp",
          "0.0.0.0 82/tcp 10.0.0.1 80",
          "0.0.0.0 82/udp 10.0.0.1 81/udp",
          "",
        ].join("\n"),
      ),
    ).toEqual([
      [2, "duplicate bind: [0::0]:80/tcp is already bound by the rule on line 1 (rules on one bind are chosen by sni=, host= or protocol=; only one may have none, the default)"],
      [4, "duplicate bind: gateway.example:81/tcp is already bound by the rule on line 3 (rules on one bind are chosen by sni=, host= or protocol=; only one may have none, the default)"],
      [7, "duplicate bind: 0.0.0.0:82/udp is already bound by the rule on line 5"],
    ]);
  });

  test("a file with several errors reports all of them, in line order", async () => {
    const result = await loadText(
      "several.conf",
      [
        "allow host.example",
        "0.0.0.0 80 10.0.0.1 99999 [nope=1]",
        "0.0.0.0 81 10.0.0.1 81",
        "frobnicate",
        "0.0.0.0 81 10.0.0.1 82",
        "0.0.0.0 83/udp 10.0.0.1 83",
        "",
      ].join("\n"),
    );
    expect(result.config).toBeUndefined();
    expect(result.errors.map(formatIssue)).toEqual([
      `${result.path}:1: bad allow pattern 'host.example': host names are not permitted in allow/deny rules (rinetd)`,
      `${result.path}:2: connect port 99999 is out of range (1..65535)`,
      `${result.path}:2: unknown option 'nope' (known: timeout, src, connect_timeout, maxconn, maxconn-client, connrate-client, idle, max_sessions, frame, max_datagram, proxy, accept_proxy, proxy-from, keepalive, mode, dns_refresh, lb, health_threshold, recovery_timeout, affinity_ttl, affinity_max_entries, probe, probe_timeout, sni, host, protocol, peek-timeout, tls-cert, tls-key, tls-alpn, tls-connect, tls-ca, tls-servername, tls-verify, rate, rate-rule, rate-client)`,
      `${result.path}:4: unknown directive 'frobnicate'`,
      `${result.path}:5: duplicate bind: 0.0.0.0:81/tcp is already bound by the rule on line 3 (rules on one bind are chosen by sni=, host= or protocol=; only one may have none, the default)`,
    ]);
    expect(result.warnings.map((warning) => warning.line)).toEqual([6]);
  });

  test("a missing file is one error naming the path", async () => {
    const path = `${FIXTURES}/does-not-exist.conf`;
    const result = await loadConfig(path);
    expect(result).toEqual({
      config: undefined,
      errors: [{ file: path, line: 0, reason: "cannot read config: no such file" }],
      warnings: [],
      files: [path],
    });
    expect(formatIssue(result.errors[0] ?? { file: "", line: 0, reason: "" })).toBe(
      `${path}: cannot read config: no such file`,
    );
  });

  test("a directory is not a config", async () => {
    const result = await loadConfig(FIXTURES);
    expect(linesAndReasons(result.errors)).toEqual([[0, "cannot read config: is a directory"]]);
  });
});

describe("service table", () => {
  test("parses /etc/services lines: aliases, comments, first entry wins", () => {
    const table = parseServices(
      [
        "# comment",
        "http\t\t80/tcp\t\twww\t\t# WorldWideWeb HTTP",
        "domain\t\t53/udp",
        "http\t\t8080/tcp",
        "broken\t\tnotaport",
        "",
      ].join("\n"),
    );
    expect([...table.entries()]).toEqual([
      ["http/tcp", 80],
      ["www/tcp", 80],
      ["domain/udp", 53],
    ]);
  });

  test("the built-in fallback knows the common names", () => {
    const table = fallbackServices();
    expect(table.get("http/tcp")).toBe(80);
    expect(table.get("https/tcp")).toBe(443);
    expect(table.get("domain/udp")).toBe(53);
    expect(table.get("ssh/tcp")).toBe(22);
    expect(table.get("ssh/udp")).toBeUndefined();
  });
});

describe("the STATS line's default interval", () => {
  test("is rinetd-uv's 60 s in .conf and YAML files, none in oxidinetd's TOML, and statsloginterval 0 turns it off", async () => {
    const rule = "0.0.0.0 80 10.1.1.2 80\n";
    expect((await loadText("stats.conf", rule)).config?.statsLogInterval).toBe(60);
    expect((await loadText("stats-off.conf", `statsloginterval 0\n${rule}`)).config?.statsLogInterval).toBe(0);
    const yaml = "rules:\n  - name: web\n    bind: 0.0.0.0:80\n    connect: 10.1.1.2:80\n";
    expect((await loadText("stats.yaml", yaml)).config?.statsLogInterval).toBe(60);
    const toml = '[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = 80\nconnect_address = "10.1.1.2"\nconnect_port = 80\n';
    expect((await loadText("stats.toml", toml)).config?.statsLogInterval).toBe(0);
  });
});
