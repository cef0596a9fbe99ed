/** @module How an endpoint is written in messages: `host:port/transport`, IPv6 in brackets. */
import { formatHostPort } from "./ip.ts";
import type { Endpoint } from "./types.ts";

export function formatEndpoint(endpoint: Endpoint): string {
  return `${formatHostPort(endpoint.host, endpoint.port)}/${endpoint.transport}`;
}
