/**
 * @module One rule in rinetd-uv's YAML rule schema, given on its own (the
 * body of the admin API's PUT, an etcd key's value) rather than as an item
 * of a file's `rules:` list; and a `global` section given on its own (an
 * etcd key's value). Both are read by the YAML config reader itself, as part
 * of a document built around them, so the same checks apply and the same
 * messages come back, with lines counted in the text given.
 */
import type { Config, ConfigIssue, ForwardRule } from "../types.ts";
import { loadConfigText } from "./load.ts";
import { nestingProblem } from "./nesting.ts";
import { NUL_BYTE, nulByteLine } from "./text-limits.ts";

/** The name loadConfigText needs to pick the YAML reader; it never shows. */
const DOCUMENT_NAME = "document.yaml";

export type YamlRule =
  | { ok: true; rules: ForwardRule[]; warnings: ConfigIssue[] }
  /** `malformed`: not one rule at all (`problem` says how); `invalid`: a rule the checks refuse. */
  | { ok: false; kind: "malformed"; problem: Malformed; message: string; errors: ConfigIssue[]; named?: string }
  | { ok: false; kind: "invalid"; message: string; errors: ConfigIssue[] };

/** Empty, not YAML or JSON, not a mapping, or naming another rule. */
export type Malformed = "empty" | "syntax" | "shape" | "name";

/** A `global` section's text and the name its problems are reported under. */
export interface GlobalText {
  text: string;
  file: string;
}

function indented(text: string, by: string): string[] {
  return text.split(/\r?\n/).map((line) => by + line);
}

function isBlank(text: string): boolean {
  return text.trim() === "";
}

/**
 * Rule `name` from `text` (YAML or JSON; its `name` may be left out),
 * problems and the rule's lines reported in `file` with the text's own
 * lines. With `global`, the rule takes that section's defaults, as a rule of
 * the same file would.
 */
export function readYamlRule(name: string, text: string, file: string, global?: GlobalText): YamlRule {
  const malformed = (problem: Malformed, message: string, named?: string): YamlRule => ({
    ok: false,
    kind: "malformed",
    problem,
    message,
    errors: [],
    ...(named === undefined ? {} : { named }),
  });
  const fail = (message: string, errors: ConfigIssue[] = []): YamlRule => ({ ok: false, kind: "invalid", message, errors });
  if (isBlank(text)) return malformed("empty", "empty: give one rule (name, bind, connect, ...) as YAML or JSON");
  // The bounds the YAML config reader sets, before this first look at the text (Bun.YAML.parse overflows the stack on deep nesting).
  const problem = nestingProblem(text, "yaml");
  if (problem !== undefined) return fail(`rule '${name}' is refused`, [{ file, ...problem }]);
  const nul = nulByteLine(text);
  if (nul !== undefined) return fail(`rule '${name}' is refused`, [{ file, line: nul, reason: NUL_BYTE }]);
  let value: unknown;
  try {
    value = Bun.YAML.parse(text);
  } catch (error) {
    return malformed("syntax", `malformed (neither YAML nor JSON): ${error instanceof Error ? error.message : String(error)}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return malformed("shape", "not one rule: give a mapping (YAML) or an object (JSON) with bind and connect");
  }
  const given = (value as Record<string, unknown>).name;
  if (given !== undefined && given !== name) return malformed("name", `names rule '${String(given)}' where '${name}' is expected`, String(given));
  let body = text;
  /** Lines the rule's text was moved down by: the global section, the document's `rules:` line, and a name line added. */
  let shift = 1;
  if (given === undefined) {
    // Named without moving the text's lines: inside a JSON object's brace, or as a line of its own before a YAML mapping.
    const brace = /^\s*\{/.exec(text);
    if (brace !== null) body = `${brace[0]}"name": ${JSON.stringify(name)}, ${text.slice(brace[0].length)}`;
    else {
      body = `name: ${JSON.stringify(name)}\n${text}`;
      shift = 2;
    }
  }
  const globalLines = global === undefined || isBlank(global.text) ? [] : ["global:", ...indented(global.text, "  ")];
  shift += globalLines.length;
  // The rule as the one item of `rules:`.
  const ruleLines = body.split(/\r?\n/).map((line, index) => (index === 0 ? `  - ${line}` : `    ${line}`));
  const document = [...globalLines, "rules:", ...ruleLines, ""].join("\n");
  const result = loadConfigText(document, DOCUMENT_NAME);
  /** A problem of the rule's lines, in the rule's text; one of the global section's (already reported with it) is left out. */
  const inText = (issue: ConfigIssue): ConfigIssue[] => {
    if (issue.line > 0 && issue.line <= globalLines.length) return [];
    return [{ file, line: Math.max(0, issue.line - shift), reason: issue.reason }];
  };
  const warnings = result.warnings.flatMap(inText);
  if (result.config === undefined) {
    const errors = result.errors.flatMap(inText);
    // An error the global section causes only with this rule (none known) would otherwise vanish.
    return fail(`rule '${name}' is refused`, errors.length > 0 ? errors : result.errors.map((issue) => ({ ...issue, file: global?.file ?? file })));
  }
  const rules = result.config.rules.map((rule) => ({ ...rule, at: { file, line: Math.max(0, rule.at.line - shift) } }));
  if (rules.length === 0) return fail(`rule '${name}' gives no bind`);
  return { ok: true, rules, warnings };
}

/**
 * A `global` section given alone (its content: `dns_refresh: 60`, ... as
 * it stands under `global:` in a file): the config it makes, without rules,
 * with problems in `file` on the text's own lines.
 */
export function readYamlGlobal(text: string, file: string): { config: Config | undefined; errors: ConfigIssue[]; warnings: ConfigIssue[] } {
  if (isBlank(text)) text = "{}";
  const document = ["global:", ...indented(text, "  "), ""].join("\n");
  const result = loadConfigText(document, DOCUMENT_NAME);
  const inText = (issue: ConfigIssue): ConfigIssue => ({ file, line: Math.max(0, issue.line - 1), reason: issue.reason });
  const config = result.config === undefined ? undefined : { ...result.config, file };
  return { config, errors: result.errors.map(inText), warnings: result.warnings.map(inText) };
}
