/**
 * @module rinetd's `.conf` format, read as rinetd(8) describes it:
 *
 *     bindaddress bindport connectaddress connectport [option=value,...]
 *     allow|deny PATTERN        global before the first rule, per rule after it
 *     logfile PATH | pidlogfile PATH | logcommon
 *
 * Fields are separated by spaces or tabs, `#` starts a comment anywhere,
 * keywords are case-insensitive. Every line is checked; all problems are
 * reported, each with its line.
 */

import { readFileSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { AccessRule, Config, ForwardRule } from "../types.ts";
import { expandInclude, realFile } from "./conf-include.ts";
import { expectedFieldCounts, parseRuleFields, RULE_FORM } from "./conf-rule.ts";
import { checkGlobals, confGlobal, type GlobalSpec, type GlobalValue, noEffectWarning } from "./globals.ts";
import { IssueCollector, type ParseResult } from "./issues.ts";
import { defaultRuleName, emptyAccessList, emptyConfig, modeOf } from "./model.ts";
import { defaultRuleDefaults, inheritDefaults, type RuleDefaults } from "./options.ts";
import { MAX_CONFIG_BYTES, NUL_BYTE, nulByteLine, tooLarge } from "./text-limits.ts";
import { compileAccessRule } from "./validate.ts";

/** Files in one chain of includes, the main file counted, as rinetd-uv allows (main + 9 nested): deeper is taken for a mistake. */
const MAX_INCLUDE_DEPTH = 10;

/**
 * One whitespace-separated word of a line; a `[...]` group is one token even
 * with spaces inside, and so is a double-quoted string (a path with spaces),
 * whose text is given without its quotes.
 */
interface Token {
  text: string;
  bracketed: boolean;
}

/** Parser state carried from line to line. */
interface ConfState {
  config: Config;
  issues: IssueCollector;
  /** allow/deny are global until the first forwarding line, even one with errors. */
  seenForwardingLine: boolean;
  /** Where per-rule allow/deny go; undefined after a forwarding line with errors. */
  currentRule: ForwardRule | undefined;
  /** Files being read, outermost first (for include cycles), and every file read. */
  includeChain: string[];
  files: string[];
  /** Defaults global directives give to rules, applied once every line is read. */
  defaults: RuleDefaults;
  /** Per rule, the inheritable options it set itself. */
  explicit: Map<ForwardRule, Set<keyof RuleDefaults>>;
  /** Characters of every file read so far (MAX_CONFIG_BYTES bounds them together). */
  bytesRead: number;
}

export function parseConf(text: string, file: string): ParseResult {
  const state: ConfState = {
    config: emptyConfig(file, "conf"),
    issues: new IssueCollector(file),
    seenForwardingLine: false,
    currentRule: undefined,
    includeChain: [realFile(file)],
    files: [file],
    defaults: defaultRuleDefaults(),
    explicit: new Map(),
    bytesRead: Buffer.byteLength(text),
  };
  parseText(state, text);
  // Global directives apply to every rule that does not say otherwise, wherever they stand.
  for (const rule of state.config.rules) inheritDefaults(rule, state.defaults, state.explicit.get(rule) ?? new Set());
  const globalProblem = checkGlobals(state.config);
  if (globalProblem !== undefined) state.issues.error(0, globalProblem);
  return { config: state.config, errors: state.issues.errors, warnings: state.issues.warnings, files: state.files };
}

/** Lines of the file `state.issues.file`, in order; an `include` parses its files in place. */
function parseText(state: ConfState, text: string): void {
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) parseLine(state, lines[i] ?? "", i + 1);
}

function parseLine(state: ConfState, rawLine: string, line: number): void {
  const content = withoutComment(rawLine);
  const tokens = tokenize(content);
  if (typeof tokens === "string") {
    state.issues.error(line, tokens);
    return;
  }
  const first = tokens[0];
  if (first === undefined) return;

  const args = tokens.slice(1).map((token) => token.text);
  const keyword = first.text.toLowerCase();
  switch (keyword) {
    case "allow":
    case "deny":
      return parseAccessLine(state, keyword, args, line);
    case "include":
      return parseIncludeLine(state, args, line);
  }
  const global = confGlobal(keyword);
  if (global !== undefined) return parseGlobalLine(state, keyword, global, args, line);
  if (!looksLikeForwardingRule(tokens)) {
    state.issues.error(line, `unknown directive '${first.text}'`);
    return;
  }
  parseForwardingLine(state, tokens, line);
}

