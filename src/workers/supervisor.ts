/**
 * @module `--workers N`: forwarding in N worker threads, driven from the main
 * thread, which keeps the signals, the config, the log file, the pid file,
 * the status file and the metrics endpoint.
 *
 * Why threads (Bun Workers) and not processes: one process keeps one pid,
 * one descriptor table and one set of process figures, as with one worker;
 * the bounds that span all connections (global `maxconn`, the descriptor
 * budget, a rule's `maxconn`) are counts in one SharedArrayBuffer that every
 * worker changes with atomic operations, so they hold exactly, with no
 * message on the path of a connection; and when the process ends, no worker
 * can be left behind. Workers are started once and never restarted.
 *
 * A config is loaded and checked once, here, and sent to every worker. Each
 * worker listens on every plain TCP rule with SO_REUSEPORT, so the kernel
 * spreads clients over them; the rules that cannot share a port (UDP, unix
 * sockets, cross-protocol) or must keep a client on one thread (affinity)
 * are served by worker 0 alone (see `servedByAll`). A reload is applied by
 * every worker; if one cannot bind, those that applied it go back to the
 * running config, so all keep serving the same one.
 */
import { bindKey } from "../config/validate.ts";
import { routeKey } from "../tcp/bind.ts";
import { Admission, computeDescriptorBudget, FIRST_RULE_SLOT } from "../limits.ts";
import type { EngineSources } from "../engine.ts";
import type { BackendFigures, ForwarderFigures } from "../metrics.ts";
import { BindError, type ApplySummary } from "../server.ts";
import type { SessionEvents } from "../session.ts";
import type { Config } from "../types.ts";
import type { Engine } from "../engine.ts";
import { consola } from "consola";
import type { BackendStatus } from "../balance/pool.ts";
import type { BackendChange } from "../backends.ts";
import { RuleTable } from "./rule-table.ts";
import { configToWire, type LiveFigures, type Notice, type Reply, rulesServedByAll, type WireConfig, type WireEvent } from "./wire.ts";
import { WorkerLink } from "./worker-link.ts";

/** Rules (by bind) whose `maxconn` is counted across workers, over the life of the process. */
const RULE_SLOTS = 65_536;
/** A worker that does not answer a shutdown's last request within this is left to the process exit. */
const CLOSE_WAIT_MS = 2000;

interface Applied {
  generation: number;
  config: WireConfig;
  slots: Array<[number, number]>;
}

function failureOf(replies: Reply[]): string | undefined {
  for (const reply of replies) if (!reply.ok) return reply.message;
  return undefined;
}

/** Several workers' figures for one backend as one: counts add up; in service only when every worker has it in service. */
function mergeStatuses(sets: BackendStatus[][]): BackendStatus[] {
  const first = sets[0] ?? [];
  return first.map((status, index) => {
    const all = sets.map((set) => set[index]).filter((each): each is BackendStatus => each !== undefined);
    const total = (pick: (each: BackendStatus) => number) => all.reduce((sum, each) => sum + pick(each), 0);
    return {
      ...status,
      healthy: all.every((each) => each.healthy),
      active: total((each) => each.active),
      consecutiveFailures: Math.max(...all.map((each) => each.consecutiveFailures)),
      probeFailures: Math.max(...all.map((each) => each.probeFailures)),
      totalConnections: total((each) => each.totalConnections),
      totalFailures: total((each) => each.totalFailures),
      bytesIn: total((each) => each.bytesIn),
      bytesOut: total((each) => each.bytesOut),
    };
  });
}

export class WorkerEngine implements Engine {
  private readonly links: WorkerLink[];
  /** The supervisor's view of the shared counts: how many connections are open, for the log. */
  private readonly admission: Admission;
  private readonly rules = new RuleTable();
  private readonly slots = new Map<string, number>();
  private nextSlot = FIRST_RULE_SLOT;
  private slotsExhausted = false;
  private generation = 0;
  private applied: Applied | undefined;
  private live: LiveFigures[] = [];
  /** Connections and sessions each worker started, for `oi_worker_connections_total`. */
  private readonly startedBy: number[];
  private failure: ((reason: string) => void) | undefined;
  private closing = false;
  readonly sources: EngineSources;

  constructor(
    count: number,
    config: Config,
    private readonly events: SessionEvents,
  ) {
    const counts = new SharedArrayBuffer((FIRST_RULE_SLOT + RULE_SLOTS) * Int32Array.BYTES_PER_ELEMENT);
    const descriptorBudget = computeDescriptorBudget();
    this.admission = new Admission(config.maxConnections, descriptorBudget, new Int32Array(counts));
    this.startedBy = new Array<number>(count).fill(0);
    const handlers = {
      notice: (id: number, notice: Notice) => this.notice(id, notice),
      died: (id: number, reason: string) => {
        if (!this.closing) this.failure?.(`worker ${id} stopped: ${reason}`);
      },
    };
    this.links = Array.from({ length: count }, (_, id) => new WorkerLink(id, { counts, descriptorBudget }, handlers));
    this.sources = {
      forwarders: () => this.forwarderFigures(),
      // Each rule listens once per worker that serves it; the status file counts rules listening, as with one.
      listening: () => this.applied?.config.rules.length ?? 0,
      backends: () => this.backendFigures(),
    };
  }

  onFailure(handler: (reason: string) => void): void {
    this.failure = handler;
  }

