/**
 * @module Where a rule's connections go: its backends at run time. One
 * `RuleBackends` per rule name (the binds of one YAML rule share it) holds the
 * balancer, the DNS cache and the optional active probes; a `DialPlan` per
 * client walks the targets to try: the addresses of the chosen backend in
 * order, then the next backend the balancer picks, up to its retry bound.
 * Forwarders call it at the edges of a connection (connect, failure, end),
 * never per chunk.
 *
 * With rinetd-uv's dns-multi-ip-expand (`rule.dnsSpread`), a backend host
 * name becomes one balancer entry per address, `NAME[0]`, `NAME[1]`...,
 * each with its own health and counters: the name is looked up at start,
 * every `dns_refresh` seconds, on SIGHUP and when one of its addresses
 * reaches the failure threshold, and the entries follow the answer (a new
 * address joins, a vanished one takes no new connections and drains). Until
 * the first answer the name is one entry that tries its addresses in order.
 *
 * A backend `srv:_service._proto.name` goes through the same machinery: its
 * entries are the targets of the name's SRV records (src/srv.ts), each
 * `TARGET:PORT` one entry with the record's weight and its priority as the
 * balancer's failover tier, looked up again at the records' TTL (at least
 * MIN_SRV_REFRESH_SECONDS, at most `dns_refresh`), on SIGHUP and when an
 * entry reaches the failure threshold. A target's host name is resolved as
 * any backend name is.
 */
import { consola } from "consola";
import { type AdminState, BackendPool, type BackendStatus, MAX_BACKENDS } from "./balance/pool.ts";
import { HealthProber, type ProbeAddress } from "./balance/probe.ts";
import { isAddressLiteral, type LookupFn, Resolver, serverLookup } from "./dns.ts";
import { bunUnixPath, formatTarget } from "./endpoint.ts";
import { srvLookup, type SrvLookupFn, type SrvRecord } from "./srv.ts";
import type { Backend, Endpoint, ForwardRule, TlsClientOptions } from "./types.ts";

/** Where one connection attempt goes. */
export interface DialTarget {
  backend: Backend;
  /** An IP address; for a unix socket, undefined. */
  address: string | undefined;
  port: number;
  /** The unix socket path as Bun takes it, when the backend is one. */
  unix: string | undefined;
  /** Local address to connect from (the backend's `src`, else the rule's). */
  localAddress: string | undefined;
  /** Speak TLS to the backend (always over Bun's sockets); absent: plain TCP. */
  tls?: TlsClientOptions;
}

const MS = 1000;
/** Ten years: finite, so a failed connect can still invalidate the cached addresses. */
const NO_PERIODIC_REFRESH_SECONDS = 10 * 365 * 24 * 3600;
/** An SRV set is not asked for more often than this, whatever its TTL says (TTL 0 must not hammer the server). */
export const MIN_SRV_REFRESH_SECONDS = 1;
/** The longest an SRV set is kept, with `dns_refresh 0` or an unknown TTL (and below setTimeout's 2^31 ms limit). */
const MAX_SRV_REFRESH_SECONDS = 86_400;
/** After a failed SRV lookup, the entries stay and the name is asked again this much later. */
const SRV_RETRY_SECONDS = 5;
/** SRV weight 0 means "a very small chance when others have weight" (RFC 2782): the balancer needs weights above 0. */
const SRV_ZERO_WEIGHT = 0.01;

/**
 * One balancer entry: a configured backend, or one address of an expanded
 * backend name. Indexed like the pool's backends.
 */
interface Slot {
  /** Index of the configured backend in `rule.backends`. */
  backend: number;
  /** For logs and metrics: the configured backend, or its copy named `NAME[ordinal]`. */
  record: Backend;
  /** The one address of an expanded name; undefined: the record's host, resolved, all addresses in order. */
  address: string | undefined;
  /** What a DNS answer named this entry by (its address, or an SRV target's `host:port`); undefined: the configured backend itself. */
  key: string | undefined;
  /** For the log: what listed this entry ("an address of HOST"...). */
  origin?: string;
  /** TLS options towards this entry, made at its first dial. */
  tls?: TlsClientOptions | undefined;
  /** The `[n]` of an expanded entry (lowest free among its name's live entries). */
  ordinal: number;
}