/** The line up to its `#` comment; a `#` inside double quotes is part of the string. */
function withoutComment(line: string): string {
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (char === "\\" && quoted) i++;
    else if (char === '"') quoted = !quoted;
    else if (char === "#" && !quoted) return line.slice(0, i);
  }
  return line;
}

/** A double-quoted string starting at `open`: its text (`\"` and `\\` unescaped) and the index after it; undefined when unclosed. */
function quotedString(content: string, open: number): { text: string; end: number } | undefined {
  let text = "";
  for (let i = open + 1; i < content.length; i++) {
    const char = content[i] ?? "";
    if (char === '"') return { text, end: i + 1 };
    if (char === "\\" && i + 1 < content.length) text += content[++i];
    else text += char;
  }
  return undefined;
}

/**
 * Split on spaces and tabs. A `[` opens a group that runs to its matching `]`,
 * spaces included, so `[ timeout = 30 ]` is one token and `[::1]:80,[::2]:80`
 * stays one word. A token that is one whole group is "bracketed".
 */
function tokenize(content: string): Token[] | string {
  const tokens: Token[] = [];
  let i = 0;
  while (i < content.length) {
    if (/\s/.test(content[i] ?? "")) {
      i++;
      continue;
    }
    const start = i;
    if (content[i] === '"') {
      const quoted = quotedString(content, i);
      if (quoted === undefined) return `unclosed '"' in '${content.slice(i).trim()}'`;
      tokens.push({ text: quoted.text, bracketed: false });
      i = quoted.end;
      continue;
    }
    while (i < content.length && !/\s/.test(content[i] ?? "")) {
      // Two option groups written together, `[a=1][b=2]`, are two tokens.
      if (content[i] === "[" && i > start && content[start] === "[" && matchingBracket(content, start) === i - 1) break;
      if (content[i] === "[") {
        const close = matchingBracket(content, i);
        if (close === -1) return `unclosed '[' in '${content.slice(i).trim()}'`;
        i = close + 1;
      } else {
        i++;
      }
    }
    const text = content.slice(start, i);
    tokens.push({ text, bracketed: text.startsWith("[") && matchingBracket(text, 0) === text.length - 1 });
  }
  return tokens;
}

/** Index of the `]` closing the `[` at `open`, counting nested pairs (`[src=[::1]]`); -1 when unclosed. */
function matchingBracket(content: string, open: number): number {
  let depth = 0;
  for (let i = open; i < content.length; i++) {
    if (content[i] === "[") depth++;
    else if (content[i] === "]" && --depth === 0) return i;
  }
  return -1;
}

/**
 * Whether a line that is no keyword was meant as a forwarding rule, so a
 * wrong field count is reported as such rather than as an unknown directive:
 * it starts with an IP address, or its second word is a port.
 */
function looksLikeForwardingRule(tokens: Token[]): boolean {
  const { fields, options } = splitFieldsAndOptions(tokens);
  if (fields.length === 4 || options.length > 0) return true;
  const [first, second] = fields;
  if (first === undefined || first.bracketed || first.text.includes(":") || /^[\d.]+$/.test(first.text)) return true;
  return fields.length >= 3 && second !== undefined && /^\d+(-\d+)?(\/\w*)?$|\/(tcp|udp)$/i.test(second.text);
}

/** Option groups are the bracketed tokens after the address fields, or any bracketed token with `=` in it. */
function splitFieldsAndOptions(tokens: Token[]): { fields: Token[]; options: Token[] } {
  // A bracketed IPv6 address ([::1]) is a field; a group after the fields, or one with `=`, is options.
  const fieldCount = expectedFieldCounts(tokens.filter((token) => !token.bracketed || !token.text.includes("=")).map((token) => token.text)).max;
  const start = tokens.findIndex((token, index) => token.bracketed && (index >= fieldCount || token.text.includes("=")));
  if (start === -1) return { fields: tokens, options: [] };
  return { fields: tokens.slice(0, start), options: tokens.slice(start) };
}

