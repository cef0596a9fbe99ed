/**
 * @module `oi` as a long-running service: load the config, start the
 * forwarders, the log file, the pid file and the metrics endpoint, then react
 * to signals. SIGHUP reloads the config (a bad one is reported and the
 * running one stays) and reopens the log file; SIGTERM and SIGINT stop
 * accepting, close each connection as soon as it is quiet (nothing moved for
 * a second, nothing held), let busy ones finish for a grace period, close what
 * remains and exit 0; a second one exits at once.
 */
import type { Server as HttpServer } from "bun";
import { consola } from "consola";
import { formatIssue } from "./config/describe.ts";
import { loadConfig } from "./config/load.ts";
import { consoleSessionEvents } from "./connection-log.ts";
import { consoleLog } from "./log/console.ts";
import { type Engine, LocalEngine } from "./engine.ts";
import { LogFile } from "./log/log-file.ts";
import { MemoryTrim } from "./memory-trim.ts";
import { Metrics, serveMetrics } from "./metrics.ts";
import { PidFile } from "./pid-file.ts";
import { StatusReporter } from "./status.ts";
import { Notifier } from "./systemd/notify.ts";
import { readInheritedSockets, settleUnclaimed } from "./systemd/inherited.ts";
import { handOverSocketFiles } from "./tcp/unix-socket.ts";
import { handedAddresses, listeningSockets, startSuccessor, upgradeCommand, UPGRADED_FROM_ENV } from "./upgrade.ts";
import { BindError } from "./server.ts";
import { fanOut, type SessionEvents } from "./session.ts";
import type { Config, MetricsAddress } from "./types.ts";
import { WorkerEngine } from "./workers/supervisor.ts";

export interface DaemonOptions {
  configPath: string;
  verbose: boolean;
  /** Seconds open connections get to finish after SIGTERM/SIGINT. */
  graceSeconds: number;
  version: string;
  /** `--workers N`: overrides the config's `workers`; undefined: as the config says (default 1). */
  workers?: number | undefined;
  /** The pid file to write when the config names none (rinetd's default, when started as rinetd). */
  defaultPidFile?: string | undefined;
}

/** How often a shutdown looks whether the last connection has ended. */
const DRAIN_POLL_MS = 100;
/** At exit, how long the log file and the console get to take their last lines. */
const LOG_FLUSH_MS = 1000;

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Print a config's warnings and errors; the config when it loaded cleanly. */
export async function loadReporting(path: string): Promise<Config | undefined> {
  const result = await loadConfig(path);
  for (const warning of result.warnings) consola.warn(formatIssue(warning));
  for (const error of result.errors) consola.error(formatIssue(error));
  return result.errors.length === 0 ? result.config : undefined;
}

/** Session events go to whichever log file is current (none, or the one a reload opened). */
class LogFileSlot implements SessionEvents {
  file: LogFile | undefined;
  denied(...args: Parameters<SessionEvents["denied"]>): void {
    this.file?.denied(...args);
  }
  started(): void {}
  ended(record: Parameters<SessionEvents["ended"]>[0]): void {
    this.file?.ended(record);
  }
}

function sameAddress(a: MetricsAddress | undefined, b: MetricsAddress | undefined): boolean {
  return a?.host === b?.host && a?.port === b?.port;
}

export class Daemon {
  private config: Config;
  private readonly engine: Engine;
  private readonly metrics: Metrics;
  private readonly logSlot = new LogFileSlot();
  private pidFile: PidFile | undefined;
  private metricsServer: HttpServer<undefined> | undefined;
  private readonly status: StatusReporter;
  private stopping = false;
  /** systemd's NOTIFY_SOCKET, when set (see systemd/notify.ts). */
  private notifier: Notifier | undefined;
  /** Holds the process up while no rule listens (rinetd waits for a SIGHUP that brings rules). */
  private readonly keepAlive = setInterval(() => {}, 1 << 30);

  private constructor(
    config: Config,
    private readonly options: DaemonOptions,
  ) {
    this.config = config;
    this.metrics = new Metrics(options.version, {
      forwarders: () => this.engine.sources.forwarders(),
      listening: () => this.engine.sources.listening(),
      backends: () => this.engine.sources.backends(),
      logDrops: () => consoleLog.drops.counts,
    });
    // The count is fixed at start: a reload cannot add or remove threads (see README, "Several cores").
    this.workers = options.workers ?? config.workers ?? 1;
    // With one worker the connections live in this thread's heap, which a full collection can shrink after a burst.
    this.trim = this.workers === 1 ? new MemoryTrim() : undefined;
    const events = fanOut([consoleSessionEvents(options.verbose), this.logSlot, this.metrics, ...(this.trim === undefined ? [] : [this.trim])]);
    this.engine = this.workers > 1 ? new WorkerEngine(this.workers, config, events) : new LocalEngine(config, events);
    this.engine.onFailure?.((reason) => void this.fail(reason));
    this.status = new StatusReporter(this.metrics, this.workers > 1 ? () => this.engine.refresh() : undefined);
  }

