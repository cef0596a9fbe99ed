/**
 * @module What the daemon drives to forward: either the forwarders in its
 * own thread (one worker, the default) or worker threads (`--workers N`, see
 * src/workers/). The daemon keeps the log file, the pid file, the metrics
 * endpoint and the signals; the engine starts, updates and stops forwarding.
 */
import { Admission } from "./limits.ts";
import type { BackendChange } from "./backends.ts";
import type { MetricsSources } from "./metrics.ts";

/** What an engine reports to the metrics views (the daemon adds its own log counts). */
export type EngineSources = Pick<MetricsSources, "forwarders" | "listening" | "backends">;
import { type ApplySummary, Server } from "./server.ts";
import type { SessionEvents } from "./session.ts";
import type { Config } from "./types.ts";

/**
 * Where a worker thread's code is. Resolved from this module, which sits in
 * src/ beside cli.ts: in the single binary (`npm run build`, whose entry points
 * are src/cli.ts and src/workers/worker-main.ts) the bundle stands for src/,
 * so the same relative path holds there as in the source tree.
 */
export const WORKER_ENTRY = new URL("./workers/worker-main.ts", import.meta.url).href;

export interface Engine {
  /** Make forwarding match `config`; throws a BindError (and changes nothing) when a listener cannot bind. */
  apply(config: Config): Promise<ApplySummary>;
  /** Backend host names are looked up afresh from now on. */
  forgetAddresses(): Promise<void>;
  /** Shutting down: stop accepting on every rule; quiet connections end at once, busy ones carry on. */
  drain(): Promise<void>;
  /** Close every connection and session still open. */
  closeAll(): Promise<void>;
  /** An upgrade's new process has the listening sockets: UDP rules stop at once (see Server.closeDatagramRules). */
  closeDatagramRules?(): void;
  /** Connections and sessions open now, on current and removed rules. */
  readonly active: number;
  readonly sources: EngineSources;
  /** Bring what `sources` reports up to date before a view is made. */
  refresh(): Promise<void>;
  /** Prometheus text the engine adds after oi's own families ("" for none). */
  extraMetrics(): string;
  /** The admin API changes a backend's state or weight; false when rule `rule` has no backend `backend`. */
  changeBackend(rule: string, backend: string, change: BackendChange): Promise<boolean>;
  /** Called when forwarding broke beyond repair (a worker thread died). */
  onFailure?(handler: (reason: string) => void): void;
}

/** Forwarding in the daemon's own thread. */
export class LocalEngine implements Engine {
  private readonly admission: Admission;
  private readonly server: Server;
  readonly sources: EngineSources;

  constructor(config: Config, events: SessionEvents) {
    this.admission = new Admission(config.maxConnections);
    this.server = new Server(events, this.admission);
    this.sources = {
      forwarders: () => this.server.forwarders(),
      listening: () => this.server.listening,
      backends: () => this.server.backends.all,
    };
  }

  async apply(config: Config): Promise<ApplySummary> {
    const summary = await this.server.apply(config);
    this.admission.maxConnections = config.maxConnections;
    return summary;
  }

  async forgetAddresses(): Promise<void> {
    this.server.backends.forgetAddresses();
  }

  async changeBackend(rule: string, backend: string, change: BackendChange): Promise<boolean> {
    return this.server.backends.get(rule)?.change(backend, change) ?? false;
  }

  async drain(): Promise<void> {
    this.server.drain();
  }

  async closeAll(): Promise<void> {
    this.server.closeAll();
  }

  closeDatagramRules(): void {
    this.server.closeDatagramRules();
  }

  get active(): number {
    return this.server.active;
  }

  async refresh(): Promise<void> {}

  extraMetrics(): string {
    return "";
  }
}
