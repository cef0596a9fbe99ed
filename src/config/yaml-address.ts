/**
 * @module rinetd-uv's address strings, as its YAML `bind` and `connect`
 * values write them: `host:port/proto`, `[IPv6]:port/proto`, or
 * `unix:/path` (`unix:@name` for Linux's abstract namespace). The port may
 * be a service name (`http`) or a range (`8000-8099`); `/proto` is `tcp` or
 * `udp` and may be left out. A connect address may also be
 * `srv:_service._proto.name` (srv-address.ts).
 */
import type { Endpoint, Transport } from "../types.ts";
import { isPortRange, parsePortRange } from "./port-range.ts";
import { resolveService } from "./services.ts";
import { isSrvAddress, parseSrvAddress, srvBindReason } from "./srv-address.ts";
import { type Checked, checkHost, checkPort, checkUnixPath } from "./validate.ts";

const UNIX_PREFIX = "unix:";

function fail<T>(reason: string): Checked<T> {
  return { ok: false, reason };
}

/**
 * An endpoint from its string; `role` ("bind", "connect") names it in
 * reasons, and `unsuffixed` is the transport of a port without `/proto`.
 */
export function parseAddress(text: string, role: string, unsuffixed: Transport): Checked<Endpoint> {
  if (isSrvAddress(text)) {
    if (role !== "connect") return fail(srvBindReason(role, text));
    return parseSrvAddress(text, `${role} address`);
  }
  if (text.toLowerCase().startsWith(UNIX_PREFIX)) {
    const path = checkUnixPath(text.slice(UNIX_PREFIX.length), `${role} address`);
    return path.ok ? { ok: true, value: { host: path.value, port: 0, transport: "unix" } } : path;
  }
  const slash = text.lastIndexOf("/");
  const protocol = slash === -1 ? undefined : text.slice(slash + 1).toLowerCase();
  if (protocol !== undefined && protocol !== "tcp" && protocol !== "udp") {
    return fail(`${role} address '${text}': unknown protocol '${protocol}' (write /tcp or /udp)`);
  }
  const transport = protocol ?? unsuffixed;
  const hostPort = slash === -1 ? text : text.slice(0, slash);
  const split = splitHostPort(hostPort, role, text);
  if (!split.ok) return split;
  const host = checkHost(split.value.host, `${role} address`);
  if (!host.ok) return host;
  if (isPortRange(split.value.port)) {
    const span = parsePortRange(split.value.port, `${role} port`);
    if (!span.ok) return span;
    const endpoint: Endpoint = { host: host.value, port: span.value.port, transport };
    if (span.value.portEnd !== undefined) endpoint.portEnd = span.value.portEnd;
    return { ok: true, value: endpoint };
  }
  const port = parsePort(split.value.port, transport, role, text);
  return port.ok ? { ok: true, value: { host: host.value, port: port.value, transport } } : port;
}

/** `host:port` or `[v6]:port`; a bare IPv6 address is refused, as its last group would read as the port. */
function splitHostPort(text: string, role: string, written: string): Checked<{ host: string; port: string }> {
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close !== -1 && text[close + 1] === ":") return { ok: true, value: { host: text.slice(0, close + 1), port: text.slice(close + 2) } };
    return fail(`${role} address '${written}' has no port (write [ADDRESS]:PORT/PROTO)`);
  }
  const colons = text.split(":").length - 1;
  if (colons === 0) return fail(`${role} address '${written}' has no port (write HOST:PORT/PROTO)`);
  if (colons > 1) return fail(`${role} address '${written}': write an IPv6 address in brackets, [ADDRESS]:PORT/PROTO`);
  const colon = text.indexOf(":");
  return { ok: true, value: { host: text.slice(0, colon), port: text.slice(colon + 1) } };
}

function parsePort(text: string, transport: Transport, role: string, written: string): Checked<number> {
  if (/^\d+$/.test(text)) return checkPort(Number(text), `${role} port`);
  const port = text === "" ? undefined : resolveService(text, transport);
  if (port === undefined) return fail(`${role} port in '${written}' is neither a port number nor a known ${transport} service name`);
  return { ok: true, value: port };
}