  private readonly workers: number;
  private readonly trim: MemoryTrim | undefined;

  /** Load, bind and serve; exits the process with 1 when the config or a bind fails. */
  static async start(options: DaemonOptions): Promise<Daemon> {
    const config = await loadReporting(options.configPath);
    if (config === undefined) {
      consola.error(`${options.configPath}: not started`);
      await consoleLog.flush(LOG_FLUSH_MS);
      process.exit(1);
    }
    const daemon = new Daemon(config, options);
    try {
      const inherited = await readInheritedSockets();
      // Worker threads each bind their own socket per port (SO_REUSEPORT); one inherited socket cannot be shared out.
      if (inherited > 0 && daemon.workers > 1) throw new Error(`${inherited} listening socket(s) inherited (LISTEN_FDS): socket activation needs workers 1, not ${daemon.workers}`);
      daemon.openLogFile(config);
      daemon.writePidFile(config);
      await daemon.engine.apply(config);
      await settleUnclaimed();
      daemon.startMetrics(config.metrics);
      daemon.status.configure(config.status, config.statsLogInterval);
    } catch (error) {
      consola.error(errorText(error));
      await daemon.engine.closeAll();
      await daemon.releaseFiles();
      await consoleLog.flush(LOG_FLUSH_MS);
      process.exit(1);
    }
    daemon.handleSignals();
    const count = config.rules.length;
    const threads = daemon.workers > 1 ? ` in ${daemon.workers} workers` : "";
    consola.info(`oi ${options.version}: ${count} rule${count === 1 ? "" : "s"} listening${threads} (${options.configPath}), pid ${process.pid}`);
    await daemon.notifyReady();
    return daemon;
  }

  /**
   * Every rule listens: systemd may go on (READY=1), and its watchdog starts
   * when the unit has one. After an upgrade this process tells systemd it is
   * the service's main process now (MAINPID=).
   */
  private async notifyReady(): Promise<void> {
    const upgradedFrom = process.env[UPGRADED_FROM_ENV];
    delete process.env[UPGRADED_FROM_ENV];
    if (upgradedFrom !== undefined) consola.info(`upgrade: took over the listening sockets of pid ${upgradedFrom}`);
    this.notifier = await Notifier.fromEnvironment();
    if (upgradedFrom !== undefined) this.notifier?.mainPid(process.pid, this.statusLine());
    else this.notifier?.ready(this.statusLine());
    this.notifier?.startWatchdog(() => this.statusLine());
  }

  private upgrading = false;
  /** An upgrade's new process serves the sockets now: at exit, leave the pid file, socket files and status file to it. */
  private handedOver = false;

  /**
   * SIGUSR2: start the program again from its path with its arguments,
   * handing it every listening socket; once it listens, stop accepting and
   * drain as at SIGTERM. If it cannot start, this process carries on.
   */
  async upgrade(): Promise<void> {
    if (this.stopping || this.upgrading) {
      consola.warn(`SIGUSR2: ${this.stopping ? "stopping" : "an upgrade is under way"}; ignored`);
      return;
    }
    if (this.workers > 1) {
      consola.error(`SIGUSR2: upgrades need workers 1 (each of the ${this.workers} workers has its own listening sockets); ignored`);
      return;
    }
    this.upgrading = true;
    try {
      const sockets = await listeningSockets(handedAddresses(this.config.rules));
      if (typeof sockets === "string") {
        consola.error(`upgrade failed: ${sockets}; pid ${process.pid} keeps serving`);
        return;
      }
      consola.info(`SIGUSR2: upgrading: starting ${upgradeCommand()} with ${sockets.length} listening socket(s): ${sockets.map((each) => each.label).join(", ")}`);
      // The new process serves its own metrics endpoint on the same address: free it (a gap in metrics only).
      this.metricsServer?.stop(true);
      this.metricsServer = undefined;
      const successor = await startSuccessor(sockets);
      if ("failed" in successor) {
        consola.error(`upgrade failed: ${successor.failed}; pid ${process.pid} keeps serving`);
        this.restoreAfterFailedUpgrade();
        return;
      }
      consola.info(`upgrade: pid ${successor.pid} listens; pid ${process.pid} stops accepting and drains`);
      this.handedOver = true;
      handOverSocketFiles();
      this.notifier?.stopWatchdog();
      this.notifier?.mainPid(successor.pid, `upgraded: pid ${successor.pid} serves`);
      this.engine.closeDatagramRules?.();
      await this.shutdown("upgrade");
    } finally {
      this.upgrading = false;
    }
  }

