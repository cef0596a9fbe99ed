/**
 * @module oxidinetd's TOML config, parsed with `Bun.TOML.parse` and then
 * checked key by key against its schema:
 *
 *     [[global_rules]]      type = "allow" | "deny", pattern = "..."
 *     [[forwarding_rules]]  bind_address, bind_port, connect_address, connect_port,
 *                           protocol = "tcp" | "udp" | "udptotcp" | "tcptoudp" (default "tcp"),
 *                           timeout, source_address, connect_timeout (oi's own)
 *     [[forwarding_rules.rules]]  type, pattern: access rules of the rule above
 *     log_file, pid_file, log_format = "rinetd" | "common"
 *
 * Unknown keys and wrong types are errors, each on its own line.
 */

import type { AccessList, Config, ForwardRule, LogFormat, RuleMode, RuleOptions } from "../types.ts";
import { IssueCollector, type ParseResult } from "./issues.ts";
import { emptyAccessList, emptyConfig, transportsOf } from "./model.ts";
import { defaultRuleOptions, RULE_OPTIONS, TOML_OPTION_KEYS } from "./options.ts";
import { indexTomlLines, locateTomlSyntaxError, type TomlLineIndex } from "./toml-lines.ts";
import { type Checked, checkHost, checkMaxConnections, checkMetricsAddress, checkPort, compileAccessRule } from "./validate.ts";

type Table = Record<string, unknown>;

const TOP_LEVEL_KEYS = [
  "global_rules",
  "forwarding_rules",
  "log_file",
  "pid_file",
  "log_format",
  "max_connections",
  "metrics",
];
const RULE_KEYS = ["bind_address", "bind_port", "connect_address", "connect_port", "protocol", ...TOML_OPTION_KEYS, "rules"];
const ACCESS_KEYS = ["type", "pattern"];
const MODES: readonly RuleMode[] = ["tcp", "udp", "udptotcp", "tcptoudp"];
const LOG_FORMATS: readonly LogFormat[] = ["rinetd", "common", "json"];
const BUN_ERROR_PREFIX = "TOML Parse error: ";

/** Everything the checks need: where values are, and where problems go. */
interface TomlContext {
  file: string;
  lines: TomlLineIndex;
  issues: IssueCollector;
}

export function parseToml(text: string, file: string): ParseResult {
  const issues = new IssueCollector(file);
  const config = emptyConfig(file, "toml");
  let root: unknown;
  try {
    root = Bun.TOML.parse(text);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const reason = message.startsWith(BUN_ERROR_PREFIX) ? message.slice(BUN_ERROR_PREFIX.length) : message;
    issues.error(locateTomlSyntaxError(text, message), `TOML syntax error: ${reason}`);
    return { config, errors: issues.errors, warnings: issues.warnings, files: [file] };
  }

  const context: TomlContext = { file, lines: indexTomlLines(text), issues };
  if (isTable(root)) readRoot(context, root, config);
  return { config, errors: issues.errors, warnings: issues.warnings, files: [file] };
}

function readRoot(context: TomlContext, root: Table, config: Config): void {
  rejectUnknownKeys(context, root, "", TOP_LEVEL_KEYS);
  const reader = new TableReader(context, root, "");
  config.logFile = reader.string("log_file");
  config.pidFile = reader.string("pid_file");
  config.logFormat = reader.oneOf("log_format", LOG_FORMATS) ?? "rinetd";
  const maxConnections = reader.integer("max_connections");
  if (maxConnections !== undefined) config.maxConnections = reader.check("max_connections", checkMaxConnections(maxConnections));
  const metrics = reader.string("metrics");
  if (metrics !== undefined) config.metrics = reader.check("metrics", checkMetricsAddress(metrics));

  for (const [path, table] of arrayOfTables(context, root, "", "global_rules")) {
    readAccessRule(context, table, path, config.globalAccess);
  }
  for (const [path, table] of arrayOfTables(context, root, "", "forwarding_rules")) {
    const rule = readForwardRule(context, table, path, config.rules.length);
    if (rule !== undefined) config.rules.push(rule);
  }
}

