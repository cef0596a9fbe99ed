import { describe, expect, test } from "bun:test";
import { loadConfig } from "../src/config/load.ts";
import { indexTomlLines, locateTomlSyntaxError, tomlErrorMessage } from "../src/config/toml-lines.ts";
import { DEFAULT_CONNECT_TIMEOUT_SECONDS, DEFAULT_UDP_TIMEOUT_SECONDS } from "../src/types.ts";
import { NO_ACCESS, linesAndReasons, plainConfig, textLoader, OTHER_OPTION_DEFAULTS } from "./helpers/config.ts";

const FIXTURES = `${import.meta.dir}/fixtures`;
const loadText = textLoader();
const DEFAULTS = {
  timeout: DEFAULT_UDP_TIMEOUT_SECONDS,
  connectTimeout: DEFAULT_CONNECT_TIMEOUT_SECONDS,
  sourceAddress: undefined,
};

/** The errors of a TOML config that must not load. */
async function errorsOf(text: string): Promise<Array<[number, string]>> {
  const result = await loadText("errors.toml", text);
  expect(result.config).toBeUndefined();
  return linesAndReasons(result.errors);
}

/** A `[[forwarding_rules]]` table with valid values, lines 1..5, then `extra`. */
function ruleTable(port: number, extra = ""): string {
  return `[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = ${port}\nconnect_address = "10.0.0.1"\nconnect_port = 80\n${extra}`;
}

describe("valid TOML files", () => {
  test("oxidinetd's README example gives the same rules", async () => {
    const result = await loadConfig(`${FIXTURES}/oxidinetd-readme.toml`);
    expect(result.errors).toEqual([]);
    expect(result.warnings).toEqual([]);
    expect(result.config === undefined ? undefined : plainConfig(result.config)).toEqual({
      format: "toml",
      globalAccess: { allow: [["192.168.1.*", 2]], deny: [["192.168.1.50", 6]] },
      logFile: undefined,
      pidFile: undefined,
      logFormat: "rinetd",
      rules: [
        {
          index: 0,
          ...OTHER_OPTION_DEFAULTS,
          line: 10,
          mode: "tcp",
          bind: { host: "0.0.0.0", port: 80, transport: "tcp" },
          connect: { host: "192.168.1.2", port: 80, transport: "tcp" },
          ...DEFAULTS,
          access: NO_ACCESS,
        },
        {
          index: 1,
          ...OTHER_OPTION_DEFAULTS,
          line: 17,
          mode: "udp",
          bind: { host: "0.0.0.0", port: 53, transport: "udp" },
          connect: { host: "8.8.8.8", port: 53, transport: "udp" },
          ...DEFAULTS,
          timeout: 1200,
          access: NO_ACCESS,
        },
        {
          index: 2,
          ...OTHER_OPTION_DEFAULTS,
          line: 25,
          mode: "udptotcp",
          bind: { host: "127.0.0.1", port: 8080, transport: "udp" },
          connect: { host: "127.0.0.1", port: 9090, transport: "tcp" },
          ...DEFAULTS,
          access: NO_ACCESS,
        },
        {
          index: 3,
          ...OTHER_OPTION_DEFAULTS,
          line: 32,
          mode: "tcptoudp",
          bind: { host: "127.0.0.1", port: 8081, transport: "tcp" },
          connect: { host: "127.0.0.1", port: 9091, transport: "udp" },
          ...DEFAULTS,
          access: NO_ACCESS,
        },
      ],
    });
  });

  test("oxidinetd's README per-rule access example", async () => {
    const result = await loadConfig(`${FIXTURES}/oxidinetd-readme-access.toml`);
    expect(result.errors).toEqual([]);
    const config = result.config === undefined ? undefined : plainConfig(result.config);
    expect(config?.globalAccess).toEqual({ allow: [["192.168.1.*", 2]], deny: [] });
    expect(config?.rules.map((rule) => [rule.line, rule.mode, rule.access])).toEqual([
      [6, "tcp", { allow: [["192.168.1.0/24", 12]], deny: [["192.168.1.50", 16]] }],
    ]);
  });

  test("every key of the schema", async () => {
    const result = await loadConfig(`${FIXTURES}/every-feature.toml`);
    expect(result.errors).toEqual([]);
    expect(result.config === undefined ? undefined : plainConfig(result.config)).toEqual({
      format: "toml",
      globalAccess: {
        allow: [
          ["192.168.2.*", 6],
          ["10.0.0.0/8", 10],
        ],
        deny: [["192.168.2.1?", 14]],
      },
      logFile: "/var/log/oi.log",
      pidFile: "/run/oi.pid",
      logFormat: "common",
      rules: [
        {
          index: 0,
          ...OTHER_OPTION_DEFAULTS,
          line: 19,
          mode: "tcp",
          bind: { host: "0.0.0.0", port: 80, transport: "tcp" },
          connect: { host: "10.1.1.2", port: 80, transport: "tcp" },
          ...DEFAULTS,
          access: { allow: [["203.0.113.*", 25]], deny: [["203.0.113.7", 29]] },
        },
        {
          index: 1,
          ...OTHER_OPTION_DEFAULTS,
          line: 33,
          mode: "tcp",
          bind: { host: "206.125.69.81", port: 443, transport: "tcp" },
          connect: { host: "backend.example.com", port: 8443, transport: "tcp" },
          timeout: DEFAULT_UDP_TIMEOUT_SECONDS,
          connectTimeout: 2.5,
          sourceAddress: "10.1.1.2",
          access: NO_ACCESS,
        },
        {
          index: 2,
          ...OTHER_OPTION_DEFAULTS,
          line: 42,
          mode: "udp",
          bind: { host: "0.0.0.0", port: 53, transport: "udp" },
          connect: { host: "8.8.8.8", port: 53, transport: "udp" },
          ...DEFAULTS,
          timeout: 1200,
          access: NO_ACCESS,
        },
        {
          index: 3,
          ...OTHER_OPTION_DEFAULTS,
          line: 50,
          mode: "udptotcp",
          bind: { host: "0.0.0.0", port: 8000, transport: "udp" },
          connect: { host: "10.1.1.2", port: 80, transport: "tcp" },
          ...DEFAULTS,
          timeout: 3600,
          access: NO_ACCESS,
        },
        {
          index: 4,
          ...OTHER_OPTION_DEFAULTS,
          line: 58,
          mode: "tcptoudp",
          bind: { host: "::", port: 8081, transport: "tcp" },
          connect: { host: "::1", port: 9091, transport: "udp" },
          ...DEFAULTS,
          connectTimeout: 5,
          access: { allow: [], deny: [["::1", 66]] },
        },
      ],
    });
  });

  test("inline tables and arrays are the same schema", async () => {
    const result = await loadText(
      "inline.toml",
      'forwarding_rules = [ { bind_address = "[::1]", bind_port = 1, connect_address = "h", connect_port = 2, rules = [ { type = "allow", pattern = "::1" } ] } ]\n',
    );
    expect(result.errors).toEqual([]);
    const config = result.config === undefined ? undefined : plainConfig(result.config);
    expect(config?.rules.map((rule) => [rule.line, rule.bind.host, rule.connect?.host, rule.access])).toEqual([
      [1, "::1", "h", { allow: [["::1", 1]], deny: [] }],
    ]);
  });
});

