/**
 * @module Typed reading of a structured config (TOML or YAML, once parsed into
 * plain objects): each value is checked for its type and every problem is
 * reported on the line of its key, found through a line locator of the
 * format. Also the readers both formats share: per-rule options (with their
 * `load_balancing` table) and global settings, from the tables in options.ts
 * and globals.ts.
 */
import type { RuleOptions, TlsClientSettings } from "../types.ts";
import { GLOBAL_SETTINGS, type GlobalSpec, type GlobalTarget, type GlobalValue, noEffectWarning } from "./globals.ts";
import type { IssueCollector } from "./issues.ts";
import { defaultRuleOptions, type OptionSpec, type OptionTable, type OptionValue, RULE_OPTIONS, type RuleDefaults } from "./options.ts";
import type { Checked } from "./validate.ts";

export type Table = Record<string, unknown>;

/** Maps a value's path (`forwarding_rules[2].bind_port`) to its line in the source. */
export interface LineLocator {
  lineOf(path: string): number;
}

/** Everything the readers need: where values are, and where problems go. */
export interface DocumentContext {
  file: string;
  lines: LineLocator;
  issues: IssueCollector;
  /** What the format calls a nested table in messages: TOML's "a table" (the default), YAML's "a mapping". */
  tableWord?: string;
}

/**
 * Typed reads of one table's keys. Each getter gives undefined both when the
 * key is absent and when it has the wrong type; the latter is reported, on
 * the key's line.
 */
export class TableReader {
  constructor(
    private readonly context: DocumentContext,
    private readonly values: Table,
    private readonly path: string,
  ) {}

  get file(): string {
    return this.context.file;
  }

  string(key: string): string | undefined {
    const value = this.values[key];
    if (value === undefined || typeof value === "string") return value;
    return this.wrongType(key, "a string", value);
  }

  integer(key: string): number | undefined {
    const value = this.values[key];
    if (value === undefined || (typeof value === "number" && Number.isInteger(value))) return value;
    return this.wrongType(key, "an integer", value);
  }

  number(key: string): number | undefined {
    const value = this.values[key];
    if (value === undefined || typeof value === "number") return value;
    return this.wrongType(key, "a number", value);
  }

  boolean(key: string): boolean | undefined {
    const value = this.values[key];
    if (value === undefined || typeof value === "boolean") return value;
    return this.wrongType(key, "true or false", value);
  }

  /** What the format calls a nested table in messages ("a table", YAML's "a mapping"). */
  get tableWord(): string {
    return this.context.tableWord ?? "a table";
  }

  /** One word or a list of them (`sni = ["a.example.com", "*.b.example.com"]`, or a single string). */
  words(key: string): string[] | undefined {
    const value = this.values[key];
    if (value === undefined) return undefined;
    if (typeof value === "string") return [value];
    if (Array.isArray(value) && value.every((entry) => typeof entry === "string")) return value as string[];
    return this.wrongType(key, "a string or an array of strings", value);
  }

  /** A nested table, as a reader of its own; undefined when absent or not a table (reported). */
  table(key: string): TableReader | undefined {
    const value = this.values[key];
    if (value === undefined) return undefined;
    if (!isTable(value)) return this.wrongType(key, this.tableWord, value);
    return new TableReader(this.context, value, this.keyPath(key));
  }

  /** A reader of a table found inside this one (an array element), at `path`. */
  nested(values: Table, path: string): TableReader {
    return new TableReader(this.context, values, path);
  }

  /** The raw value of `key`, for readers that accept several types. */
  raw(key: string): unknown {
    return this.values[key];
  }

  /** Reject keys other than `known` in this table. */
  onlyKeys(known: readonly string[]): void {
    rejectUnknownKeys(this.context, this.values, this.path, known);
  }

  /** The line of a key (of this table when `key` is omitted). */
  lineOf(key?: string): number {
    return this.context.lines.lineOf(key === undefined ? this.path : this.keyPath(key));
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
    if (value === undefined && !(key in this.values)) {
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
    return key in this.values;
  }

  /** Report `reason` on the line of `key`. */
  report(key: string, reason: string): void {
    this.error(key, reason);
  }

  private wrongType(key: string, expected: string, value: unknown): undefined {
    this.error(key, `${this.keyPath(key)} must be ${expected}, got ${typeName(value)}`);
    return undefined;
  }

  private error(key: string, reason: string): void {
    this.context.issues.error(this.context.lines.lineOf(this.keyPath(key)), reason);
  }

  keyPath(key: string): string {
    return this.path === "" ? key : `${this.path}.${key}`;
  }
}

/** The tables of an array-of-tables key with their paths; anything else under that key is reported. */
export function arrayOfTables(context: DocumentContext, parent: Table, parentPath: string, key: string): Array<[string, Table]> {
  const value = parent[key];
  const path = parentPath === "" ? key : `${parentPath}.${key}`;
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    context.issues.error(
      context.lines.lineOf(path),
      `${path} must be an array of tables ([[${key}]]), got ${typeName(value)}`,
    );
    return [];
  }
  const tables: Array<[string, Table]> = [];
  value.forEach((element: unknown, index) => {
    const elementPath = `${path}[${index}]`;
    if (isTable(element)) tables.push([elementPath, element]);
    else context.issues.error(context.lines.lineOf(elementPath), `${elementPath} must be a table, got ${typeName(element)}`);
  });
  return tables;
}

