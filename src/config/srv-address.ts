/**
 * @module The connect address `srv:_service._proto.name`, the same in every
 * config format: the rule's backends are the targets of that name's DNS SRV
 * records (src/backends.ts, src/srv.ts). No port follows it (each record
 * has its own) and no weight (each record has its own). `_udp` names give
 * UDP backends, any other protocol label TCP ones.
 */
import type { Endpoint } from "../types.ts";
import { type Checked, checkHost } from "./validate.ts";

export const SRV_PREFIX = "srv:";
export const SRV_FORM = "srv:_service._proto.name";

export function isSrvAddress(text: string): boolean {
  return text.toLowerCase().startsWith(SRV_PREFIX);
}

/** The endpoint of `srv:NAME`, its host the SRV name in lowercase without a trailing dot. */
export function parseSrvAddress(text: string, role: string): Checked<Endpoint> {
  const name = text.slice(SRV_PREFIX.length).toLowerCase().replace(/\.$/, "");
  const labels = name.split(".");
  const [service = "", protocol = ""] = labels;
  if (labels.length < 3 || !service.startsWith("_") || !protocol.startsWith("_") || service.length < 2 || protocol.length < 2) {
    return { ok: false, reason: `${role} '${text}' is not an SRV name (write ${SRV_FORM}, e.g. srv:_http._tcp.example.com)` };
  }
  const host = checkHost(name, `${role} '${text}': SRV name`);
  if (!host.ok) return host;
  return { ok: true, value: { host: host.value, port: 0, transport: protocol === "_udp" ? "udp" : "tcp", srv: true } };
}

/** The reason `srv:` was written where oi listens. */
export function srvBindReason(role: string, text: string): string {
  return `${role} address '${text}': srv: names backends; oi listens on an IP address or host name`;
}

/** The reason a weight was given to an `srv:` backend. */
export const SRV_WEIGHT_REASON = "an srv: backend takes its weights from the SRV records; give it no weight";
