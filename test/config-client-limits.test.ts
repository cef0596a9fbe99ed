/**
 * The per-client limits in the three config formats: `maxconn-client` and
 * `connrate-client` per rule and as global defaults, `client-table-size`,
 * what `oi check` shows, and bad values as errors with their line.
 */
import { describe, expect, test } from "bun:test";
import { describeRule } from "../src/config/describe.ts";
import { loadConfigText } from "../src/config/load.ts";
import type { LoadResult } from "../src/types.ts";
import { ONE_RULE } from "./helpers/config.ts";

const { conf: RULE_CONF, toml: RULE_TOML, yaml: RULE_YAML } = ONE_RULE;

function limitsOf(result: LoadResult) {
  expect(result.errors).toEqual([]);
  return result.config?.rules.map((rule) => ({
    maxConnectionsPerClient: rule.maxConnectionsPerClient,
    connectionRatePerClient: rule.connectionRatePerClient,
    clientTableSize: rule.clientTableSize,
  }));
}

function errorsOf(result: LoadResult): Array<[number, string]> {
  expect(result.config).toBeUndefined();
  return result.errors.map((error) => [error.line, error.reason]);
}

const RATE_REASON = (written: string) =>
  `connrate-client must be N/S, at most N new connections per client in any S seconds (N from 1 to 1000000, S from 1 to 86400, whole numbers), got '${written}'`;

describe("per rule", () => {
  test("none by default; the same limits from a .conf bracket, TOML keys and YAML keys", () => {
    expect(limitsOf(loadConfigText(RULE_CONF, "oi.conf"))).toEqual([
      { maxConnectionsPerClient: undefined, connectionRatePerClient: undefined, clientTableSize: 100_000 },
    ]);
    const want = [{ maxConnectionsPerClient: 10, connectionRatePerClient: { connections: 20, seconds: 60 }, clientTableSize: 100_000 }];
    expect(limitsOf(loadConfigText("127.0.0.1 8080 127.0.0.1 80 [maxconn-client=10,connrate-client=20/60]\n", "oi.conf"))).toEqual(want);
    expect(limitsOf(loadConfigText(`${RULE_TOML}max_connections_per_client = 10\nconnection_rate_per_client = "20/60"\n`, "oi.toml"))).toEqual(want);
    expect(limitsOf(loadConfigText(`${RULE_YAML}    max_connections_per_client: 10\n    connection_rate_per_client: 20/60\n`, "oi.yaml"))).toEqual(want);
  });

  test("oi check shows them on the rule's line", () => {
    const result = loadConfigText("client-table-size 500\n127.0.0.1 8080 127.0.0.1 80 [maxconn-client=10,connrate-client=20/60]\n", "oi.conf");
    const line = describeRule(result.config!.rules[0]!);
    expect(line).toContain("maxconn-client=10");
    expect(line).toContain("connrate-client=20/60");
    expect(line).toContain("client-table-size=500");
    expect(describeRule(loadConfigText(RULE_CONF, "oi.conf").config!.rules[0]!)).not.toContain("client");
  });

  test("bad values are errors with their line, with the same reason in every format", () => {
    const cases: Array<[conf: string, toml: string, reason: string]> = [
      ["maxconn-client=0", "max_connections_per_client = 0", "maxconn-client must be a whole number from 1 to 1000000, got '0'"],
      ["maxconn-client=-1", "max_connections_per_client = -1", "maxconn-client must be a whole number from 1 to 1000000, got '-1'"],
      ["maxconn-client=2.5", "max_connections_per_client = 2.5", ""],
      ["connrate-client=20/0", 'connection_rate_per_client = "20/0"', RATE_REASON("20/0")],
      ["connrate-client=20", 'connection_rate_per_client = "20"', RATE_REASON("20")],
      ["connrate-client=0/60", 'connection_rate_per_client = "0/60"', RATE_REASON("0/60")],
      ["connrate-client=-5/60", 'connection_rate_per_client = "-5/60"', RATE_REASON("-5/60")],
      ["connrate-client=2.5/60", 'connection_rate_per_client = "2.5/60"', RATE_REASON("2.5/60")],
    ];
    for (const [conf, toml, reason] of cases) {
      const fromConf = errorsOf(loadConfigText(`# line 1\n127.0.0.1 8080 127.0.0.1 80 [${conf}]\n`, "bad.conf"));
      const fromToml = errorsOf(loadConfigText(`${RULE_TOML}${toml}\n`, "bad.toml"));
      expect(fromConf.map(([line]) => line)).toEqual([2]);
      expect(fromToml.map(([line]) => line)).toEqual([6]);
      // A float in TOML is a type error there (it is not an integer), a bad number in .conf a value error.
      if (reason === "") {
        expect(fromConf[0]![1]).toBe("maxconn-client must be a whole number from 1 to 1000000, got '2.5'");
        expect(fromToml[0]![1]).toContain("must be an integer");
        continue;
      }
      expect(fromConf[0]![1]).toBe(reason);
      expect(fromToml[0]![1]).toBe(reason);
    }
    const yaml = errorsOf(loadConfigText(`${RULE_YAML}    max_connections_per_client: 0\n    connection_rate_per_client: "5/0"\n`, "bad.yaml"));
    expect(yaml).toEqual([
      [5, "rule 'web': maxconn-client must be a whole number from 1 to 1000000, got '0'"],
      [6, `rule 'web': ${RATE_REASON("5/0")}`],
    ]);
  });
});

