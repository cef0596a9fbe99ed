/**
 * @module oxidinetd's TOML config, parsed with `Bun.TOML.parse` and then
 * checked key by key against its schema:
 *
 *     [[global_rules]]      type = "allow" | "deny", pattern = "..."
 *     [[forwarding_rules]]  bind_address, bind_port, connect_address, connect_port
 *                           (a port, or a range as a string: bind_port = "8000-8099"),
 *                           protocol = "tcp" | "udp" | "udptotcp" | "tcptoudp" (default "tcp"),
 *                           timeout, source_address, connect_timeout (oi's own)
 *                           oi's own: name, connect = [{ address, port, weight, name,
 *                           source_address, tls }], the per-rule options of options.ts,
 *                           and the tables load_balancing, match, tls, tls_connect
 *     [[forwarding_rules.rules]]  type, pattern: access rules of the rule above
 *     log_file, pid_file, log_format = "rinetd" | "common"
 *
 * Unknown keys and wrong types are errors, each on its own line.
 */

import type { AccessList, Backend, Config, Endpoint, ForwardRule, LogFormat, RuleMode, Transport } from "../types.ts";
import { checkGlobals } from "./globals.ts";
import { IssueCollector, type ParseResult } from "./issues.ts";
import { backendOf, defaultRuleName, emptyAccessList, emptyConfig, transportsOf } from "./model.ts";
import { defaultRuleDefaults, duplicateBackendName, inheritDefaults, tooManyBackends, type RuleDefaults } from "./options.ts";
import {
  arrayOfTables,
  type DocumentContext,
  globalKeys,
  isTable,
  OPTION_TABLE_KEYS,
  readBackendTls,
  readGlobals,
  readRuleOptions,
  RULE_OPTION_KEYS,
  type Table,
  TableReader,
} from "./table-reader.ts";
import { nestingProblem } from "./nesting.ts";
import { parsePortRange, type PortSpan } from "./port-range.ts";
import { isSrvAddress, parseSrvAddress, srvBindReason, SRV_WEIGHT_REASON } from "./srv-address.ts";
import { tooDeep } from "./text-limits.ts";
import { indexTomlLines, locateTomlSyntaxError } from "./toml-lines.ts";
import { checkHost, checkPort, checkSourceAddress, checkUnixPath, compileAccessRule } from "./validate.ts";

const tomlKey = (spec: { toml?: string }) => spec.toml;
const TOP_LEVEL_KEYS = ["global_rules", "forwarding_rules", "log_format", ...globalKeys(tomlKey)];
const RULE_KEYS = [
  "name",
  "bind_address",
  "bind_port",
  "connect_address",
  "connect_port",
  "connect",
  "protocol",
  ...RULE_OPTION_KEYS,
  ...OPTION_TABLE_KEYS,
  "rules",
];
const BACKEND_KEYS = ["address", "port", "weight", "name", "source_address", "tls"];
const ACCESS_KEYS = ["type", "pattern"];
const MODES: readonly RuleMode[] = ["tcp", "udp", "udptotcp", "tcptoudp"];
const LOG_FORMATS: readonly LogFormat[] = ["rinetd", "common", "json"];
const BUN_ERROR_PREFIX = "TOML Parse error: ";
const UNIX_PREFIX = "unix:";

export function parseToml(text: string, file: string): ParseResult {
  const issues = new IssueCollector(file);
  const config = emptyConfig(file, "toml");
  // Bounds checked before Bun's parser recurses (or takes quadratic time) on them.
  const problem = nestingProblem(text, "toml");
  if (problem !== undefined) {
    issues.error(problem.line, problem.reason);
    return { config, errors: issues.errors, warnings: issues.warnings, files: [file] };
  }
  let root: unknown;
  try {
    root = Bun.TOML.parse(text);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // Nesting the scan did not count: no line to give (re-parsing prefixes would overflow again, slowly).
    if (error instanceof RangeError) issues.error(1, tooDeep());
    else {
      const reason = message.startsWith(BUN_ERROR_PREFIX) ? message.slice(BUN_ERROR_PREFIX.length) : message;
      issues.error(locateTomlSyntaxError(text, message), `TOML syntax error: ${reason}`);
    }
    return { config, errors: issues.errors, warnings: issues.warnings, files: [file] };
  }

  const context: DocumentContext = { file, lines: indexTomlLines(text), issues };
  if (isTable(root)) readRoot(context, root, config);
  return { config, errors: issues.errors, warnings: issues.warnings, files: [file] };
}

