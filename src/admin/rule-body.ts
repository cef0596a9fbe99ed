/**
 * @module The body of `PUT /api/v1/rules/NAME`: one rule in rinetd-uv's
 * YAML rule schema, or the same as JSON (YAML 1.2 reads JSON). It is read
 * by the YAML config reader itself, as the one rule of a document, so the
 * same checks apply and the same messages come back, with lines counted in
 * the body.
 */
import { loadConfigText } from "../config/load.ts";
import { nestingProblem } from "../config/nesting.ts";
import type { ConfigIssue, ForwardRule } from "../types.ts";

/** Where the rules of the API say they come from (`oi check`, the rule views). */
export const API_SOURCE = "admin API";

export type RuleBody = { ok: true; rules: ForwardRule[] } | { ok: false; status: number; message: string; errors: ConfigIssue[] };

export function parseRuleBody(name: string, text: string): RuleBody {
  const fail = (status: number, message: string, errors: ConfigIssue[] = []): RuleBody => ({ ok: false, status, message, errors });
  if (text.trim() === "") return fail(400, "empty body: send one rule (name, bind, connect, ...) as YAML or JSON");
  // The same bound the YAML config reader sets, before this first look at the body.
  const problem = nestingProblem(text, "yaml");
  if (problem !== undefined) return fail(422, `rule '${name}' is refused`, [{ file: "request body", ...problem }]);
  let value: unknown;
  try {
    value = Bun.YAML.parse(text);
  } catch (error) {
    return fail(400, `malformed body (neither YAML nor JSON): ${error instanceof Error ? error.message : String(error)}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return fail(400, "the body must be one rule: a mapping (YAML) or an object (JSON) with bind and connect");
  }
  const given = (value as Record<string, unknown>).name;
  if (given !== undefined && given !== name) return fail(400, `the body names rule '${String(given)}' but the URL names '${name}'`);
  let body = text;
  /** Lines the body was moved down by (the document's `rules:` line, and a name line added). */
  let shift = 1;
  if (given === undefined) {
    // Named after the URL, without moving the body's lines: inside a JSON object's brace, or as a line of its own before a YAML mapping.
    const brace = /^\s*\{/.exec(text);
    if (brace !== null) body = `${brace[0]}"name": ${JSON.stringify(name)}, ${text.slice(brace[0].length)}`;
    else {
      body = `name: ${JSON.stringify(name)}\n${text}`;
      shift = 2;
    }
  }
  // The rule as the one item of `rules:`.
  const lines = body.split(/\r?\n/);
  const document = `rules:\n${lines.map((line, index) => (index === 0 ? `  - ${line}` : `    ${line}`)).join("\n")}\n`;
  const result = loadConfigText(document, "request.yaml");
  const atBody = (issue: ConfigIssue): ConfigIssue => ({ file: "request body", line: Math.max(0, issue.line - shift), reason: issue.reason });
  if (result.config === undefined) return fail(422, `rule '${name}' is refused`, result.errors.map(atBody));
  const rules = result.config.rules.map((rule) => ({ ...rule, at: { file: API_SOURCE, line: Math.max(0, rule.at.line - shift) } }));
  if (rules.length === 0) return fail(422, `rule '${name}' gives no bind`);
  return { ok: true, rules };
}
