/**
 * The `splice` global in the three config formats: off unless asked for,
 * and a value that is not a switch is an error with its line.
 */
import { describe, expect, test } from "bun:test";
import { loadConfigText } from "../src/config/load.ts";

const RULE_CONF = "127.0.0.1 8080 127.0.0.1 80\n";
const RULE_TOML = '[[forwarding_rules]]\nbind_address = "127.0.0.1"\nbind_port = 8080\nconnect_address = "127.0.0.1"\nconnect_port = 80\n';
const RULE_YAML = 'rules:\n  - name: web\n    bind: "127.0.0.1:8080"\n    connect: "127.0.0.1:80"\n';

describe("splice", () => {
  test("off by default in every format", () => {
    expect(loadConfigText(RULE_CONF, "oi.conf").config?.splice).toBe(false);
    expect(loadConfigText(RULE_TOML, "oi.toml").config?.splice).toBe(false);
    expect(loadConfigText(RULE_YAML, "oi.yaml").config?.splice).toBe(false);
  });

  test("`splice on` (.conf), `splice = true` (TOML), `global: splice: true` (YAML)", () => {
    expect(loadConfigText(`splice on\n${RULE_CONF}`, "oi.conf").config?.splice).toBe(true);
    expect(loadConfigText(`splice = true\n${RULE_TOML}`, "oi.toml").config?.splice).toBe(true);
    expect(loadConfigText(`global:\n  splice: true\n${RULE_YAML}`, "oi.yaml").config?.splice).toBe(true);
    expect(loadConfigText(`splice on\nsplice off\n${RULE_CONF}`, "oi.conf").config?.splice).toBe(false);
  });

  test("a value that is not on/off is an error on its line", () => {
    const result = loadConfigText(`${RULE_CONF}splice fast\n`, "oi.conf");
    expect(result.config).toBeUndefined();
    expect(result.errors.map((error) => error.line)).toEqual([2]);
  });
});
