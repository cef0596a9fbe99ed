/** @module How endpoints are written in messages, logs and metrics labels. */
import { formatHostPort } from "./ip.ts";
import type { Endpoint } from "./types.ts";

/** `host:port` (IPv6 in brackets), or `unix:/path` for a unix socket. */
export function formatTarget(endpoint: Endpoint): string {
  return endpoint.transport === "unix" ? `unix:${endpoint.host}` : formatHostPort(endpoint.host, endpoint.port);
}

/** `host:port/transport`, or `unix:/path`. */
export function formatEndpoint(endpoint: Endpoint): string {
  return endpoint.transport === "unix" ? formatTarget(endpoint) : `${formatTarget(endpoint)}/${endpoint.transport}`;
}

/** A unix socket path as Bun takes it: Linux's abstract names (`@name`) start with a NUL byte instead. */
export function bunUnixPath(path: string): string {
  return path.startsWith("@") ? `\0${path.slice(1)}` : path;
}
