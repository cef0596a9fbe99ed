/**
 * The `sockets` global in the three config formats: auto unless set, auto,
 * direct or bun, and any other value is an error with its line.
 */
import { describe, expect, test } from "bun:test";
import { loadConfigText } from "../src/config/load.ts";
import { ONE_RULE } from "./helpers/config.ts";

const { conf: RULE_CONF, toml: RULE_TOML, yaml: RULE_YAML } = ONE_RULE;

describe("sockets", () => {
  test("auto by default in every format; direct and bun as written", () => {
    expect(loadConfigText(RULE_CONF, "oi.conf").config?.sockets).toBe("auto");
    expect(loadConfigText(RULE_TOML, "oi.toml").config?.sockets).toBe("auto");
    expect(loadConfigText(RULE_YAML, "oi.yaml").config?.sockets).toBe("auto");
    expect(loadConfigText(`sockets bun\n${RULE_CONF}`, "oi.conf").config?.sockets).toBe("bun");
    expect(loadConfigText(`sockets = "direct"\n${RULE_TOML}`, "oi.toml").config?.sockets).toBe("direct");
    expect(loadConfigText(`global:\n  sockets: bun\n${RULE_YAML}`, "oi.yaml").config?.sockets).toBe("bun");
  });

  test("any other value is an error on its line", () => {
    const conf = loadConfigText(`${RULE_CONF}sockets fast\n`, "oi.conf");
    expect(conf.config).toBeUndefined();
    expect(conf.errors.map((error) => [error.line, error.reason])).toEqual([[2, "sockets must be auto, direct or bun, got 'fast'"]]);
    const yaml = loadConfigText(`global:\n  sockets: true\n${RULE_YAML}`, "oi.yaml");
    expect(yaml.config).toBeUndefined();
    expect(yaml.errors.map((error) => error.line)).toEqual([2]);
  });
});