  /** The new process gave up: it may have removed the pid file and held the metrics port; take both back. */
  private restoreAfterFailedUpgrade(): void {
    const path = this.pidPath(this.config);
    if (path !== undefined) {
      try {
        this.pidFile = new PidFile(path);
      } catch (error) {
        consola.error(`cannot write pid file ${path}: ${errorText(error)}`);
      }
    }
    try {
      this.startMetrics(this.config.metrics);
    } catch (error) {
      consola.error(errorText(error));
    }
  }

  /** systemd's STATUS= line: `3 rules listening, 12 connections`. */
  private statusLine(): string {
    const rules = this.config.rules.length;
    const open = this.engine.active;
    return `${rules} rule${rules === 1 ? "" : "s"} listening, ${open} connection${open === 1 ? "" : "s"}`;
  }

  /** SIGHUP: re-read the config and apply it; on any failure the running config stays in force. systemd hears RELOADING=1 before and READY=1 after, either way. */
  async reload(): Promise<void> {
    if (this.stopping) return;
    this.notifier?.reloading();
    try {
      await this.reloadConfig();
    } finally {
      if (!this.stopping) this.notifier?.ready(this.statusLine());
    }
  }

  private async reloadConfig(): Promise<void> {
    consola.info(`SIGHUP: reloading ${this.options.configPath}`);
    // logrotate sends SIGHUP after moving the file away: write to a fresh one.
    this.reopenLogFile();
    // As rinetd-uv does on SIGHUP: backend host names are looked up afresh.
    await this.engine.forgetAddresses();
    const config = await loadReporting(this.options.configPath);
    if (config === undefined) {
      consola.error("reload failed: the running configuration stays in force");
      return;
    }
    let summary;
    try {
      summary = await this.engine.apply(config);
    } catch (error) {
      if (!(error instanceof BindError)) throw error;
      consola.error(`${error.message}; reload failed: the running configuration stays in force`);
      return;
    }
    this.switchLogFile(config);
    this.switchPidFile(config);
    this.switchMetrics(config);
    this.metrics.reloads++;
    this.status.configure(config.status, config.statsLogInterval);
    // The file shows the reload (and a new path or format) at once, then every interval again.
    void this.status.writeNow();
    this.config = config;
    if (this.options.workers === undefined && (config.workers ?? 1) !== this.workers) {
      consola.warn(`workers ${config.workers ?? 1}: the number of workers is set at start; still ${this.workers}`);
    }
    consola.info(
      `reloaded: ${summary.started} listener(s) started, ${summary.kept} kept, ${summary.stopped} stopped; ${this.engine.active} connection(s) open`,
    );
  }

  /** SIGTERM/SIGINT: close quiet connections, let busy ones finish within the grace period, then close the rest and exit 0. */
  async shutdown(signal: string): Promise<void> {
    if (this.stopping) {
      consola.warn(`${signal} again: exiting now`);
      await this.exitNow(0);
    }
    this.stopping = true;
    // After an upgrade the service goes on in the new process: systemd must not hear that it stops.
    if (!this.handedOver) this.notifier?.stopping(`${signal}: stopping, ${this.engine.active} connection(s) open`);
    this.status.stop();
    this.metricsServer?.stop(true);
    await this.engine.drain();
    const open = this.engine.active;
    consola.info(
      `${signal}: stopped accepting; ${open} connection(s) open${open > 0 ? `, closing quiet ones now, waiting up to ${this.options.graceSeconds}s for the others` : ""}`,
    );
    const deadline = Date.now() + this.options.graceSeconds * 1000;
    while (this.engine.active > 0 && Date.now() < deadline && !this.exiting) await Bun.sleep(DRAIN_POLL_MS);
    const left = this.engine.active;
    // The grace period doing its job (UDP sessions end only by going idle): not a fault.
    if (left > 0) consola.info(`grace period over: closing ${left} connection(s)`);
    await this.exitNow(0);
  }

  private exiting = false;

