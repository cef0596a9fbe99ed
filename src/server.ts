/**
 * @module The set of running forwarders, keyed by what they listen on.
 * Applying a config starts, updates or stops forwarders so that the running
 * set matches it: at start-up, and again on every reload. Binding is all or
 * nothing: if one new listener cannot bind, the ones this step opened are
 * closed, the running set is left as it was, and the error names the rule's
 * file and line (and the port, of a range). A reload that changes a port
 * range's ports keeps its listeners for the ports that stay.
 */
import { consola } from "consola";
import { listenerFamilyKey, listenerKey } from "./config/validate.ts";
import { formatEndpoint, portCount } from "./endpoint.ts";
import { PortBindError } from "./port-listeners.ts";
import type { Forwarder, ForwarderContext, ForwarderFactory } from "./forwarder.ts";
import { BackendRegistry } from "./backends.ts";
import { type Admission, descriptorLimit, openDescriptors } from "./limits.ts";
import type { SessionEvents } from "./session.ts";
import { TcpBind } from "./tcp/bind.ts";
import { SocketLayer } from "./tcp/socket-layer.ts";
import { SpliceChoice } from "./tcp/splice/choice.ts";
import { createTcpToUdpForwarder, createUdpForwarder } from "./udp/forwarders.ts";
import type { AccessList, Config, Endpoint, ForwardRule, RuleMode } from "./types.ts";

export class BindError extends Error {}

/**
 * An apply that opened this many listening sockets or more (a wide port
 * range) ends with a full collection: 10,000 ports left about 2 KiB of
 * garbage per port in the heap's pages (measured on Bun 1.4.5).
 */
const TRIM_AFTER_PORTS = 1000;

/** Which module serves each kind of rule that has a listener of its own (TCP rules are served by binds, see bind.ts). */
const FACTORIES: Record<Exclude<RuleMode, "tcp">, ForwarderFactory> = {
  udp: createUdpForwarder,
  udptotcp: createUdpForwarder,
  tcptoudp: createTcpToUdpForwarder,
};

/**
 * One listening socket and the rules it serves: a TCP bind (one or more
 * stream rules, see bind.ts), or the forwarder of a UDP or cross-protocol
 * rule, which listens itself.
 */
interface Listening {
  /** The first of its rules (the only one, but on a shared TCP bind). */
  readonly rule: ForwardRule;
  readonly active: number;
  /** Sockets it listens on: one per port of its bind's range. */
  readonly ports: number;
  start(): Promise<void> | void;
  /** Listen on the ports `rules` add to the running range (see Forwarder.prepare); `update` closes those they drop. */
  prepare(rules: ForwardRule[]): Promise<void>;
  /** A failed reload: close what `prepare` opened. */
  abandon(): void;
  update(rules: ForwardRule[], globalAccess: AccessList): void;
  stopAccepting(): void;
  drain(): void;
  closeAll(): void;
  /** The forwarder of each of its rules, and of removed ones whose connections are still open (for the figures). */
  all(): Forwarder[];
}

/** A UDP or cross-protocol rule's forwarder, as a Listening. */
class OwnListener implements Listening {
  constructor(private readonly forwarder: Forwarder) {}
  get rule(): ForwardRule {
    return this.forwarder.rule;
  }
  get active(): number {
    return this.forwarder.active;
  }
  get ports(): number {
    return this.forwarder.ports ?? 1;
  }
  start(): Promise<void> | void {
    return this.forwarder.start();
  }
  async prepare(rules: ForwardRule[]): Promise<void> {
    await this.forwarder.prepare?.(rules[0]!);
  }
  abandon(): void {
    this.forwarder.abandon?.();
  }
  update(rules: ForwardRule[], globalAccess: AccessList): void {
    this.forwarder.update(rules[0]!, globalAccess);
  }
  stopAccepting(): void {
    this.forwarder.stopAccepting();
  }
  drain(): void {
    this.forwarder.drain();
  }
  closeAll(): void {
    this.forwarder.closeAll();
  }
  all(): Forwarder[] {
    return [this.forwarder];
  }
}

/** What kind of listener serves `rule`: binds of different kinds need different sockets. */
function kindOf(rule: ForwardRule): "tcp" | ForwarderFactory {
  return rule.mode === "tcp" ? "tcp" : FACTORIES[rule.mode];
}

