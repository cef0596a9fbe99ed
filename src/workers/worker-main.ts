/**
 * @module One forwarding worker thread (`--workers N`): a Server of its own,
 * listening with SO_REUSEPORT beside the other workers, admitting clients
 * against counts shared with them, and reporting everything else (session
 * events, console messages, live figures) to the supervisor in the main
 * thread, which alone writes files and serves metrics. It does what the
 * supervisor asks, in the order asked; it handles no signals.
 */
import { consola, type LogObject } from "consola";
import { Admission } from "../limits.ts";
import { Server } from "../server.ts";
import type { ForwardRule } from "../types.ts";
import { EventBatch } from "./event-batch.ts";
import { configFromWire, type FromWorker, type LiveFigures, type Reply, type RuleRef, rulesServedByAll, type ToWorker } from "./wire.ts";

declare const self: Worker;

const send = (message: FromWorker): void => postMessage(message);

/** Console messages go through the supervisor's console, so lines from every thread stay whole and alike. */
function forwardConsole(): void {
  consola.setReporters([
    {
      log(entry: LogObject) {
        const text = entry.args.map((arg: unknown) => (arg instanceof Error ? arg.message : String(arg))).join(" ");
        const level = entry.type === "warn" || entry.type === "error" || entry.type === "debug" ? entry.type : entry.type === "fatal" ? "error" : "info";
        send({ type: "log", level, text });
      },
    },
  ]);
}

class ForwardingWorker {
  private readonly refs = new WeakMap<ForwardRule, RuleRef>();
  private readonly batch = new EventBatch((rule) => this.refs.get(rule), send);
  private readonly admission: Admission;
  private readonly server: Server;

  constructor(
    private readonly id: number,
    counts: SharedArrayBuffer,
    descriptorBudget: number,
  ) {
    this.admission = new Admission(undefined, descriptorBudget, new Int32Array(counts));
    this.server = new Server(this.batch, this.admission, true);
  }

  async handle(message: ToWorker): Promise<Reply | undefined> {
    switch (message.type) {
      case "init":
        return undefined;
      case "apply": {
        const config = configFromWire(message.config);
        const slots = new Map(message.slots);
        config.rules.forEach((rule, index) => {
          this.refs.set(rule, { generation: message.generation, index, name: rule.name });
          const slot = slots.get(index);
          if (slot !== undefined) this.admission.shareRule(rule, slot);
        });
        // Worker 0 serves every rule; the others only those every worker can listen on.
        const shared = rulesServedByAll(config.rules);
        const mine = this.id === 0 ? config : { ...config, rules: config.rules.filter((rule) => shared.has(rule)) };
        try {
          const summary = await this.server.apply(mine);
          this.admission.maxConnections = config.maxConnections;
          return { type: "reply", request: message.request, ok: true, summary };
        } catch (error) {
          return { type: "reply", request: message.request, ok: false, message: error instanceof Error ? error.message : String(error) };
        }
      }
      case "forget-addresses":
        this.server.backends.forgetAddresses();
        break;
      case "live":
        return { type: "reply", request: message.request, ok: true, live: this.live() };
      case "stop-accepting":
        this.server.stopAccepting();
        break;
      case "drain":
        this.server.drain();
        break;
      case "close-all":
        this.server.closeAll();
        break;
      case "change-backend": {
        const found = this.server.backends.get(message.rule)?.change(message.backend, message.change) ?? false;
        return { type: "reply", request: message.request, ok: true, found };
      }
    }
    return { type: "reply", request: message.request, ok: true };
  }

  /** Events reach the supervisor before the reply that follows them. */
  reply(reply: Reply): void {
    this.batch.flush();
    send(reply);
  }

  private live(): LiveFigures {
    const figures: LiveFigures = { forwarders: [], backends: [], active: this.server.active };
    for (const forwarder of this.server.forwarders()) {
      const ref = this.refs.get(forwarder.rule);
      if (ref === undefined) continue;
      const [bytesIn, bytesOut] = forwarder.bytesInFlight();
      const dropped = forwarder.datagramsDropped?.();
      figures.forwarders.push({ rule: ref, active: forwarder.active, bytesIn, bytesOut, ...(dropped === undefined ? {} : { dropped }) });
    }
    for (const backends of this.server.backends.all) {
      const ref = this.refs.get(backends.rule);
      if (ref === undefined) continue;
      // Plain copies: some of these figures are getters, which messages do not carry.
      const statuses = backends.statuses.map((status) => ({
        name: status.name,
        key: status.key,
        weight: status.weight,
        state: status.state,
        healthy: status.healthy,
        active: status.active,
        consecutiveFailures: status.consecutiveFailures,
        probeFailures: status.probeFailures,
        totalConnections: status.totalConnections,
        totalFailures: status.totalFailures,
        bytesIn: status.bytesIn,
        bytesOut: status.bytesOut,
      }));
      figures.backends.push({ rule: ref, statuses });
    }
    return figures;
  }
}

let worker: ForwardingWorker | undefined;

self.onmessage = (event: MessageEvent<ToWorker>) => {
  const message = event.data;
  if (message.type === "init") {
    forwardConsole();
    worker = new ForwardingWorker(message.id, message.counts, message.descriptorBudget);
    return;
  }
  const current = worker;
  if (current === undefined) return;
  void current.handle(message).then((reply) => {
    if (reply !== undefined) current.reply(reply);
  });
};
