/**
 * @module rinetd-uv's YAML config (`.yaml`, `.yml`), parsed with
 * `Bun.YAML.parse` and then checked key by key, so a rinetd-uv config loads
 * unchanged:
 *
 *     global:                 log_file, log_common, pid_file, dns_refresh, connect_timeout,
 *                             dns_multi_ip_expand, dns_multi_ip_proto, max_udp_connections,
 *                             stats_log_interval, status: { enabled, file, interval, format },
 *                             access: { allow: [...], deny: [...] },
 *                             buffer_size, listen_backlog, pool_* (pool_* accepted with a
 *                             warning: no effect),
 *                             oi's own: max_connections, metrics, log_json, user, group
 *     rules:
 *       - name: web           required, unique
 *         bind: "0.0.0.0:80/tcp"      or a list; also "[::]:80/tcp", "unix:/path",
 *                                     a port range "0.0.0.0:8000-8099/tcp"
 *         connect: "10.0.0.1:80"      or a list of "host:port/proto" or
 *                                     { dest, weight, name, src, dns_refresh, tls }
 *         load_balancing: { algorithm, health_threshold, recovery_timeout,
 *                           affinity_ttl, affinity_max_entries, probe_interval, probe_timeout }
 *         timeout, keepalive, connect_timeout, dns_refresh, mode: "0660", src,
 *         access: { allow: [...], deny: [...] },
 *         oi's own options by their TOML names (max_connections, idle_timeout, proxy_protocol, ...),
 *         match: { sni, host, protocol }, peek_timeout, tls: { cert, key, alpn },
 *         tls_connect: true | { ca, servername, verify }; a backend mapping's own `tls`
 *
 * How rinetd-uv's meaning is kept, and where oi's model asks for a choice:
 * - A rule with several binds becomes one forwarding rule per bind, all with
 *   the rule's name, options and backends (the run time shares backend state
 *   by name); each is placed on its bind's line. The binds of one rule must
 *   all be UDP or all streams (TCP, unix).
 * - A `connect` without `/proto` takes the protocol of the rule's binds (as
 *   rinetd-uv does; YAML has no rinetd legacy of "unsuffixed is TCP"). An
 *   explicit other protocol gives a cross-protocol rule, which oi supports.
 * - Backends without a `name` are called `RULE-backend-N`, as in rinetd-uv's
 *   status file.
 * - `dns_refresh` of a backend: oi keeps one interval per rule, so the rule
 *   takes the smallest its backends (and the rule itself) give, with a
 *   warning when they differ.
 * - Defaults that differ from the `.conf` ones, as rinetd-uv's: host names
 *   with several addresses are spread over (`dns_multi_ip_expand: true`),
 *   TCP rules have keepalive after 60 s unless `keepalive: false`, and a UDP
 *   session ends after 10 s without traffic (rinetd's 72 s stays the `.conf`
 *   default, since a `.conf` file may be rinetd's).
 * - `status` writes a status file only with `enabled: true`.
 * - Beyond rinetd-uv's schema, and unambiguous: a rule-level `src` and
 *   `dns_refresh` (as the .conf options), plain strings in a `connect` list,
 *   and a single pattern for `allow`/`deny` without a list.
 * - `include` exists in rinetd-uv's `.conf` only, and is an error here.
 * - YAML 1.2 types: `yes`/`on` are strings, not booleans; `mode: 0660`
 *   unquoted is read as written (the parser would give decimal 660).
 *
 * Unknown keys, wrong types, invalid values and a key given twice are
 * errors, each on its own line.
 */

import type { AccessList, Backend, Config, Endpoint, ForwardRule, RuleOptions, TlsClientSettings, Transport } from "../types.ts";
import { GLOBAL_SETTINGS, type GlobalSpec } from "./globals.ts";
import { IssueCollector, type ParseResult } from "./issues.ts";
import { backendOf, emptyAccessList, emptyConfig, modeOf } from "./model.ts";
import {
  DEFAULT_KEEPALIVE_SECONDS,
  defaultRuleDefaults,
  defaultRuleOptions,
  inheritDefaults,
  tooManyBackends,
  duplicateBackendName,
  type OptionSpec,
  RULE_OPTIONS,
  type RuleDefaults,
} from "./options.ts";
import {
  type DocumentContext,
  globalKeys,
  isTable,
  OPTION_TABLE_KEYS,
  readBackendTls,
  readGlobals,
  readRuleOptions,
  rejectUnknownKeys,
  RULE_OPTION_KEYS,
  type Table,
  TableReader,
  typeName,
} from "./table-reader.ts";
import { nestingProblem } from "./nesting.ts";
import { tooDeep } from "./text-limits.ts";
import { parseAddress } from "./yaml-address.ts";
import { SRV_WEIGHT_REASON } from "./srv-address.ts";
import { indexYamlLines, locateYamlSyntaxError, type YamlLineIndex } from "./yaml-lines.ts";
import { checkSourceAddress, compileAccessRule } from "./validate.ts";

