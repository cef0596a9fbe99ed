/**
 * The body of PUT /api/v1/rules/NAME, read by the YAML config reader: the
 * same reasons as in a file, with lines counted in the body, and the name
 * taken from the URL when the body gives none.
 */
import { describe, expect, test } from "bun:test";
import { parseRuleBody } from "../src/admin/rule-body.ts";
import { parseBackendChange } from "../src/admin/control.ts";

describe("PUT body", () => {
  test("YAML and JSON bodies without a name give the URL's rule; problems name the body's own lines", () => {
    const yaml = parseRuleBody("web", 'bind: "127.0.0.1:8080/tcp"\nconnect: "127.0.0.1:9000"\n');
    expect(yaml.ok && yaml.rules.map((rule) => [rule.name, rule.bind.port, rule.at.line])).toEqual([["web", 8080, 1]]);
    const json = parseRuleBody("web", '{\n  "bind": "127.0.0.1:8080/tcp",\n  "connect": "127.0.0.1:9000"\n}');
    expect(json.ok && json.rules[0]?.name).toBe("web");

    const badYaml = parseRuleBody("web", 'bind: "127.0.0.1:8080/tcp"\nconnect: "127.0.0.1:9000"\nidle_timeout: -1\n');
    expect(!badYaml.ok && badYaml.errors.map((issue) => [issue.line, issue.reason])).toEqual([[3, "rule 'web': idle must be a positive number of seconds, got '-1'"]]);
    const badJson = parseRuleBody("web", '{\n  "bind": "127.0.0.1:8080/tcp",\n  "connect": "127.0.0.1:9000",\n  "idle_timeout": -1\n}');
    expect(!badJson.ok && badJson.errors.map((issue) => issue.line)).toEqual([4]);
    const named = parseRuleBody("web", 'name: web\nbind: "127.0.0.1:8080/tcp"\nconnect: "127.0.0.1:99999"\n');
    expect(!named.ok && named.errors.map((issue) => issue.line)).toEqual([3]);
  });

  test("not a rule: 400 (empty, malformed, a list, a scalar, another name); {} is a rule without bind: 422", () => {
    for (const body of ["", "   \n", "{bind: [", "- a\n- b\n", "42", '"text"']) {
      const parsed = parseRuleBody("web", body);
      expect(parsed.ok === false && parsed.status).toBe(400);
    }
    const other = parseRuleBody("web", "name: api\n");
    expect(other.ok === false && other.message).toBe("the body names rule 'api' but the URL names 'web'");
    const empty = parseRuleBody("web", "{}");
    expect(empty.ok === false && empty.status).toBe(422);
  });

  test("backend changes: state and weight checked as config weights are", () => {
    expect(parseBackendChange('{"state":"maint","weight":100}')).toEqual({ state: "maint", weight: 100 });
    expect(parseBackendChange('{"weight":1.5}')).toMatch(/whole number from 1 to 100/);
    expect(parseBackendChange("{}")).toMatch(/give state/);
    expect(parseBackendChange("null")).toMatch(/JSON object/);
  });
});
