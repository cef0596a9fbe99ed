/**
 * @module `oi` as a long-running service: load the config, start the
 * forwarders, the log file, the pid file, the metrics endpoint and the admin
 * server, then react
 * to signals. SIGHUP reloads the config (a bad one is reported and the
 * running one stays) and reopens the log file; SIGTERM and SIGINT turn
 * /readyz to 503, keep accepting for the drain delay (if any), then stop
 * accepting, close each connection as soon as it is quiet (nothing moved for
 * a second, nothing held), let busy ones finish for a grace period, close what
 * remains and exit 0; a second one exits at once.
 */
import type { Server as HttpServer } from "bun";
import { consola } from "consola";
import { formatIssue } from "./config/describe.ts";
import { checkRunningRules, renumbered } from "./config/load.ts";
import type { ConfigSource } from "./config-source.ts";
import { consoleSessionEvents } from "./connection-log.ts";
import { consoleLog } from "./log/console.ts";
import { type Engine, LocalEngine } from "./engine.ts";
import { AdminControl } from "./admin/control.ts";
import { AdminServer, describeAdminAddress, sameAdminAddress } from "./admin/server.ts";
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
import { RecentErrors } from "./admin/recent-errors.ts";
import { TrafficHistory } from "./admin/history.ts";
import type { Config, ConfigIssue, ForwardRule, MetricsAddress, PrivilegeTarget } from "./types.ts";
import { dropPrivileges, newPrivilegedBind, privilegedPortMessage, samePrivilege, unprivilegedPortStart, unwritableAfterDrop } from "./privilege.ts";
import type { ApplySummary } from "./server.ts";
import { WorkerEngine } from "./workers/supervisor.ts";
import { ConfigWatch, watchTrigger } from "./config-watch.ts";

export interface DaemonOptions {
  configPath: string;
  /** Where the config is read from: the file at configPath, or etcd. */
  source: ConfigSource;
  verbose: boolean;
  /** Seconds open connections get to finish after SIGTERM/SIGINT. */
  graceSeconds: number;
  /**
   * Seconds between SIGTERM/SIGINT and the end of accepting, while /readyz
   * already answers 503: time for a load balancer (Kubernetes' endpoints) to
   * stop sending new clients here before the port closes. 0 or undefined: none.
   */
  drainDelaySeconds?: number | undefined;
  version: string;
  /** `--workers N`: overrides the config's `workers`; undefined: as the config says (default 1). */
  workers?: number | undefined;
  /** The pid file to write when the config names none (rinetd's default, when started as rinetd). */
  defaultPidFile?: string | undefined;
  /** `--watch`: reload when the config file or an included file changes, whatever the config's `watch` says. */
  watch?: boolean | undefined;
}

/** How often a shutdown looks whether the last connection has ended. */
const DRAIN_POLL_MS = 100;
/** At exit, how long the log file and the console get to take their last lines. */
const LOG_FLUSH_MS = 1000;

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Read a config, printing its warnings and errors. A file's config comes
 * only without errors; etcd's may come with errors about the keys left out.
 */
export async function loadWithIssues(source: ConfigSource): Promise<{ config: Config | undefined; errors: ConfigIssue[]; files: string[] }> {
  const result = await source.load();
  for (const warning of result.warnings) consola.warn(formatIssue(warning));
  for (const error of result.errors) consola.error(formatIssue(error));
  return { config: result.config, errors: result.errors, files: result.files };
}

