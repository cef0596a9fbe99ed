/**
 * @module Service names in place of port numbers (`http`, `domain/udp`), as
 * rinetd resolves them through /etc/services. The file is read once, on the
 * first lookup; configs without service names never touch it.
 */

import { readFileSync } from "node:fs";
import type { Transport } from "../types.ts";

/** `name/transport` → port. */
export type ServiceTable = Map<string, number>;

const SERVICES_PATH = "/etc/services";

/**
 * Used only when /etc/services cannot be read (minimal containers often lack
 * it): the well-known names people put in forwarding rules, with the
 * transports IANA lists for them.
 */
const FALLBACK_SERVICES: ReadonlyArray<[name: string, port: number, transports: Transport[]]> = [
  ["ftp", 21, ["tcp"]],
  ["ssh", 22, ["tcp"]],
  ["telnet", 23, ["tcp"]],
  ["smtp", 25, ["tcp"]],
  ["domain", 53, ["tcp", "udp"]],
  ["http", 80, ["tcp"]],
  ["www", 80, ["tcp"]],
  ["pop3", 110, ["tcp"]],
  ["ntp", 123, ["udp"]],
  ["imap", 143, ["tcp"]],
  ["imap2", 143, ["tcp"]],
  ["snmp", 161, ["tcp", "udp"]],
  ["ldap", 389, ["tcp"]],
  ["https", 443, ["tcp", "udp"]],
  ["submission", 587, ["tcp"]],
  ["ldaps", 636, ["tcp"]],
  ["imaps", 993, ["tcp"]],
  ["pop3s", 995, ["tcp"]],
  ["openvpn", 1194, ["tcp", "udp"]],
  ["mysql", 3306, ["tcp"]],
  ["ms-wbt-server", 3389, ["tcp"]],
  ["postgresql", 5432, ["tcp"]],
];

let loaded: ServiceTable | undefined;

/** The port of a service for a transport, or undefined when the name is unknown for it. Names are case-insensitive. */
export function resolveService(name: string, transport: Transport): number | undefined {
  loaded ??= loadServices(SERVICES_PATH);
  return loaded.get(`${name.toLowerCase()}/${transport}`);
}

function loadServices(path: string): ServiceTable {
  try {
    return parseServices(readFileSync(path, "utf8"));
  } catch {
    return fallbackServices();
  }
}

/** Parse /etc/services text: `name port/proto [aliases...] [# comment]`. The first entry for a name wins, as getservbyname does. */
export function parseServices(text: string): ServiceTable {
  const table: ServiceTable = new Map();
  for (const rawLine of text.split("\n")) {
    const hash = rawLine.indexOf("#");
    const fields = (hash === -1 ? rawLine : rawLine.slice(0, hash)).trim().split(/\s+/);
    const [name, portAndProtocol, ...aliases] = fields;
    const match = /^(\d+)\/(tcp|udp)$/i.exec(portAndProtocol ?? "");
    if (name === undefined || name === "" || match === null) continue;
    const port = Number(match[1]);
    const transport = match[2]?.toLowerCase();
    if (port < 1 || port > 65535) continue;
    for (const alias of [name, ...aliases]) {
      const key = `${alias.toLowerCase()}/${transport}`;
      if (!table.has(key)) table.set(key, port);
    }
  }
  return table;
}

export function fallbackServices(): ServiceTable {
  const table: ServiceTable = new Map();
  for (const [name, port, transports] of FALLBACK_SERVICES) {
    for (const transport of transports) table.set(`${name}/${transport}`, port);
  }
  return table;
}
