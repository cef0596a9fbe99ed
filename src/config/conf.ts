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

import { readdirSync, readFileSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type { AccessRule, Config, ForwardRule, RuleOptions, Transport } from "../types.ts";
import { IssueCollector, type ParseResult } from "./issues.ts";
import { emptyAccessList, emptyConfig, modeOf } from "./model.ts";
import { CONF_OPTION_NAMES, defaultRuleOptions, parseConfOptionValue, RULE_OPTIONS } from "./options.ts";
import { resolveService } from "./services.ts";
import { type Checked, checkHost, checkMaxConnections, checkMetricsAddress, checkPort, compileAccessRule } from "./validate.ts";

const RULE_FORM = "bindaddress bindport connectaddress connectport [options]";
/** As rinetd-uv: deeper nesting is taken for a mistake. */
const MAX_INCLUDE_DEPTH = 10;
const RULE_FIELDS = 4;

/** One whitespace-separated word of a line; a `[...]` group is one token even with spaces inside. */
interface Token {
  text: string;
  bracketed: boolean;
}

interface PortField {
  port: number;
  transport: Transport;
  /** False when the port had no `/tcp` or `/udp`: rinetd then means TCP. */
  suffixed: boolean;
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
}

export function parseConf(text: string, file: string): ParseResult {
  const state: ConfState = {
    config: emptyConfig(file, "conf"),
    issues: new IssueCollector(file),
    seenForwardingLine: false,
    currentRule: undefined,
    includeChain: [realFile(file)],
    files: [file],
  };
  parseText(state, text);
  return { config: state.config, errors: state.issues.errors, warnings: state.issues.warnings, files: state.files };
}

/** Lines of the file `state.issues.file`, in order; an `include` parses its files in place. */
function parseText(state: ConfState, text: string): void {
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) parseLine(state, lines[i] ?? "", i + 1);
}

function parseLine(state: ConfState, rawLine: string, line: number): void {
  const hash = rawLine.indexOf("#");
  const content = hash === -1 ? rawLine : rawLine.slice(0, hash);
  const tokens = tokenize(content);
  if (typeof tokens === "string") {
    state.issues.error(line, tokens);
    return;
  }
  const first = tokens[0];
  if (first === undefined) return;

  const args = tokens.slice(1).map((token) => token.text);
  switch (first.text.toLowerCase()) {
    case "allow":
      return parseAccessLine(state, "allow", args, line);
    case "deny":
      return parseAccessLine(state, "deny", args, line);
    case "logfile":
      return parsePathLine(state, "logfile", args, line, (path) => (state.config.logFile = path));
    case "pidlogfile":
      return parsePathLine(state, "pidlogfile", args, line, (path) => (state.config.pidFile = path));
    case "include":
      return parseIncludeLine(state, args, line);
    case "logcommon":
      return parseFlagLine(state, "logcommon", args, line, () => (state.config.logFormat = "common"));
    case "logjson":
      return parseFlagLine(state, "logjson", args, line, () => (state.config.logFormat = "json"));
    case "maxconn":
      return parseValueLine(state, "maxconn", "N", args, line, (text) => {
        const checked = checkMaxConnections(/^\d+$/.test(text) ? Number(text) : Number.NaN, text);
        if (!checked.ok) return checked.reason;
        state.config.maxConnections = checked.value;
        return undefined;
      });
    case "metrics":
      return parseValueLine(state, "metrics", "HOST:PORT", args, line, (text) => {
        const checked = checkMetricsAddress(text);
        if (!checked.ok) return checked.reason;
        state.config.metrics = checked.value;
        return undefined;
      });
  }
  if (!looksLikeForwardingRule(tokens)) {
    state.issues.error(line, `unknown directive '${first.text}'`);
    return;
  }
  parseForwardingLine(state, tokens, line);
}