interface YamlContext extends DocumentContext {
  lines: YamlLineIndex;
}

const yamlKey = (spec: GlobalSpec) => spec.yaml;
const STATUS_PREFIX = "status.";
/** UDP session idle timeout in rinetd-uv (its manual: 10 s), the default of YAML rules. */
const RINETD_UV_UDP_TIMEOUT_SECONDS = 10;
const TOP_LEVEL_KEYS = ["global", "rules"];
const GLOBAL_KEYS = [...globalKeys(yamlKey), "access"];
const STATUS_KEYS = GLOBAL_SETTINGS.flatMap((spec) => (spec.yaml?.startsWith(STATUS_PREFIX) ? [spec.yaml.slice(STATUS_PREFIX.length)] : []));
/** Rule options YAML writes under rinetd-uv's names. */
const SOCKET_MODE_KEY = "mode";
const SOURCE_KEY = "src";
const RENAMED_OPTIONS = ["socket_mode", "source_address"];
const RULE_KEYS = [
  "name",
  "bind",
  "connect",
  ...RULE_OPTION_KEYS.filter((key) => !RENAMED_OPTIONS.includes(key)),
  SOCKET_MODE_KEY,
  SOURCE_KEY,
  ...OPTION_TABLE_KEYS,
  "access",
];
const BACKEND_KEYS = ["dest", "name", "weight", "src", "dns_refresh", "tls"];
const ACCESS_KEYS = ["allow", "deny"] as const;
const INCLUDE_KEY = "include";
const MAX_WEIGHT = 100;
const BUN_ERROR_PREFIX = "YAML Parse error: ";

export function parseYaml(text: string, file: string): ParseResult {
  const issues = new IssueCollector(file);
  const config = emptyConfig(file, "yaml");
  const result = (): ParseResult => ({ config, errors: issues.errors, warnings: issues.warnings, files: [file] });
  // Bounds checked before Bun's parser recurses (or takes quadratic time) on them.
  const problem = nestingProblem(text, "yaml");
  if (problem !== undefined) {
    issues.error(problem.line, problem.reason);
    return result();
  }
  let root: unknown;
  try {
    root = Bun.YAML.parse(text);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // Nesting the scan did not count: no line to give (re-parsing prefixes would overflow again, slowly).
    if (error instanceof RangeError) issues.error(1, tooDeep());
    else {
      const reason = message.startsWith(BUN_ERROR_PREFIX) ? message.slice(BUN_ERROR_PREFIX.length) : message;
      issues.error(locateYamlSyntaxError(text, message), `YAML syntax error: ${reason}`);
    }
    return result();
  }

  const lines = indexYamlLines(text);
  for (const { mapping, key, line, firstLine } of lines.duplicates) {
    issues.error(line, `duplicate key '${key}' ${mapping === "" ? "at the top level" : `in ${mapping}`} (first on line ${firstLine})`);
  }
  const context: YamlContext = { file, lines, issues, tableWord: "a mapping" };
  // An empty file, or one with only comments, is a config without rules.
  if (root === null) return result();
  if (!isTable(root)) {
    const what = Array.isArray(root) ? "a list (or several '---' documents)" : typeName(root);
    issues.error(1, `a rinetd-uv YAML config is a mapping with 'global' and 'rules', got ${what}`);
    return result();
  }
  readRoot(context, root, config);
  return result();
}