function readRoot(context: DocumentContext, root: Table, config: Config): void {
  const reader = new TableReader(context, root, "");
  reader.onlyKeys(TOP_LEVEL_KEYS);
  const defaults = defaultRuleDefaults();
  readGlobals(reader, tomlKey, { config, defaults }, context.issues);
  config.logFormat = reader.oneOf("log_format", LOG_FORMATS) ?? "rinetd";
  const globalProblem = checkGlobals(config);
  if (globalProblem !== undefined) context.issues.error(reader.lineOf("status"), globalProblem);

  for (const [path, table] of arrayOfTables(context, root, "", "global_rules")) {
    readAccessRule(context, table, path, config.globalAccess);
  }
  for (const [path, table] of arrayOfTables(context, root, "", "forwarding_rules")) {
    const rule = readForwardRule(context, table, path, config.rules.length, defaults);
    if (rule !== undefined) config.rules.push(rule);
  }
}

function readForwardRule(context: DocumentContext, table: Table, path: string, index: number, defaults: RuleDefaults): ForwardRule | undefined {
  const reader = new TableReader(context, table, path);
  reader.onlyKeys(RULE_KEYS);
  const mode = reader.oneOf("protocol", MODES) ?? "tcp";
  const [bindTransport, connectTransport] = transportsOf(mode);
  const bind = readEndpoint(reader, "bind_address", "bind_port", "bind", bindTransport);
  const backends = readBackends(reader, connectTransport);
  const explicit = new Set<keyof RuleDefaults>();
  const options = readRuleOptions(reader, explicit);
  const name = reader.string("name");

  const access = emptyAccessList();
  for (const [rulePath, accessTable] of arrayOfTables(context, table, path, "rules")) {
    readAccessRule(context, accessTable, rulePath, access);
  }
  if (bind === undefined || backends === undefined || options === undefined) return undefined;
  inheritDefaults(options, defaults, explicit);
  const rule: ForwardRule = {
    ...options,
    index,
    name: name ?? "",
    at: { file: context.file, line: context.lines.lineOf(path) },
    mode,
    bind,
    backends,
    access,
  };
  rule.name ||= defaultRuleName(rule);
  return rule;
}

/**
 * An address key and its port key: `unix:/path` needs no port; anything else
 * is an IP address or host name with a port. Missing keys are reported.
 */
function readEndpoint(reader: TableReader, addressKey: string, portKey: string, role: string, transport: Transport): Endpoint | undefined {
  const address = reader.required(addressKey, reader.string(addressKey));
  if (address === undefined) {
    // Still check the port, so one pass reports every mistake of the table.
    reader.required(portKey, reader.integer(portKey));
    return undefined;
  }
  if (isSrvAddress(address)) return readSrvEndpoint(reader, address, addressKey, portKey, role, transport);
  if (address.startsWith(UNIX_PREFIX)) {
    if (transport === "udp") {
      reader.report(addressKey, `${role} address '${address}': unix sockets carry streams, not UDP`);
      return undefined;
    }
    const path = reader.check(addressKey, checkUnixPath(address.slice(UNIX_PREFIX.length), `${role} address`));
    return path === undefined ? undefined : { host: path, port: 0, transport: "unix" };
  }
  const host = reader.check(addressKey, checkHost(address, `${role} address`));
  const ports = readPorts(reader, portKey, role);
  if (host === undefined || ports === undefined) return undefined;
  const endpoint: Endpoint = { host, port: ports.port, transport };
  if (ports.portEnd !== undefined) endpoint.portEnd = ports.portEnd;
  return endpoint;
}

/** `srv:_service._proto.name`: a connect address without a port key, whose protocol label agrees with the rule's `protocol`. */
function readSrvEndpoint(reader: TableReader, address: string, addressKey: string, portKey: string, role: string, transport: Transport): Endpoint | undefined {
  if (role !== "connect") {
    reader.report(addressKey, srvBindReason(role, address));
    return undefined;
  }
  const endpoint = reader.check(addressKey, parseSrvAddress(address, `${role} address`));
  if (reader.has(portKey)) {
    reader.report(portKey, `${role} address '${address}' takes no port: each SRV record gives its own`);
    return undefined;
  }
  if (endpoint !== undefined && endpoint.transport !== transport) {
    reader.report(addressKey, `${role} address '${address}' names a ${endpoint.transport.toUpperCase()} service but the rule connects over ${transport.toUpperCase()} (protocol)`);
    return undefined;
  }
  return endpoint;
}

