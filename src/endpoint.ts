/** @module How endpoints are written in messages, logs and metrics labels. */
import { formatHostPort } from "./ip.ts";
import type { Endpoint } from "./types.ts";

/** `host:port` (IPv6 in brackets), `host:first-last` for a port range, `unix:/path` for a unix socket, `srv:NAME` for an SRV name. */
export function formatTarget(endpoint: Endpoint): string {
  if (endpoint.transport === "unix") return `unix:${endpoint.host}`;
  if (endpoint.srv) return `srv:${endpoint.host}`;
  const target = formatHostPort(endpoint.host, endpoint.port);
  return endpoint.portEnd === undefined ? target : `${target}-${endpoint.portEnd}`;
}

/** How many ports an endpoint covers: 1, or the width of its range. */
export function portCount(endpoint: Endpoint): number {
  return endpoint.portEnd === undefined ? 1 : endpoint.portEnd - endpoint.port + 1;
}

/** `8000`, or `8000-8099` for a range. */
export function formatPorts(endpoint: Endpoint): string {
  return endpoint.portEnd === undefined ? String(endpoint.port) : `${endpoint.port}-${endpoint.portEnd}`;
}

/** The one port at `offset` (from 0) of `endpoint`'s range: what a single listener binds. */
export function portAt(endpoint: Endpoint, offset: number): Endpoint {
  return { host: endpoint.host, port: endpoint.port + offset, transport: endpoint.transport };
}

/** `host:port/transport`, `unix:/path`, or `srv:NAME`. */
export function formatEndpoint(endpoint: Endpoint): string {
  // An SRV name says its protocol itself (`_udp`), and a suffix would read as part of the name.
  return endpoint.transport === "unix" || endpoint.srv === true ? formatTarget(endpoint) : `${formatTarget(endpoint)}/${endpoint.transport}`;
}

/** A unix socket path as Bun takes it: Linux's abstract names (`@name`) start with a NUL byte instead. */
export function bunUnixPath(path: string): string {
  return path.startsWith("@") ? `\0${path.slice(1)}` : path;
}