/** How a reload (SIGHUP, the API) or a change of rules through the API went. */
export type ApplyOutcome =
  | { ok: true; summary: ApplySummary; active: number }
  /** `status`: 422 for a config refused by its checks, 409 for a bind that failed, 503 while shutting down. */
  | { ok: false; status: number; message: string; errors: ConfigIssue[] };

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
  private adminServer: AdminServer | undefined;
  /** Every rule listens (set once the first apply succeeded; a shutdown clears it). */
  private listening = false;
  /** The config as read from the file; `config` is what runs: this plus the API's rule changes. */
  private fileConfig: Config;
  /** Rules the API put (by name: their forwarding rules, one per bind) or deleted (null), until the next reload from the file. */
  private readonly apiRules = new Map<string, ForwardRule[] | null>();
  /** Reloads and rule changes run one at a time, in order. */
  private queue: Promise<unknown> = Promise.resolve();
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
    this.fileConfig = config;
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
    const events = fanOut([
      consoleSessionEvents(options.verbose),
      this.logSlot,
      this.metrics,
      this.recentErrors,
      ...(this.trim === undefined ? [] : [this.trim]),
    ]);
    this.engine = this.workers > 1 ? new WorkerEngine(this.workers, config, events) : new LocalEngine(config, events);
    this.engine.onFailure?.((reason) => void this.fail(reason));
    this.status = new StatusReporter(this.metrics, this.workers > 1 ? () => this.engine.refresh() : undefined);
  }

  private readonly workers: number;
  private readonly trim: MemoryTrim | undefined;
  /** The last connections that did not end well, for the admin dashboard. */
  readonly recentErrors = new RecentErrors();
  /** The rules' traffic over the last minutes, for the dashboard's charts; sampled while an admin server runs. */
  readonly history = new TrafficHistory(async () => {
    if (this.workers > 1) await this.engine.refresh();
    return this.metrics.snapshot().rules;
  });

  /** Load, bind and serve; exits the process with 1 when the config or a bind fails. */
  static async start(options: DaemonOptions): Promise<Daemon> {
    const { config, files } = await loadWithIssues(options.source);
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
      // Before the rules, so /readyz can say 503 until every rule listens.
      await daemon.startAdmin(config);
      await daemon.engine.apply(config);
      options.source.applied?.();
      await settleUnclaimed();
      daemon.listening = true;
      daemon.startMetrics(config.metrics);
      daemon.status.configure(config.status, config.statsLogInterval);
      // Last: every listener is bound and every file open; what follows runs as the unprivileged user.
      await daemon.dropPrivileges(config);
    } catch (error) {
      consola.error(errorText(error));
      daemon.adminServer?.stop();
      await daemon.engine.closeAll();
      await daemon.releaseFiles();
      await consoleLog.flush(LOG_FLUSH_MS);
      process.exit(1);
    }
    daemon.handleSignals();
    daemon.updateWatch(config, files);
    options.source.follow?.((trigger) => daemon.reload(trigger));
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
      // The new process serves its own metrics endpoint and admin server on the same addresses: free them (a gap in those only).
      this.metricsServer?.stop(true);
      this.metricsServer = undefined;
      this.adminServer?.stop();
      this.adminServer = undefined;
      const successor = await startSuccessor(sockets);
      if ("failed" in successor) {
        consola.error(`upgrade failed: ${successor.failed}; pid ${process.pid} keeps serving`);
        await this.restoreAfterFailedUpgrade();
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

  /** The new process gave up: it may have removed the pid file and held the metrics and admin addresses; take them back. */
  private async restoreAfterFailedUpgrade(): Promise<void> {
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
    try {
      await this.startAdmin(this.config);
    } catch (error) {
      consola.error(errorText(error));
    }
  }

  /** Whom oi runs as since the privilege drop at start; undefined: as started. */
  private runsAs: PrivilegeTarget | undefined;

  /**
   * `user`/`group`: drop to them now that the listeners, the metrics and admin
   * addresses, the log, pid and status files are open. Throws why it could not.
   */
  private async dropPrivileges(config: Config): Promise<void> {
    const target = config.privilege;
    if (target === undefined) return;
    const result = await dropPrivileges(target);
    this.runsAs = target;
    if (!result.dropped) {
      consola.info(`running as user ${target.user} (${target.uid}), group ${target.group} (${target.gid}) already`);
      return;
    }
    consola.info(`dropped privileges: running as user ${target.user} (${target.uid}), group ${target.group} (${target.gid})`);
    for (const warning of unwritableAfterDrop(config)) consola.warn(warning);
  }

  /** After the drop, a reload cannot bind a new port below the kernel's unprivileged start: say so, not EACCES. */
  private checkPrivilegedPorts(config: Config): void {
    if (this.runsAs === undefined) return;
    const start = unprivilegedPortStart();
    const found = newPrivilegedBind(this.config.rules, config.rules, start);
    if (found !== undefined) throw new BindError(privilegedPortMessage(found.rule, found.port, this.runsAs, start));
  }

  /** systemd's STATUS= line: `3 rules listening, 12 connections`. */
  private statusLine(): string {
    const rules = this.config.rules.length;
    const open = this.engine.active;
    return `${rules} rule${rules === 1 ? "" : "s"} listening, ${open} connection${open === 1 ? "" : "s"}`;
  }

  /** Run `task` after every reload or rule change already asked for. */
  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * SIGHUP (or POST /api/v1/reload): re-read the config and apply it; on any
   * failure the running config stays in force. systemd hears RELOADING=1
   * before and READY=1 after, either way.
   */
  reload(trigger = "SIGHUP"): Promise<ApplyOutcome> {
    return this.exclusive(async () => {
      if (this.stopping) return this.reloadNow(trigger);
      this.notifier?.reloading();
      try {
        return await this.reloadNow(trigger);
      } finally {
        if (!this.stopping) this.notifier?.ready(this.statusLine());
      }
    });
  }

  private async reloadNow(trigger: string): Promise<ApplyOutcome> {
    if (this.stopping) return { ok: false, status: 503, message: "shutting down", errors: [] };
    consola.info(`${trigger}: reloading ${this.options.configPath}`);
    // logrotate sends SIGHUP after moving the file away: write to a fresh one.
    this.reopenLogFile();
    // As rinetd-uv does on SIGHUP: backend host names are looked up afresh.
    await this.engine.forgetAddresses();
    const { config, errors, files } = await loadWithIssues(this.options.source);
    // A broken file is watched too (with the files of the config in force), so its fix is seen.
    this.updateWatch(config ?? this.fileConfig, config === undefined ? [...new Set([...this.watchedFiles, ...files])] : files);
    if (config === undefined) {
      consola.error("reload failed: the running configuration stays in force");
      return { ok: false, status: 422, message: "the new configuration has errors: the running configuration stays in force", errors };
    }
    let summary;
    try {
      this.checkPrivilegedPorts(config);
      summary = await this.engine.apply(config);
    } catch (error) {
      if (!(error instanceof BindError)) throw error;
      consola.error(`${error.message}; reload failed: the running configuration stays in force`);
      return { ok: false, status: 409, message: `${error.message}; the running configuration stays in force`, errors: [] };
    }
    this.options.source.applied?.();
    // The file wins over rules changed through the API.
    if (this.apiRules.size > 0) consola.info(`reload: ${this.apiRules.size} rule change(s) made through the admin API replaced by the file's rules`);
    this.apiRules.clear();
    this.fileConfig = config;
    this.switchLogFile(config);
    this.switchPidFile(config);
    this.switchMetrics(config);
    await this.switchAdmin(config);
    this.metrics.reloads++;
    this.status.configure(config.status, config.statsLogInterval);
    // The file shows the reload (and a new path or format) at once, then every interval again.
    void this.status.writeNow();
    this.config = config;
    if (!samePrivilege(this.runsAs, config.privilege)) {
      consola.warn(`user and group are set at start; still ${this.runsAs === undefined ? "as started" : `${this.runsAs.user}:${this.runsAs.group}`} (restart oi to change them)`);
    }
    if (this.options.workers === undefined && (config.workers ?? 1) !== this.workers) {
      consola.warn(`workers ${config.workers ?? 1}: the number of workers is set at start; still ${this.workers}`);
    }
    consola.info(
      `reloaded: ${summary.started} listener(s) started, ${summary.kept} kept, ${summary.stopped} stopped; ${this.engine.active} connection(s) open`,
    );
    return { ok: true, summary, active: this.engine.active };
  }

  /** `--watch` or the config's `watch`: the config's files are watched, and a change reloads as a SIGHUP does. */
  private configWatch: ConfigWatch | undefined;
  /** The files of the last load that the watch follows. */
  private watchedFiles: string[] = [];

  private updateWatch(config: Config, files: string[]): void {
    this.watchedFiles = files;
    // etcd's keys are followed by their source itself: there is no file to watch.
    const wanted = (this.options.watch === true || config.watch === true) && files.length > 0;
    if (!wanted || this.stopping) {
      this.configWatch?.stop();
      this.configWatch = undefined;
      return;
    }
    if (this.configWatch === undefined) {
      this.configWatch = new ConfigWatch((path) => {
        this.reload(watchTrigger(path)).catch((error: unknown) => consola.error(`reload failed: ${errorText(error)}`));
      });
      consola.info(`watch: reloading when ${files.length === 1 ? files[0] : `${files.length} config files (${files.join(", ")})`} change${files.length === 1 ? "s" : ""}`);
    }
    this.configWatch.setFiles(files);
  }

  /** SIGTERM/SIGINT: not ready at once, accept through the drain delay, then close quiet connections, let busy ones finish within the grace period, close the rest and exit 0. */
  async shutdown(signal: string): Promise<void> {
    if (this.stopping) {
      consola.warn(`${signal} again: exiting now`);
      await this.exitNow(0);
    }
    this.stopping = true;
    this.configWatch?.stop();
    this.options.source.stop?.();
    // /readyz answers 503 from here on; the admin server stays up while connections drain.
    this.listening = false;
    // After an upgrade the service goes on in the new process: systemd must not hear that it stops.
    if (!this.handedOver) this.notifier?.stopping(`${signal}: stopping, ${this.engine.active} connection(s) open`);
    // After an upgrade the new process accepts on the same sockets already: nothing to wait for.
    if (!this.handedOver) await this.drainDelay(signal);
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

  /** `--drain-delay`: keep accepting (and serving as usual) while /readyz says 503, so new clients are sent elsewhere first. */
  private async drainDelay(signal: string): Promise<void> {
    const seconds = this.options.drainDelaySeconds ?? 0;
    if (seconds <= 0) return;
    consola.info(`${signal}: not ready (/readyz 503); still accepting for ${seconds}s (--drain-delay), then stopping`);
    const end = Date.now() + seconds * 1000;
    // A second signal exits from its own shutdown call; this loop only has to end.
    while (Date.now() < end && !this.exiting) await Bun.sleep(Math.min(DRAIN_POLL_MS, end - Date.now()));
  }

  private exiting = false;

  private async exitNow(code: number): Promise<never> {
    this.exiting = true;
    this.adminServer?.stop();
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
      this.reload("SIGHUP").catch((error: unknown) => consola.error(`reload failed: ${errorText(error)}`));
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

  /** The running config: the file's, with the rule changes made through the API. */
  get running(): Config {
    return this.config;
  }

  get workerCount(): number {
    return this.workers;
  }

  get forwarding(): Engine {
    return this.engine;
  }

  get counters(): Metrics {
    return this.metrics;
  }

  /** Every rule listens and no shutdown has begun. */
  get ready(): boolean {
    return this.listening && !this.stopping;
  }

  /** Prometheus text, as the metrics endpoint serves it (worker threads asked for their figures first). */
  async metricsText(): Promise<string> {
    if (this.workers === 1) return this.metrics.render();
    await this.engine.refresh();
    return this.metrics.render() + this.engine.extraMetrics();
  }

  /**
   * PUT (rules given) or DELETE (null) of rule `name` through the API: the
   * running config with that change is checked and applied as a reload
   * applies a file (open connections kept); it lasts until the next reload.
   */
  changeRule(name: string, rules: ForwardRule[] | null): Promise<ApplyOutcome> {
    return this.exclusive(async () => {
      if (this.stopping) return { ok: false, status: 503, message: "shutting down", errors: [] };
      const changes = new Map(this.apiRules);
      changes.set(name, rules);
      const candidate = withRuleChanges(this.fileConfig, changes);
      const checked = checkRunningRules(candidate);
      if (checked.length > 0) return { ok: false, status: 422, message: "the rule does not fit the running configuration", errors: checked };
      let summary;
      try {
        this.checkPrivilegedPorts(candidate);
        summary = await this.engine.apply(candidate);
      } catch (error) {
        if (!(error instanceof BindError)) throw error;
        return { ok: false, status: 409, message: error.message, errors: [] };
      }
      this.apiRules.set(name, rules);
      this.config = candidate;
      consola.info(
        `admin API: rule ${name} ${rules === null ? "deleted" : "put"}: ${summary.started} listener(s) started, ${summary.kept} kept, ${summary.stopped} stopped`,
      );
      return { ok: true, summary, active: this.engine.active };
    });
  }

  /** Names of the rules changed through the API (put or deleted) since the last reload from the file. */
  get apiChanged(): ReadonlyMap<string, ForwardRule[] | null> {
    return this.apiRules;
  }

  private async startAdmin(config: Config): Promise<void> {
    const settings = config.admin;
    if (settings?.address === undefined) return;
    const server = new AdminServer(settings, new AdminControl(this));
    try {
      await server.start();
    } catch (error) {
      throw new Error(`${settings.at.file}:${settings.at.line}: cannot serve the admin API on ${describeAdminAddress(settings.address)}: ${errorText(error)}`);
    }
    this.adminServer = server;
    this.history.start();
  }

  /** A reload moves the admin server when its address changed, else gives it the new token and settings. */
  private async switchAdmin(config: Config): Promise<void> {
    if (this.adminServer !== undefined && sameAdminAddress(this.config.admin, config.admin)) {
      if (config.admin !== undefined) this.adminServer.update(config.admin);
      return;
    }
    this.adminServer?.stop(true);
    this.adminServer = undefined;
    // Started again with the new server (the samples kept); stopped for good when the config has none.
    this.history.stop();
    try {
      await this.startAdmin(config);
    } catch (error) {
      consola.error(errorText(error));
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

/** `config` with the API's rule changes: a put rule takes the place of the file's rule of that name (or comes last), a deleted one is left out. */
export function withRuleChanges(config: Config, changes: ReadonlyMap<string, ForwardRule[] | null>): Config {
  const rules: ForwardRule[] = [];
  const placed = new Set<string>();
  for (const rule of config.rules) {
    if (!changes.has(rule.name)) {
      rules.push(rule);
      continue;
    }
    if (placed.has(rule.name)) continue;
    placed.add(rule.name);
    rules.push(...(changes.get(rule.name) ?? []));
  }
  for (const [name, added] of changes) if (!placed.has(name) && added !== null) rules.push(...added);
  // Copies: the checks mark binds (ipv6-only) afresh for this set of rules.
  return { ...config, rules: renumbered(rules) };
}
