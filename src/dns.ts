/**
 * @module Backend host names to addresses, resolved when a connection needs
 * them and kept for their DNS TTL, at most `dnsRefresh` seconds (rinetd-uv's
 * option: 600 by default, 0 to resolve for every connection). A backend
 * that moved is found again at the latest one refresh later, or at once
 * when a connect to it fails (`invalidate`).
 *
 * The full address list is returned, in the resolver's order, because a
 * connection tries all addresses of a name in order. A name that stops
 * resolving keeps its last good addresses (a DNS outage should not take
 * down backends that are still there), and the failure is reported once,
 * not once per connection. IP literals never reach the resolver.
 *
 * A cached answer comes back synchronously, as the array itself: no promise
 * and no allocation per connection. Only a lookup returns a promise, shared
 * by every connection that asks for the name while it runs.
 *
 * Bun 1.4.5 facts (checked): Bun.dns.lookup(host) resolves to
 * `[{ address, family: 4 | 6, ttl }]`; `ttl` is the record's TTL in seconds
 * with the c-ares backend (Linux's default) for answers from DNS, and 0
 * otherwise (/etc/hosts, getaddrinfo), so 0 reads as "unknown" and
 * `dnsRefresh` applies. Failures reject with a DNSException whose `code` is
 * "DNS_ENOTFOUND" and the like. An IPv6 literal with a zone id is not
 * understood by the lookup (ENOTFOUND): literals must not be sent to it.
 */
import { Resolver as NodeResolver } from "node:dns/promises";
import { formatHostPort, parseIPv6, parseIp } from "./ip.ts";
import type { DnsServer } from "./types.ts";

export interface LookupRecord {
  address: string;
  /** Seconds; 0 when the source gives none. */
  ttl: number;
}

export type LookupFn = (host: string) => Promise<readonly LookupRecord[]>;

export interface ResolverOptions {
  /** Default: Bun.dns.lookup. Injectable for tests (which must not query real DNS). */
  lookup?: LookupFn;
  /** Longest time an answer is kept (`dnsRefresh`), in seconds; 0: resolve for every connection. */
  maxTtlSeconds: number;
  /** Only IPv4 or only IPv6 addresses (rinetd-uv's dns_multi_ip_proto); default both. */
  family?: 4 | 6;
  /** How long last good addresses are served after a failed lookup before asking again (default 5000). */
  retryAfterFailureMs?: number;
  /** Milliseconds on a monotonic clock (default performance.now); injectable for tests. */
  now?: () => number;
  /** A name stopped resolving (called once, until it resolves again). */
  onFailure?: (host: string, error: string) => void;
  /** A name that had failed resolves again. */
  onRecovery?: (host: string) => void;
  /** A lookup answered: the addresses kept, and for how long (seconds). For `-d` debug lines. */
  onResolved?: (host: string, addresses: readonly string[], keptSeconds: number) => void;
}

/** A failed lookup with no earlier answer to fall back on. */
export class ResolveError extends Error {
  constructor(
    readonly host: string,
    readonly reason: string,
  ) {
    super(`cannot resolve ${host}: ${reason}`);
    this.name = "ResolveError";
  }
}

interface CacheEntry {
  /** The last good answer, served while fresh, and after failed lookups. */
  addresses: readonly string[] | undefined;
  /** When the answer must be looked up again (Infinity for literals). */
  expiresAt: number;
  /** The lookup in progress, shared by everyone asking meanwhile. */
  pending: Promise<readonly string[]> | undefined;
  /** The last lookup failed (so the failure has been reported). */
  failing: boolean;
}

const DEFAULT_RETRY_AFTER_FAILURE_MS = 5000;

function bunLookup(host: string): Promise<readonly LookupRecord[]> {
  return Bun.dns.lookup(host);
}

/** How long one server may take to answer one query when `dns-servers` is set; each server is tried twice. */
const SERVER_TIMEOUT_MS = 1000;

/**
 * A lookup that asks `servers` (the global `dns-servers`) instead of the
 * system's resolver: A and AAAA at once, with their TTLs, through node:dns's
 * Resolver (c-ares). A name with addresses of one family only is common, and
 * a server may answer the other query with an error rather than an empty
 * answer (dnsmasq without upstream says REFUSED): the lookup fails only when
 * neither query gives an address, with the first query's reason.
 */
export function serverLookup(servers: readonly DnsServer[]): LookupFn {
  const resolver = new NodeResolver({ timeout: SERVER_TIMEOUT_MS, tries: 2 });
  resolver.setServers(servers.map((server) => formatHostPort(server.host, server.port)));
  return async (host) => {
    const [v4, v6] = await Promise.allSettled([resolver.resolve4(host, { ttl: true }), resolver.resolve6(host, { ttl: true })]);
    const records: LookupRecord[] = [];
    if (v4.status === "fulfilled") records.push(...v4.value);
    if (v6.status === "fulfilled") records.push(...v6.value);
    if (records.length > 0) return records;
    throw v4.status === "rejected" ? v4.reason : v6.status === "rejected" ? v6.reason : new Error("no addresses");
  };
}