export interface RuleBackendsOptions {
  /** Injectable DNS lookup for tests (which must not query real DNS). */
  lookup?: LookupFn;
  /** Injectable SRV lookup for tests; default: srv.ts asking the rule's `dnsServers`, else the system's. */
  srvLookup?: SrvLookupFn;
  /** What the admin API set on the rule's backends, by configured backend name (kept by the registry across reloads). */
  overrides?: Map<string, BackendOverride>;
}

/**
 * One balancer entry a DNS answer calls for: an address of an expanded
 * name, or the target of an SRV record.
 */
interface Member {
  key: string;
  /** For an address of an expanded name; undefined for an SRV target (its host is resolved per connection). */
  address: string | undefined;
  /** Where the entry points (an SRV target's host and port, else the configured endpoint). */
  endpoint: Endpoint;
  weight: number;
  tier: number;
  /** For the log: "an address of HOST", "a target of srv:NAME". */
  origin: string;
}

/** An operator's change to one backend through the admin API. */
export interface BackendOverride {
  state: AdminState;
  /** The weight set through the API, and the configured one it replaced: a reload that changes the configured weight wins. */
  weight?: { set: number; configured: number };
}

/** A change asked for one backend: its state, its weight, or both. */
export interface BackendChange {
  state?: AdminState;
  weight?: number;
}

/** The parts of a rule that decide how its backends behave: equal keys may share state across a reload. */
function backendsKey(rule: ForwardRule): string {
  return JSON.stringify([rule.name, rule.backends, rule.balance, rule.dnsRefresh, rule.dnsFamily, rule.dnsSpread, rule.dnsServers, rule.sourceAddress]);
}

export class RuleBackends {
  readonly pool: BackendPool;
  readonly key: string;
  private readonly resolver: Resolver;
  private readonly prober: HealthProber | undefined;
  /** Balancer entries, by pool index. */
  private readonly slots: Slot[];
  /** Configured backends whose host name expands into an entry per address. */
  private readonly expanded: number[];
  /** Configured `srv:` backends: an entry per SRV target. */
  private readonly srvNames: number[];
  private readonly srvLookup: SrvLookupFn;
  /** The next SRV lookup of each `srv:` backend, by configured index. */
  private readonly srvTimers = new Map<number, Timer>();
  /** SRV lookups under way, by configured index: a connection that comes before the first answer waits for it. */
  private readonly srvPending = new Map<number, Promise<void>>();
  /** `srv:` backends whose last lookup failed (reported once, until one succeeds). */
  private readonly srvFailing = new Set<number>();
  private refreshTimer: Timer | undefined;
  private stopped = false;
  /** The pool is full: an address past it was left out (warned about once). */
  private warnedFull = false;
  /** Forwarders using this state now (a YAML rule with several binds has several). */
  users = 0;
  private readonly overrides: Map<string, BackendOverride>;

