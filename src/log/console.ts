/**
 * @module The console log: consola's messages as one line each,
 * `2026-02-02T12:00:00Z [INFO] text`, information and debug lines on stdout,
 * warnings and errors on stderr (so stderr stays empty while all is well).
 * Both streams go through a BoundedStream, and the log file reports its own
 * losses here too: log lines that cannot be written in time are dropped and
 * counted, never allowed to hold up forwarding or to fill memory. The counts
 * feed the metric `oi_log_lines_dropped_total{sink}` and a notice on stderr
 * at the first loss and then at most every NOTICE_INTERVAL_MS.
 */
import { consola, type LogObject, LogLevels } from "consola";
import { BoundedStream, type LineStream } from "./bounded-stream.ts";

export type LogSink = "stdout" | "stderr" | "logfile";

/** Text a console stream may hold beyond what its reader has taken: about 2000 connection lines. */
const STREAM_LIMIT_BYTES = 256 * 1024;
const NOTICE_INTERVAL_MS = 10_000;

const LABELS: Record<string, string> = { fatal: "ERROR", error: "ERROR", warn: "WARN", debug: "DEBUG", trace: "DEBUG" };

function argText(arg: unknown): string {
  if (typeof arg === "string") return arg;
  if (arg instanceof Error) return arg.message;
  return Bun.inspect(arg);
}

/** `2026-02-02T12:00:00Z`: UTC to the second, as in the status file. */
export function isoSeconds(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

export function formatConsoleLine(log: Pick<LogObject, "type" | "args" | "date">): string {
  return `${isoSeconds(log.date)} [${LABELS[log.type] ?? "INFO"}] ${log.args.map(argText).join(" ")}\n`;
}

/** Lines lost per sink since start, and the notice that tells about them. */
export class LogDrops {
  readonly counts: Record<LogSink, number> = { stdout: 0, stderr: 0, logfile: 0 };
  private readonly noticed: Record<LogSink, number> = { stdout: 0, stderr: 0, logfile: 0 };
  private timer: Timer | undefined;
  private lastNoticeAt = -Infinity;

  add(sink: LogSink, lines: number): void {
    this.counts[sink] += lines;
    if (this.timer !== undefined) return;
    // Never from inside a write: the notice itself goes through the console log.
    const wait = Math.max(0, this.lastNoticeAt + NOTICE_INTERVAL_MS - Date.now());
    this.timer = setTimeout(() => this.notice(), wait);
    this.timer.unref();
  }

  /** Tell of the lines dropped since the last notice, now (also called at exit, for the last ones). */
  notice(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.lastNoticeAt = Date.now();
    const parts: string[] = [];
    let total = 0;
    for (const sink of Object.keys(this.counts) as LogSink[]) {
      const fresh = this.counts[sink] - this.noticed[sink];
      this.noticed[sink] = this.counts[sink];
      if (fresh === 0) continue;
      total += fresh;
      parts.push(`${sink} ${fresh}`);
    }
    if (total > 0) consola.warn(`log output cannot keep up: ${total} line(s) dropped (${parts.join(", ")}); forwarding goes on`);
  }
}

export class ConsoleLog {
  readonly drops = new LogDrops();
  private stdout: BoundedStream | undefined;
  private stderr: BoundedStream | undefined;

  /** Route consola through the bounded streams; `debug` adds rinetd-uv's `-d` lines. */
  install(debug: boolean): void {
    this.useStreams(process.stdout, process.stderr);
    consola.setReporters([
      {
        log: (log) => {
          (log.level <= LogLevels.warn ? this.stderr : this.stdout)?.write(formatConsoleLine(log));
        },
      },
    ]);
    // consola folds a line repeated within a second into "(repeated N times)", at the cost of a
    // JSON.stringify per line: every connection line counts, and the few repeating warnings pace themselves.
    consola.options.throttle = 0;
    // consola goes quiet when NODE_ENV=test or CI is set; a daemon's log must not depend on that.
    consola.level = debug ? LogLevels.debug : LogLevels.info;
  }

  /** Write the console to these streams from now on (process.stdout and process.stderr unless told otherwise). */
  useStreams(stdout: LineStream, stderr: LineStream): void {
    this.stdout = new BoundedStream(stdout, STREAM_LIMIT_BYTES, () => this.drops.add("stdout", 1));
    this.stderr = new BoundedStream(stderr, STREAM_LIMIT_BYTES, () => this.drops.add("stderr", 1));
  }

  /** Before exit: give both streams up to `timeoutMs` to take what is queued. */
  async flush(timeoutMs: number): Promise<void> {
    await Promise.all([this.stdout?.drained(timeoutMs), this.stderr?.drained(timeoutMs)]);
  }
}

/** The process's console log (one stdout, one stderr). */
export const consoleLog = new ConsoleLog();
