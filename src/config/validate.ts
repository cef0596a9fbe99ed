/**
 * @module Checks shared by every config format, so the same mistake gets the
 * same reason whether it was written in rinetd's `.conf` or in TOML: port
 * range, address syntax, option values, access patterns, and the whole-config
 * check for two rules on one bind address.
 */

import { compilePattern } from "../access.ts";
import { formatEndpoint, formatPorts, portCount } from "../endpoint.ts";
import { isIpLiteral, normalizeIp } from "../ip.ts";
import type { AccessRule, AddressPattern, ConfigIssue, ConnectionRate, Endpoint, ForwardRule, MetricsAddress, SourceLocation } from "../types.ts";

export type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

function ok<T>(value: T): Checked<T> {
  return { ok: true, value };
}

function invalid<T>(reason: string): Checked<T> {
  return { ok: false, reason };
}

const MAX_PORT = 65535;
const MAX_HOST_NAME_LENGTH = 253;
const HOST_LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** `role` names the field in the reason: "bind port", "connect port". */
export function checkPort(value: number, role: string): Checked<number> {
  if (!Number.isInteger(value)) return invalid(`${role} ${value} is not a whole number`);
  if (value < 1 || value > MAX_PORT) return invalid(`${role} ${value} is out of range (1..${MAX_PORT})`);
  return ok(value);
}

/**
 * An IP literal or a host name (syntax only: names are resolved when the rule
 * starts, not at load). IPv6 may be written in brackets, `[::1]`; the value is
 * returned without them. Zone ids (`fe80::1%eth0`) are refused.
 */
export function checkHost(text: string, role: string): Checked<string> {
  if (text === "") return invalid(`${role} is empty`);
  const bracketed = text.startsWith("[") && text.endsWith("]");
  const bare = bracketed ? text.slice(1, -1) : text;
  if (bare.includes("%")) return invalid(`${role} '${text}': zone ids (%interface) are not supported`);
  if (isIpLiteral(bare)) {
    if (bracketed && !bare.includes(":")) return invalid(`${role} '${text}': brackets are only for IPv6 addresses`);
    return ok(bare);
  }
  if (bracketed || bare.includes(":")) return invalid(`${role} '${text}' is not a valid IPv6 address`);
  if (isHostName(bare)) return ok(bare);
  if (/^[\d.]+$/.test(bare)) return invalid(`${role} '${text}' is not a valid IPv4 address`);
  return invalid(`${role} '${text}' is not a valid IP address or host name`);
}

/** RFC 1123 syntax (underscores tolerated, as resolvers do); an all-digit last label would be a malformed IPv4 address. */
function isHostName(text: string): boolean {
  const name = text.endsWith(".") ? text.slice(0, -1) : text;
  if (name.length === 0 || name.length > MAX_HOST_NAME_LENGTH) return false;
  const labels = name.split(".");
  if (!labels.every((label) => HOST_LABEL.test(label))) return false;
  return !/^\d+$/.test(labels[labels.length - 1] ?? "");
}

/**
 * A name a rule matches by (`sni=`, `host=`): a host name, an IP address, or
 * a wildcard `*.suffix` (any name below the suffix); lowercased, without a
 * trailing dot, as the peek parsers give what clients send.
 */
export function checkMatchName(text: string, kind: string): Checked<string> {
  const name = text.toLowerCase().replace(/\.$/, "");
  if (name === "") return invalid(`${kind} name is empty`);
  const wildcard = name.startsWith("*.");
  const rest = wildcard ? name.slice(2) : name;
  if (rest.includes("*")) return invalid(`${kind} '${text}': a wildcard is written *.example.com (a leading '*.' only)`);
  if (isHostName(rest) || (!wildcard && isIpLiteral(rest.replace(/^\[(.*)\]$/, "$1")))) return ok(wildcard ? `*.${rest}` : rest.replace(/^\[(.*)\]$/, "$1"));
  return invalid(`${kind} '${text}' is not a host name${wildcard ? " wildcard" : ""}`);
}