  constructor(
    readonly rule: ForwardRule,
    options: RuleBackendsOptions = {},
  ) {
    this.key = backendsKey(rule);
    this.overrides = options.overrides ?? new Map();
    const { balance } = rule;
    this.pool = new BackendPool(
      // iphash hashes the name: a named backend keeps its clients when its address changes (unnamed ones are named host:port).
      rule.backends.map((backend) => ({ name: backend.name, weight: backend.weight, key: backend.name })),
      {
        algorithm: balance.algorithm,
        healthThreshold: balance.healthThreshold,
        recoveryTimeoutMs: balance.recoveryTimeout * MS,
        affinityTtlMs: balance.affinityTtl * MS,
        affinityMaxEntries: balance.affinityMaxEntries,
        onHealthChange: (_index, backend, healthy) => {
          // Only worth a line when there is a choice to make.
          if (this.pool.liveCount > 1) consola.warn(`rule ${rule.name}: backend ${backend.name} is ${healthy ? "back in service" : "out of service"}`);
        },
      },
    );
    this.resolver = new Resolver({
      // dns_refresh 0 turns the periodic refresh off, as in rinetd-uv: only the DNS TTL, failed connects and SIGHUP renew.
      maxTtlSeconds: rule.dnsRefresh === 0 ? NO_PERIODIC_REFRESH_SECONDS : rule.dnsRefresh,
      // As rinetd-uv: the family filter belongs to the expansion; a name that is not expanded uses every address.
      ...(rule.dnsFamily === "any" || !rule.dnsSpread ? {} : { family: rule.dnsFamily === "ipv4" ? 4 : 6 }),
      ...(options.lookup !== undefined ? { lookup: options.lookup } : rule.dnsServers !== undefined ? { lookup: serverLookup(rule.dnsServers) } : {}),
      onFailure: (host, error) => consola.warn(`rule ${rule.name}: ${host} does not resolve (${error}); using its last known addresses`),
      onRecovery: (host) => consola.info(`rule ${rule.name}: ${host} resolves again`),
      onResolved: (host, addresses, keptSeconds) =>
        consola.debug(`rule ${rule.name}: DNS ${host} -> ${addresses.join(", ")} (kept ${Math.round(keptSeconds)}s)`),
    });
    this.slots = rule.backends.map((record, backend) => ({ backend, record, address: undefined, key: undefined, ordinal: 0 }));
    this.srvNames = rule.backends.flatMap((backend, index) => (backend.endpoint.srv ? [index] : []));
    this.srvLookup = options.srvLookup ?? srvLookup(rule.dnsServers);
    this.expanded = rule.dnsSpread
      ? rule.backends.flatMap((backend, index) =>
          backend.endpoint.transport !== "unix" && !backend.endpoint.srv && !isAddressLiteral(backend.endpoint.host) ? [index] : [],
        )
      : [];
    if (this.expanded.length > 0 || this.srvNames.length > 0) void this.refreshNames();
    if (this.expanded.length > 0 && rule.dnsRefresh > 0) {
      this.refreshTimer = setInterval(() => {
        for (const backend of this.expanded) void this.expand(backend);
      }, rule.dnsRefresh * MS);
      this.refreshTimer.unref();
    }
    this.applyOverrides();
    const interval = balance.probeInterval;
    if (interval !== undefined) {
      // Entries of expanded names and SRV targets come and go: every slot the pool may hold is watched, the empty and retired ones skipped.
      const dynamic = this.expanded.length > 0 || this.srvNames.length > 0;
      const unprobed = (index: number) => this.pool.backends[index] === undefined || this.pool.isRetired(index) || this.pool.backends[index]?.state === "maint";
      this.prober = new HealthProber({
        count: dynamic ? MAX_BACKENDS : rule.backends.length,
        intervalMs: interval * MS,
        timeoutMs: Math.min(balance.probeTimeout, interval) * MS,
        targets: (index) => this.probeTargets(index),
        report: (index, up) => {
          // A probe already under way when the backend went into maintenance (or left) says nothing.
          if (!unprobed(index)) this.pool.setProbeResult(index, up);
        },
        paused: unprobed,
      });
      this.prober.start();
    }
  }

