/**
 * @module The set of running forwarders, keyed by what they listen on.
 * Applying a config starts, updates or stops forwarders so that the running
 * set matches it: at start-up, and again on every reload. Binding is all or
 * nothing: if one new listener cannot bind, the ones this step opened are
 * closed, the running set is left as it was, and the error names the rule's
 * file and line.
 */
import { consola } from "consola";
import { listenerKey } from "./config/validate.ts";
import { formatEndpoint } from "./endpoint.ts";
import type { Forwarder, ForwarderContext, ForwarderFactory } from "./forwarder.ts";
import { BackendRegistry } from "./backends.ts";
import type { Admission } from "./limits.ts";
import type { SessionEvents } from "./session.ts";
import { createTcpForwarder } from "./tcp/forwarder.ts";
import { SocketLayer } from "./tcp/socket-layer.ts";
import { SpliceChoice } from "./tcp/splice/choice.ts";
import { createTcpToUdpForwarder, createUdpForwarder } from "./udp/forwarders.ts";
import type { Config, ForwardRule, RuleMode } from "./types.ts";

export class BindError extends Error {}

/** Which module serves each kind of rule. */
const FACTORIES: Record<RuleMode, ForwarderFactory> = {
  tcp: createTcpForwarder,
  udp: createUdpForwarder,
  udptotcp: createUdpForwarder,
  tcptoudp: createTcpToUdpForwarder,
};

/** What changed when a config was applied, for the log. */
export interface ApplySummary {
  started: number;
  kept: number;
  stopped: number;
}

export class Server {
  private readonly forwarders = new Map<string, Forwarder>();
  /** Balancer, DNS and probe state per rule name, shared by the rule's forwarders. */
  readonly backends = new BackendRegistry();
  /** Whether TCP relays move to the splice worker; every forwarder sees the latest config's choice. */
  private readonly splice = new SpliceChoice();
  /** Bun's sockets or direct ones for TCP forwarders; every forwarder sees the latest config's choice. */
  private readonly sockets = new SocketLayer();

  constructor(
    private readonly events: SessionEvents,
    private readonly admission: Admission,
    /** Set in worker threads: TCP listeners share their ports with the other workers' (SO_REUSEPORT). */
    private readonly reusePort = false,
  ) {}

  /** Forwarders running now, in no particular order. */
  get running(): Forwarder[] {
    return [...this.forwarders.values()];
  }

  /** Forwarders a reload removed whose connections are still open. */
  get draining(): Forwarder[] {
    this.pruneRetired();
    return [...this.retired];
  }

  /** Connections and sessions open across every rule, including rules a reload removed. */
  get active(): number {
    let total = 0;
    for (const forwarder of this.forwarders.values()) total += forwarder.active;
    for (const forwarder of this.retired) total += forwarder.active;
    return total;
  }

  /** Forwarders a reload stopped listening, kept until their open connections end. */
  private retired = new Set<Forwarder>();

  /**
   * Make the running forwarders match `config`. New binds are opened first;
   * only when all succeeded are kept rules updated and removed ones stopped.
   */
  async apply(config: Config): Promise<ApplySummary> {
    await this.splice.configure(config.splice);
    await this.sockets.configure(config.sockets, config.listenBacklog);
    const context: ForwarderContext = {
      globalAccess: config.globalAccess,
      events: this.events,
      admission: this.admission,
      backends: this.backends,
      splice: this.splice,
      sockets: this.sockets,
      reusePort: this.reusePort,
    };
    const wanted = new Map<string, ForwardRule>();
    for (const rule of config.rules) wanted.set(listenerKey(rule), rule);

    // A bind kept across a change of kind (tcp <-> tcptoudp) needs another forwarder:
    // stop the old listener first, so the new one can take the port (a short gap).
    const replaced = new Map<string, Forwarder>();
    for (const [key, forwarder] of this.forwarders) {
      const rule = wanted.get(key);
      if (rule !== undefined && FACTORIES[rule.mode] !== FACTORIES[forwarder.rule.mode]) {
        this.retire(key, forwarder);
        replaced.set(key, forwarder);
      }
    }

    const opened = new Map<string, Forwarder>();
    for (const [key, rule] of wanted) {
      if (this.forwarders.has(key)) continue;
      const forwarder = FACTORIES[rule.mode](rule, context);
      try {
        await forwarder.start();
      } catch (error) {
        for (const started of opened.values()) started.stopAccepting();
        await this.restore(replaced);
        const reason = error instanceof Error ? error.message : String(error);
        throw new BindError(`${rule.at.file}:${rule.at.line}: cannot listen on ${formatEndpoint(rule.bind)}: ${reason}`);
      }
      opened.set(key, forwarder);
    }

    let kept = 0;
    let stopped = 0;
    for (const [key, forwarder] of this.forwarders) {
      const rule = wanted.get(key);
      if (rule !== undefined) {
        forwarder.update(rule, config.globalAccess);
        kept++;
      } else {
        this.retire(key, forwarder);
        stopped++;
      }
    }
    for (const [key, forwarder] of opened) this.forwarders.set(key, forwarder);
    this.pruneRetired();
    return { started: opened.size - replaced.size, kept: kept + replaced.size, stopped };
  }

  /** Undo the replacements of a failed apply: the old forwarders listen again. */
  private async restore(replaced: Map<string, Forwarder>): Promise<void> {
    for (const [key, forwarder] of replaced) {
      this.retired.delete(forwarder);
      this.forwarders.set(key, forwarder);
      try {
        await forwarder.start();
      } catch (error) {
        consola.error(`${forwarder.rule.at.file}:${forwarder.rule.at.line}: could not listen again after a failed reload: ${String(error)}`);
      }
    }
  }

  /** Stop listening; the forwarder's open connections finish on their own. */
  private retire(key: string, forwarder: Forwarder): void {
    forwarder.stopAccepting();
    this.forwarders.delete(key);
    if (forwarder.active > 0) this.retired.add(forwarder);
  }

  /** Stop accepting on every rule; open connections carry on. */
  stopAccepting(): void {
    for (const forwarder of this.forwarders.values()) forwarder.stopAccepting();
  }

  /** Shutting down: stop accepting on every rule; quiet connections end at once, on current and removed rules. */
  drain(): void {
    for (const forwarder of this.forwarders.values()) forwarder.drain();
    for (const forwarder of this.retired) forwarder.drain();
  }

  /** Close every connection and session still open, on current and removed rules. */
  closeAll(): void {
    for (const forwarder of this.forwarders.values()) forwarder.closeAll();
    for (const forwarder of this.retired) forwarder.closeAll();
    this.pruneRetired();
  }

  private pruneRetired(): void {
    for (const forwarder of this.retired) if (forwarder.active === 0) this.retired.delete(forwarder);
  }
}
