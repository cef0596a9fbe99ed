/**
 * @module Datagrams on a TCP stream. With `len16` framing each datagram is
 * preceded by its length as a 16-bit big-endian number, so a TCP hop between
 * two `oi` instances keeps every datagram boundary; `FrameReader` cuts such a
 * stream back into datagrams. `StreamQueue` writes datagrams (framed or raw)
 * to a TCP socket, keeping what the kernel did not take, within a bound.
 */

/** The largest payload a 16-bit length can describe. */
export const MAX_FRAME_PAYLOAD = 0xffff;

/**
 * One frame is assembled here before it is written: header and payload in a
 * single write, so they leave in one TCP segment (Nagle is off) and no buffer
 * is allocated per datagram. Writes are synchronous, so one buffer serves the
 * whole process.
 */
const frameScratch = new Uint8Array(2 + MAX_FRAME_PAYLOAD);

/** What a frame reader hands whole datagrams to. */
export interface FrameSink {
  frame(datagram: Uint8Array): void;
}

/** Cuts a `len16` stream into datagrams, whatever the stream's chunking. */
export class FrameReader {
  /** First byte of a length whose second byte has not arrived yet; -1 when none. */
  private headerByte = -1;
  /** A frame whose payload spans chunks, and how much of it has arrived. */
  private partial: Uint8Array | undefined = undefined;
  private filled = 0;

  /** True when the stream stopped inside a frame (a close now would truncate it). */
  get midFrame(): boolean {
    return this.headerByte !== -1 || this.partial !== undefined;
  }

  /**
   * Hand every whole frame of `chunk` to `sink`: frames inside the chunk as
   * views of it (no copy), a frame spanning chunks as its own buffer. False,
   * with nothing more read, at a frame longer than `max` (malformed).
   */
  feed(chunk: Uint8Array, max: number, sink: FrameSink): boolean {
    const end = chunk.length;
    let at = 0;
    while (at < end) {
      const partial = this.partial;
      if (partial !== undefined) {
        const take = Math.min(partial.length - this.filled, end - at);
        partial.set(chunk.subarray(at, at + take), this.filled);
        this.filled += take;
        at += take;
        if (this.filled === partial.length) {
          this.partial = undefined;
          sink.frame(partial);
        }
        continue;
      }
      let length: number;
      if (this.headerByte !== -1) {
        length = (this.headerByte << 8) | (chunk[at] ?? 0);
        this.headerByte = -1;
        at += 1;
      } else if (end - at >= 2) {
        length = ((chunk[at] ?? 0) << 8) | (chunk[at + 1] ?? 0);
        at += 2;
      } else {
        this.headerByte = chunk[at] ?? 0;
        return true;
      }
      if (length > max) return false;
      if (end - at >= length) {
        sink.frame(chunk.subarray(at, at + length));
        at += length;
      } else {
        this.partial = new Uint8Array(length);
        this.filled = 0;
      }
    }
    return true;
  }
}

/** The part of a Bun TCP socket a queue writes to. */
export interface ByteSink {
  write(data: Uint8Array, byteOffset?: number, byteLength?: number): number;
}

export type QueueResult = "sent" | "queued" | "dropped" | "closed";

/**
 * Bytes queued per direction of a session at most while a TCP leg connects
 * or does not drain; datagrams past it are dropped (UDP allows loss) and
 * counted. Also a bound on queued datagrams, so tiny ones cannot cost more
 * memory in objects than in bytes.
 */
export const QUEUE_LIMIT_BYTES = 256 * 1024;
export const QUEUE_LIMIT_DATAGRAMS = 4096;

/**
 * Datagrams on their way to a TCP socket. Written at once when nothing is
 * queued (the common case: nothing kept, nothing allocated); otherwise kept
 * in order, with the first one's written offset, until `flush` on drain.
 */
export class StreamQueue {
  private chunks: Uint8Array[] = [];
  private first = 0;
  private offset = 0;
  private bytes = 0;
  /** Datagrams dropped because the queue was full. */
  dropped = 0;

  constructor(private readonly framed: boolean) {}

  get empty(): boolean {
    return this.first === this.chunks.length;
  }

  /** Send one datagram down `socket` (undefined while it connects), or queue it, or drop it. */
  send(socket: ByteSink | undefined, datagram: Uint8Array): QueueResult {
    if (socket !== undefined && this.empty) {
      return this.framed ? this.sendFramed(socket, datagram) : this.sendRaw(socket, datagram);
    }
    const size = this.framed ? datagram.length + 2 : datagram.length;
    if (size === 0) return "sent";
    const full = this.bytes + size > QUEUE_LIMIT_BYTES || this.chunks.length - this.first >= QUEUE_LIMIT_DATAGRAMS;
    if (full || (this.framed && datagram.length > MAX_FRAME_PAYLOAD)) {
      this.dropped++;
      return "dropped";
    }
    if (this.framed) {
      const frame = new Uint8Array(size);
      frame[0] = datagram.length >> 8;
      frame[1] = datagram.length & 0xff;
      frame.set(datagram, 2);
      this.keep(frame, 0);
    } else {
      // Bun hands each datagram in a buffer of its own: it can be kept as is.
      this.keep(datagram, 0);
    }
    return "queued";
  }

  /**
   * Put `bytes` before everything queued, as they are (never framed): a
   * PROXY header that must lead the stream. Only before anything was
   * written, so no datagram is ever split by it.
   */
  preface(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.offset !== 0) throw new Error("a preface must come before anything is written");
    this.chunks.splice(this.first, 0, bytes);
    this.bytes += bytes.length;
  }

  /** Write what is queued; "queued" when some is still waiting for the next drain. */
  flush(socket: ByteSink): QueueResult {
    while (this.first < this.chunks.length) {
      const chunk = this.chunks[this.first];
      if (chunk === undefined) break;
      const rest = chunk.length - this.offset;
      const written = socket.write(chunk, this.offset, rest);
      if (written < 0) return "closed";
      this.bytes -= written;
      if (written < rest) {
        this.offset += written;
        // A queue that never empties would otherwise grow its array of sent slots forever.
        if (this.first >= QUEUE_LIMIT_DATAGRAMS) {
          this.chunks = this.chunks.slice(this.first);
          this.first = 0;
        }
        return "queued";
      }
      this.chunks[this.first] = EMPTY;
      this.first++;
      this.offset = 0;
    }
    this.chunks.length = 0;
    this.first = 0;
    return "sent";
  }

  private sendRaw(socket: ByteSink, datagram: Uint8Array): QueueResult {
    if (datagram.length === 0) return "sent";
    const written = socket.write(datagram);
    if (written === datagram.length) return "sent";
    if (written < 0) return "closed";
    this.keep(datagram, written);
    return "queued";
  }

  private sendFramed(socket: ByteSink, datagram: Uint8Array): QueueResult {
    const length = datagram.length;
    if (length > MAX_FRAME_PAYLOAD) {
      this.dropped++;
      return "dropped";
    }
    frameScratch[0] = length >> 8;
    frameScratch[1] = length & 0xff;
    frameScratch.set(datagram, 2);
    const size = length + 2;
    const written = socket.write(frameScratch, 0, size);
    if (written === size) return "sent";
    if (written < 0) return "closed";
    // The scratch buffer is reused by the next frame: keep a copy of the tail.
    this.keep(frameScratch.slice(written, size), 0);
    return "queued";
  }

  private keep(chunk: Uint8Array, written: number): void {
    if (this.empty) this.offset = written;
    this.chunks.push(chunk);
    this.bytes += chunk.length - written;
  }
}

const EMPTY = new Uint8Array(0);