function readForwardRule(context: TomlContext, table: Table, path: string, index: number): ForwardRule | undefined {
  rejectUnknownKeys(context, table, path, RULE_KEYS);
  const reader = new TableReader(context, table, path);
  const bindHost = reader.required("bind_address", reader.string("bind_address"));
  const bindPort = reader.required("bind_port", reader.integer("bind_port"));
  const connectHost = reader.required("connect_address", reader.string("connect_address"));
  const connectPort = reader.required("connect_port", reader.integer("connect_port"));
  const mode = reader.oneOf("protocol", MODES) ?? "tcp";
  const options = readRuleOptions(reader);

  const bind = bindHost === undefined ? undefined : reader.check("bind_address", checkHost(bindHost, "bind address"));
  const bindPortChecked = bindPort === undefined ? undefined : reader.check("bind_port", checkPort(bindPort, "bind port"));
  const connect =
    connectHost === undefined ? undefined : reader.check("connect_address", checkHost(connectHost, "connect address"));
  const connectPortChecked =
    connectPort === undefined ? undefined : reader.check("connect_port", checkPort(connectPort, "connect port"));

  const access = emptyAccessList();
  for (const [rulePath, accessTable] of arrayOfTables(context, table, path, "rules")) {
    readAccessRule(context, accessTable, rulePath, access);
  }
  if (
    bind === undefined ||
    bindPortChecked === undefined ||
    connect === undefined ||
    connectPortChecked === undefined ||
    options === undefined
  ) {
    return undefined;
  }
  const [bindTransport, connectTransport] = transportsOf(mode);
  return {
    index,
    at: { file: context.file, line: context.lines.lineOf(path) },
    mode,
    bind: { host: bind, port: bindPortChecked, transport: bindTransport },
    connect: { host: connect, port: connectPortChecked, transport: connectTransport },
    ...options,
    access,
  };
}

/** Every per-rule option key present in `reader`'s table; undefined when any of them is invalid (each reported). */
function readRuleOptions(reader: TableReader): RuleOptions | undefined {
  const options = defaultRuleOptions();
  let valid = true;
  for (const spec of RULE_OPTIONS) {
    const value =
      spec.type === "string" ? reader.string(spec.toml) : spec.type === "integer" ? reader.integer(spec.toml) : reader.number(spec.toml);
    if (value === undefined) {
      if (reader.has(spec.toml)) valid = false;
      continue;
    }
    const reason = spec.apply(options, value, String(value));
    if (reason !== undefined) {
      reader.report(spec.toml, reason);
      valid = false;
    }
  }
  return valid ? options : undefined;
}

/** One `{ type, pattern }` table of `global_rules` or of a rule's `rules`, added to `list` when valid. */
function readAccessRule(context: TomlContext, table: Table, path: string, list: AccessList): void {
  rejectUnknownKeys(context, table, path, ACCESS_KEYS);
  const reader = new TableReader(context, table, path);
  const kind = reader.required("type", reader.oneOf("type", ["allow", "deny"] as const));
  const pattern = reader.required("pattern", reader.string("pattern"));
  if (kind === undefined || pattern === undefined) return;
  const at = { file: context.file, line: context.lines.lineOf(path) };
  const rule = reader.check("pattern", compileAccessRule(kind, pattern, at));
  if (rule === undefined) return;
  if (rule.kind === "allow") list.allow.push(rule);
  else list.deny.push(rule);
}

/**
 * Typed reads of one table's keys. Each getter gives undefined both when the
 * key is absent and when it has the wrong type; the latter is reported, on
 * the key's line.
 */
class TableReader {
  constructor(
    private readonly context: TomlContext,
    private readonly table: Table,
    private readonly path: string,
  ) {}