/** rinetd's `[src=ADDR]`: the local address to connect from must be an IP literal. */
export function checkSourceAddress(text: string): Checked<string> {
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  if (!isIpLiteral(bare)) return invalid(`source address '${text}' must be an IP address`);
  return ok(bare);
}

/** `written` is how the value appeared in the file, for the reason (a .conf value may not be a number at all). */
export function checkUdpTimeout(value: number, written: string = String(value)): Checked<number> {
  if (!Number.isInteger(value) || value < 1) {
    return invalid(`timeout must be a positive whole number of seconds, got '${written}'`);
  }
  return ok(value);
}

/** rinetd-uv's upper bound for connect-timeout: a day. */
const MAX_CONNECT_TIMEOUT = 86_400;

/** Seconds; 0 means no timer of oi's own (the kernel's connect timeout applies, as in rinetd-uv). */
export function checkConnectTimeout(value: number, written: string = String(value)): Checked<number> {
  if (!Number.isFinite(value) || value < 0 || value > MAX_CONNECT_TIMEOUT) {
    return invalid(`connect_timeout must be a number of seconds from 0 (the system's own timeout) to ${MAX_CONNECT_TIMEOUT}, got '${written}'`);
  }
  return ok(value);
}

/** Longest unix socket path Linux takes (sun_path is 108 bytes with its NUL). */
const MAX_UNIX_PATH = 107;

/** `unix:/absolute/path` or `unix:@abstract-name`, given without the `unix:` prefix. */
export function checkUnixPath(path: string, role: string): Checked<string> {
  if (!path.startsWith("/") && !path.startsWith("@")) {
    return invalid(`${role} 'unix:${path}' must be an absolute path (unix:/run/app.sock) or an abstract name (unix:@name)`);
  }
  if (path.length < 2) return invalid(`${role} 'unix:${path}' names no socket`);
  if (Buffer.byteLength(path) > MAX_UNIX_PATH) return invalid(`${role} 'unix:${path}' is longer than ${MAX_UNIX_PATH} bytes`);
  return ok(path);
}

/** The global connection bound (`maxconn N`, TOML `max_connections`). */
export function checkMaxConnections(value: number, written: string = String(value)): Checked<number> {
  if (!Number.isInteger(value) || value < 1) {
    return invalid(`maxconn must be a positive whole number, got '${written}'`);
  }
  return ok(value);
}

/** Bounds of the per-client limits (a rate's window is at most a day). */
const MAX_PER_CLIENT = 1_000_000;
const MAX_RATE_SECONDS = 86_400;

/** `maxconn-client=N`: open connections (or UDP sessions) per client, 1..1000000. */
export function checkMaxConnectionsPerClient(value: number, written: string = String(value)): Checked<number> {
  if (!Number.isInteger(value) || value < 1 || value > MAX_PER_CLIENT) {
    return invalid(`maxconn-client must be a whole number from 1 to ${MAX_PER_CLIENT}, got '${written}'`);
  }
  return ok(value);
}

/** `connrate-client=N/S`: at most N new connections per client in any S seconds (both whole numbers). */
export function checkConnectionRate(text: string): Checked<ConnectionRate> {
  const match = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const connections = Number(match?.[1]);
  const seconds = Number(match?.[2]);
  if (match === null || connections < 1 || connections > MAX_PER_CLIENT || seconds < 1 || seconds > MAX_RATE_SECONDS) {
    return invalid(
      `connrate-client must be N/S, at most N new connections per client in any S seconds (N from 1 to ${MAX_PER_CLIENT}, S from 1 to ${MAX_RATE_SECONDS}, whole numbers), got '${text}'`,
    );
  }
  return ok({ connections, seconds });
}

/** `HOST:PORT` or `[IPv6]:PORT` for the metrics endpoint; the host must be an IP address. */
export function checkMetricsAddress(text: string): Checked<MetricsAddress> {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  const host = match?.[1] ?? match?.[2];
  if (match === null || host === undefined || !isIpLiteral(host)) {
    return invalid(`metrics address '${text}' must be IP:PORT (IPv6 as [ADDRESS]:PORT)`);
  }
  const port = checkPort(Number(match[3]), "metrics port");
  return port.ok ? ok({ host, port: port.value }) : port;
}