function readRoot(context: YamlContext, root: Table, config: Config): void {
  checkKeys(context, root, "", TOP_LEVEL_KEYS);
  // rinetd-uv's YAML defaults, where they differ from its .conf ones.
  const defaults = defaultRuleDefaults();
  defaults.dnsSpread = true;
  defaults.keepalive = DEFAULT_KEEPALIVE_SECONDS;
  defaults.timeout = RINETD_UV_UDP_TIMEOUT_SECONDS;
  const global = mapping(context, root, "", "global");
  if (global !== undefined) readGlobal(context, global, config, defaults);

  const rules = root.rules;
  if (rules === undefined || rules === null) return;
  if (!Array.isArray(rules)) {
    context.issues.error(context.lines.lineOf("rules"), `rules must be a list of rules (- name: ...), got ${typeName(rules)}`);
    return;
  }
  const names = new Map<string, number>();
  rules.forEach((rule: unknown, index) => {
    const path = `rules[${index}]`;
    if (isTable(rule)) readRule(ruleContext(context, rule, path), rule, path, { config, defaults, names });
    else context.issues.error(context.lines.lineOf(path), `${path} must be a mapping (name, bind, connect, ...), got ${typeName(rule)}`);
  });
}

/** Problems inside a rule name it: by its `name` when it has a usable one, else by its position. */
function ruleContext(context: YamlContext, rule: Table, path: string): YamlContext {
  const name = typeof rule.name === "string" && rule.name.trim() !== "" ? rule.name : undefined;
  const issues = name === undefined ? context.issues.withPrefix(`${path}: `, path) : context.issues.withPrefix(`rule '${name}': `);
  return { ...context, issues };
}

/** Reject unknown keys; `include`, rinetd-uv's .conf directive, gets its own reason. */
function checkKeys(context: YamlContext, table: Table, path: string, known: readonly string[]): void {
  if (INCLUDE_KEY in table) {
    context.issues.error(
      context.lines.lineOf(joinPath(path, INCLUDE_KEY)),
      "include is a directive of rinetd-uv's .conf format only: a YAML config cannot include other files",
    );
  }
  rejectUnknownKeys(context, without(table, [INCLUDE_KEY]), path, known);
}

/** A mapping-valued key: absent or empty (`key:` with nothing under it) gives undefined; another type is reported. */
function mapping(context: YamlContext, parent: Table, parentPath: string, key: string): Table | undefined {
  const value = parent[key];
  if (value === undefined || value === null) return undefined;
  if (isTable(value)) return value;
  context.issues.error(context.lines.lineOf(joinPath(parentPath, key)), `${joinPath(parentPath, key)} must be a mapping, got ${typeName(value)}`);
  return undefined;
}

function readGlobal(context: YamlContext, global: Table, config: Config, defaults: RuleDefaults): void {
  checkKeys(context, global, "global", GLOBAL_KEYS);
  const status = mapping(context, global, "global", "status");
  if (status !== undefined) rejectUnknownKeys(context, status, "global.status", STATUS_KEYS);
  // readGlobals reads `status.*` only from a mapping: anything else is reported above, once.
  const settings = status === undefined ? without(global, ["status"]) : global;
  readGlobals(new TableReader(context, settings, "global"), yamlKey, { config, defaults }, context.issues);

  if (status !== undefined) readStatusSwitch(context, status, config);
  readAccess(context, global, "global", config.globalAccess);
}

/** rinetd-uv writes a status file only with `enabled: true`, and then needs its `file`. */
function readStatusSwitch(context: YamlContext, status: Table, config: Config): void {
  const line = context.lines.lineOf("global.status");
  if (status.enabled === true) {
    if (status.file === undefined) context.issues.error(line, "global.status is enabled but gives no file (status.file: PATH)");
    return;
  }
  if (status.enabled === undefined && status.file !== undefined) {
    context.issues.warn(line, "global.status has no 'enabled: true': no status file is written (rinetd-uv's default)");
  }
  config.status = undefined;
}

/** `access: { allow: [...], deny: [...] }` of `parent`, each pattern on its own line; a single pattern may stand without a list. */
function readAccess(context: YamlContext, parent: Table, parentPath: string, list: AccessList): boolean {
  if (parent.access === undefined || parent.access === null) return true;
  const access = mapping(context, parent, parentPath, "access");
  if (access === undefined) return false;
  const path = joinPath(parentPath, "access");
  rejectUnknownKeys(context, access, path, ACCESS_KEYS);
  let valid = true;
  for (const kind of ACCESS_KEYS) {
    const kindPath = `${path}.${kind}`;
    for (const [patternPath, pattern] of stringList(context, access[kind], kindPath, "a list of patterns")) {
      const at = { file: context.file, line: context.lines.lineOf(patternPath) };
      if (pattern === undefined) {
        valid = false;
        continue;
      }
      const rule = compileAccessRule(kind, pattern, at);
      if (rule.ok) list[kind].push(rule.value);
      else {
        context.issues.error(at.line, rule.reason);
        valid = false;
      }
    }
  }
  return valid;
}