  /**
   * Apply `change` to the backend called `name` (a configured name, which
   * covers every address of an expanded one, or an entry's `NAME[n]`). It
   * stays for this rule across reloads while the backend exists. False when
   * no backend has that name.
   */
  change(name: string, change: BackendChange): boolean {
    const configured = this.rule.backends.find((backend) => backend.name === name);
    const entries = this.entriesOf(name);
    if (configured === undefined && entries.length === 0) return false;
    // An entry of an expanded name is changed alone, and not remembered past its life.
    if (configured !== undefined) {
      const override: BackendOverride = this.overrides.get(name) ?? { state: "ready" };
      if (change.state !== undefined) override.state = change.state;
      if (change.weight !== undefined) override.weight = { set: change.weight, configured: configured.weight };
      this.overrides.set(name, override);
    }
    for (const index of entries) {
      if (change.state !== undefined) this.pool.setState(index, change.state);
      if (change.weight !== undefined) this.pool.setWeight(index, change.weight);
    }
    return true;
  }

  /** Pool indexes of the live entries `name` names: a configured backend's (all its addresses), or one `NAME[n]`. */
  private entriesOf(name: string): number[] {
    const found: number[] = [];
    this.slots.forEach((slot, index) => {
      if (this.pool.isRetired(index)) return;
      if (slot.record.name === name || this.rule.backends[slot.backend]?.name === name) found.push(index);
    });
    return found;
  }

  /** A fresh state (a reload changed the rule's backends): what the API set on backends that are still there holds again. */
  private applyOverrides(): void {
    for (const [name, override] of this.overrides) {
      const configured = this.rule.backends.find((backend) => backend.name === name);
      if (configured === undefined) {
        this.overrides.delete(name);
        continue;
      }
      if (override.weight !== undefined && override.weight.configured !== configured.weight) delete override.weight;
      for (const index of this.entriesOf(name)) this.applyOverride(index, override);
    }
  }

  private applyOverride(index: number, override: BackendOverride): void {
    this.pool.setState(index, override.state);
    if (override.weight !== undefined) this.pool.setWeight(index, override.weight.set);
  }

  /** The balancer entries in service, and retired ones still draining. */
  get statuses(): ReadonlyArray<BackendStatus> {
    return this.pool.backends.filter((status, index) => !this.pool.isRetired(index) || status.active > 0);
  }

  /** A SIGHUP re-resolves every name at once (as in rinetd-uv). */
  forgetAddresses(): void {
    this.resolver.clear();
    if (this.expanded.length > 0 || this.srvNames.length > 0) void this.refreshNames();
  }

  stop(): void {
    this.stopped = true;
    this.prober?.stop();
    if (this.refreshTimer !== undefined) clearInterval(this.refreshTimer);
    for (const timer of this.srvTimers.values()) clearTimeout(timer);
    this.srvTimers.clear();
  }

  /** Look every expanded name and SRV name up again and bring its entries in step; resolves when all have been. */
  refreshNames(): Promise<void> {
    const expanding = this.expanded.map((backend) => this.expand(backend));
    const srv = this.srvNames.map((backend) => this.expandSrv(backend));
    return Promise.all([...expanding, ...srv]).then(() => undefined);
  }

  /** Addresses of entry `index`, in the order a connection tries them. */
  addressesOf(index: number): readonly string[] | Promise<readonly string[]> {
    const slot = this.slots[index];
    if (slot === undefined) return [];
    if (slot.address !== undefined) return [slot.address];
    const { endpoint } = slot.record;
    if (endpoint.transport === "unix") return [];
    if (endpoint.srv) {
      // No SRV answer yet: wait for the first one (the entries it brings are picked next); none came: nothing to dial.
      const pending = this.srvPending.get(slot.backend);
      return pending === undefined ? [] : pending.then(() => []);
    }
    return this.resolver.resolve(endpoint.host);
  }

  /** A connect to entry `index` failed: its name's cached addresses may be stale. */
  invalidate(index: number): void {
    const slot = this.slots[index];
    if (slot === undefined || slot.record.endpoint.transport === "unix" || slot.record.endpoint.srv) return;
    const { host } = slot.record.endpoint;
    if (!isAddressLiteral(host)) consola.debug(`rule ${this.rule.name}: connect to ${slot.record.name} failed; ${host} will be looked up again`);
    this.resolver.invalidate(host);
    // An expanded entry that reached the failure threshold: is it still in DNS? (rinetd-uv asks at once.)
    if (slot.key !== undefined && this.pool.backends[index]?.consecutiveFailures === this.rule.balance.healthThreshold) {
      void (this.rule.backends[slot.backend]?.endpoint.srv ? this.expandSrv(slot.backend) : this.expand(slot.backend));
    }
  }