function parseAccessLine(state: ConfState, kind: "allow" | "deny", args: string[], line: number): void {
  const [pattern] = args;
  if (args.length !== 1 || pattern === undefined) {
    state.issues.error(line, `${kind} takes one pattern (${kind} PATTERN), found ${args.length}`);
    return;
  }
  const checked = compileAccessRule(kind, pattern, { file: state.issues.file, line });
  if (!checked.ok) {
    state.issues.error(line, checked.reason);
    return;
  }
  const list = state.seenForwardingLine ? state.currentRule?.access : state.config.globalAccess;
  if (list !== undefined) pushAccessRule(list, checked.value);
}

function pushAccessRule(list: { allow: AccessRule[]; deny: AccessRule[] }, rule: AccessRule): void {
  if (rule.kind === "allow") list.allow.push(rule);
  else list.deny.push(rule);
}

/**
 * A global directive: `logcommon` (no argument), `logfile PATH`, `maxconn N`,
 * `dns-multi-ip-expand on`... Settings without effect in oi are warned about.
 */
function parseGlobalLine(state: ConfState, keyword: string, spec: GlobalSpec, args: string[], line: number): void {
  if (spec.type === "flag") {
    if (args.length > 0) state.issues.error(line, `${keyword} takes no argument, found ${args.length}`);
    else report(state, line, spec.apply({ config: state.config, defaults: state.defaults, at: { file: state.issues.file, line } }, true));
    return;
  }
  if (spec.bareMeansOn === true && args.length === 0) {
    report(state, line, spec.apply({ config: state.config, defaults: state.defaults, at: { file: state.issues.file, line } }, true));
    return;
  }
  const [text] = args;
  if (args.length !== 1 || text === undefined) {
    const form = spec.type === "path" ? "PATH" : spec.type === "switch" ? "on|off" : spec.type === "switch-or-word" ? "on|off|auto" : "VALUE";
    const what = spec.type === "path" ? "path" : "value";
    state.issues.error(line, `${keyword} takes one ${what} (${keyword} ${form}), found ${args.length} argument${args.length === 1 ? "" : "s"}`);
    return;
  }
  const reason = spec.apply({ config: state.config, defaults: state.defaults, at: { file: state.issues.file, line } }, confGlobalValue(spec, text));
  if (reason !== undefined) state.issues.error(line, reason);
  else if (spec.noEffect !== undefined) state.issues.warn(line, noEffectWarning(keyword, spec.noEffect));
}

function report(state: ConfState, line: number, reason: string | undefined): void {
  if (reason !== undefined) state.issues.error(line, reason);
}

/** The text of a global directive as the value type its setting expects; the setting's check names a bad one. */
function confGlobalValue(spec: GlobalSpec, text: string): GlobalValue {
  switch (spec.type) {
    case "integer":
      return /^\d+$/.test(text) ? Number(text) : text;
    case "number":
      return /^(\d+\.?\d*|\.\d+)$/.test(text) ? Number(text) : text;
    case "switch":
    case "switch-or-word": {
      const lower = text.toLowerCase();
      if (["on", "true", "yes"].includes(lower)) return true;
      if (["off", "false", "no"].includes(lower)) return false;
      return text;
    }
    default:
      return text;
  }
}