/**
 * A string or a list of strings, with each one's path; entries of another
 * type are reported and come back as undefined, so callers know to give up.
 */
function stringList(context: YamlContext, value: unknown, path: string, expected: string): Array<[string, string | undefined]> {
  if (value === undefined || value === null) return [];
  if (typeof value === "string") return [[path, value]];
  if (!Array.isArray(value)) {
    context.issues.error(context.lines.lineOf(path), `${path} must be a string or ${expected}, got ${typeName(value)}`);
    return [[path, undefined]];
  }
  return value.map((entry: unknown, index): [string, string | undefined] => {
    const entryPath = `${path}[${index}]`;
    if (typeof entry === "string") return [entryPath, entry];
    context.issues.error(context.lines.lineOf(entryPath), `${entryPath} must be a string, got ${typeName(entry)}`);
    return [entryPath, undefined];
  });
}

interface RuleState {
  config: Config;
  defaults: RuleDefaults;
  /** Rule names seen so far, with their lines. */
  names: Map<string, number>;
}

interface Bind {
  endpoint: Endpoint;
  line: number;
}

/** A backend as written, before it gets its default name. */
interface BackendEntry {
  endpoint: Endpoint;
  name: string | undefined;
  weight: number;
  source: string | undefined;
  dnsRefresh: number | undefined;
  /** The backend's own TLS settings; undefined: its rule's. */
  tls: TlsClientSettings | undefined;
}

function readRule(context: YamlContext, table: Table, path: string, state: RuleState): void {
  const reader = new TableReader(context, table, path);
  checkKeys(context, table, path, RULE_KEYS);
  const name = readName(reader, path, state.names);
  const binds = readBinds(context, reader, table, path);
  const unsuffixed: Transport = binds?.[0]?.endpoint.transport === "udp" ? "udp" : "tcp";
  const entries = readConnect(context, reader, table, path, unsuffixed);
  const explicit = new Set<keyof RuleDefaults>();
  // `mode` and `src` are read under their YAML names below, not under the TOML ones.
  const options = readRuleOptions(new TableReader(context, without(table, RENAMED_OPTIONS), path), explicit);
  const renamedValid = readRenamedOptions(context, reader, path, options ?? defaultRuleOptions());
  const access = emptyAccessList();
  const accessValid = readAccess(context, table, path, access);
  if (name === undefined || binds === undefined || entries === undefined || options === undefined || !renamedValid || !accessValid) return;

  shareDnsRefresh(context, path, entries, options, explicit);
  inheritDefaults(options, state.defaults, explicit);
  const backends = entries.map((entry, index) =>
    backendOf(entry.endpoint, entry.name ?? `${name}-backend-${index + 1}`, entry.weight, entry.source, entry.tls),
  );
  if (!uniqueBackendNames(reader, backends)) return;
  const connectTransport = backends[0]?.endpoint.transport ?? unsuffixed;
  for (const bind of binds) {
    const mode = modeOf(bind.endpoint.transport, connectTransport);
    const rule: ForwardRule = {
      ...options,
      balance: { ...options.balance },
      // rinetd-uv's keepalive default is for TCP connections.
      keepalive: mode === "tcp" || explicit.has("keepalive") ? options.keepalive : undefined,
      index: state.config.rules.length,
      name,
      at: { file: context.file, line: bind.line },
      mode,
      bind: bind.endpoint,
      backends,
      access,
    };
    state.config.rules.push(rule);
  }
}

/** The rule's `name`: required, not empty, and not that of an earlier rule. */
function readName(reader: TableReader, path: string, names: Map<string, number>): string | undefined {
  const name = reader.required("name", reader.string("name"));
  if (name === undefined) return undefined;
  if (name.trim() === "") {
    reader.report("name", `${path}.name is empty`);
    return undefined;
  }
  const first = names.get(name);
  if (first !== undefined) {
    reader.report("name", `duplicate rule name '${name}': the rule on line ${first} has it already`);
    return undefined;
  }
  names.set(name, reader.lineOf("name"));
  return name;
}