  /**
   * Where entry `index` is dialled at `address`, for a client that came in
   * on port `offset` of its rule's bind range (0 on a one-port bind): a
   * backend with a port range of its own is dialled on its port at that
   * offset; a backend of one port takes them all.
   */
  targetOf(index: number, address: string | undefined, offset = 0): DialTarget | undefined {
    const slot = this.slots[index];
    if (slot === undefined) return undefined;
    const backend = slot.record;
    const { endpoint } = backend;
    const target: DialTarget = {
      backend,
      address,
      port: endpoint.portEnd === undefined ? endpoint.port : endpoint.port + offset,
      unix: endpoint.transport === "unix" ? bunUnixPath(endpoint.host) : undefined,
      localAddress: backend.sourceAddress ?? this.rule.sourceAddress,
    };
    const tls = this.tlsOf(slot);
    if (tls !== undefined) target.tls = tls;
    return target;
  }

  /**
   * TLS options of entry `slot`, made once: the host name it is dialled by
   * (the configured one, or an SRV target's) is the SNI and checked name
   * unless `tls-servername` says otherwise.
   */
  private tlsOf(slot: Slot): TlsClientOptions | undefined {
    const settings = slot.record.tls;
    if (settings === undefined) return undefined;
    if (slot.tls === undefined) {
      const host = slot.record.endpoint.host;
      slot.tls = { serverName: settings.serverName ?? (isAddressLiteral(host) ? undefined : host), ca: settings.caPem, verify: settings.verify };
    }
    return slot.tls;
  }

  /** Look configured backend `backend`'s name up and bring its entries in step with the answer. */
  private async expand(backend: number): Promise<void> {
    const host = this.rule.backends[backend]?.endpoint.host;
    if (host === undefined) return;
    this.resolver.invalidate(host);
    let addresses: readonly string[];
    try {
      const found = this.resolver.resolve(host);
      addresses = found instanceof Promise ? await found : found;
    } catch {
      // Never resolved: the resolver has said so; the name stays one entry that is looked up per connection.
      return;
    }
    if (this.stopped) return;
    const configured = this.rule.backends[backend];
    if (configured === undefined) return;
    const origin = `an address of ${configured.endpoint.host}`;
    this.sync(backend, addresses.map((address) => ({ key: address, address, endpoint: configured.endpoint, weight: configured.weight, tier: 0, origin })));
  }

  /**
   * Look `srv:` backend `backend`'s SRV records up, bring its entries in
   * step with them, and plan the next lookup: at the records' lowest TTL,
   * at least MIN_SRV_REFRESH_SECONDS, at most `dns_refresh` (0: the TTL
   * alone); after a failure, SRV_RETRY_SECONDS later, keeping the entries.
   */
  private expandSrv(backend: number): Promise<void> {
    const running = this.srvPending.get(backend);
    if (running !== undefined) return running;
    const configured = this.rule.backends[backend];
    if (configured === undefined) return Promise.resolve();
    const name = configured.endpoint.host;
    const lookup = this.srvLookup(name).then(
      (records) => {
        if (this.stopped) return;
        const served = records.filter((record) => record.target !== "");
        if (served.length === 0) throw new Error("the records name no target (service not available)");
        const changed = this.srvFailing.delete(backend);
        if (changed) consola.info(`rule ${this.rule.name}: SRV srv:${name} resolves again`);
        this.sync(backend, served.map((record) => this.srvMember(configured, record)));
        const ttl = Math.min(...served.map((record) => record.ttl));
        const cap = this.rule.dnsRefresh === 0 ? MAX_SRV_REFRESH_SECONDS : this.rule.dnsRefresh;
        const keptSeconds = Math.max(MIN_SRV_REFRESH_SECONDS, Math.min(ttl, cap));
        consola.debug(`rule ${this.rule.name}: SRV srv:${name} -> ${served.map((record) => `${record.target}:${record.port}`).join(", ")} (kept ${keptSeconds}s)`);
        this.scheduleSrv(backend, keptSeconds);
      },
    ).catch((error: unknown) => {
      if (this.stopped) return;
      if (!this.srvFailing.has(backend)) {
        this.srvFailing.add(backend);
        const reason = typeof error === "object" && error !== null && "code" in error ? String(error.code) : error instanceof Error ? error.message : String(error);
        consola.warn(`rule ${this.rule.name}: SRV lookup of ${name} failed (${reason}); keeping its current backends, asking again every ${SRV_RETRY_SECONDS}s`);
      }
      this.scheduleSrv(backend, SRV_RETRY_SECONDS);
    }).finally(() => this.srvPending.delete(backend));
    this.srvPending.set(backend, lookup);
    return lookup;
  }