function parseForwardingLine(state: ConfState, tokens: Token[], line: number): void {
  state.seenForwardingLine = true;
  state.currentRule = undefined;
  const { fields, options } = splitFieldsAndOptions(tokens);
  const texts = fields.map((field) => field.text);
  const { min, max } = expectedFieldCounts(texts);
  if (texts.length < min || texts.length > max) {
    const expected = min === max ? `${min}` : `${min} or ${max}`;
    const form = min === 4 || max === 4 ? RULE_FORM : "unix:PATH and srv:NAME take no port field";
    state.issues.error(line, `wrong number of fields: found ${texts.length}, expected ${expected} (${form})`);
    return;
  }
  const reasons: string[] = [];
  const parsed = parseRuleFields(texts, options.map((option) => option.text), reasons);
  for (const reason of reasons) state.issues.error(line, reason);
  if (parsed === undefined || reasons.length > 0) return;

  if (parsed.udpToTcpByDefault) {
    state.issues.warn(
      line,
      `this rule forwards UDP to TCP, as rinetd does when the connect port has no suffix; write '${texts[3] ?? "PORT"}/udp' to forward UDP to UDP`,
    );
  }
  const rule: ForwardRule = {
    ...parsed.options,
    index: state.config.rules.length,
    name: "",
    at: { file: state.issues.file, line },
    mode: modeOf(parsed.bind.transport, parsed.backends[0]?.endpoint.transport ?? "tcp"),
    bind: parsed.bind,
    backends: parsed.backends,
    access: emptyAccessList(),
  };
  rule.name = defaultRuleName(rule);
  state.config.rules.push(rule);
  state.explicit.set(rule, parsed.explicit);
  state.currentRule = rule;
}

/**
 * `include PATH`: a file, a directory (its `*.conf` files in name order), or
 * a pattern with `*`/`?` in its last part (`conf.d/*.conf`). Relative paths
 * start at the including file's directory. The included lines are read as if
 * they stood in place of the directive (so allow/deny after an included rule
 * belong to it). A cycle, or a chain of more than MAX_INCLUDE_DEPTH files, is
 * an error naming the chain.
 */
function parseIncludeLine(state: ConfState, args: string[], line: number): void {
  const [pattern] = args;
  if (args.length !== 1 || pattern === undefined) {
    state.issues.error(line, `include takes one path (include FILE|DIRECTORY|PATTERN), found ${args.length}`);
    return;
  }
  const expanded = expandInclude(resolve(dirname(state.issues.file), pattern));
  if (typeof expanded === "string") {
    state.issues.error(line, `include ${pattern}: ${expanded}`);
    return;
  }
  if (expanded.length === 0) state.issues.warn(line, `include ${pattern} matched no files`);
  for (const file of expanded) includeFile(state, file, line);
}

function includeFile(state: ConfState, file: string, line: number): void {
  const real = realFile(file);
  // rinetd-uv's wording, so that what greps its messages finds these too; the chain is oi's addition.
  const at = `${state.issues.file}:${line}`;
  const cycleStart = state.includeChain.indexOf(real);
  if (cycleStart !== -1) {
    const chain = [...state.includeChain.slice(cycleStart), real].join(" -> ");
    state.issues.error(line, `circular include detected: ${real} at ${at} (${chain})`);
    return;
  }
  if (state.includeChain.length >= MAX_INCLUDE_DEPTH) {
    const chain = [...state.includeChain, real].join(" -> ");
    state.issues.error(line, `maximum include depth (${MAX_INCLUDE_DEPTH}) exceeded at ${at}: ${chain}`);
    return;
  }
  let text: string;
  try {
    // The size bound counts every file read, checked before this one is.
    const size = statSync(file).size;
    if (state.bytesRead + size > MAX_CONFIG_BYTES) {
      state.issues.error(line, `include ${file}: ${tooLarge(state.bytesRead + size)}`);
      return;
    }
    text = readFileSync(file, "utf8");
  } catch (error) {
    state.issues.error(line, `include ${file}: cannot read: ${error instanceof Error ? error.message : String(error)}`);
    return;
  }
  state.bytesRead += Buffer.byteLength(text);
  const nul = nulByteLine(text);
  if (nul !== undefined) {
    state.issues.error(line, `include ${file}: line ${nul} ${NUL_BYTE}`);
    return;
  }
  const including = state.issues.file;
  state.issues.file = file;
  state.includeChain.push(real);
  state.files.push(file);
  parseText(state, text);
  state.includeChain.pop();
  state.issues.file = including;
}