/** `bind`: one address or a list; an unsuffixed port is TCP. */
function readBinds(context: YamlContext, reader: TableReader, table: Table, path: string): Bind[] | undefined {
  if (reader.required("bind", table.bind) === undefined) return undefined;
  const bindPath = `${path}.bind`;
  const entries = stringList(context, table.bind, bindPath, "a list of addresses (HOST:PORT/PROTO, unix:PATH)");
  if (entries.length === 0) {
    reader.report("bind", `${bindPath} lists no address`);
    return undefined;
  }
  const binds: Bind[] = [];
  let valid = true;
  for (const [entryPath, text] of entries) {
    const line = context.lines.lineOf(entryPath);
    const endpoint = text === undefined ? undefined : parseAddress(text, "bind", "tcp");
    if (endpoint?.ok === true) binds.push({ endpoint: endpoint.value, line });
    else {
      if (endpoint !== undefined) context.issues.error(line, endpoint.reason);
      valid = false;
    }
  }
  if (!valid) return undefined;
  const datagrams = binds.filter((bind) => bind.endpoint.transport === "udp").length;
  if (datagrams > 0 && datagrams < binds.length) {
    reader.report("bind", "the binds of one rule must all be UDP, or all TCP or unix sockets: write a rule per protocol");
    return undefined;
  }
  return binds;
}

/** `connect`: one address, or a list of addresses and `{ dest, weight, name, src, dns_refresh }` mappings. */
function readConnect(context: YamlContext, reader: TableReader, table: Table, path: string, unsuffixed: Transport): BackendEntry[] | undefined {
  const value = table.connect;
  if (reader.required("connect", value) === undefined) return undefined;
  const connectPath = `${path}.connect`;
  const list: unknown[] = typeof value === "string" ? [value] : Array.isArray(value) ? value : [];
  if (typeof value !== "string" && !Array.isArray(value)) {
    reader.report("connect", `${connectPath} must be an address (HOST:PORT/PROTO, unix:PATH) or a list of backends, got ${typeName(value)}`);
    return undefined;
  }
  if (list.length === 0) {
    reader.report("connect", `${connectPath} lists no backend`);
    return undefined;
  }
  const tooMany = tooManyBackends(list.length);
  if (tooMany !== undefined) {
    reader.report("connect", tooMany);
    return undefined;
  }
  const entries: BackendEntry[] = [];
  let valid = true;
  list.forEach((entry: unknown, index) => {
    const entryPath = typeof value === "string" ? connectPath : `${connectPath}[${index}]`;
    const backend = readBackend(context, entry, entryPath, unsuffixed);
    if (backend === undefined) valid = false;
    else entries.push(backend);
  });
  return valid ? entries : undefined;
}

function readBackend(context: YamlContext, entry: unknown, path: string, unsuffixed: Transport): BackendEntry | undefined {
  if (typeof entry === "string") {
    const endpoint = parseAddress(entry, "connect", unsuffixed);
    if (endpoint.ok) return { endpoint: endpoint.value, name: undefined, weight: 1, source: undefined, dnsRefresh: undefined, tls: undefined };
    context.issues.error(context.lines.lineOf(path), endpoint.reason);
    return undefined;
  }
  if (!isTable(entry)) {
    context.issues.error(context.lines.lineOf(path), `${path} must be an address or a mapping (dest, weight, name, src, dns_refresh, tls), got ${typeName(entry)}`);
    return undefined;
  }
  const reader = new TableReader(context, entry, path);
  reader.onlyKeys(BACKEND_KEYS);
  // A getter gives undefined both for an absent key and for a mistyped one (reported).
  let valid = true;
  const read = <T>(key: string, value: T | undefined): T | undefined => {
    if (value === undefined && reader.has(key)) valid = false;
    return value;
  };
  const dest = reader.required("dest", read("dest", reader.string("dest")));
  const endpoint = dest === undefined ? undefined : reader.check("dest", parseAddress(dest, "connect", unsuffixed));
  const name = read("name", reader.string("name"));
  if (name !== undefined && name.trim() === "") {
    reader.report("name", `${path}.name is empty`);
    valid = false;
  }
  const weight = read("weight", reader.integer("weight")) ?? 1;
  if (endpoint?.srv === true && reader.has("weight")) {
    reader.report("weight", SRV_WEIGHT_REASON);
    valid = false;
  } else if (weight < 1 || weight > MAX_WEIGHT) {
    reader.report("weight", `weight must be a whole number from 1 to ${MAX_WEIGHT}, got ${weight}`);
    valid = false;
  }
  const sourceText = read("src", reader.string("src"));
  const source = sourceText === undefined ? undefined : read("src", reader.check("src", checkSourceAddress(sourceText)));
  const dnsRefresh = read("dns_refresh", reader.integer("dns_refresh"));
  if (dnsRefresh !== undefined && !applyOption(reader, "dns_refresh", optionSpec("dns_refresh"), defaultRuleOptions(), dnsRefresh)) valid = false;
  const tls = readBackendTls(reader, "tls");
  if (endpoint === undefined || !valid || tls === "invalid") return undefined;
  return { endpoint, name, weight, source, dnsRefresh, tls };
}