export function compileAccessRule(kind: "allow" | "deny", text: string, at: SourceLocation): Checked<AccessRule> {
  const pattern = compilePattern(text);
  if (typeof pattern === "string") return invalid(`bad ${kind} pattern '${text}': ${pattern}`);
  return ok({ kind, pattern, at });
}

/** What starts a reason about a whole rule: "" where the line says enough (.conf), `rule 'NAME': ` in YAML. */
export type RuleLabel = (rule: ForwardRule) => string;
const NO_LABEL: RuleLabel = () => "";

/**
 * Two rules may listen on the same address, port and transport only as
 * rules that choose by what the client sends first (sni=, host=,
 * protocol=), each a TCP (or unix socket) stream rule, with at most one
 * without a match (the bind's default), no name or protocol matched by two of
 * them, and the settings that act before the choice (accept_proxy,
 * peek-timeout) alike. IP literals are compared by bytes (`::` is `0::0`),
 * host names without case. A wildcard also takes the port on the addresses
 * it covers, so the kernel would refuse the second bind (as rinetd-uv's
 * manual warns, `0.0.0.0` and `::` are one "any"): `0.0.0.0` overlaps every
 * IPv4 address and `::`, and `::` (dual-stack on Linux) overlaps every
 * address. The error goes on the later rule and names the earlier one's
 * line, before anything is bound.
 */
export function findDuplicateBinds(rules: ForwardRule[], label: RuleLabel = NO_LABEL): ConfigIssue[] {
  const rulesByBind = new Map<string, ForwardRule[]>();
  const ports = new PortIndex();
  const issues: ConfigIssue[] = [];
  const report = (rule: ForwardRule, first: ForwardRule, what: string, after = "") =>
    issues.push({
      file: rule.at.file,
      line: rule.at.line,
      reason: `${label(rule)}${what} the rule ${
        first.at.file === rule.at.file ? `on line ${first.at.line}` : `at ${first.at.file}:${first.at.line}`
      }${after}`,
    });
  for (const rule of rules) {
    const key = bindKey(rule.bind);
    const sharing = rulesByBind.get(key);
    if (sharing !== undefined) {
      const conflict = sharingConflict(sharing, rule);
      if (conflict === undefined) sharing.push(rule);
      else report(rule, conflict.with, conflict.what, conflict.after);
      continue;
    }
    rulesByBind.set(key, [rule]);
    if (rule.bind.transport === "unix") continue;
    const overlap = ports.overlapping(rule);
    if (overlap !== undefined) {
      const { other, port } = overlap;
      const both = portCount(rule.bind) > 1 || portCount(other.bind) > 1 ? `: port ${port} is in both` : "";
      if (hostKeyOf(rule.bind) === hostKeyOf(other.bind)) {
        // Only rules on exactly the same ports may share them (chosen by first bytes); ranges that merely intersect cannot.
        report(rule, other, `bind ${formatEndpoint(rule.bind)} overlaps ${formatEndpoint(other.bind)} of`, both);
      } else {
        report(rule, other, `bind ${formatEndpoint(rule.bind)} overlaps ${formatEndpoint(other.bind)} (a wildcard address takes the port on every address it covers) of`, both);
      }
      continue;
    }
    ports.add(rule);
  }
  return issues;
}

/**
 * The binds seen so far, by port, to find the first one a new bind overlaps:
 * the same address (or host name) on a port both cover, or an IP address a
 * wildcard of the other covers. One-port binds are indexed by port; ranges
 * are few and kept in a list.
 */
class PortIndex {
  private readonly byPort = new Map<string, ForwardRule[]>();
  private readonly ranges: ForwardRule[] = [];

  add(rule: ForwardRule): void {
    if (rule.bind.portEnd !== undefined) {
      this.ranges.push(rule);
      return;
    }
    const key = `${rule.bind.port}/${rule.bind.transport}`;
    const list = this.byPort.get(key);
    if (list === undefined) this.byPort.set(key, [rule]);
    else list.push(rule);
  }

