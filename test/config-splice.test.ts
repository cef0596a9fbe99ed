/**
 * The `splice` global in the three config formats: auto unless set,
 * on/off or auto, and any other value is an error with its line.
 */
import { describe, expect, test } from "bun:test";
import { loadConfigText } from "../src/config/load.ts";
import { ONE_RULE } from "./helpers/config.ts";

const { conf: RULE_CONF, toml: RULE_TOML, yaml: RULE_YAML } = ONE_RULE;

describe("splice", () => {
  test("auto by default in every format", () => {
    expect(loadConfigText(RULE_CONF, "oi.conf").config?.splice).toBe("auto");
    expect(loadConfigText(RULE_TOML, "oi.toml").config?.splice).toBe("auto");
    expect(loadConfigText(RULE_YAML, "oi.yaml").config?.splice).toBe("auto");
    expect(loadConfigText(`splice off\n${RULE_CONF}`, "oi.conf").config?.splice).toBe("off");
    expect(loadConfigText(`splice = false\n${RULE_TOML}`, "oi.toml").config?.splice).toBe("off");
    expect(loadConfigText(`global:\n  splice: false\n${RULE_YAML}`, "oi.yaml").config?.splice).toBe("off");
  });

  test("`splice on` (.conf), `splice = true` (TOML), `global: splice: true` (YAML)", () => {
    expect(loadConfigText(`splice on\n${RULE_CONF}`, "oi.conf").config?.splice).toBe("on");
    expect(loadConfigText(`splice = true\n${RULE_TOML}`, "oi.toml").config?.splice).toBe("on");
    expect(loadConfigText(`global:\n  splice: true\n${RULE_YAML}`, "oi.yaml").config?.splice).toBe("on");
    expect(loadConfigText(`splice on\nsplice off\n${RULE_CONF}`, "oi.conf").config?.splice).toBe("off");
  });

  test("`splice auto` in every format", () => {
    expect(loadConfigText(`splice auto\n${RULE_CONF}`, "oi.conf").config?.splice).toBe("auto");
    expect(loadConfigText(`splice = "auto"\n${RULE_TOML}`, "oi.toml").config?.splice).toBe("auto");
    expect(loadConfigText(`global:\n  splice: auto\n${RULE_YAML}`, "oi.yaml").config?.splice).toBe("auto");
  });

  test("a value that is not on, off or auto is an error on its line", () => {
    const conf = loadConfigText(`${RULE_CONF}splice fast\n`, "oi.conf");
    expect(conf.config).toBeUndefined();
    expect(conf.errors.map((error) => [error.line, error.reason])).toEqual([[2, "splice must be on, off or auto, got 'fast'"]]);
    const toml = loadConfigText(`splice = 3\n${RULE_TOML}`, "oi.toml");
    expect(toml.config).toBeUndefined();
    expect(toml.errors.map((error) => error.line)).toEqual([1]);
  });
});
