/**
 * @module The connection log file (`logfile PATH`, TOML `log_file`). Lines go
 * into Bun's buffered FileSink and reach the disk at least once a second and
 * at exit, so logging never waits on the disk while forwarding. The file is
 * opened for appending and reopened on SIGHUP, so logrotate can move it away.
 */
import { closeSync, openSync } from "node:fs";
import type { FileSink } from "bun";
import type { SessionEvents, SessionRecord } from "../session.ts";
import type { ForwardRule, LogFormat } from "../types.ts";
import { FORMATTERS } from "./format.ts";

const FLUSH_INTERVAL_MS = 1000;
/** Lines are buffered up to this many bytes between flushes. */
const BUFFER_BYTES = 64 * 1024;

export class LogFile implements SessionEvents {
  private sink: FileSink | undefined;
  private descriptor: number | undefined;
  private readonly timer: Timer;
  private format: (record: SessionRecord) => string;

  /** Opens `path` for appending; throws (with the OS reason) if it cannot. */
  constructor(
    readonly path: string,
    format: LogFormat,
  ) {
    this.format = FORMATTERS[format];
    this.open();
    this.timer = setInterval(() => this.flush(), FLUSH_INTERVAL_MS);
    // The flush timer alone must not keep the process alive.
    this.timer.unref();
  }

  setFormat(format: LogFormat): void {
    this.format = FORMATTERS[format];
  }

  denied(rule: ForwardRule, clientAddress: string, clientPort: number, reason: "denied" | "limit"): void {
    const now = Date.now();
    this.write({
      rule,
      backend: undefined,
      clientAddress,
      clientPort,
      bytesIn: 0,
      bytesOut: 0,
      startedAt: now,
      endedAt: now,
      result: reason === "limit" ? "error: connection limit" : "denied",
    });
  }

  started(): void {}

  ended(record: SessionRecord): void {
    this.write(record);
  }

  /** After logrotate moved the file: write to a new file at the same path. */
  reopen(): void {
    this.closeSink();
    this.open();
  }

  flush(): void {
    void this.sink?.flush();
  }

  close(): void {
    clearInterval(this.timer);
    this.closeSink();
  }

  private write(record: SessionRecord): void {
    this.sink?.write(`${this.format(record)}\n`);
  }

  private open(): void {
    // FileSink has no append mode of its own: hand it a descriptor opened for appending.
    this.descriptor = openSync(this.path, "a", 0o640);
    this.sink = Bun.file(this.descriptor).writer({ highWaterMark: BUFFER_BYTES });
  }

  private closeSink(): void {
    if (this.sink !== undefined) {
      void this.sink.flush();
      void this.sink.end();
      this.sink = undefined;
    }
    if (this.descriptor !== undefined) {
      // FileSink.end() leaves a descriptor it was given open: closing it is ours to do.
      closeSync(this.descriptor);
      this.descriptor = undefined;
    }
  }
}