describe("TOML errors, each with its line", () => {
  test("a syntax error is reported on its line", async () => {
    expect(await errorsOf('log_file = "/x"\n\n[[forwarding_rules]]\nbind_port = \n')).toEqual([
      [4, "TOML syntax error: Missing value after '='; values must be on the same line"],
    ]);
    expect(await errorsOf("log_file = '/x'\nlog_file = '/y'\n")).toEqual([[2, "TOML syntax error: Cannot redefine key 'log_file'"]]);
  });

  test("unknown keys at every level", async () => {
    expect(
      await errorsOf(
        `logfile = "/x"\n${ruleTable(80, 'bindport = 80\n[[forwarding_rules.rules]]\ntype = "allow"\npattern = "1.2.3.4"\ncomment = "x"\n')}[[global_rules]]\ntype = "deny"\npattern = "1.2.3.4"\nnote = 1\n`,
      ),
    ).toEqual([
      [1, "unknown key 'logfile' at the top level (known: global_rules, forwarding_rules, log_format, log_file, pid_file, max_connections, max_connections_per_client, connection_rate_per_client, client_table_size, metrics, admin, admin_token, admin_mode, admin_read, connect_timeout, max_udp_connections, dns_refresh, dns_servers, dns_multi_ip_expand, dns_multi_ip_proto, status, stats_log_interval, workers, splice, sockets, buffer_size, listen_backlog, watch, user, group)"],
      [
        7,
        "unknown key 'bindport' in forwarding_rules[0] (known: name, bind_address, bind_port, connect_address, connect_port, connect, protocol, timeout, source_address, connect_timeout, max_connections, max_connections_per_client, connection_rate_per_client, idle_timeout, max_sessions, framing, max_datagram, proxy_protocol, accept_proxy, proxy_from, keepalive, socket_mode, dns_refresh, peek_timeout, tls_connect, rate, rate_rule, rate_client, load_balancing, match, tls, rules)",
      ],
      [11, "unknown key 'comment' in forwarding_rules[0].rules[0] (known: type, pattern)"],
      [15, "unknown key 'note' in global_rules[0] (known: type, pattern)"],
    ]);
  });

  test("wrong types", async () => {
    const text = [
      "log_file = 1",
      'log_format = "apache"',
      "[[forwarding_rules]]",
      "bind_address = 0",
      'bind_port = "80"',
      'connect_address = "10.0.0.1"',
      "connect_port = 80.5",
      'protocol = "sctp"',
      "timeout = 1979-05-27T07:32:00Z",
      'connect_timeout = "5"',
      "source_address = [1]",
      "[[forwarding_rules.rules]]",
      'type = "permit"',
      "pattern = true",
      "",
    ].join("\n");
    expect(await errorsOf(text)).toEqual([
      [1, "log_file must be a string, got an integer"],
      [2, 'log_format must be one of "rinetd", "common", "json", got "apache"'],
      [4, "forwarding_rules[0].bind_address must be a string, got an integer"],
      [5, "forwarding_rules[0].bind_port must be an integer, got a string"],
      [7, "forwarding_rules[0].connect_port must be an integer, got a float"],
      [8, 'forwarding_rules[0].protocol must be one of "tcp", "udp", "udptotcp", "tcptoudp", got "sctp"'],
      [9, "forwarding_rules[0].timeout must be an integer, got a date/time"],
      [10, "forwarding_rules[0].connect_timeout must be a number, got a string"],
      [11, "forwarding_rules[0].source_address must be a string, got an array"],
      [13, 'forwarding_rules[0].rules[0].type must be one of "allow", "deny", got "permit"'],
      [14, "forwarding_rules[0].rules[0].pattern must be a string, got a boolean"],
    ]);
  });

  test("sections of the wrong shape", async () => {
    expect(await errorsOf("global_rules = [1]\n[forwarding_rules]\nbind_port = 1\n")).toEqual([
      [1, "global_rules[0] must be a table, got an integer"],
      [2, "forwarding_rules must be an array of tables ([[forwarding_rules]]), got a table"],
    ]);
  });

  test("missing keys are reported on the table's header", async () => {
    expect(await errorsOf('\n[[forwarding_rules]]\nbind_port = 80\n\n[[global_rules]]\ntype = "allow"\n')).toEqual([
      [2, "forwarding_rules[0] is missing bind_address"],
      [2, "forwarding_rules[0] is missing connect_address"],
      [2, "forwarding_rules[0] is missing connect_port"],
      [5, "global_rules[0] is missing pattern"],
    ]);
  });

  test("values get the same reasons as in .conf", async () => {
    const text = [
      ruleTable(70000, 'timeout = 0\nconnect_timeout = -1\nsource_address = "example.com"\n'),
      '[[forwarding_rules]]\nbind_address = "1.2.3"\nbind_port = 81\nconnect_address = "fe80::1%eth0"\nconnect_port = 0\n',
      '[[forwarding_rules.rules]]\ntype = "deny"\npattern = "10.0.0.0/40"\n',
      '[[global_rules]]\ntype = "allow"\npattern = "example.com"\n',
    ].join("");
    expect(await errorsOf(text)).toEqual([
      [3, "bind port 70000 is out of range (1..65535)"],
      [6, "timeout must be a positive whole number of seconds, got '0'"],
      [7, "connect_timeout must be a number of seconds from 0 (the system's own timeout) to 86400, got '-1'"],
      [8, "source address 'example.com' must be an IP address"],
      [10, "bind address '1.2.3' is not a valid IPv4 address"],
      [12, "connect address 'fe80::1%eth0': zone ids (%interface) are not supported"],
      [13, "connect port 0 is out of range (1..65535)"],
      [16, "bad deny pattern '10.0.0.0/40': bad CIDR prefix length '40' (0..32 for IPv4)"],
      [19, "bad allow pattern 'example.com': host names are not permitted in allow/deny rules (rinetd)"],
    ]);
    const conf = await loadText(
      "same.conf",
      "allow example.com\n1.2.3 70000 10.0.0.1 0 [timeout=0,connect_timeout=-1,src=example.com]\n",
    );
    const confReasons = conf.errors.map((error) => error.reason);
    for (const reason of [
      "bind port 70000 is out of range (1..65535)",
      "connect port 0 is out of range (1..65535)",
      "timeout must be a positive whole number of seconds, got '0'",
      "connect_timeout must be a number of seconds from 0 (the system's own timeout) to 86400, got '-1'",
      "source address 'example.com' must be an IP address",
      "bind address '1.2.3' is not a valid IPv4 address",
      "bad allow pattern 'example.com': host names are not permitted in allow/deny rules (rinetd)",
    ]) {
      expect(confReasons).toContain(reason);
    }
  });

  test("duplicate bind names the first rule's line", async () => {
    const text = [
      ruleTable(80),
      '[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = 80\nconnect_address = "10.0.0.2"\nconnect_port = 80\nprotocol = "tcptoudp"\n',
      '[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = 80\nconnect_address = "10.0.0.2"\nconnect_port = 80\nprotocol = "udp"\n',
    ].join("");
    expect(await errorsOf(text)).toEqual([[6, "duplicate bind: 0.0.0.0:80/tcp is already bound by the rule on line 1"]]);
  });

  test("a file with several errors reports all of them, in line order", async () => {
    const text = `pid_file = 3\n${ruleTable(0, "surprise = true\n")}${ruleTable(99999)}`;
    expect(await errorsOf(text)).toEqual([
      [1, "pid_file must be a string, got an integer"],
      [4, "bind port 0 is out of range (1..65535)"],
      [7, "unknown key 'surprise' in forwarding_rules[0] (known: name, bind_address, bind_port, connect_address, connect_port, connect, protocol, timeout, source_address, connect_timeout, max_connections, max_connections_per_client, connection_rate_per_client, idle_timeout, max_sessions, framing, max_datagram, proxy_protocol, accept_proxy, proxy_from, keepalive, socket_mode, dns_refresh, peek_timeout, tls_connect, rate, rate_rule, rate_client, load_balancing, match, tls, rules)"],
      [10, "bind port 99999 is out of range (1..65535)"],
    ]);
  });

  test("a missing file is one error naming the path", async () => {
    const path = `${FIXTURES}/does-not-exist.toml`;
    expect(await loadConfig(path)).toEqual({
      config: undefined,
      errors: [{ file: path, line: 0, reason: "cannot read config: no such file" }],
      warnings: [],
      files: [path],
    });
  });
});