/** True for an IP address written as such (with or without an IPv6 zone id). */
export function isAddressLiteral(host: string): boolean {
  if (parseIp(host) !== undefined) return true;
  const zone = host.indexOf("%");
  return zone > 0 && parseIPv6(host.slice(0, zone)) !== undefined;
}

/** What a lookup failure says, short: the DNS error code when there is one. */
function describeFailure(error: unknown): string {
  if (typeof error === "object" && error !== null && "code" in error && typeof error.code === "string") {
    return error.code.replace(/^DNS_/, "");
  }
  return error instanceof Error ? error.message : String(error);
}

export class Resolver {
  private readonly entries = new Map<string, CacheEntry>();
  private readonly lookup: LookupFn;
  private readonly maxTtlMs: number;
  private readonly retryMs: number;
  private readonly family: 4 | 6 | undefined;
  private readonly now: () => number;
  private readonly onFailure: ResolverOptions["onFailure"];
  private readonly onRecovery: ResolverOptions["onRecovery"];
  private readonly onResolved: ResolverOptions["onResolved"];

  constructor(options: ResolverOptions) {
    if (!(options.maxTtlSeconds >= 0)) throw new RangeError(`DNS refresh must be >= 0 seconds, not ${options.maxTtlSeconds}`);
    this.lookup = options.lookup ?? bunLookup;
    this.maxTtlMs = options.maxTtlSeconds * 1000;
    this.retryMs = options.retryAfterFailureMs ?? DEFAULT_RETRY_AFTER_FAILURE_MS;
    this.family = options.family;
    this.now = options.now ?? (() => performance.now());
    this.onFailure = options.onFailure;
    this.onRecovery = options.onRecovery;
    this.onResolved = options.onResolved;
  }

  /**
   * The addresses of `host`, in order: synchronously when known and fresh
   * (test with `instanceof Promise`), else after a lookup. Rejects with a
   * ResolveError only when the name has never resolved.
   */
  resolve(host: string): readonly string[] | Promise<readonly string[]> {
    let entry = this.entries.get(host);
    if (entry === undefined) {
      entry = this.newEntry(host);
      this.entries.set(host, entry);
    }
    if (entry.addresses !== undefined && this.now() < entry.expiresAt) return entry.addresses;
    return entry.pending ?? this.refresh(host, entry);
  }

  /** Forget the freshness of `host` (a connect to it failed): the next resolve looks it up again. */
  invalidate(host: string): void {
    const entry = this.entries.get(host);
    // Literals never expire; the last good answer stays as a fallback.
    if (entry !== undefined && entry.expiresAt !== Number.POSITIVE_INFINITY) entry.expiresAt = 0;
  }

  /** Forget every name (e.g. after a reload removed backends); lookups in progress still settle. */
  clear(): void {
    this.entries.clear();
  }

  private newEntry(host: string): CacheEntry {
    if (isAddressLiteral(host)) {
      return { addresses: Object.freeze([host]), expiresAt: Number.POSITIVE_INFINITY, pending: undefined, failing: false };
    }
    return { addresses: undefined, expiresAt: 0, pending: undefined, failing: false };
  }

  private refresh(host: string, entry: CacheEntry): Promise<readonly string[]> {
    const pending = this.lookup(host).then(
      (records) => this.succeeded(host, entry, records),
      (error: unknown) => this.failedLookup(host, entry, describeFailure(error)),
    );
    entry.pending = pending;
    return pending;
  }

  private succeeded(host: string, entry: CacheEntry, records: readonly LookupRecord[]): readonly string[] {
    entry.pending = undefined;
    const addresses: string[] = [];
    let ttlSeconds = Number.POSITIVE_INFINITY;
    for (const record of records) {
      if (this.family !== undefined && (record.address.includes(":") ? 6 : 4) !== this.family) continue;
      // getaddrinfo can list an address once per socket type.
      if (!addresses.includes(record.address)) addresses.push(record.address);
      if (record.ttl > 0 && record.ttl < ttlSeconds) ttlSeconds = record.ttl;
    }
    if (addresses.length === 0) {
      const reason = this.family === undefined ? "no addresses" : `no IPv${this.family} address`;
      return this.failedLookup(host, entry, reason);
    }
    entry.addresses = Object.freeze(addresses);
    const keptMs = Math.min(ttlSeconds * 1000, this.maxTtlMs);
    entry.expiresAt = this.now() + keptMs;
    this.onResolved?.(host, entry.addresses, keptMs / 1000);
    if (entry.failing) {
      entry.failing = false;
      this.onRecovery?.(host);
    }
    return entry.addresses;
  }

  private failedLookup(host: string, entry: CacheEntry, reason: string): readonly string[] {
    entry.pending = undefined;
    if (!entry.failing) {
      entry.failing = true;
      this.onFailure?.(host, reason);
    }
    if (entry.addresses === undefined) throw new ResolveError(host, reason);
    // Serve the last good answer for a while rather than make every connection wait on a failing lookup.
    entry.expiresAt = this.now() + this.retryMs;
    return entry.addresses;
  }
}
