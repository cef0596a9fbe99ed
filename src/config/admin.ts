/**
 * @module The admin server's directives, checked: `admin ADDRESS`
 * (`HOST:PORT`, or `unix:/path`), `admin-mode` (the socket file's
 * permissions), and the checks that need every directive read: the token
 * file is read (so each reload reads it again), and a TCP address off
 * loopback without a token is refused, since anyone who reaches it could
 * drain backends or replace rules.
 */
import { readFileSync } from "node:fs";
import { isIPv4Mapped, parseIp } from "../ip.ts";
import type { AdminAddress, Config, ConfigIssue } from "../types.ts";
import { type Checked, checkPort } from "./validate.ts";

const UNIX_PREFIX = "unix:";
/** A token shorter than this is too easy to guess for something that can rewrite the forwarding. */
const MIN_TOKEN_LENGTH = 16;

/** `HOST:PORT` (`[IPv6]:PORT`) with an IP address, or `unix:/path/to/socket`. */
export function checkAdminAddress(text: string): Checked<AdminAddress> {
  if (text.startsWith(UNIX_PREFIX)) {
    const path = text.slice(UNIX_PREFIX.length);
    if (path === "") return { ok: false, reason: `admin address '${text}' names no socket path (unix:/run/oi/admin.sock)` };
    if (path.startsWith("@")) return { ok: false, reason: `admin address '${text}': an abstract socket has no file permissions to protect it; give a path` };
    return { ok: true, value: { transport: "unix", path } };
  }
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text);
  const host = match?.[1] ?? match?.[2];
  if (match === null || host === undefined || parseIp(host) === undefined) {
    return { ok: false, reason: `admin address '${text}' must be IP:PORT (IPv6 as [ADDRESS]:PORT) or unix:PATH` };
  }
  const port = checkPort(Number(match[3]), "admin port");
  return port.ok ? { ok: true, value: { transport: "tcp", host, port: port.value } } : port;
}

/** Octal permissions for the socket file, `0600` to `0777`; at least the owner reads and writes. */
export function checkAdminMode(text: string): Checked<number> {
  if (!/^0?[0-7]{3}$/.test(text)) return { ok: false, reason: `admin-mode must be octal permissions such as 0660, got '${text}'` };
  const mode = Number.parseInt(text, 8);
  if ((mode & 0o600) !== 0o600) return { ok: false, reason: `admin-mode ${text} would lock the owner (oi's user) out of its own socket: give at least 0600` };
  return { ok: true, value: mode };
}

/** 127.0.0.0/8, ::1, and 127.x mapped into IPv6. */
export function isLoopback(host: string): boolean {
  const bytes = parseIp(host);
  if (bytes === undefined) return false;
  if (bytes.length === 4) return bytes[0] === 127;
  if (isIPv4Mapped(bytes)) return bytes[12] === 127;
  return bytes.every((byte, index) => byte === (index === 15 ? 1 : 0));
}

/** The checks that span the admin directives, and the token file read; errors at the line of the directive concerned. */
export function loadAdminSettings(config: Config): ConfigIssue[] {
  const admin = config.admin;
  if (admin === undefined) return [];
  const at = admin.at;
  if (admin.address === undefined) {
    return [{ ...at, reason: "admin-token, admin-mode and admin-read need the admin server's address (admin HOST:PORT or admin unix:PATH)" }];
  }
  if (admin.tokenFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(admin.tokenFile, "utf8").trim();
    } catch (error) {
      const code = error instanceof Error && "code" in error ? String(error.code) : String(error);
      return [{ ...at, reason: `cannot read admin-token file ${admin.tokenFile}: ${code}` }];
    }
    if (text.length < MIN_TOKEN_LENGTH || /\s/.test(text)) {
      return [{ ...at, reason: `admin-token file ${admin.tokenFile} must hold one token of at least ${MIN_TOKEN_LENGTH} characters without spaces` }];
    }
    admin.token = text;
    return [];
  }
  if (admin.address.transport === "tcp" && !isLoopback(admin.address.host)) {
    return [{ ...at, reason: `admin ${admin.address.host}:${admin.address.port} is reachable from other hosts: give admin-token FILE, or listen on 127.0.0.1 or a unix socket` }];
  }
  return [];
}
