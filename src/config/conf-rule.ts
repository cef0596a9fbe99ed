/**
 * @module One forwarding line of the `.conf` format:
 *
 *     bindaddress bindport connectaddress connectport [option=value,...]
 *
 * rinetd's four fields, with what rinetd-uv and oi add:
 * - `unix:/path` (or `unix:@name`) as bind or connect address, with no port
 *   field after it;
 * - `srv:_service._proto.name` as connect address, also with no port field
 *   (the SRV records give ports and weights: see srv-address.ts);
 * - several backends in the connect field, comma-separated, each
 *   `ADDRESS[:PORT][*WEIGHT]` (`web1,web2*2,[2001:db8::5]:8081`): the connect
 *   port field is the port of entries without their own (and may be left out
 *   when every entry has one).
 *
 * An unsuffixed port is TCP, on either side, as rinetd(8) says.
 */
import type { Backend, Endpoint, RuleOptions, Transport } from "../types.ts";
import { backendOf } from "./model.ts";
import { confOption, CONF_OPTION_NAMES, defaultRuleOptions, duplicateBackendName, parseConfOptionValue, tooManyBackends, type RuleDefaults } from "./options.ts";
import { isPortRange, parsePortRange, type PortSpan } from "./port-range.ts";
import { resolveService } from "./services.ts";
import { isSrvAddress, parseSrvAddress, srvBindReason, SRV_WEIGHT_REASON } from "./srv-address.ts";
import { type Checked, checkHost, checkPort, checkUnixPath } from "./validate.ts";

export const RULE_FORM = "bindaddress bindport connectaddress connectport [options]";
const UNIX_PREFIX = "unix:";
const MAX_WEIGHT = 100;

export interface PortField {
  port: number;
  /** The last port of a range (`8000-8099`); absent: one port. */
  portEnd?: number;
  transport: Transport;
  /** False when the port had no `/tcp` or `/udp`: rinetd then means TCP. */
  suffixed: boolean;
}

/** A forwarding line's fields, before they become a rule. */
export interface ParsedRuleLine {
  bind: Endpoint;
  backends: Backend[];
  options: RuleOptions;
  /** Options the line set itself, which global defaults must not override. */
  explicit: Set<keyof RuleDefaults>;
  /** Set when rinetd's "unsuffixed is TCP" turned a UDP listener into UDP-to-TCP. */
  udpToTcpByDefault: boolean;
}

const BROKEN_PORT: PortField = { port: 0, transport: "tcp", suffixed: true };

function fail<T>(reason: string): Checked<T> {
  return { ok: false, reason };
}

const isUnix = (text: string) => text.toLowerCase().startsWith(UNIX_PREFIX);
/** A connect entry that takes no port field: a unix socket, or an SRV name. */
const hasNoPort = (text: string) => isUnix(text) || isSrvAddress(text);

/**
 * The fields the line must have: the bind address, its port unless it is a
 * unix socket, the connect list, and the connect port unless every entry is a
 * unix socket or carries its own port (then it may still be given).
 */
export function expectedFieldCounts(fields: string[]): { min: number; max: number } {
  const [bind = "", ...rest] = fields;
  const bindPortFields = isUnix(bind) ? 0 : 1;
  const connect = rest[bindPortFields] ?? "";
  const entries = connect.split(",");
  const everyEntryHasPort = connect !== "" && entries.every((entry) => hasNoPort(entry) || splitHostPort(stripWeight(entry).text).port !== undefined);
  const min = 1 + bindPortFields + 1 + (everyEntryHasPort ? 0 : 1);
  const noPorts = connect !== "" && entries.every(hasNoPort);
  return { min, max: noPorts ? min : 1 + bindPortFields + 2 };
}