  /** The first earlier bind `rule` overlaps, with a port they share. */
  overlapping(rule: ForwardRule): { other: ForwardRule; port: number } | undefined {
    const { bind } = rule;
    const last = bind.portEnd ?? bind.port;
    for (let port = bind.port; port <= last; port++) {
      const other = this.byPort.get(`${port}/${bind.transport}`)?.find((earlier) => bindsCollide(earlier, rule));
      if (other !== undefined) return { other, port };
    }
    for (const other of this.ranges) {
      if (other.bind.transport !== bind.transport) continue;
      const first = Math.max(other.bind.port, bind.port);
      if (first > Math.min(other.bind.portEnd ?? other.bind.port, last)) continue;
      if (bindsCollide(other, rule)) return { other, port: first };
    }
    return undefined;
  }
}

/** Whether two binds of one transport with a port in common cannot both be bound: the same address, or a wildcard covering the other. */
function bindsCollide(a: ForwardRule, b: ForwardRule): boolean {
  return hostKeyOf(a.bind) === hostKeyOf(b.bind) || wildcardsOverlap(a, b);
}

/** Stream rules (TCP or unix socket on both sides) may share a bind, each chosen by what its clients send first. */
function canShareBind(rule: ForwardRule): boolean {
  return rule.mode === "tcp";
}

/** Why `rule` cannot join the rules already on its bind (a reason around " the rule on line N"), or undefined. */
function sharingConflict(sharing: ForwardRule[], rule: ForwardRule): { with: ForwardRule; what: string; after?: string } | undefined {
  const first = sharing[0]!;
  const bind = formatEndpoint(rule.bind);
  const duplicate = `duplicate bind: ${bind} is already bound by`;
  if (!canShareBind(rule) || !canShareBind(first)) return { with: first, what: duplicate };
  const defaultRule = rule.match === undefined ? sharing.find((other) => other.match === undefined) : undefined;
  if (defaultRule !== undefined) {
    return { with: defaultRule, what: duplicate, after: " (rules on one bind are chosen by sni=, host= or protocol=; only one may have none, the default)" };
  }
  for (const other of sharing) {
    const same = sameMatchEntry(rule, other);
    if (same !== undefined) return { with: other, what: `${same} on ${bind} is matched already by` };
    if (other.acceptProxy !== rule.acceptProxy) {
      return { with: other, what: `accept_proxy must be the same for every rule on ${bind} (the PROXY header is read before a rule is chosen): it differs from` };
    }
    if (patternsText(other.proxyFrom) !== patternsText(rule.proxyFrom)) {
      return { with: other, what: `proxy-from must be the same for every rule on ${bind} (the PROXY header is read before a rule is chosen): it differs from` };
    }
    if (other.peekTimeout !== undefined && rule.peekTimeout !== undefined && other.peekTimeout !== rule.peekTimeout) {
      return { with: other, what: `peek-timeout applies to the whole bind ${bind}: ${rule.peekTimeout}s here, ${other.peekTimeout}s in` };
    }
  }
  return undefined;
}

function patternsText(patterns: AddressPattern[] | undefined): string {
  return patterns === undefined ? "" : patterns.map((pattern) => pattern.text).join("|");
}

/** A name or protocol both rules match (`sni=a.example.com`), or undefined. */
function sameMatchEntry(a: ForwardRule, b: ForwardRule): string | undefined {
  if (a.match === undefined || b.match === undefined) return undefined;
  for (const kind of ["sni", "host", "protocol"] as const) {
    const shared = (a.match[kind] as string[]).find((entry) => (b.match![kind] as string[]).includes(entry));
    if (shared !== undefined) return `${kind}=${shared}`;
  }
  return undefined;
}

/** Whether two rules binding different IP literals on one port and transport cannot both be bound, because one is a wildcard covering the other. */
function wildcardsOverlap(a: ForwardRule, b: ForwardRule): boolean {
  const [x, y] = [normalizeIp(a.bind.host), normalizeIp(b.bind.host)];
  if (x === undefined || y === undefined) return false;
  const isIPv4 = (ip: string) => !ip.includes(":");
  const coversIPv4 = (ip: string, rule: ForwardRule) => ip === "0.0.0.0" || (ip === "::" && rule.bindIpv6Only !== true);
  const coversIPv6 = (ip: string) => ip === "::";
  const covers = (ip: string, rule: ForwardRule, other: string) => (isIPv4(other) ? coversIPv4(ip, rule) : coversIPv6(ip));
  return covers(x, a, y) || covers(y, b, x);
}

