/**
 * Bandwidth limits in the config: `rate=`, `rate-rule=`, `rate-client=` in a
 * .conf bracket, and as TOML and YAML rule keys (a string with a unit, or a
 * bare number of bytes per second), giving one model; bad values are
 * errors on their line; `oi check` shows them readably.
 */
import { describe, expect, test } from "bun:test";
import { describeRule } from "../src/config/describe.ts";
import { formatRate, parseRate } from "../src/rate/units.ts";
import { linesAndReasons, textLoader } from "./helpers/config.ts";

const loadText = textLoader();

const TOML_RULE = `[[forwarding_rules]]\nbind_address = "127.0.0.1"\nbind_port = 5000\nconnect_address = "127.0.0.1"\nconnect_port = 6000\n`;
const YAML_RULE = `rules:\n  - name: web\n    bind: "127.0.0.1:5000/tcp"\n    connect: "127.0.0.1:6000"\n`;

describe("rate values", () => {
  test("units are powers of 1000, bits or bytes per second, case-insensitive; a bare number is bytes per second", () => {
    const cases: Array<[string | number, number]> = [
      ["100mbit", 12_500_000],
      ["100MBit", 12_500_000],
      ["1.5mbit", 187_500],
      ["2mb", 2_000_000],
      ["1gbit", 125_000_000],
      ["1GB", 1_000_000_000],
      ["64kbit", 8000],
      ["10kb", 10_000],
      ["65536", 65_536],
      [65536, 65_536],
      [".5mb", 500_000],
    ];
    for (const [written, bytes] of cases) expect(parseRate("rate", written)).toEqual({ ok: true, value: bytes });
  });

  test("zero, negatives and unknown units are refused with the reason", () => {
    expect(parseRate("rate", "0")).toEqual({ ok: false, reason: "rate must be above zero, got '0'" });
    expect(parseRate("rate", "0mbit")).toEqual({ ok: false, reason: "rate must be above zero, got '0mbit'" });
    expect(parseRate("rate-rule", "-5mbit")).toEqual({ ok: false, reason: "rate-rule must be above zero, got '-5mbit'" });
    const unknown = parseRate("rate", "10mbps");
    expect(unknown.ok).toBe(false);
    if (!unknown.ok) expect(unknown.reason).toContain("got '10mbps'");
    expect(parseRate("rate", "fast").ok).toBe(false);
    expect(parseRate("rate", "").ok).toBe(false);
  });

  test("oi check's form: bits and bytes per second", () => {
    expect(formatRate(12_500_000)).toBe("100mbit/s (12.5MB/s)");
    expect(formatRate(187_500)).toBe("1.5mbit/s (187.5kB/s)");
    expect(formatRate(125_000_000)).toBe("1gbit/s (125MB/s)");
    expect(formatRate(100)).toBe("800bit/s (100B/s)");
  });
});

describe("rate options in the three formats", () => {
  test(".conf bracket, TOML keys and YAML keys give the same limits", async () => {
    const conf = await loadText("rate.conf", "127.0.0.1 5000 127.0.0.1 6000 [rate=100mbit,rate-rule=1gbit,rate-client=2mb]\n");
    const toml = await loadText("rate.toml", `${TOML_RULE}rate = "100mbit"\nrate_rule = "1gbit"\nrate_client = 2000000\n`);
    const yaml = await loadText("rate.yaml", `${YAML_RULE}    rate: 100mbit\n    rate_rule: "1GBIT"\n    rate_client: 2mb\n`);
    for (const result of [conf, toml, yaml]) {
      expect(result.errors).toEqual([]);
      expect(result.config?.rules[0]).toMatchObject({ rate: 12_500_000, rateRule: 125_000_000, rateClient: 2_000_000 });
    }
  });

  test("UDP rules take them too; without them a rule is unlimited", async () => {
    const result = await loadText("udp.conf", "127.0.0.1 5000/udp 127.0.0.1 6000/udp [rate=1mbit]\n127.0.0.1 5001 127.0.0.1 6001\n");
    expect(result.errors).toEqual([]);
    expect(result.config?.rules[0]).toMatchObject({ mode: "udp", rate: 125_000, rateRule: undefined, rateClient: undefined });
    expect(result.config?.rules[1]).toMatchObject({ rate: undefined, rateRule: undefined, rateClient: undefined });
  });

  test("bad values are errors on their line, in every format", async () => {
    const conf = await loadText("bad.conf", "# limits\n127.0.0.1 5000 127.0.0.1 6000 [rate=0]\n127.0.0.1 5001 127.0.0.1 6001 [rate-client=10furlongs]\n");
    expect(linesAndReasons(conf.errors)).toEqual([
      [2, "rate must be above zero, got '0'"],
      [3, expect.stringContaining("rate-client must be a number with a unit, kbit, mbit, gbit (bits/s) or kb, mb, gb (bytes/s)")],
    ]);
    const toml = await loadText("bad.toml", `${TOML_RULE}rate_rule = -3\n`);
    expect(linesAndReasons(toml.errors)).toEqual([[6, "rate-rule must be above zero, got '-3'"]]);
    const tomlType = await loadText("type.toml", `${TOML_RULE}rate = true\n`);
    expect(linesAndReasons(tomlType.errors)).toEqual([[6, 'forwarding_rules[0].rate must be a rate such as "100mbit" or a number of bytes per second, got a boolean']]);
    const yaml = await loadText("bad.yaml", `${YAML_RULE}    rate: 5 parsecs\n`);
    expect(linesAndReasons(yaml.errors)).toEqual([[5, expect.stringContaining("rate must be a number with a unit")]]);
  });

  test("oi check shows each limit", async () => {
    const result = await loadText("check.conf", "127.0.0.1 5000 127.0.0.1 6000 [rate=100mbit,rate-rule=1gbit,rate-client=2mb]\n");
    const line = describeRule(result.config!.rules[0]!);
    expect(line).toContain("rate=100mbit/s (12.5MB/s)");
    expect(line).toContain("rate-rule=1gbit/s (125MB/s)");
    expect(line).toContain("rate-client=16mbit/s (2MB/s)");
  });
});