/** rinetd-uv's `mode` (socket permissions) and `src` (source address), stored as the options `socket_mode` and `source_address`. */
function readRenamedOptions(context: YamlContext, reader: TableReader, path: string, options: RuleOptions): boolean {
  let valid = true;
  const mode = reader.raw(SOCKET_MODE_KEY);
  if (mode !== undefined) {
    // Unquoted `0660` is a YAML integer (660): the permissions are read as they were written.
    const written =
      typeof mode === "string" ? mode : Number.isInteger(mode) ? (context.lines.scalarOf(`${path}.${SOCKET_MODE_KEY}`) ?? String(mode)) : undefined;
    if (written === undefined) {
      reader.report(SOCKET_MODE_KEY, `${path}.${SOCKET_MODE_KEY} must be octal permissions such as "0660", got ${typeName(mode)}`);
      valid = false;
    } else {
      valid = applyOption(reader, SOCKET_MODE_KEY, optionSpec("socket_mode"), options, written.replace(/^0o/i, "0")) && valid;
    }
  }
  if (reader.has(SOURCE_KEY)) {
    const source = reader.string(SOURCE_KEY);
    valid = (source !== undefined && applyOption(reader, SOURCE_KEY, optionSpec("source_address"), options, source)) && valid;
  }
  return valid;
}

function optionSpec(key: string): OptionSpec {
  const spec = RULE_OPTIONS.find((candidate) => candidate.toml === key);
  if (spec === undefined) throw new Error(`no rule option '${key}'`);
  return spec;
}

/** Check and store an option's value; false after reporting why it is invalid, on the line of `key`. */
function applyOption(reader: TableReader, key: string, spec: OptionSpec, options: RuleOptions, value: string | number): boolean {
  const reason = spec.apply(options, value, String(value));
  if (reason === undefined) return true;
  reader.report(key, reason);
  return false;
}

/**
 * Backends' own `dns_refresh`: oi keeps one interval per rule, so the rule
 * re-resolves as often as the most eager of them (or the rule itself) asks.
 */
function shareDnsRefresh(context: YamlContext, path: string, entries: BackendEntry[], options: RuleOptions, explicit: Set<keyof RuleDefaults>): void {
  const given = entries.flatMap((entry) => (entry.dnsRefresh === undefined ? [] : [entry.dnsRefresh]));
  if (given.length === 0) return;
  if (explicit.has("dnsRefresh")) given.push(options.dnsRefresh);
  const smallest = Math.min(...given);
  if (new Set(given).size > 1) {
    context.issues.warn(
      context.lines.lineOf(`${path}.connect`),
      `oi has one DNS refresh interval per rule: its dns_refresh values differ, so every backend of this rule uses the smallest, ${smallest}s`,
    );
  }
  options.dnsRefresh = smallest;
  explicit.add("dnsRefresh");
}

function uniqueBackendNames(reader: TableReader, backends: Backend[]): boolean {
  const duplicate = duplicateBackendName(backends);
  if (duplicate !== undefined) reader.report("connect", duplicate);
  return duplicate === undefined;
}

function without(table: Table, keys: readonly string[]): Table {
  return Object.fromEntries(Object.entries(table).filter(([key]) => !keys.includes(key)));
}

function joinPath(path: string, key: string): string {
  return path === "" ? key : `${path}.${key}`;
}