  string(key: string): string | undefined {
    const value = this.table[key];
    if (value === undefined || typeof value === "string") return value;
    return this.wrongType(key, "a string", value);
  }

  integer(key: string): number | undefined {
    const value = this.table[key];
    if (value === undefined || (typeof value === "number" && Number.isInteger(value))) return value;
    return this.wrongType(key, "an integer", value);
  }

  number(key: string): number | undefined {
    const value = this.table[key];
    if (value === undefined || typeof value === "number") return value;
    return this.wrongType(key, "a number", value);
  }

  oneOf<T extends string>(key: string, allowed: readonly T[]): T | undefined {
    const value = this.string(key);
    if (value === undefined) return undefined;
    const match = allowed.find((candidate) => candidate === value);
    if (match === undefined) {
      const choices = allowed.map((candidate) => `"${candidate}"`).join(", ");
      this.error(key, `${this.keyPath(key)} must be one of ${choices}, got "${value}"`);
    }
    return match;
  }

  /** Report a missing key (on the table's line) unless it was present: wrong types are already reported. */
  required<T>(key: string, value: T | undefined): T | undefined {
    if (value === undefined && !(key in this.table)) {
      this.context.issues.error(this.context.lines.lineOf(this.path), `${this.path} is missing ${key}`);
    }
    return value;
  }

  /** The value of a shared check, or undefined after reporting its reason on the key's line. */
  check<T>(key: string, checked: Checked<T>): T | undefined {
    if (checked.ok) return checked.value;
    this.error(key, checked.reason);
    return undefined;
  }

  has(key: string): boolean {
    return key in this.table;
  }

  /** Report `reason` on the line of `key`. */
  report(key: string, reason: string): void {
    this.error(key, reason);
  }

  private wrongType(key: string, expected: string, value: unknown): undefined {
    this.error(key, `${this.keyPath(key)} must be ${expected}, got ${tomlTypeName(value)}`);
    return undefined;
  }

  private error(key: string, reason: string): void {
    this.context.issues.error(this.context.lines.lineOf(this.keyPath(key)), reason);
  }

  private keyPath(key: string): string {
    return this.path === "" ? key : `${this.path}.${key}`;
  }
}

/** The tables of an array-of-tables key with their paths; anything else under that key is reported. */
function arrayOfTables(context: TomlContext, parent: Table, parentPath: string, key: string): Array<[string, Table]> {
  const value = parent[key];
  const path = parentPath === "" ? key : `${parentPath}.${key}`;
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    context.issues.error(
      context.lines.lineOf(path),
      `${path} must be an array of tables ([[${key}]]), got ${tomlTypeName(value)}`,
    );
    return [];
  }
  const tables: Array<[string, Table]> = [];
  value.forEach((element: unknown, index) => {
    const elementPath = `${path}[${index}]`;
    if (isTable(element)) tables.push([elementPath, element]);
    else context.issues.error(context.lines.lineOf(elementPath), `${elementPath} must be a table, got ${tomlTypeName(element)}`);
  });
  return tables;
}

function rejectUnknownKeys(context: TomlContext, table: Table, path: string, known: string[]): void {
  for (const key of Object.keys(table)) {
    if (known.includes(key)) continue;
    const keyPath = path === "" ? key : `${path}.${key}`;
    const where = path === "" ? "at the top level" : `in ${path}`;
    context.issues.error(context.lines.lineOf(keyPath), `unknown key '${key}' ${where} (known: ${known.join(", ")})`);
  }
}

/** Plain objects only: TOML dates and times come back as Temporal objects. */
function isTable(value: unknown): value is Table {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** The TOML name of a value's type, for "must be X, got Y". */
function tomlTypeName(value: unknown): string {
  if (typeof value === "string") return "a string";
  if (typeof value === "boolean") return "a boolean";
  if (typeof value === "number") return Number.isInteger(value) ? "an integer" : "a float";
  if (Array.isArray(value)) return "an array";
  if (isTable(value)) return "a table";
  return "a date/time";
}
