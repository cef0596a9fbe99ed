/**
 * @module Where a rule's connections go: its backends at run time. One
 * `RuleBackends` per rule name (the binds of one YAML rule share it) holds the
 * balancer, the DNS cache and the optional active probes; a `DialPlan` per
 * client walks the targets to try: the addresses of the chosen backend in
 * order, then the next backend the balancer picks, up to its retry bound.
 * Forwarders call it at the edges of a connection (connect, failure, end),
 * never per chunk.
 */
import { consola } from "consola";
import { BackendPool, type BackendStatus } from "./balance/pool.ts";
import { HealthProber, type ProbeAddress } from "./balance/probe.ts";
import { isAddressLiteral, Resolver } from "./dns.ts";
import { bunUnixPath, formatTarget } from "./endpoint.ts";
import type { Backend, ForwardRule } from "./types.ts";

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
}

const MS = 1000;
/** Ten years: finite, so a failed connect can still invalidate the cached addresses. */
const NO_PERIODIC_REFRESH_SECONDS = 10 * 365 * 24 * 3600;

/** The parts of a rule that decide how its backends behave: equal keys may share state across a reload. */
function backendsKey(rule: ForwardRule): string {
  return JSON.stringify([rule.name, rule.backends, rule.balance, rule.dnsRefresh, rule.dnsFamily, rule.dnsSpread, rule.sourceAddress]);
}

export class RuleBackends {
  readonly pool: BackendPool;
  readonly key: string;
  private readonly resolver: Resolver;
  private readonly prober: HealthProber | undefined;
  /** dnsSpread: where the next connection to each backend starts in its address list. */
  private readonly rotation: number[];
  /** Forwarders using this state now (a YAML rule with several binds has several). */
  users = 0;

