/**
 * @module The body of `PUT /api/v1/rules/NAME`: one rule in rinetd-uv's
 * YAML rule schema, or the same as JSON (YAML 1.2 reads JSON), read by
 * config/yaml-rule.ts as an etcd key's rule is, with lines counted in the
 * body.
 */
import { type Malformed, readYamlRule } from "../config/yaml-rule.ts";
import type { ConfigIssue, ForwardRule } from "../types.ts";

/** Where the rules of the API say they come from (`oi check`, the rule views). */
export const API_SOURCE = "admin API";
/** Where problems of a PUT's body are reported. */
const BODY = "request body";

export type RuleBody = { ok: true; rules: ForwardRule[] } | { ok: false; status: number; message: string; errors: ConfigIssue[] };

export function parseRuleBody(name: string, text: string): RuleBody {
  const read = readYamlRule(name, text, BODY);
  if (!read.ok) {
    // Not a rule at all is the request's fault (400); a rule the checks refuse is 422, as a file's would be.
    if (read.kind === "malformed") return { ok: false, status: 400, message: bodyMessage(read, name), errors: read.errors };
    return { ok: false, status: 422, message: read.message, errors: read.errors };
  }
  return { ok: true, rules: read.rules.map((rule) => ({ ...rule, at: { file: API_SOURCE, line: rule.at.line } })) };
}

/** The reader's words, said of the body and the URL. */
function bodyMessage(read: { problem: Malformed; message: string; named?: string }, name: string): string {
  switch (read.problem) {
    case "empty":
      return "empty body: send one rule (name, bind, connect, ...) as YAML or JSON";
    case "syntax":
      return read.message.replace(/^malformed/, "malformed body");
    case "shape":
      return "the body must be one rule: a mapping (YAML) or an object (JSON) with bind and connect";
    case "name":
      return `the body names rule '${read.named ?? ""}' but the URL names '${name}'`;
  }
}
