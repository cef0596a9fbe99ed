/**
 * @module SRV lookups with their TTL: oi's own query over UDP (dns-wire.ts)
 * to the servers `dns-servers` names, or else to the system's
 * (node:dns `getServers()`, read from /etc/resolv.conf).
 *
 * Why not node:dns: Bun 1.4.5's `Resolver.resolveSrv` returns
 * `{ priority, weight, port, name }` without the TTL, and SRV sets are
 * refreshed at their TTL. It is still used for an answer too long for a UDP
 * datagram (TC bit), as it retries over TCP; the TTL of such an answer is
 * then unknown (Infinity), and the rule's `dns-refresh` applies.
 *
 * Each server is asked in turn with a 1 s timeout per try, two rounds; an
 * answer that says the name does not exist, or has no SRV record, is final.
 */
import dns from "node:dns";
import { Resolver as NodeResolver } from "node:dns/promises";
import { decodeSrvAnswer, encodeQuery, messageId, type SrvRecord, TYPE_SRV, WireError } from "./dns-wire.ts";
import { parseDnsServer } from "./config/dns-servers.ts";
import { formatHostPort } from "./ip.ts";
import type { DnsServer } from "./types.ts";

export type { SrvRecord } from "./dns-wire.ts";

export type SrvLookupFn = (name: string) => Promise<readonly SrvRecord[]>;

const TRY_TIMEOUT_MS = 1000;
const ROUNDS = 2;
const RCODE_NAME = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];

/** A failed SRV lookup; `code` as node:dns would say it (ENOTFOUND, ENODATA, ESERVFAIL, EREFUSED, ETIMEOUT...). */
export class SrvLookupError extends Error {
  constructor(
    readonly code: string,
    name: string,
  ) {
    super(`SRV lookup of ${name} failed: ${code}`);
    this.name = "SrvLookupError";
  }
}

/** The servers the system's resolver uses, as node:dns reads them (each `ADDRESS` or `ADDRESS:PORT`). */
export function systemDnsServers(): DnsServer[] {
  return dns.getServers().flatMap((text) => {
    const parsed = parseDnsServer(text);
    return parsed.ok ? [parsed.value] : [];
  });
}

/** An SRV lookup asking `servers` (default: the system's, read at each lookup). */
export function srvLookup(servers?: readonly DnsServer[]): SrvLookupFn {
  return (name) => lookupSrv(name, servers ?? systemDnsServers());
}

/** The SRV records of `name` from the first of `servers` that answers. */
export async function lookupSrv(name: string, servers: readonly DnsServer[]): Promise<readonly SrvRecord[]> {
  if (servers.length === 0) throw new SrvLookupError("ENOSERVERS", name);
  let lastCode = "ETIMEOUT";
  for (let round = 0; round < ROUNDS; round++) {
    for (const server of servers) {
      const id = (Math.random() * 0x10000) | 0;
      const message = await ask(server, encodeQuery(id, name, TYPE_SRV), id);
      if (message === undefined) continue;
      let answer;
      try {
        answer = decodeSrvAnswer(message, id);
      } catch (error) {
        if (!(error instanceof WireError)) throw error;
        lastCode = "EBADRESP";
        continue;
      }
      if (answer.truncated) return overTcp(name, server);
      if (answer.rcode === 3) throw new SrvLookupError("ENOTFOUND", name);
      if (answer.rcode !== 0) {
        // SERVFAIL, REFUSED...: another server may know better.
        lastCode = `E${RCODE_NAME[answer.rcode] ?? `RCODE${answer.rcode}`}`;
        continue;
      }
      if (answer.records.length === 0) throw new SrvLookupError("ENODATA", name);
      return answer.records;
    }
  }
  throw new SrvLookupError(lastCode, name);
}

/** One query to one server over UDP: the answer with the query's ID from that server, or undefined after the timeout. */
async function ask(server: DnsServer, query: Uint8Array, id: number): Promise<Uint8Array | undefined> {
  const { promise, resolve } = Promise.withResolvers<Uint8Array | undefined>();
  // No socket of that family here (IPv6 off, say): this server cannot be asked, the next may.
  const socket = await Bun.udpSocket({
    hostname: server.host.includes(":") ? "::" : "0.0.0.0",
    binaryType: "uint8array",
    socket: {
      data(_socket, data, port, address) {
        // Anything else (a late answer to an earlier try, a stray datagram) is not ours.
        if (port === server.port && address === server.host && messageId(data) === id) resolve(data);
      },
      // ICMP port unreachable (nothing listens there) arrives here: no answer from this server.
      error() {
        resolve(undefined);
      },
    },
  }).catch(() => undefined);
  if (socket === undefined) return undefined;
  const timer = setTimeout(() => resolve(undefined), TRY_TIMEOUT_MS);
  try {
    // An unreachable server shows up as an error on send (ICMP): treat as no answer.
    socket.send(query, server.port, server.host);
    return await promise;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
    socket.close();
  }
}

/** node:dns's lookup of a truncated answer (it retries over TCP); it gives no TTL, so Infinity (unknown: `dns_refresh` bounds it). */
async function overTcp(name: string, server: DnsServer): Promise<readonly SrvRecord[]> {
  const resolver = new NodeResolver({ timeout: TRY_TIMEOUT_MS * 2, tries: 1 });
  resolver.setServers([formatHostPort(server.host, server.port)]);
  const records = await resolver.resolveSrv(name);
  return records.map((record) => ({ priority: record.priority, weight: record.weight, port: record.port, target: record.name.toLowerCase().replace(/\.$/, ""), ttl: Number.POSITIVE_INFINITY }));
}