/**
 * A TCP listener on `::` beside one on `0.0.0.0` with the same port listens
 * for IPv6 only, so the pair (as in rinetd-uv's fan-in example) serves both
 * families instead of failing at bind. UDP has no such switch in Bun: a UDP
 * pair stays an overlap error.
 */
export function markIpv6OnlyBinds(rules: ForwardRule[]): void {
  const ipv4AnyPorts = new Set<number>();
  const isTcpListener = (rule: ForwardRule) => rule.bind.transport === "tcp";
  const portsOf = (rule: ForwardRule) => Array.from({ length: portCount(rule.bind) }, (_, offset) => rule.bind.port + offset);
  for (const rule of rules) if (isTcpListener(rule) && normalizeIp(rule.bind.host) === "0.0.0.0") for (const port of portsOf(rule)) ipv4AnyPorts.add(port);
  // A range on `::` is IPv6-only when `0.0.0.0` has every one of its ports; partly covered, it stays an overlap error.
  for (const rule of rules) {
    if (isTcpListener(rule) && normalizeIp(rule.bind.host) === "::" && portsOf(rule).every((port) => ipv4AnyPorts.has(port))) rule.bindIpv6Only = true;
  }
}

/** Identity of a listening socket: equal keys cannot both be bound (and a reload keeps such a listener). */
export function bindKey(endpoint: Endpoint): string {
  if (endpoint.transport === "unix") return `unix:${endpoint.host}`;
  return `${hostKeyOf(endpoint)} ${formatPorts(endpoint)}/${endpoint.transport}`;
}

/** An endpoint's address as compared: IP literals by bytes (`::` is `0::0`), host names without case or final dot. */
function hostKeyOf(endpoint: Endpoint): string {
  return normalizeIp(endpoint.host) ?? endpoint.host.toLowerCase().replace(/\.$/, "");
}

/**
 * What a listener is bound to, but for its ports: a reload that changes a
 * range's ports keeps the listener group of the same address, transport and
 * family, and with it the sockets of the ports that stay.
 */
export function listenerFamilyKey(rule: ForwardRule): string {
  const bind = rule.bind;
  if (bind.transport === "unix") return listenerKey(rule);
  return `${hostKeyOf(bind)} /${bind.transport}${rule.bindIpv6Only === true ? " ipv6-only" : ""}`;
}

/** Identity of a rule's listening socket: its bind, and whether `::` takes IPv6 clients only (another socket). */
export function listenerKey(rule: ForwardRule): string {
  return rule.bindIpv6Only === true ? `${bindKey(rule.bind)} ipv6-only` : bindKey(rule.bind);
}