/** A port key: an integer, or a range as a string (`bind_port = "8000-8099"`). */
function readPorts(reader: TableReader, portKey: string, role: string): PortSpan | undefined {
  const raw = reader.raw(portKey);
  if (typeof raw === "string") return reader.check(portKey, parsePortRange(raw, `${role} port`));
  const portValue = reader.required(portKey, reader.integer(portKey));
  const port = portValue === undefined ? undefined : reader.check(portKey, checkPort(portValue, `${role} port`));
  return port === undefined ? undefined : { port };
}

/**
 * oxidinetd's single `connect_address`/`connect_port`, or oi's list of
 * backends: `connect = [{ address = "10.0.0.1", port = 80, weight = 2 }, ...]`.
 */
function readBackends(reader: TableReader, transport: Transport): Backend[] | undefined {
  if (!reader.has("connect")) {
    const endpoint = readEndpoint(reader, "connect_address", "connect_port", "connect", transport);
    return endpoint === undefined ? undefined : [backendOf(endpoint, undefined, 1, undefined)];
  }
  if (reader.has("connect_address") || reader.has("connect_port")) {
    reader.report("connect", "give either connect_address/connect_port or a connect list, not both");
    return undefined;
  }
  const list = reader.raw("connect");
  if (!Array.isArray(list) || list.length === 0) {
    reader.report("connect", `${reader.keyPath("connect")} must be a non-empty array of backend tables ({ address, port, weight })`);
    return undefined;
  }
  const tooMany = tooManyBackends(list.length);
  if (tooMany !== undefined) {
    reader.report("connect", tooMany);
    return undefined;
  }
  const backends: Backend[] = [];
  let valid = true;
  list.forEach((entry: unknown, index) => {
    const path = `${reader.keyPath("connect")}[${index}]`;
    if (!isTable(entry)) {
      reader.report("connect", `${path} must be a table ({ address, port, weight }), got something else`);
      valid = false;
      return;
    }
    const entryReader = reader.nested(entry, path);
    entryReader.onlyKeys(BACKEND_KEYS);
    const endpoint = readEndpoint(entryReader, "address", "port", "connect", transport);
    const weight = entryReader.integer("weight") ?? 1;
    if (weight < 1 || weight > 100) entryReader.report("weight", `weight must be a whole number from 1 to 100, got ${weight}`);
    if (endpoint?.srv === true && entryReader.has("weight")) {
      entryReader.report("weight", SRV_WEIGHT_REASON);
      valid = false;
    }
    const sourceText = entryReader.string("source_address");
    const source = sourceText === undefined ? undefined : entryReader.check("source_address", checkSourceAddress(sourceText));
    const tls = readBackendTls(entryReader, "tls");
    if (endpoint === undefined || weight < 1 || weight > 100 || (sourceText !== undefined && source === undefined) || tls === "invalid") {
      valid = false;
      return;
    }
    backends.push(backendOf(endpoint, entryReader.string("name"), weight, source, tls));
  });
  if (!valid) return undefined;
  const duplicate = duplicateBackendName(backends);
  if (duplicate !== undefined) reader.report("connect", duplicate);
  return duplicate === undefined ? backends : undefined;
}


/** One `{ type, pattern }` table of `global_rules` or of a rule's `rules`, added to `list` when valid. */
function readAccessRule(context: DocumentContext, table: Table, path: string, list: AccessList): void {
  const reader = new TableReader(context, table, path);
  reader.onlyKeys(ACCESS_KEYS);
  const kind = reader.required("type", reader.oneOf("type", ["allow", "deny"] as const));
  const pattern = reader.required("pattern", reader.string("pattern"));
  if (kind === undefined || pattern === undefined) return;
  const at = { file: context.file, line: context.lines.lineOf(path) };
  const rule = reader.check("pattern", compileAccessRule(kind, pattern, at));
  if (rule === undefined) return;
  if (rule.kind === "allow") list.allow.push(rule);
  else list.deny.push(rule);
}