describe("TOML line locator", () => {
  const text = [
    "log_file = 'x'", // 1
    "[[global_rules]]", // 2
    "type = 'allow'", // 3
    "[[forwarding_rules]]", // 4
    "bind_port = 1", // 5
    "[[forwarding_rules]]", // 6
    "  bind_port = 2", // 7
    "description = '''", // 8
    "bind_port = 'inside a string'", // 9
    "'''", // 10
    "[[forwarding_rules.rules]]", // 11
    "pattern = '1.2.3.4'", // 12
    "[[ forwarding_rules.rules ]]", // 13
    '"pattern" = "5.6.7.8"', // 14
    "[extra . sub]", // 15
    "deep.key = 1", // 16
    "matrix = [", // 17
    "  [1, 2],", // 18
    "  [3],", // 19
    "]", // 20
    "after = 1 # still in [extra.sub]", // 21
  ].join("\n");
  const lines = indexTomlLines(text);

  test("maps keys, array elements and nested arrays to their lines", () => {
    expect(lines.lineOf("log_file")).toBe(1);
    expect(lines.lineOf("global_rules[0].type")).toBe(3);
    expect(lines.lineOf("forwarding_rules[0]")).toBe(4);
    expect(lines.lineOf("forwarding_rules[0].bind_port")).toBe(5);
    expect(lines.lineOf("forwarding_rules[1].bind_port")).toBe(7);
    expect(lines.lineOf("forwarding_rules[1].rules[0].pattern")).toBe(12);
    expect(lines.lineOf("forwarding_rules[1].rules[1].pattern")).toBe(14);
    expect(lines.lineOf("extra.sub.deep.key")).toBe(16);
  });

  test("rows of a multi-line array are not table headers", () => {
    expect(lines.lineOf("extra.sub.after")).toBe(21);
  });

  test("falls back to the enclosing table, then to line 1", () => {
    expect(lines.lineOf("forwarding_rules[1].connect_port")).toBe(6);
    expect(lines.lineOf("forwarding_rules[1].rules[1]")).toBe(13);
    expect(lines.lineOf("nowhere.at.all")).toBe(1);
  });

  test("syntax errors are found on their line, also after multi-line strings", () => {
    const broken = "a = 1\nb = '''\nx = \n'''\nc = \n";
    const message = tomlErrorMessage(broken) ?? "";
    expect(message).toContain("Missing value");
    expect(locateTomlSyntaxError(broken, message)).toBe(5);
    const unterminated = "a = 1\nb = \"\"\"\nnever closed\n";
    expect(locateTomlSyntaxError(unterminated, tomlErrorMessage(unterminated) ?? "")).toBe(2);
  });
});