/** Whether two binds have a port in common. */
function portsMeet(a: Endpoint, b: Endpoint): boolean {
  return Math.max(a.port, b.port) <= Math.min(a.portEnd ?? a.port, b.portEnd ?? b.port);
}

/** `FILE:LINE: cannot listen on 0.0.0.0:8050/tcp (port 8050 of 0.0.0.0:8000-8099/tcp): reason`. */
function bindFailure(rule: ForwardRule, error: unknown): string {
  const reason = error instanceof Error ? error.message : String(error);
  const where = formatEndpoint(rule.bind);
  const at = `${rule.at.file}:${rule.at.line}`;
  if (!(error instanceof PortBindError) || rule.bind.portEnd === undefined) return `${at}: cannot listen on ${where}: ${reason}`;
  // Bun's listen says only "Failed to listen" when out of descriptors: tell it by the numbers.
  const limit = descriptorLimit();
  const short = /EMFILE/.test(reason) || (limit !== undefined && (openDescriptors() ?? 0) + portCount(rule.bind) > limit);
  const hint = short ? ` (a range of ${portCount(rule.bind)} ports needs a descriptor per port; the limit is ${limit ?? "unknown"}: raise ulimit -n)` : "";
  return `${at}: cannot listen on ${error.where} (port ${error.endpoint.port} of ${where}): ${reason}${hint}`;
}

function listeningFor(rules: ForwardRule[], context: ForwarderContext): Listening {
  const first = rules[0]!;
  return first.mode === "tcp" ? new TcpBind(rules, context) : new OwnListener(FACTORIES[first.mode](first, context));
}

/** What changed when a config was applied, for the log: listening sockets opened, kept and closed. */
export interface ApplySummary {
  started: number;
  kept: number;
  stopped: number;
}

export class Server {
  private readonly listeners = new Map<string, Listening>();
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

  /** Listening sockets open now. */
  get listening(): number {
    return this.listeners.size;
  }

  /** The forwarder of every rule, and of rules a reload removed whose connections are still open, in no particular order. */
  forwarders(): Forwarder[] {
    this.pruneRetired();
    const all: Forwarder[] = [];
    for (const listening of this.listeners.values()) all.push(...listening.all());
    for (const listening of this.retired) all.push(...listening.all());
    return all;
  }

  /** Connections and sessions open across every rule, including rules a reload removed. */
  get active(): number {
    let total = 0;
    for (const listening of this.listeners.values()) total += listening.active;
    for (const listening of this.retired) total += listening.active;
    return total;
  }

  /** Listeners a reload stopped, kept until their open connections end. */
  private retired = new Set<Listening>();

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
    // Rules sharing a listening socket (stream rules chosen by first bytes) come as one group, in config order.
    const wanted = new Map<string, ForwardRule[]>();
    for (const rule of config.rules) {
      const key = listenerKey(rule);
      const group = wanted.get(key);
      if (group === undefined) wanted.set(key, [rule]);
      else group.push(rule);
    }

    const socketsBefore = this.listeningSockets();
    // A port range whose ports changed keeps its listeners (and their connections) for the ports that stay.
    const moved = this.movedRanges(wanted);

    // A bind kept across a change of kind (tcp <-> tcptoudp) needs another listener:
    // stop the old one first, so the new one can take the port (a short gap).
    const replaced = new Map<string, Listening>();
    for (const [key, listening] of this.listeners) {
      const rules = wanted.get(key);
      if (rules !== undefined && kindOf(rules[0]!) !== kindOf(listening.rule)) {
        this.retire(key, listening);
        replaced.set(key, listening);
      }
    }

    const opened = new Map<string, Listening>();
    const prepared: Listening[] = [];
    const fail = async (rules: ForwardRule[], error: unknown): Promise<never> => {
      for (const started of opened.values()) started.stopAccepting();
      for (const listening of prepared) listening.abandon();
      await this.restore(replaced);
      throw new BindError(bindFailure(rules[0]!, error));
    };
    for (const [key, { listening }] of moved) {
      const rules = wanted.get(key)!;
      prepared.push(listening);
      try {
        await listening.prepare(rules);
      } catch (error) {
        await fail(rules, error);
      }
    }
    for (const [key, rules] of wanted) {
      if (this.listeners.has(key) || moved.has(key)) continue;
      const listening = listeningFor(rules, context);
      try {
        await listening.start();
      } catch (error) {
        await fail(rules, error);
      }
      opened.set(key, listening);
    }
    for (const [key, { from, listening }] of moved) {
      this.listeners.delete(from);
      this.listeners.set(key, listening);
    }