  private scheduleSrv(backend: number, seconds: number): void {
    clearTimeout(this.srvTimers.get(backend));
    const timer = setTimeout(() => void this.expandSrv(backend), seconds * MS);
    timer.unref();
    this.srvTimers.set(backend, timer);
  }

  /** The entry an SRV record calls for: its target and port, its weight, its priority as the failover tier. */
  private srvMember(configured: Backend, record: SrvRecord): Member {
    return {
      key: `${record.target}:${record.port}`,
      address: undefined,
      endpoint: { host: record.target, port: record.port, transport: configured.endpoint.transport },
      weight: record.weight === 0 ? SRV_ZERO_WEIGHT : record.weight,
      tier: record.priority,
      origin: `a target of ${formatTarget(configured.endpoint)}, priority ${record.priority}`,
    };
  }

  /** Entries for `backend` become one per member: new ones added, vanished ones retired, kept ones given their member's weight and tier. */
  private sync(backend: number, members: readonly Member[]): void {
    const configured = this.rule.backends[backend];
    if (configured === undefined) return;
    const override = this.overrides.get(configured.name);
    const live = this.slots.flatMap((slot, index) => (slot.backend === backend && !this.pool.isRetired(index) ? [index] : []));
    for (const index of live) {
      const slot = this.slots[index]!;
      const member = slot.key === undefined ? undefined : members.find((candidate) => candidate.key === slot.key);
      if (member !== undefined) {
        // An SRV record may change its weight or priority and stay: the entry follows. A weight the API set stays until DNS changes it.
        if (member.weight !== slot.record.weight) {
          slot.record = { ...slot.record, weight: member.weight };
          if (override?.weight === undefined) this.pool.setWeight(index, member.weight);
        }
        this.pool.setTier(index, member.tier);
        continue;
      }
      if (slot.key === undefined && members.length === 0) continue;
      this.pool.retire(index);
      if (slot.key !== undefined) {
        consola.info(`rule ${this.rule.name}: backend ${slot.record.name} removed: ${slot.key} is no longer ${slot.origin ?? "listed"}`);
      }
    }
    const kept = new Set(live.filter((index) => !this.pool.isRetired(index)).map((index) => this.slots[index]!.key));
    // Names still shown (live, or retired and draining) are not given out again yet.
    const ordinals = new Set(
      this.slots.flatMap((slot, index) =>
        slot.backend === backend && slot.key !== undefined && (!this.pool.isRetired(index) || (this.pool.backends[index]?.active ?? 0) > 0)
          ? [slot.ordinal]
          : [],
      ),
    );
    for (const member of members) {
      if (kept.has(member.key)) continue;
      let ordinal = 0;
      while (ordinals.has(ordinal)) ordinal++;
      const record: Backend = { ...configured, name: `${configured.name}[${ordinal}]`, endpoint: member.endpoint, weight: member.weight };
      const index = this.pool.add({ name: record.name, weight: record.weight, key: `${configured.name}@${member.key}`, tier: member.tier });
      if (index === undefined) {
        if (!this.warnedFull) consola.warn(`rule ${this.rule.name}: ${formatTarget(configured.endpoint)} lists more entries than the ${MAX_BACKENDS} backends a rule may have; the rest are left out`);
        this.warnedFull = true;
        break;
      }
      ordinals.add(ordinal);
      this.slots[index] = { backend, record, address: member.address, key: member.key, ordinal, origin: member.origin };
      // A new entry of a drained name is drained too.
      if (override !== undefined) this.applyOverride(index, override);
      consola.info(`rule ${this.rule.name}: backend ${record.name} -> ${member.key} (${member.origin})`);
    }
  }