describe("global defaults", () => {
  test("apply to every rule that does not set its own, in each format", () => {
    const conf = loadConfigText(
      "maxconn-client 10\nconnrate-client 20/60\nclient-table-size 5000\n127.0.0.1 8080 127.0.0.1 80\n127.0.0.1 8081 127.0.0.1 80 [maxconn-client=3]\n",
      "oi.conf",
    );
    const toml = loadConfigText(
      `max_connections_per_client = 10\nconnection_rate_per_client = "20/60"\nclient_table_size = 5000\n${RULE_TOML}${RULE_TOML.replace("8080", "8081")}max_connections_per_client = 3\n`,
      "oi.toml",
    );
    const yaml = loadConfigText(
      `global:\n  max_connections_per_client: 10\n  connection_rate_per_client: "20/60"\n  client_table_size: 5000\n${RULE_YAML}  - name: other\n    bind: "127.0.0.1:8081"\n    connect: "127.0.0.1:80"\n    max_connections_per_client: 3\n`,
      "oi.yaml",
    );
    const rate = { connections: 20, seconds: 60 };
    for (const result of [conf, toml, yaml]) {
      expect(limitsOf(result)).toEqual([
        { maxConnectionsPerClient: 10, connectionRatePerClient: rate, clientTableSize: 5000 },
        { maxConnectionsPerClient: 3, connectionRatePerClient: rate, clientTableSize: 5000 },
      ]);
    }
  });

  test("bad global values are errors with their line", () => {
    expect(errorsOf(loadConfigText(`${RULE_CONF}maxconn-client 0\nconnrate-client 20\nclient-table-size 5\nconnrate-client\n`, "bad.conf"))).toEqual([
      [2, "maxconn-client must be a whole number from 1 to 1000000, got '0'"],
      [3, RATE_REASON("20")],
      [4, "client-table-size must be a whole number from 100 to 10000000, got '5'"],
      [5, "connrate-client takes one value (connrate-client VALUE), found 0 arguments"],
    ]);
    expect(errorsOf(loadConfigText(`connection_rate_per_client = "1/0"\n${RULE_TOML}`, "bad.toml"))).toEqual([[1, RATE_REASON("1/0")]]);
    const yaml = errorsOf(loadConfigText(`global:\n  max_connections_per_client: -3\n${RULE_YAML}`, "bad.yaml"));
    expect(yaml).toEqual([[2, "maxconn-client must be a whole number from 1 to 1000000, got '-3'"]]);
  });
});
