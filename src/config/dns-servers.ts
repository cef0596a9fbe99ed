/**
 * @module The global `dns-servers ADDR[:PORT][,...]`: which DNS servers oi
 * asks for every lookup (backend names, SRV records). An entry is an IP
 * address with an optional port (53 when left out); IPv6 is written in
 * brackets when a port follows, `[::1]:53`. Host names are refused: a DNS
 * server found by DNS would be circular.
 */
import { normalizeIp } from "../ip.ts";
import type { DnsServer } from "../types.ts";
import { type Checked, checkPort } from "./validate.ts";

const DNS_PORT = 53;
/** More servers than this are not tried in one lookup anyway (each try waits up to a second). */
export const MAX_DNS_SERVERS = 8;

function invalid<T>(reason: string): Checked<T> {
  return { ok: false, reason };
}

/** One server: `10.0.0.2`, `10.0.0.2:5353`, `::1`, `[::1]`, `[::1]:5353`. */
export function parseDnsServer(text: string): Checked<DnsServer> {
  let host = text;
  let port: string | undefined;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close === -1) return invalid(`dns server '${text}': missing ']' after the IPv6 address`);
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== "" && !rest.startsWith(":")) return invalid(`dns server '${text}': expected ':PORT' after ']'`);
    if (rest !== "") port = rest.slice(1);
    if (!host.includes(":")) return invalid(`dns server '${text}': brackets are only for IPv6 addresses`);
  } else if (text.split(":").length === 2) {
    [host = "", port = ""] = text.split(":");
  }
  const address = normalizeIp(host);
  if (address === undefined) return invalid(`dns server '${text}' is not an IP address (ADDRESS, ADDRESS:PORT, or [IPv6]:PORT)`);
  if (port === undefined) return { ok: true, value: { host: address, port: DNS_PORT } };
  if (!/^\d+$/.test(port)) return invalid(`dns server '${text}': port '${port}' is not a number`);
  const checked = checkPort(Number(port), `dns server '${text}': port`);
  return checked.ok ? { ok: true, value: { host: address, port: checked.value } } : checked;
}

/** The comma-separated list `dns-servers` takes. */
export function parseDnsServers(text: string): Checked<DnsServer[]> {
  const entries = text.split(",").map((entry) => entry.trim());
  if (entries.length > MAX_DNS_SERVERS) return invalid(`dns-servers lists ${entries.length} servers; at most ${MAX_DNS_SERVERS}`);
  const servers: DnsServer[] = [];
  for (const entry of entries) {
    if (entry === "") return invalid(`dns-servers '${text}' has an empty entry (stray ',')`);
    const server = parseDnsServer(entry);
    if (!server.ok) return server;
    servers.push(server.value);
  }
  return { ok: true, value: servers };
}