  private async probeTargets(index: number): Promise<readonly ProbeAddress[]> {
    const target = this.targetOf(index, undefined);
    if (target === undefined) return [];
    if (target.unix !== undefined) return [{ host: "", port: 0, unix: target.unix }];
    const addresses = await this.addressesOf(index);
    return addresses.map((host) => ({ host, port: target.port, ...(target.localAddress === undefined ? {} : { localAddress: target.localAddress }) }));
  }
}

/**
 * The targets one client's connection tries, in order. The balancer counts
 * a picked backend as busy from the pick; every pick ends with exactly one of
 * `failed` (then the next pick), or `opened` and later `closed`, or
 * `abandon` (the client left first).
 */
export class DialPlan {
  private tried = 0;
  private attempts = 0;
  private index = -1;
  private addresses: readonly string[] = [];
  private nextAddress = 0;
  /** The backend of the connection that opened, for the log and the balancer's counts. */
  connected: Backend | undefined;
  /** The client left: nothing more is picked, and a pick made meanwhile is released. */
  private abandoned = false;
  /** A dial to the current backend failed on this machine (no local port): giving it up does not count against it. */
  private spared = false;

  constructor(
    readonly backends: RuleBackends,
    private readonly client: string,
    /** The client's port's offset in its rule's bind range (0 on a one-port bind): picks the port of a backend range. */
    readonly offset = 0,
  ) {}

  /**
   * The next target: another address of the current backend, or the next
   * backend's first. undefined when none is left. Synchronous unless a name
   * must be looked up: most connections (an IP address, or a name still in
   * the DNS cache) get their target without a promise or a microtask.
   */
  next(): DialTarget | undefined | Promise<DialTarget | undefined> {
    for (;;) {
      if (this.abandoned) return undefined;
      if (this.index !== -1 && this.nextAddress < this.addresses.length) {
        const address = this.addresses[this.nextAddress++];
        return this.backends.targetOf(this.index, address, this.offset);
      }
      if (this.index !== -1 && this.isUnix() && this.nextAddress === 0) {
        this.nextAddress = 1;
        return this.backends.targetOf(this.index, undefined, this.offset);
      }
      if (this.index !== -1) this.giveUpOnBackend();
      const pool = this.backends.pool;
      if (this.attempts >= pool.maxAttempts) return undefined;
      const index = pool.pick(this.client, this.tried);
      if (index === undefined) return undefined;
      this.attempts++;
      this.tried |= 1 << index;
      this.index = index;
      this.nextAddress = 0;
      let found: readonly string[] | Promise<readonly string[]>;
      try {
        found = this.backends.addressesOf(index);
      } catch {
        found = [];
      }
      if (found instanceof Promise) {
        // A name that does not resolve (and never did) leaves no address: this backend failed.
        return found.then(
          (addresses) => this.looked(index, addresses),
          () => this.looked(index, []),
        );
      }
      this.addresses = found;
    }
  }