    let kept = 0;
    let stopped = 0;
    for (const [key, listening] of this.listeners) {
      const rules = wanted.get(key);
      if (rules !== undefined) {
        listening.update(rules, config.globalAccess);
        kept++;
      } else {
        this.retire(key, listening);
        stopped++;
      }
    }
    for (const [key, listening] of opened) this.listeners.set(key, listening);
    this.pruneRetired();
    const sockets = this.listeningSockets();
    this.admission.holdForListeners(sockets);
    // Opening many ports (a wide range) leaves garbage of its own and of the config's checks: hand its pages back once.
    if (sockets - socketsBefore >= TRIM_AFTER_PORTS) {
      Bun.gc(true);
      Bun.shrink();
    }
    return { started: opened.size - replaced.size, kept: kept + replaced.size, stopped };
  }

  /** Sockets listening now, one per port (a range has many): they hold descriptors connections cannot have. */
  private listeningSockets(): number {
    let total = 0;
    for (const listening of this.listeners.values()) total += listening.ports;
    return total;
  }

  /**
   * Running listener groups that a wanted group with a new key replaces by
   * changing its ports: the same address, transport and kind, and ports in
   * common (a range widened, narrowed or moved; a port that became a range).
   * Each moves to its new key and keeps the sockets of the ports that stay.
   */
  private movedRanges(wanted: Map<string, ForwardRule[]>): Map<string, { from: string; listening: Listening }> {
    const moved = new Map<string, { from: string; listening: Listening }>();
    const taken = new Set<Listening>();
    for (const [key, rules] of wanted) {
      if (this.listeners.has(key)) continue;
      const rule = rules[0]!;
      const family = listenerFamilyKey(rule);
      for (const [from, listening] of this.listeners) {
        if (wanted.has(from) || taken.has(listening)) continue;
        const running = listening.rule;
        if (listenerFamilyKey(running) !== family || kindOf(running) !== kindOf(rule) || !portsMeet(running.bind, rule.bind)) continue;
        moved.set(key, { from, listening });
        taken.add(listening);
        break;
      }
    }
    return moved;
  }

  /** Undo the replacements of a failed apply: the old forwarders listen again. */
  private async restore(replaced: Map<string, Listening>): Promise<void> {
    for (const [key, listening] of replaced) {
      this.retired.delete(listening);
      this.listeners.set(key, listening);
      try {
        await listening.start();
      } catch (error) {
        consola.error(`${listening.rule.at.file}:${listening.rule.at.line}: could not listen again after a failed reload: ${String(error)}`);
      }
    }
  }

  /** Stop listening; the open connections finish on their own. */
  private retire(key: string, listening: Listening): void {
    listening.stopAccepting();
    this.listeners.delete(key);
    if (listening.active > 0) this.retired.add(listening);
  }

  /** Stop accepting on every rule; open connections carry on. */
  stopAccepting(): void {
    for (const listening of this.listeners.values()) listening.stopAccepting();
  }

  /** Shutting down: stop accepting on every rule; quiet connections end at once, on current and removed rules. */
  drain(): void {
    for (const listening of this.listeners.values()) listening.drain();
    for (const listening of this.retired) listening.drain();
  }

  /**
   * An upgrade handed the listening sockets to a new process: UDP rules stop
   * at once, sessions and all. Both processes would otherwise read the shared
   * socket, and every datagram of a new client the old one read would be lost
   * while it drains; a client's next datagram starts a session in the new one.
   */
  closeDatagramRules(): void {
    for (const listening of [...this.listeners.values(), ...this.retired]) if (listening.rule.bind.transport === "udp") listening.closeAll();
    this.pruneRetired();
  }

  /** Close every connection and session still open, on current and removed rules. */
  closeAll(): void {
    for (const listening of this.listeners.values()) listening.closeAll();
    for (const listening of this.retired) listening.closeAll();
    this.pruneRetired();
  }

  private pruneRetired(): void {
    for (const listening of this.retired) if (listening.active === 0) this.retired.delete(listening);
  }
}