/** Split on spaces and tabs; `[` opens a group that runs to its matching `]`. */
function tokenize(content: string): Token[] | string {
  const tokens: Token[] = [];
  let i = 0;
  while (i < content.length) {
    if (/\s/.test(content[i] ?? "")) {
      i++;
      continue;
    }
    if (content[i] === "[") {
      const close = matchingBracket(content, i);
      if (close === -1) return `unclosed '[' in '${content.slice(i).trim()}'`;
      tokens.push({ text: content.slice(i, close + 1), bracketed: true });
      i = close + 1;
      continue;
    }
    const start = i;
    while (i < content.length && !/[\s[]/.test(content[i] ?? "")) i++;
    tokens.push({ text: content.slice(start, i), bracketed: false });
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
  if (fields.length === RULE_FIELDS || options.length > 0) return true;
  const [first, second] = fields;
  if (first === undefined || first.bracketed || first.text.includes(":") || /^[\d.]+$/.test(first.text)) return true;
  return fields.length >= 3 && second !== undefined && /^\d+(\/\w*)?$|\/(tcp|udp)$/i.test(second.text);
}

/** Option groups are the bracketed tokens after the four fields, or any bracketed token with `=` in it. */
function splitFieldsAndOptions(tokens: Token[]): { fields: Token[]; options: Token[] } {
  const start = tokens.findIndex(
    (token, index) => token.bracketed && (index >= RULE_FIELDS || token.text.includes("=")),
  );
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

/** A directive without arguments (`logcommon`). */
function parseFlagLine(state: ConfState, keyword: string, args: string[], line: number, set: () => void): void {
  if (args.length > 0) state.issues.error(line, `${keyword} takes no argument, found ${args.length}`);
  else set();
}

/** A directive with one value (`maxconn 5000`); `set` gives a reason when the value is invalid. */
function parseValueLine(
  state: ConfState,
  keyword: string,
  form: string,
  args: string[],
  line: number,
  set: (value: string) => string | undefined,
): void {
  const [value] = args;
  if (args.length !== 1 || value === undefined) {
    state.issues.error(line, `${keyword} takes one value (${keyword} ${form}), found ${args.length}`);
    return;
  }
  const reason = set(value);
  if (reason !== undefined) state.issues.error(line, reason);
}

/**
 * `include PATH`: a file, a directory (its `*.conf` files in name order), or
 * a pattern with `*`/`?` in its last part (`conf.d/*.conf`). Relative paths
 * start at the including file's directory. The included lines are read as if
 * they stood in place of the directive (so allow/deny after an included rule
 * belong to it). A cycle is an error naming the chain of files.
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
  const cycleStart = state.includeChain.indexOf(real);
  if (cycleStart !== -1) {
    const chain = [...state.includeChain.slice(cycleStart), real].join(" -> ");
    state.issues.error(line, `include cycle: ${chain}`);
    return;
  }
  if (state.includeChain.length > MAX_INCLUDE_DEPTH) {
    state.issues.error(line, `include ${file}: more than ${MAX_INCLUDE_DEPTH} levels of nested includes`);
    return;
  }
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    state.issues.error(line, `include ${file}: cannot read: ${error instanceof Error ? error.message : String(error)}`);
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

/** The files an include names, in reading order, or why it names none. */
function expandInclude(path: string): string[] | string {
  const name = basename(path);
  if (name.includes("*") || name.includes("?")) {
    const directory = dirname(path);
    const matcher = globMatcher(name);
    const entries = listDirectory(directory);
    if (typeof entries === "string") return entries;
    return entries.filter((entry) => matcher.test(entry)).map((entry) => join(directory, entry));
  }
  let stats;
  try {
    stats = statSync(path);
  } catch {
    return "no such file or directory";
  }
  if (!stats.isDirectory()) return [path];
  const entries = listDirectory(path);
  if (typeof entries === "string") return entries;
  return entries.filter((entry) => entry.endsWith(".conf")).map((entry) => join(path, entry));
}

/** Regular files of a directory, sorted by name; a reason when it cannot be listed. */
function listDirectory(directory: string): string[] | string {
  try {
    return readdirSync(directory, { withFileTypes: true })
      .filter((entry) => entry.isFile() || entry.isSymbolicLink())
      .map((entry) => entry.name)
      .sort();
  } catch (error) {
    return `cannot list ${directory}: ${error instanceof Error ? error.message : String(error)}`;
  }
}

function globMatcher(pattern: string): RegExp {
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${source}$`);
}

/** Identity of a file for cycle detection: symlinks and `..` resolved where possible. */
function realFile(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

function parsePathLine(
  state: ConfState,
  keyword: string,
  args: string[],
  line: number,
  set: (path: string) => void,
): void {
  const [path] = args;
  if (args.length !== 1 || path === undefined) {
    state.issues.error(line, `${keyword} takes one path (${keyword} PATH), found ${args.length} arguments`);
    return;
  }
  set(path);
}

function parseForwardingLine(state: ConfState, tokens: Token[], line: number): void {
  state.seenForwardingLine = true;
  state.currentRule = undefined;
  const { fields, options } = splitFieldsAndOptions(tokens);
  if (fields.length !== RULE_FIELDS) {
    state.issues.error(line, `wrong number of fields: found ${fields.length}, expected ${RULE_FIELDS} (${RULE_FORM})`);
    return;
  }
  const [bindHost = "", bindPort = "", connectHost = "", connectPort = ""] = fields.map((field) => field.text);

  // Check every field before giving up, so one pass reports all of a line's mistakes.
  const reasons: string[] = [];
  const take = <T>(checked: Checked<T>): T | undefined => {
    if (checked.ok) return checked.value;
    reasons.push(checked.reason);
    return undefined;
  };
  const bind = take(checkHost(bindHost, "bind address"));
  const bindSide = take(parsePortField(bindPort, "bind port"));
  const connect = take(checkHost(connectHost, "connect address"));
  const connectSide = take(parsePortField(connectPort, "connect port"));
  const ruleOptions = parseOptions(options, reasons);
  for (const reason of reasons) state.issues.error(line, reason);
  if (bind === undefined || bindSide === undefined || connect === undefined || connectSide === undefined) return;
  if (reasons.length > 0) return;

  if (bindSide.transport === "udp" && !connectSide.suffixed) {
    state.issues.warn(
      line,
      `this rule forwards UDP to TCP, as rinetd does when the connect port has no suffix; write '${connectPort}/udp' to forward UDP to UDP`,
    );
  }
  const rule: ForwardRule = {
    index: state.config.rules.length,
    at: { file: state.issues.file, line },
    mode: modeOf(bindSide.transport, connectSide.transport),
    bind: { host: bind, port: bindSide.port, transport: bindSide.transport },
    connect: { host: connect, port: connectSide.port, transport: connectSide.transport },
    ...ruleOptions,
    access: emptyAccessList(),
  };
  state.config.rules.push(rule);
  state.currentRule = rule;
}

/** `80`, `80/udp`, `http`, `domain/udp`: an unsuffixed port is TCP, as in rinetd. */
function parsePortField(text: string, role: string): Checked<PortField> {
  const slash = text.lastIndexOf("/");
  const name = slash === -1 ? text : text.slice(0, slash);
  const protocol = slash === -1 ? undefined : text.slice(slash + 1).toLowerCase();
  if (protocol !== undefined && protocol !== "tcp" && protocol !== "udp") {
    return { ok: false, reason: `${role} '${text}': unknown protocol '${protocol}' (write /tcp or /udp)` };
  }
  const transport: Transport = protocol ?? "tcp";
  const suffixed = protocol !== undefined;
  if (/^\d+$/.test(name)) {
    const checked = checkPort(Number(name), role);
    return checked.ok ? { ok: true, value: { port: checked.value, transport, suffixed } } : checked;
  }
  const port = name === "" ? undefined : resolveService(name, transport);
  if (port === undefined) {
    return { ok: false, reason: `${role} '${text}' is neither a port number nor a known ${transport} service name` };
  }
  return { ok: true, value: { port, transport, suffixed } };
}

/** Option groups `[timeout=30,src=10.0.0.1]`, possibly several; problems are added to `reasons`. */
function parseOptions(groups: Token[], reasons: string[]): RuleOptions {
  const options = defaultRuleOptions();
  const seen = new Set<string>();
  for (const group of groups) {
    if (!group.bracketed) {
      reasons.push(`unexpected '${group.text}' after the options (options are written [name=value,...])`);
      continue;
    }
    const inner = group.text.slice(1, -1);
    if (inner.trim() === "") {
      reasons.push(`empty option group '${group.text}'`);
      continue;
    }
    for (const item of inner.split(",")) {
      const reason = applyOption(options, item.trim(), seen);
      if (reason !== undefined) reasons.push(reason);
    }
  }
  return options;
}

/** Set one `name=value` on `options`; a reason when it is not a valid option. */
function applyOption(options: RuleOptions, item: string, seen: Set<string>): string | undefined {
  if (item === "") return "empty option (stray ',' in the option list)";
  const equals = item.indexOf("=");
  const name = (equals === -1 ? item : item.slice(0, equals)).trim().toLowerCase();
  const value = equals === -1 ? "" : item.slice(equals + 1).trim();
  const spec = RULE_OPTIONS.find((candidate) => candidate.conf === name);
  if (spec === undefined) return `unknown option '${name}' (known: ${CONF_OPTION_NAMES.join(", ")})`;
  if (equals === -1 || value === "") return `option '${name}' needs a value (${name}=...)`;
  if (seen.has(name)) return `option '${name}' is given twice`;
  seen.add(name);
  return spec.apply(options, parseConfOptionValue(spec, value), value);
}