  /** A lookup for backend `index` finished: go on from its addresses, unless the client left meanwhile. */
  private looked(index: number, addresses: readonly string[]): DialTarget | undefined | Promise<DialTarget | undefined> {
    if (this.abandoned) {
      // The client left while the name was being looked up: release this pick too.
      this.backends.pool.closed(index, 0, 0);
      this.index = -1;
      return undefined;
    }
    if (addresses.length === 0 && this.backends.pool.isRetired(index)) {
      // The entry was replaced while this client waited (an SRV name's first answer): no failed attempt; pick among what replaced it.
      this.backends.pool.closed(index, 0, 0);
      this.attempts--;
      // Its slot may be given to a new entry later: that one is not tried yet.
      this.tried &= ~(1 << index);
      this.index = -1;
      return this.next();
    }
    this.addresses = addresses;
    return this.next();
  }

  /** The connection to the current target is up. */
  opened(): void {
    if (this.index === -1) return;
    this.backends.pool.opened(this.index);
    this.connected = this.backends.targetOf(this.index, undefined)?.backend;
  }

  /** The connection ended (after `opened`), with its byte counts. */
  closed(bytesIn: number, bytesOut: number): void {
    if (this.index === -1) return;
    this.backends.pool.closed(this.index, bytesIn, bytesOut);
    this.index = -1;
  }

  /** The client went away before a connection opened: release the pick without blaming the backend. */
  abandon(): void {
    if (this.connected !== undefined) return;
    this.abandoned = true;
    if (this.index === -1) return;
    this.backends.pool.closed(this.index, 0, 0);
    this.index = -1;
  }

  /** A dial to the current backend failed for a reason of this machine's (see spared). */
  spareCurrent(): void {
    this.spared = true;
  }

  /** Every address of the current backend failed: it counts one failed connect, and its names are looked up afresh; unless the failures were this machine's own. */
  private giveUpOnBackend(): void {
    if (this.spared) {
      this.backends.pool.closed(this.index, 0, 0);
      this.spared = false;
    } else {
      this.backends.pool.failed(this.index);
      this.backends.invalidate(this.index);
    }
    this.index = -1;
  }

  private isUnix(): boolean {
    return this.backends.targetOf(this.index, undefined)?.unix !== undefined;
  }
}

/**
 * Backend state by rule name, shared by the forwarders of one rule and kept
 * across a reload when the rule's backends did not change (so health and
 * affinity survive it).
 */
export class BackendRegistry {
  private readonly byName = new Map<string, RuleBackends>();
  /** The admin API's backend changes by rule name, kept while the rule exists. */
  private readonly overrides = new Map<string, Map<string, BackendOverride>>();

  /** The state for `rule`: the current one when nothing about its backends changed, else a new one. */
  acquire(rule: ForwardRule): RuleBackends {
    const current = this.byName.get(rule.name);
    if (current !== undefined && current.key === backendsKey(rule)) {
      current.users++;
      return current;
    }
    let overrides = this.overrides.get(rule.name);
    if (overrides === undefined) {
      overrides = new Map();
      this.overrides.set(rule.name, overrides);
    }
    const fresh = new RuleBackends(rule, { overrides });
    fresh.users = 1;
    this.byName.set(rule.name, fresh);
    return fresh;
  }

  /** A forwarder no longer uses `backends` for new connections. */
  release(backends: RuleBackends): void {
    backends.users--;
    if (backends.users > 0) return;
    backends.stop();
    if (this.byName.get(backends.rule.name) === backends) {
      this.byName.delete(backends.rule.name);
      // The rule is gone: a rule of that name added later starts with its backends ready.
      this.overrides.delete(backends.rule.name);
    }
  }

  /** The state of rule `name`'s backends now, if it runs. */
  get(name: string): RuleBackends | undefined {
    return this.byName.get(name);
  }

  /** SIGHUP: names are resolved afresh. */
  forgetAddresses(): void {
    for (const backends of this.byName.values()) backends.forgetAddresses();
  }

  get all(): RuleBackends[] {
    return [...this.byName.values()];
  }
}
