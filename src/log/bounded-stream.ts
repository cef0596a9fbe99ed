/**
 * @module A writer for stdout or stderr that never lets log text pile up:
 * lines the stream has not handed to the kernel count as pending, and a line
 * that would take the pending bytes past a limit is dropped and counted.
 *
 * Why (Bun 1.4.5, checked with a child whose stdout pipe nobody reads): Bun
 * switches a pipe on fd 1 or 2 to O_NONBLOCK at its first use and never
 * blocks on it; what the pipe does not take is buffered in the process
 * without limit (2 million lines of 200 bytes: 900 MB resident), while
 * `writableLength` stays 0. The callback of `write(text, callback)` runs only
 * once the kernel took the text (with an error after EPIPE or ENOSPC), which
 * makes it the one honest measure of what is still queued. A write error
 * without an `error` listener (a reader that went away, stdout on a full
 * disk) would end the process: the listener here keeps it alive.
 */

/** The part of a Node-style writable stream this writer uses. */
export interface LineStream {
  write(text: string, callback: (error?: Error | null) => void): boolean;
  on(event: "error", listener: (error: Error) => void): unknown;
}

export class BoundedStream {
  /** Bytes given to the stream whose write has not completed yet. */
  private pendingBytes = 0;
  private drainWaiters: Array<() => void> = [];

  /** `onDrop` hears of every line lost: dropped here because too much was pending, or failed in the stream. */
  constructor(
    private readonly stream: LineStream,
    private readonly limitBytes: number,
    private readonly onDrop: () => void,
  ) {
    // Failed writes are counted through their callbacks; the event only must not go unheard.
    stream.on("error", () => {});
  }

  get pending(): number {
    return this.pendingBytes;
  }

  /** Queue `text` (one or more whole lines); false when it was dropped. */
  write(text: string): boolean {
    // UTF-16 length: close enough to the byte count for a bound on log text.
    const bytes = text.length;
    if (this.pendingBytes + bytes > this.limitBytes) {
      this.onDrop();
      return false;
    }
    this.pendingBytes += bytes;
    try {
      this.stream.write(text, (error) => this.settled(bytes, error));
    } catch {
      // A stream already closed may throw instead of calling back.
      this.settled(bytes, new Error("stream closed"));
    }
    return true;
  }

  /** Resolves once everything queued reached the kernel, or after `timeoutMs`. */
  async drained(timeoutMs: number): Promise<void> {
    if (this.pendingBytes === 0) return;
    await Promise.race([new Promise<void>((wake) => this.drainWaiters.push(wake)), Bun.sleep(timeoutMs)]);
  }

  private settled(bytes: number, error: Error | null | undefined): void {
    this.pendingBytes -= bytes;
    if (error) this.onDrop();
    if (this.pendingBytes === 0) for (const wake of this.drainWaiters.splice(0)) wake();
  }
}