  constructor(readonly rule: ForwardRule) {
    this.key = backendsKey(rule);
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
          if (rule.backends.length > 1) consola.warn(`rule ${rule.name}: backend ${backend.name} is ${healthy ? "back in service" : "out of service"}`);
        },
      },
    );
    this.resolver = new Resolver({
      // dns_refresh 0 turns the periodic refresh off, as in rinetd-uv: only the DNS TTL, failed connects and SIGHUP renew.
      maxTtlSeconds: rule.dnsRefresh === 0 ? NO_PERIODIC_REFRESH_SECONDS : rule.dnsRefresh,
      ...(rule.dnsFamily === "any" ? {} : { family: rule.dnsFamily === "ipv4" ? 4 : 6 }),
      onFailure: (host, error) => consola.warn(`rule ${rule.name}: ${host} does not resolve (${error}); using its last known addresses`),
      onRecovery: (host) => consola.info(`rule ${rule.name}: ${host} resolves again`),
      onResolved: (host, addresses, keptSeconds) =>
        consola.debug(`rule ${rule.name}: DNS ${host} -> ${addresses.join(", ")} (kept ${Math.round(keptSeconds)}s)`),
    });
    this.rotation = rule.backends.map(() => 0);
    const interval = balance.probeInterval;
    if (interval !== undefined) {
      this.prober = new HealthProber({
        count: rule.backends.length,
        intervalMs: interval * MS,
        timeoutMs: Math.min(balance.probeTimeout, interval) * MS,
        targets: (index) => this.probeTargets(index),
        report: (index, up) => this.pool.setProbeResult(index, up),
      });
      this.prober.start();
    }
  }

  get statuses(): ReadonlyArray<BackendStatus> {
    return this.pool.backends;
  }

  /** A SIGHUP re-resolves every name at once (as in rinetd-uv). */
  forgetAddresses(): void {
    this.resolver.clear();
  }

  stop(): void {
    this.prober?.stop();
  }

  /** Addresses of backend `index`, in the order a connection tries them. */
  addressesOf(index: number): readonly string[] | Promise<readonly string[]> {
    const backend = this.rule.backends[index];
    if (backend === undefined || backend.endpoint.transport === "unix") return [];
    return this.resolver.resolve(backend.endpoint.host);
  }

  /** A connect to `host` failed: its cached addresses may be stale. */
  invalidate(index: number): void {
    const backend = this.rule.backends[index];
    if (backend === undefined || backend.endpoint.transport === "unix") return;
    const { host } = backend.endpoint;
    if (!isAddressLiteral(host)) consola.debug(`rule ${this.rule.name}: connect to ${backend.name} failed; ${host} will be looked up again`);
    this.resolver.invalidate(host);
  }

  /** dnsSpread: the offset the next connection to backend `index` starts at. */
  startOffset(index: number, count: number): number {
    if (!this.rule.dnsSpread || count < 2) return 0;
    const offset = (this.rotation[index] ?? 0) % count;
    this.rotation[index] = offset + 1;
    return offset;
  }

  targetOf(index: number, address: string | undefined): DialTarget | undefined {
    const backend = this.rule.backends[index];
    if (backend === undefined) return undefined;
    const { endpoint } = backend;
    return {
      backend,
      address,
      port: endpoint.port,
      unix: endpoint.transport === "unix" ? bunUnixPath(endpoint.host) : undefined,
      localAddress: backend.sourceAddress ?? this.rule.sourceAddress,
    };
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
  private startAddress = 0;
  /** The backend of the connection that opened, for the log and the balancer's counts. */
  connected: Backend | undefined;
  /** The client left: nothing more is picked, and a pick made meanwhile is released. */
  private abandoned = false;

  constructor(
    readonly backends: RuleBackends,
    private readonly client: string,
  ) {}

  /** The next target: another address of the current backend, or the next backend's first. undefined when none is left. */
  async next(): Promise<DialTarget | undefined> {
    for (;;) {
      if (this.abandoned) return undefined;
      if (this.index !== -1 && this.nextAddress < this.addresses.length) {
        const address = this.addresses[(this.startAddress + this.nextAddress++) % this.addresses.length];
        return this.backends.targetOf(this.index, address);
      }
      if (this.index !== -1 && this.isUnix() && this.nextAddress === 0) {
        this.nextAddress = 1;
        return this.backends.targetOf(this.index, undefined);
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
      try {
        const found = this.backends.addressesOf(index);
        this.addresses = found instanceof Promise ? await found : found;
      } catch {
        // The name does not resolve (and never did): this backend failed.
        this.addresses = [];
      }
      if (this.abandoned) {
        // The client left while the name was being looked up: release this pick too.
        this.backends.pool.closed(index, 0, 0);
        this.index = -1;
        return undefined;
      }
      this.startAddress = this.backends.startOffset(index, this.addresses.length);
    }
  }

  /** The connection to the current target is up. */
  opened(): void {
    if (this.index === -1) return;
    this.backends.pool.opened(this.index);
    this.connected = this.backends.rule.backends[this.index];
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

  /** Every address of the current backend failed: it counts one failed connect, and its names are looked up afresh. */
  private giveUpOnBackend(): void {
    this.backends.pool.failed(this.index);
    this.backends.invalidate(this.index);
    this.index = -1;
  }

  private isUnix(): boolean {
    return this.backends.rule.backends[this.index]?.endpoint.transport === "unix";
  }
}

/**
 * Backend state by rule name, shared by the forwarders of one rule and kept
 * across a reload when the rule's backends did not change (so health and
 * affinity survive it).
 */
export class BackendRegistry {
  private readonly byName = new Map<string, RuleBackends>();

  /** The state for `rule`: the current one when nothing about its backends changed, else a new one. */
  acquire(rule: ForwardRule): RuleBackends {
    const current = this.byName.get(rule.name);
    if (current !== undefined && current.key === backendsKey(rule)) {
      current.users++;
      return current;
    }
    const fresh = new RuleBackends(rule);
    fresh.users = 1;
    this.byName.set(rule.name, fresh);
    return fresh;
  }

  /** A forwarder no longer uses `backends` for new connections. */
  release(backends: RuleBackends): void {
    backends.users--;
    if (backends.users > 0) return;
    backends.stop();
    if (this.byName.get(backends.rule.name) === backends) this.byName.delete(backends.rule.name);
  }

  /** SIGHUP: names are resolved afresh. */
  forgetAddresses(): void {
    for (const backends of this.byName.values()) backends.forgetAddresses();
  }

  get all(): RuleBackends[] {
    return [...this.byName.values()];
  }
}