/** The fields of a forwarding line (options not included) and its option groups. */
export function parseRuleFields(fields: string[], optionGroups: string[], reasons: string[]): ParsedRuleLine | undefined {
  // Check every field before giving up, so one pass reports all of a line's mistakes.
  const take = <T>(checked: Checked<T>): T | undefined => {
    if (checked.ok) return checked.value;
    reasons.push(checked.reason);
    return undefined;
  };
  let position = 0;
  const bindText = fields[position++] ?? "";
  let bind: Endpoint | undefined;
  if (isUnix(bindText)) {
    const path = take(checkUnixPath(bindText.slice(UNIX_PREFIX.length), "bind address"));
    if (path !== undefined) bind = { host: path, port: 0, transport: "unix" };
  } else if (isSrvAddress(bindText)) {
    reasons.push(srvBindReason("bind", bindText));
    position++;
  } else {
    const host = take(checkHost(bindText, "bind address"));
    const port = take(parsePortField(fields[position++] ?? "", "bind port"));
    if (host !== undefined && port !== undefined) bind = withPorts({ host, port: port.port, transport: port.transport }, port);
  }
  const connectText = fields[position++] ?? "";
  const portText = fields[position];
  const defaultPort = portText === undefined ? undefined : take(parsePortField(portText, "connect port"));
  // A connect port field that failed is already reported: entries still get checked, against a stand-in port.
  const portForEntries = portText !== undefined && defaultPort === undefined ? BROKEN_PORT : defaultPort;
  const backends = take(parseBackendList(connectText, portForEntries));
  const { options, explicit } = parseOptionGroups(optionGroups, reasons);
  if (bind === undefined || backends === undefined || (portText !== undefined && defaultPort === undefined)) return undefined;
  const udpToTcpByDefault =
    bind.transport === "udp" &&
    defaultPort?.suffixed !== true &&
    backends.every((backend) => backend.endpoint.transport === "tcp" && backend.endpoint.srv !== true);
  return { bind, backends, options, explicit, udpToTcpByDefault };
}

/** `80`, `80/udp`, `http`, `domain/udp`, a range `8000-8099/udp`: an unsuffixed port is TCP, as in rinetd. */
export function parsePortField(text: string, role: string): Checked<PortField> {
  const slash = text.lastIndexOf("/");
  const name = slash === -1 ? text : text.slice(0, slash);
  const protocol = slash === -1 ? undefined : text.slice(slash + 1).toLowerCase();
  if (protocol !== undefined && protocol !== "tcp" && protocol !== "udp") {
    return fail(`${role} '${text}': unknown protocol '${protocol}' (write /tcp or /udp)`);
  }
  const transport: Transport = protocol ?? "tcp";
  const suffixed = protocol !== undefined;
  if (isPortRange(name)) {
    const span = parsePortRange(name, role);
    return span.ok ? { ok: true, value: { ...span.value, transport, suffixed } } : span;
  }
  const port = parsePortNumber(name, transport, role, text);
  return port.ok ? { ok: true, value: { port: port.value, transport, suffixed } } : port;
}

/** `endpoint` with the range of `ports`, when it is one. */
function withPorts(endpoint: Endpoint, ports: PortSpan): Endpoint {
  if (ports.portEnd !== undefined) endpoint.portEnd = ports.portEnd;
  return endpoint;
}

function parsePortNumber(name: string, transport: Transport, role: string, written: string): Checked<number> {
  if (/^\d+$/.test(name)) return checkPort(Number(name), role);
  const port = name === "" ? undefined : resolveService(name, transport);
  if (port === undefined) return fail(`${role} '${written}' is neither a port number nor a known ${transport} service name`);
  return { ok: true, value: port };
}

/** `entry*3` → the entry and its weight (1 when not given). */
function stripWeight(entry: string): { text: string; weight: number | string } {
  const match = /^(.*)\*(\d+)$/.exec(entry);
  if (match === null) return { text: entry, weight: 1 };
  const weight = Number(match[2]);
  if (weight < 1 || weight > MAX_WEIGHT) return { text: match[1] ?? "", weight: `weight ${match[2]} is out of range (1..${MAX_WEIGHT})` };
  return { text: match[1] ?? "", weight };
}

/**
 * `host:port`, `[v6]:port`, `[v6]`, `host`, or a bare IPv6 address (its colons
 * are not a port separator).
 */
function splitHostPort(text: string): { host: string; port: string | undefined } {
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close !== -1 && text[close + 1] === ":") return { host: text.slice(0, close + 1), port: text.slice(close + 2) };
    return { host: text, port: undefined };
  }
  const colons = text.split(":").length - 1;
  if (colons === 1) {
    const [host = "", port = ""] = text.split(":");
    return { host, port };
  }
  return { host: text, port: undefined };
}

/** The connect field: one backend, or several separated by commas. */
function parseBackendList(text: string, defaultPort: PortField | undefined): Checked<Backend[]> {
  const entries = text.split(",");
  const tooMany = tooManyBackends(entries.length);
  if (tooMany !== undefined) return fail(tooMany);
  const backends: Backend[] = [];
  for (const entry of entries) {
    const backend = parseBackendEntry(entry.trim(), defaultPort);
    if (!backend.ok) return backend;
    backends.push(backend.value);
  }
  const duplicate = duplicateBackendName(backends);
  if (duplicate !== undefined) return fail(duplicate);
  return { ok: true, value: backends };
}

