/**
 * oi's own options (limits, UDP sessions, framing, metrics, JSON log), which
 * both formats read from one table: each is checked in .conf and in TOML, with
 * the same values and the same reasons.
 */
import { describe, expect, test } from "bun:test";
import { linesAndReasons, textLoader } from "./helpers/config.ts";

const loadText = textLoader();

const CONF_RULE = "0.0.0.0 5000/udp 127.0.0.1 6000";
const TOML_RULE = `[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = 5000\nconnect_address = "127.0.0.1"\nconnect_port = 6000\nprotocol = "udptotcp"\n`;

describe("per-rule options", () => {
  test("every option in a .conf group and as TOML keys gives the same rule", async () => {
    const conf = await loadText(
      "opts.conf",
      `${CONF_RULE} [maxconn=100,idle=30,max_sessions=50,frame=len16,max_datagram=1400,connect_timeout=2.5]\n`,
    );
    const toml = await loadText(
      "opts.toml",
      `${TOML_RULE}max_connections = 100\nidle_timeout = 30\nmax_sessions = 50\nframing = "len16"\nmax_datagram = 1400\nconnect_timeout = 2.5\n`,
    );
    for (const result of [conf, toml]) {
      expect(result.errors).toEqual([]);
      const rule = result.config?.rules[0];
      expect(rule).toMatchObject({
        mode: "udptotcp",
        maxConnections: 100,
        idleTimeout: 30,
        maxSessions: 50,
        framing: "len16",
        maxDatagram: 1400,
        connectTimeout: 2.5,
      });
    }
  });

  test("defaults: no limits, idle off, 5000 UDP sessions, no framing, 65507-byte datagrams", async () => {
    const result = await loadText("defaults.conf", `${CONF_RULE}\n`);
    expect(result.config?.rules[0]).toMatchObject({
      maxConnections: undefined,
      idleTimeout: undefined,
      maxSessions: 5000,
      framing: "none",
      maxDatagram: 65507,
    });
  });

  test("bad values are errors with their line, with the same reason in both formats", async () => {
    const cases: Array<[conf: string, toml: string, reason: string]> = [
      ["maxconn=0", "max_connections = 0", "maxconn must be a whole number from 1 to 10000000, got '0'"],
      ["idle=-1", "idle_timeout = -1", "idle must be a positive number of seconds, got '-1'"],
      ["max_sessions=2000000", "max_sessions = 2000000", "max_sessions must be a whole number from 1 to 1000000, got '2000000'"],
      ["frame=len32", 'framing = "len32"', "frame must be one of none, len16, got 'len32'"],
      ["max_datagram=70000", "max_datagram = 70000", "max_datagram must be a whole number from 1 to 65507, got '70000'"],
    ];
    for (const [confOption, tomlOption, reason] of cases) {
      const conf = await loadText("bad.conf", `# line 1\n${CONF_RULE} [${confOption}]\n`);
      expect(linesAndReasons(conf.errors)).toEqual([[2, reason]]);
      const toml = await loadText("bad.toml", `${TOML_RULE}${tomlOption}\n`);
      expect(linesAndReasons(toml.errors)).toEqual([[7, reason]]);
    }
  });

  test("a TOML option of the wrong type is reported on its line", async () => {
    const toml = await loadText("type.toml", `${TOML_RULE}max_sessions = "many"\n`);
    expect(linesAndReasons(toml.errors)).toEqual([[7, "forwarding_rules[0].max_sessions must be an integer, got a string"]]);
  });
});

test("framing on a rule that is not cross-protocol is an error", async () => {
  const conf = await loadText("frame.conf", "0.0.0.0 80 127.0.0.1 8080 [frame=len16]\n");
  expect(linesAndReasons(conf.errors)).toEqual([[1, "frame=len16 applies only to udptotcp and tcptoudp rules, this one is tcp"]]);
});

describe("global settings", () => {
  test(".conf: maxconn, metrics and logjson", async () => {
    const result = await loadText("global.conf", `maxconn 2000\nmetrics 127.0.0.1:9100\nlogjson\n${CONF_RULE}\n`);
    expect(result.errors).toEqual([]);
    expect(result.config).toMatchObject({
      maxConnections: 2000,
      metrics: { host: "127.0.0.1", port: 9100 },
      logFormat: "json",
    });
  });

  test("TOML: max_connections, metrics and log_format = json", async () => {
    const result = await loadText(
      "global.toml",
      `max_connections = 2000\nmetrics = "[::1]:9100"\nlog_format = "json"\n${TOML_RULE}`,
    );
    expect(result.errors).toEqual([]);
    expect(result.config).toMatchObject({
      maxConnections: 2000,
      metrics: { host: "::1", port: 9100 },
      logFormat: "json",
    });
  });

  test("bad global values are errors with their line", async () => {
    const conf = await loadText("bad-global.conf", "maxconn lots\nmetrics localhost:9100\nmetrics 127.0.0.1:0\nlogjson now\n");
    expect(linesAndReasons(conf.errors)).toEqual([
      [1, "maxconn must be a positive whole number, got 'lots'"],
      [2, "metrics address 'localhost:9100' must be IP:PORT (IPv6 as [ADDRESS]:PORT)"],
      [3, "metrics port 0 is out of range (1..65535)"],
      [4, "logjson takes no argument, found 1"],
    ]);
    const toml = await loadText("bad-global.toml", 'max_connections = 0\nmetrics = "9100"\n');
    expect(linesAndReasons(toml.errors)).toEqual([
      [1, "maxconn must be a positive whole number, got '0'"],
      [2, "metrics address '9100' must be IP:PORT (IPv6 as [ADDRESS]:PORT)"],
    ]);
  });
});