  private async exitNow(code: number): Promise<never> {
    this.exiting = true;
    await this.engine.closeAll();
    // The last counts, for a script that reads them after oi stopped (after an upgrade the file is the new process's).
    if (!this.handedOver) await this.status.writeNow();
    // Connections closed just now log their end: give those lines their chance too.
    await this.releaseFiles();
    consoleLog.drops.notice();
    await consoleLog.flush(LOG_FLUSH_MS);
    process.exit(code);
  }

  /** A worker thread died: the others cannot make up for it, so oi stops as a crashed single process would. */
  private async fail(reason: string): Promise<void> {
    consola.error(`${reason}; exiting`);
    this.stopping = true;
    await this.exitNow(1);
  }

  private handleSignals(): void {
    process.on("SIGHUP", () => {
      this.reload().catch((error: unknown) => consola.error(`reload failed: ${errorText(error)}`));
    });
    process.on("SIGTERM", () => void this.shutdown("SIGTERM"));
    process.on("SIGINT", () => void this.shutdown("SIGINT"));
    process.on("SIGUSR2", () => {
      this.upgrade().catch((error: unknown) => consola.error(`upgrade failed: ${errorText(error)}`));
    });
  }

  private async releaseFiles(): Promise<void> {
    clearInterval(this.keepAlive);
    this.trim?.stop();
    const logFile = this.logSlot.file;
    this.logSlot.file = undefined;
    this.pidFile?.remove();
    this.pidFile = undefined;
    await logFile?.close(LOG_FLUSH_MS);
  }

  private newLogFile(path: string, format: Config["logFormat"]): LogFile {
    return new LogFile(path, format, (lines) => consoleLog.drops.add("logfile", lines));
  }

  private openLogFile(config: Config): void {
    if (config.logFile === undefined) return;
    try {
      this.logSlot.file = this.newLogFile(config.logFile, config.logFormat);
    } catch (error) {
      throw new Error(`${config.file}: cannot open log file ${config.logFile}: ${errorText(error)}`);
    }
  }

  private reopenLogFile(): void {
    const file = this.logSlot.file;
    if (file === undefined) return;
    try {
      file.reopen();
    } catch (error) {
      consola.error(`cannot reopen log file ${file.path}: ${errorText(error)}`);
    }
  }

  private switchLogFile(config: Config): void {
    const current = this.logSlot.file;
    if (current !== undefined && current.path === config.logFile) {
      current.setFormat(config.logFormat);
      return;
    }
    try {
      const next = config.logFile === undefined ? undefined : this.newLogFile(config.logFile, config.logFormat);
      void current?.close(LOG_FLUSH_MS);
      this.logSlot.file = next;
    } catch (error) {
      consola.error(`cannot open log file ${config.logFile}: ${errorText(error)}; still logging to ${current?.path ?? "nowhere"}`);
    }
  }

  /** The config's pid file, else the default one (as rinetd writes /var/run/rinetd.pid unless told otherwise). */
  private pidPath(config: Config): string | undefined {
    return config.pidFile ?? this.options.defaultPidFile;
  }

  private writePidFile(config: Config): void {
    const path = this.pidPath(config);
    if (path === undefined) return;
    try {
      this.pidFile = new PidFile(path);
    } catch (error) {
      const reason = `cannot write pid file ${path}: ${errorText(error)}`;
      // A pid file the config asked for must be there; the default one is a convenience, as in rinetd.
      if (config.pidFile !== undefined) throw new Error(`${config.file}: ${reason}`);
      consola.warn(`${reason} (the default; set pidlogfile to choose another)`);
    }
  }

  private switchPidFile(config: Config): void {
    if (this.pidFile?.path === this.pidPath(config)) return;
    this.pidFile?.remove();
    this.pidFile = undefined;
    try {
      this.writePidFile(config);
    } catch (error) {
      consola.error(errorText(error));
    }
  }

  private startMetrics(address: MetricsAddress | undefined): void {
    if (address === undefined) return;
    try {
      const { metrics, engine } = this;
      this.metricsServer =
        this.workers > 1
          ? serveMetrics(address, { render: async () => (await engine.refresh(), metrics.render() + engine.extraMetrics()) })
          : serveMetrics(address, metrics);
    } catch (error) {
      throw new Error(`${this.config.file}: cannot serve metrics on ${address.host}:${address.port}: ${errorText(error)}`);
    }
  }

  private switchMetrics(config: Config): void {
    if (sameAddress(this.metricsServer === undefined ? undefined : this.config.metrics, config.metrics)) return;
    this.metricsServer?.stop(true);
    this.metricsServer = undefined;
    try {
      this.startMetrics(config.metrics);
    } catch (error) {
      consola.error(errorText(error));
    }
  }
}
