/**
 * @module The connection log file (`logfile PATH`, TOML `log_file`). Lines
 * wait in memory and are written in batches, at least once a second, by one
 * asynchronous write at a time, so forwarding never waits on the disk. What
 * waits is bounded (LIMIT_BYTES): when the disk cannot keep up, or a write
 * fails (a full disk), lines are dropped and counted instead of piling up.
 * The file is opened for appending and reopened on SIGHUP, so logrotate can
 * move it away.
 *
 * Bun 1.4.5 facts behind this design (checked): a FileSink on a full disk
 * throws ENOSPC from write() and again from its own background flushes,
 * which end the process; `fs.write` with a callback runs off the event loop
 * (a write blocked on a pipe nobody reads leaves the loop running) and
 * reports ENOSPC to its callback. The descriptor is opened O_NONBLOCK, which
 * changes nothing for a regular file and turns a log "file" that is a pipe
 * nobody reads into EAGAIN (retried a second later) instead of a write that
 * never returns.
 */
import { closeSync, constants, openSync, write } from "node:fs";
import { O_CLOEXEC } from "../libc.ts";
import { type Refusal, refusalWords, type SessionEvents, type SessionRecord } from "../session.ts";
import type { ForwardRule, LogFormat } from "../types.ts";
import { FORMATTERS } from "./format.ts";

const FLUSH_INTERVAL_MS = 1000;
/** A batch this big is written at once, without waiting for the timer. */
const BATCH_BYTES = 64 * 1024;
/** Text that may wait for the disk (about 8000 lines); lines beyond are dropped. */
const LIMIT_BYTES = 1024 * 1024;
/** O_NOFOLLOW: a symbolic link planted at the log's path is refused (ELOOP), not written through as root. */
const OPEN_FLAGS = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NONBLOCK | constants.O_NOFOLLOW | O_CLOEXEC;
/** The kernel's own links to a descriptor (`logfile /dev/stdout` in a container): followed, as nobody can plant them. */
const DESCRIPTOR_LINK = /^\/(dev\/(stdout|stderr|fd\/\d+)|proc\/self\/fd\/\d+)$/;

function openFlags(path: string): number {
  return DESCRIPTOR_LINK.test(path) ? OPEN_FLAGS & ~constants.O_NOFOLLOW : OPEN_FLAGS;
}

/** Lines handed to the kernel together. */
interface Batch {
  data: Buffer;
  offset: number;
  lines: number;
  descriptor: number;
  /** A write call is running (false while a batch waits after EAGAIN). */
  writing: boolean;
}

export class LogFile implements SessionEvents {
  private descriptor: number | undefined;
  private queued: string[] = [];
  private queuedBytes = 0;
  private batch: Batch | undefined;
  /** Descriptors replaced by a reopen, closed once no write uses them. */
  private retired: number[] = [];
  private readonly timer: Timer;
  private format: (record: SessionRecord) => string;
  private idleWaiters: Array<() => void> = [];

  /** Opens `path` for appending; throws (with the OS reason) if it cannot. `onDrop` hears of lost lines. */
  constructor(
    readonly path: string,
    format: LogFormat,
    private readonly onDrop: (lines: number) => void = () => {},
  ) {
    this.format = FORMATTERS[format];
    this.descriptor = openSync(path, openFlags(path), 0o640);
    this.timer = setInterval(() => this.flush(), FLUSH_INTERVAL_MS);
    // The flush timer alone must not keep the process alive.
    this.timer.unref();
  }

  setFormat(format: LogFormat): void {
    this.format = FORMATTERS[format];
  }

  denied(rule: ForwardRule, clientAddress: string, clientPort: number, reason: Refusal): void {
    const now = Date.now();
    this.append({
      rule,
      backend: undefined,
      clientAddress,
      clientPort,
      bytesIn: 0,
      bytesOut: 0,
      startedAt: now,
      endedAt: now,
      result: reason === "denied" ? "denied" : `error: ${refusalWords(reason)}`,
    });
  }

  started(): void {}

  ended(record: SessionRecord): void {
    this.append(record);
  }

  /** After logrotate moved the file: write to a new file at the same path. */
  reopen(): void {
    const next = openSync(this.path, openFlags(this.path), 0o640);
    if (this.descriptor !== undefined) this.retired.push(this.descriptor);
    this.descriptor = next;
    // A batch waiting on the old file goes to the new one.
    if (this.batch !== undefined && !this.batch.writing) this.batch.descriptor = next;
    this.closeRetired();
  }

  /** Start writing what is queued, unless a write is running. */
  flush(): void {
    if (this.batch !== undefined) {
      if (!this.batch.writing) this.writeBatch(this.batch);
      return;
    }
    if (this.queued.length === 0 || this.descriptor === undefined) return;
    const batch: Batch = {
      data: Buffer.from(this.queued.join("")),
      offset: 0,
      lines: this.queued.length,
      descriptor: this.descriptor,
      writing: false,
    };
    this.queued = [];
    this.queuedBytes = 0;
    this.batch = batch;
    this.writeBatch(batch);
  }

  /** Write what is queued, wait up to `timeoutMs` for it, then close; lines still waiting count as dropped. */
  async close(timeoutMs: number): Promise<void> {
    clearInterval(this.timer);
    this.flush();
    if (this.batch !== undefined || this.queued.length > 0) {
      await Promise.race([new Promise<void>((wake) => this.idleWaiters.push(wake)), Bun.sleep(timeoutMs)]);
    }
    const lost = (this.batch?.lines ?? 0) + this.queued.length;
    if (lost > 0) this.onDrop(lost);
    this.queued = [];
    this.batch = undefined;
    if (this.descriptor !== undefined) this.retired.push(this.descriptor);
    this.descriptor = undefined;
    this.closeRetired();
  }

  private append(record: SessionRecord): void {
    if (this.descriptor === undefined) return;
    const line = `${this.format(record)}\n`;
    const waiting = this.queuedBytes + (this.batch === undefined ? 0 : this.batch.data.length - this.batch.offset);
    if (waiting + line.length > LIMIT_BYTES) {
      this.onDrop(1);
      return;
    }
    this.queued.push(line);
    this.queuedBytes += line.length;
    if (this.queuedBytes >= BATCH_BYTES) this.flush();
  }

  private writeBatch(batch: Batch): void {
    batch.writing = true;
    write(batch.descriptor, batch.data, batch.offset, batch.data.length - batch.offset, null, (error, written) => {
      batch.writing = false;
      if (error !== null) {
        // The reader of a pipe is behind: try again on the next tick of the timer.
        if (error.code === "EAGAIN") return;
        this.onDrop(batch.lines);
        this.batchDone();
        return;
      }
      batch.offset += written;
      if (batch.offset < batch.data.length) this.writeBatch(batch);
      else this.batchDone();
    });
  }

  private batchDone(): void {
    this.batch = undefined;
    this.closeRetired();
    if (this.queuedBytes >= BATCH_BYTES || (this.queued.length > 0 && this.idleWaiters.length > 0)) {
      this.flush();
      return;
    }
    if (this.queued.length === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private closeRetired(): void {
    const busy = this.batch?.writing === true ? this.batch.descriptor : undefined;
    this.retired = this.retired.filter((descriptor) => {
      if (descriptor === busy) return true;
      try {
        closeSync(descriptor);
      } catch {
        // Already closed: nothing to release.
      }
      return false;
    });
  }
}