export function rejectUnknownKeys(context: DocumentContext, table: Table, path: string, known: readonly string[]): void {
  for (const key of Object.keys(table)) {
    if (known.includes(key)) continue;
    const keyPath = path === "" ? key : `${path}.${key}`;
    const where = path === "" ? "at the top level" : `in ${path}`;
    context.issues.error(context.lines.lineOf(keyPath), `unknown key '${key}' ${where} (known: ${known.join(", ")})`);
  }
}

/** Plain objects only: TOML dates and times come back as Temporal objects. */
export function isTable(value: unknown): value is Table {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** A value's type in TOML/YAML words, for "must be X, got Y". */
export function typeName(value: unknown): string {
  // YAML's null: a key with nothing after it.
  if (value === null) return "an empty value";
  if (typeof value === "string") return "a string";
  if (typeof value === "boolean") return "a boolean";
  if (typeof value === "number") return Number.isInteger(value) ? "an integer" : "a float";
  if (Array.isArray(value)) return "an array";
  if (isTable(value)) return "a table";
  return "a date/time";
}

/** A value of an option's type, read from `reader` (a switch-or-seconds may be either); undefined when absent or mistyped. */
function readOptionValue(reader: TableReader, spec: OptionSpec): OptionValue | undefined {
  switch (spec.type) {
    case "string":
      return reader.string(spec.toml);
    case "integer":
      return reader.integer(spec.toml);
    case "number":
      return reader.number(spec.toml);
    case "switch":
      return reader.boolean(spec.toml);
    case "switch-or-seconds": {
      const value = reader.raw(spec.toml);
      return typeof value === "boolean" ? value : reader.integer(spec.toml);
    }
    case "list":
      return reader.words(spec.toml);
    case "rate": {
      // "100mbit", or a bare number of bytes per second.
      const value = reader.raw(spec.toml);
      if (value === undefined || typeof value === "number" || typeof value === "string") return value;
      reader.report(spec.toml, `${reader.keyPath(spec.toml)} must be a rate such as "100mbit" or a number of bytes per second, got ${typeName(value)}`);
      return undefined;
    }
  }
}

/** The keys each option table of a rule may hold. */
function keysOf(table: OptionTable): string[] {
  return RULE_OPTIONS.filter((spec) => spec.table === table).map((spec) => spec.toml);
}

/**
 * Every per-rule option present in a rule's table and in its option tables
 * (`load_balancing`, `match`, `tls`, `tls_connect`); undefined when any is
 * invalid (each reported, unknown keys of those tables too). `explicit`
 * collects the inheritable options the rule set itself.
 */
export function readRuleOptions(reader: TableReader, explicit: Set<keyof RuleDefaults>): RuleOptions | undefined {
  const options = defaultRuleOptions();
  let valid = true;
  const tables = new Map<OptionTable, TableReader | undefined>();
  // A switch that opens a table, written as something else, is reported once, by the switch (below).
  const openedBySwitch = new Set(RULE_OPTIONS.flatMap((spec) => (spec.opens === undefined ? [] : [spec.opens])));
  const tableOf = (name: OptionTable) => {
    if (!tables.has(name)) {
      const value = reader.raw(name);
      // A switch that opens a table (`tls_connect = true`) has no table to read when it is written as a switch.
      // YAML's `load_balancing:` with nothing under it is an empty table.
      const absent = value === undefined || value === null || typeof value === "boolean" || (openedBySwitch.has(name) && !isTable(value));
      const table = absent ? undefined : reader.table(name);
      if (table === undefined && !absent) valid = false;
      table?.onlyKeys(keysOf(name));
      tables.set(name, table);
    }
    return tables.get(name);
  };
  for (const spec of RULE_OPTIONS) {
    let value: OptionValue | undefined;
    let source: TableReader | undefined;
    const raw = reader.raw(spec.toml);
    if (spec.opens !== undefined && isTable(raw)) {
      // `tls_connect: { ca: ... }`: the table itself switches the option on.
      source = reader;
      value = tableOf(spec.opens) === undefined ? undefined : true;
    } else if (spec.opens !== undefined && raw !== undefined && typeof raw !== "boolean") {
      reader.report(spec.toml, `${reader.keyPath(spec.toml)} must be true, false or ${reader.tableWord} of ${keysOf(spec.opens).join(", ")}; got ${typeName(raw)}`);
      valid = false;
      continue;
    } else {
      source = spec.table === undefined ? reader : tableOf(spec.table);
      if (source === undefined) continue;
      value = readOptionValue(source, spec);
      if (value === undefined) {
        if (source.has(spec.toml)) valid = false;
        continue;
      }
    }
    if (value === undefined) continue;
    if (spec.inherits !== undefined) explicit.add(spec.inherits);
    const reason = spec.apply(options, value, Array.isArray(value) ? value.join("|") : String(value));
    if (reason !== undefined) {
      source.report(spec.toml, reason);
      valid = false;
    }
  }
  return valid ? options : undefined;
}

/**
 * A backend's own TLS settings (`tls = true`, or a table of `ca`,
 * `servername`, `verify`, as a rule's `tls_connect`): undefined when it has
 * none (it follows its rule's), "invalid" after reporting why.
 */
export function readBackendTls(reader: TableReader, key: string): TlsClientSettings | undefined | "invalid" {
  const value = reader.raw(key);
  if (value === undefined) return undefined;
  const options = defaultRuleOptions();
  const opener = RULE_OPTIONS.find((spec) => spec.opens === "tls_connect");
  if (value !== true && !isTable(value)) {
    reader.report(key, `${reader.keyPath(key)} must be true or a table of ca, servername, verify; got ${typeName(value)}`);
    return "invalid";
  }
  opener?.apply(options, true, "true");
  if (value === true) return options.tlsConnect;
  const table = reader.table(key);
  if (table === undefined) return "invalid";
  table.onlyKeys(keysOf("tls_connect"));
  let valid = true;
  for (const spec of RULE_OPTIONS) {
    if (spec.table !== "tls_connect") continue;
    const given = readOptionValue(table, spec);
    if (given === undefined) {
      if (table.has(spec.toml)) valid = false;
      continue;
    }
    const reason = spec.apply(options, given, String(given));
    if (reason !== undefined) {
      table.report(spec.toml, reason);
      valid = false;
    }
  }
  return valid ? options.tlsConnect : "invalid";
}

/** Keys of a rule that hold option tables; `tls_connect` is also an option of its own (a switch), so it is among RULE_OPTION_KEYS. */
export const OPTION_TABLE_KEYS = ["load_balancing", "match", "tls"];
/** Per-rule option keys that live in the rule's own table. */
export const RULE_OPTION_KEYS = RULE_OPTIONS.filter((spec) => spec.table === undefined).map((spec) => spec.toml);

function readGlobalValue(reader: TableReader, key: string, spec: GlobalSpec): GlobalValue | undefined {
  switch (spec.type) {
    case "path":
    case "string":
      return reader.string(key);
    case "integer":
      return reader.integer(key);
    case "number":
      return reader.number(key);
    case "flag":
    case "switch":
      return reader.boolean(key);
    case "switch-or-word": {
      const value = reader.raw(key);
      return typeof value === "boolean" ? value : reader.string(key);
    }
    case "string-or-octal":
    case "name-or-id": {
      const value = reader.raw(key);
      return typeof value === "number" && Number.isInteger(value) ? String(value) : reader.string(key);
    }
  }
}

/**
 * Global settings from `reader`, each under the key `keyOf` gives it in this
 * format (undefined: the format has no such setting). A key with dots
 * (`status.file`) is looked up in the nested table.
 */
export function readGlobals(reader: TableReader, keyOf: (spec: GlobalSpec) => string | undefined, target: GlobalTarget, issues: IssueCollector): void {
  // Each nested table is read (and a wrong type reported) once, whatever number of settings live in it.
  const nested = new Map<string, TableReader | undefined>();
  const tableOf = (name: string) => {
    if (!nested.has(name)) nested.set(name, reader.has(name) ? reader.table(name) : undefined);
    return nested.get(name);
  };
  for (const spec of GLOBAL_SETTINGS) {
    const key = keyOf(spec);
    if (key === undefined) continue;
    const [first = "", second] = key.split(".");
    const source = second === undefined ? reader : tableOf(first);
    const leaf = second ?? first;
    if (source === undefined || !source.has(leaf)) continue;
    const value = readGlobalValue(source, leaf, spec);
    if (value === undefined) continue;
    // A flag given as false in TOML/YAML (log_common: false) simply leaves the default.
    if (spec.type === "flag" && value === false) continue;
    const reason = spec.apply({ ...target, at: { file: reader.file, line: source.lineOf(leaf) } }, value);
    if (reason !== undefined) source.report(leaf, reason);
    else if (spec.noEffect !== undefined) issues.warn(source.lineOf(leaf), noEffectWarning(key, spec.noEffect));
  }
}

/** Every key a format's `keyOf` gives, top-level part only (for rejecting unknown keys). */
export function globalKeys(keyOf: (spec: GlobalSpec) => string | undefined): string[] {
  const keys = new Set<string>();
  for (const spec of GLOBAL_SETTINGS) {
    const key = keyOf(spec);
    if (key !== undefined) keys.add(key.split(".")[0] ?? key);
  }
  return [...keys];
}