/** Options that only make sense for some kinds of rule, used on another; backends of mixed kinds. */
export function findMisplacedOptions(rules: ForwardRule[], label: RuleLabel = NO_LABEL): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const rule of rules) {
    const report = (reason: string) => issues.push({ file: rule.at.file, line: rule.at.line, reason: label(rule) + reason });
    const kinds = new Set(rule.backends.map((backend) => (backend.endpoint.transport === "udp" ? "datagram" : "stream")));
    if (kinds.size > 1) report("backends of one rule must all be UDP, or all TCP or unix sockets");
    if (rule.framing !== "none" && rule.mode !== "udptotcp" && rule.mode !== "tcptoudp") {
      report(`frame=${rule.framing} applies only to udptotcp and tcptoudp rules, this one is ${rule.mode}`);
    }
    if (rule.acceptProxy && rule.bind.transport === "udp") report("accept_proxy applies to TCP and unix listeners only");
    // Trust named without a header to trust would leave the operator believing spoofing is kept out.
    if (rule.proxyFrom !== undefined && !rule.acceptProxy) report("proxy-from applies to rules with accept_proxy (it says whose PROXY headers to trust): add accept_proxy or remove proxy-from");
    if (rule.proxyFrom !== undefined && rule.bind.transport === "unix") {
      report("proxy-from needs a TCP listener: peers on a unix socket have no address (limit who may connect with mode=)");
    }
    if (rule.proxyProtocol === "v1" && rule.mode !== "tcp" && rule.mode !== "udptotcp") {
      report("proxy=v1 applies to TCP backends only; use proxy=v2 for UDP");
    }
    if (rule.socketMode !== undefined && rule.bind.transport !== "unix") report("mode applies to rules listening on a unix socket only");
    if (rule.bind.transport === "unix" && rule.mode !== "tcp") report("a unix socket listener forwards streams: its backends must be TCP or unix sockets");
    if (rule.bind.transport === "udp" && rule.backends.some((backend) => backend.endpoint.transport === "unix")) {
      report("UDP cannot be forwarded to a unix socket: unix sockets carry streams (forward TCP to it)");
    }
    if (rule.balance.probeInterval !== undefined && rule.backends.some((backend) => backend.endpoint.transport === "udp")) {
      report("probe is a TCP connect: it applies to TCP and unix socket backends only");
    }
    for (const reason of misplacedRouting(rule)) report(reason);
  }
  return issues;
}

/** The routing and TLS settings a rule cannot have where it stands. */
function misplacedRouting(rule: ForwardRule): string[] {
  const reasons: string[] = [];
  const streams = rule.mode === "tcp";
  if (rule.match !== undefined && !streams) {
    reasons.push(`sni=, host= and protocol= choose among rules that forward TCP or unix socket streams; this rule is ${rule.mode}`);
  }
  const tls = rule.tls;
  if (tls !== undefined) {
    if (!streams) reasons.push(`TLS termination (tls-cert=, tls-key=) applies to rules that forward TCP or unix socket streams; this rule is ${rule.mode}`);
    if (tls.certFile === "" && tls.keyFile === "") reasons.push("tls-alpn applies to a rule that terminates TLS (give tls-cert= and tls-key=)");
    else if (tls.keyFile === "") reasons.push("tls-cert needs tls-key (the certificate's private key)");
    else if (tls.certFile === "") reasons.push("tls-key needs tls-cert (the certificate chain)");
    const match = rule.match;
    if (match !== undefined && match.host.length > 0) {
      reasons.push("host= matches plain HTTP requests: a rule that terminates TLS is chosen by sni= or protocol=tls (or is the default)");
    }
    const plain = match?.protocol.filter((protocol) => protocol !== "tls") ?? [];
    if (plain.length > 0) reasons.push(`protocol=${plain.join("|")}: a rule that terminates TLS is for clients that speak TLS (protocol=tls)`);
  }
  if (rule.backends.some((backend) => backend.tls !== undefined && backend.endpoint.transport !== "tcp")) {
    reasons.push("tls-connect applies to TCP backends only (not to UDP or unix socket backends)");
  }
  return reasons;
}

/** Settings that are valid but do nothing where they stand: warnings, not errors. */
export function findIneffectiveOptions(rules: ForwardRule[], label: RuleLabel = NO_LABEL): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const routedBinds = new Set(rules.filter((rule) => rule.match !== undefined).map((rule) => bindKey(rule.bind)));
  for (const rule of rules) {
    if (rule.peekTimeout !== undefined && !routedBinds.has(bindKey(rule.bind))) {
      issues.push({
        file: rule.at.file,
        line: rule.at.line,
        reason: `${label(rule)}peek-timeout has no effect: no rule on ${formatEndpoint(rule.bind)} is chosen by what clients send (sni=, host=, protocol=)`,
      });
    }
    if (rule.socketMode !== undefined && rule.bind.transport === "unix" && rule.bind.host.startsWith("@")) {
      issues.push({
        file: rule.at.file,
        line: rule.at.line,
        reason: `${label(rule)}mode has no effect on the abstract socket unix:${rule.bind.host}: it has no file (any process in this network namespace may connect)`,
      });
    }
  }
  return issues;
}