function parseBackendEntry(entry: string, defaultPort: PortField | undefined): Checked<Backend> {
  if (entry === "") return fail("empty entry in the connect address list (stray ',')");
  const { text, weight } = stripWeight(entry);
  if (typeof weight === "string") return fail(`connect address '${entry}': ${weight}`);
  if (isSrvAddress(text)) {
    if (text !== entry) return fail(`connect address '${entry}': ${SRV_WEIGHT_REASON}`);
    const srv = parseSrvAddress(text, "connect address");
    return srv.ok ? { ok: true, value: backendOf(srv.value, undefined, 1, undefined) } : srv;
  }
  if (isUnix(text)) {
    const path = checkUnixPath(text.slice(UNIX_PREFIX.length), "connect address");
    if (!path.ok) return path;
    return { ok: true, value: backendOf({ host: path.value, port: 0, transport: "unix" }, undefined, weight, undefined) };
  }
  const split = splitHostPort(text);
  const host = checkHost(split.host, "connect address");
  if (!host.ok) return host;
  const transport = defaultPort?.transport ?? "tcp";
  let ports: PortSpan;
  if (split.port !== undefined && isPortRange(split.port)) {
    const own = parsePortRange(split.port, "connect port");
    if (!own.ok) return own;
    ports = own.value;
  } else if (split.port !== undefined) {
    const own = parsePortNumber(split.port, transport, "connect port", `${split.host}:${split.port}`);
    if (!own.ok) return own;
    ports = { port: own.value };
  } else if (defaultPort !== undefined) {
    ports = defaultPort;
  } else {
    return fail(`connect address '${entry}' has no port, and no connect port follows it`);
  }
  return { ok: true, value: backendOf(withPorts({ host: host.value, port: ports.port, transport }, ports), undefined, weight, undefined) };
}

/** Option groups `[timeout=30,src=10.0.0.1]`, possibly several; problems are added to `reasons`. */
function parseOptionGroups(groups: string[], reasons: string[]): { options: RuleOptions; explicit: Set<keyof RuleDefaults> } {
  const options = defaultRuleOptions();
  const explicit = new Set<keyof RuleDefaults>();
  const seen = new Set<string>();
  for (const group of groups) {
    if (!group.startsWith("[")) {
      reasons.push(`unexpected '${group}' after the options (options are written [name=value,...])`);
      continue;
    }
    const inner = group.slice(1, -1);
    if (inner.trim() === "") {
      reasons.push(`empty option group '${group}'`);
      continue;
    }
    // A switch that others depend on (tls-connect=on before tls-ca=) is applied first, wherever it stands.
    const items = inner.split(",").map((item) => item.trim());
    const opensFirst = (item: string) => (confOption(optionName(item))?.opens === undefined ? 1 : 0);
    for (const item of items.sort((a, b) => opensFirst(a) - opensFirst(b))) {
      const reason = applyOption(options, item, seen, explicit);
      if (reason !== undefined) reasons.push(reason);
    }
  }
  return { options, explicit };
}

/** The option name of `name=value` (or of a bare switch), lowercased. */
function optionName(item: string): string {
  const equals = item.indexOf("=");
  return (equals === -1 ? item : item.slice(0, equals)).trim().toLowerCase();
}

/** Set one `name=value` (or a bare switch, `accept_proxy`); a reason when it is not a valid option. */
function applyOption(options: RuleOptions, item: string, seen: Set<string>, explicit: Set<keyof RuleDefaults>): string | undefined {
  if (item === "") return "empty option (stray ',' in the option list)";
  const equals = item.indexOf("=");
  const name = optionName(item);
  const value = equals === -1 ? undefined : item.slice(equals + 1).trim();
  const spec = confOption(name);
  if (spec === undefined) return `unknown option '${name}' (known: ${CONF_OPTION_NAMES.join(", ")})`;
  const bareSwitch = value === undefined && spec.type === "switch";
  if (!bareSwitch && (value === undefined || value === "")) return `option '${name}' needs a value (${name}=...)`;
  const canonical = spec.conf[0] ?? name;
  if (seen.has(canonical)) return `option '${name}' is given twice`;
  seen.add(canonical);
  if (spec.inherits !== undefined) explicit.add(spec.inherits);
  return spec.apply(options, parseConfOptionValue(spec, value), value ?? "");
}