  async apply(config: Config): Promise<ApplySummary> {
    const generation = ++this.generation;
    const next: Applied = { generation, config: configToWire(config), slots: this.slotsFor(config) };
    this.rules.add(generation, config.rules);
    const replies = await Promise.all(this.links.map((link) => link.request({ type: "apply", ...next })));
    const failure = failureOf(replies);
    if (failure !== undefined) {
      // Every worker must serve one config: the ones that took the new one go back to the running one.
      const took = this.links.filter((_, index) => replies[index]?.ok === true);
      const previous = this.applied;
      await Promise.all(took.map((link) => link.request(previous === undefined ? { type: "stop-accepting" } : { type: "apply", ...previous })));
      this.rules.settle(previous?.generation ?? 0);
      throw new BindError(failure);
    }
    this.applied = next;
    this.rules.settle(generation);
    const first = replies[0];
    return first?.ok === true && first.summary !== undefined ? first.summary : { started: 0, kept: 0, stopped: 0 };
  }

  async changeBackend(rule: string, backend: string, change: BackendChange): Promise<boolean> {
    const replies = await Promise.all(this.links.map((link) => link.request({ type: "change-backend", rule, backend, change })));
    // Some rules run in worker 0 only (see worker-main): the backend exists when any worker has it.
    return replies.some((reply) => reply.ok && reply.found === true);
  }

  async forgetAddresses(): Promise<void> {
    await Promise.all(this.links.map((link) => link.request({ type: "forget-addresses" })));
  }

  async drain(): Promise<void> {
    await Promise.all(this.links.map((link) => link.request({ type: "drain" })));
  }

  async closeAll(): Promise<void> {
    this.closing = true;
    const closed = Promise.all(this.links.map((link) => link.request({ type: "close-all" })));
    await Promise.race([closed, Bun.sleep(CLOSE_WAIT_MS)]);
  }

  get active(): number {
    return this.admission.open;
  }

  async refresh(): Promise<void> {
    const replies = await Promise.all(this.links.map((link) => link.request({ type: "live" })));
    this.live = replies.flatMap((reply) => (reply.ok && reply.live !== undefined ? [reply.live] : []));
  }

  extraMetrics(): string {
    const lines = [
      "# HELP oi_worker_connections_total Connections (TCP) or sessions (UDP) each worker thread accepted.",
      "# TYPE oi_worker_connections_total counter",
      ...this.startedBy.map((count, id) => `oi_worker_connections_total{worker="${id}"} ${count}`),
    ];
    return `${lines.join("\n")}\n`;
  }

  /** A per-rule count for every rule all workers serve, so its `maxconn` holds across them. */
  private slotsFor(config: Config): Array<[number, number]> {
    const slots: Array<[number, number]> = [];
    const shared = rulesServedByAll(config.rules);
    config.rules.forEach((rule, index) => {
      if (!shared.has(rule)) return;
      // Rules sharing a bind (chosen by first bytes) each have their own maxconn.
      const key = `${bindKey(rule.bind)} ${routeKey(rule)}`;
      let slot = this.slots.get(key);
      if (slot === undefined && this.nextSlot < FIRST_RULE_SLOT + RULE_SLOTS) {
        slot = this.nextSlot++;
        this.slots.set(key, slot);
      }
      if (slot !== undefined) slots.push([index, slot]);
      else if (!this.slotsExhausted) {
        this.slotsExhausted = true;
        consola.warn(`more than ${RULE_SLOTS} different binds since start: maxconn of new ones is counted per worker`);
      }
    });
    return slots;
  }

  private notice(id: number, notice: Notice): void {
    switch (notice.type) {
      case "events":
        for (const event of notice.events) this.deliver(id, event);
        return;
      case "log":
        consola[notice.level](notice.text);
        return;
    }
  }

  private deliver(worker: number, event: WireEvent): void {
    const rule = this.rules.resolve(event.rule);
    if (rule === undefined) return;
    switch (event.kind) {
      case "started":
        this.rules.opened(event.rule);
        this.startedBy[worker] = (this.startedBy[worker] ?? 0) + 1;
        this.events.started(rule, event.offset);
        return;
      case "denied":
        this.events.denied(rule, event.address, event.port, event.reason);
        return;
      case "ended": {
        const { kind: _kind, rule: ref, ...record } = event;
        this.events.ended({ ...record, rule });
        this.rules.closed(ref);
        return;
      }
    }
  }

  private forwarderFigures(): ForwarderFigures[] {
    const figures: ForwarderFigures[] = [];
    for (const live of this.live) {
      for (const forwarder of live.forwarders) {
        const rule = this.rules.resolve(forwarder.rule);
        if (rule === undefined) continue;
        const inFlight: [number, number] = [forwarder.bytesIn, forwarder.bytesOut];
        const dropped = forwarder.dropped;
        figures.push({ rule, active: forwarder.active, bytesInFlight: () => inFlight, ...(dropped === undefined ? {} : { datagramsDropped: () => dropped }) });
      }
    }
    return figures;
  }

  private backendFigures(): BackendFigures[] {
    const byName = new Map<string, { rule: Config["rules"][number]; sets: BackendStatus[][] }>();
    for (const live of this.live) {
      for (const backends of live.backends) {
        const rule = this.rules.resolve(backends.rule);
        if (rule === undefined) continue;
        const entry = byName.get(rule.name) ?? { rule, sets: [] };
        entry.sets.push(backends.statuses);
        byName.set(rule.name, entry);
      }
    }
    return [...byName.values()].map(({ rule, sets }) => ({ rule, statuses: mergeStatuses(sets) }));
  }
}
