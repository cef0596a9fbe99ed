/**
 * @module Peeking: on a bind whose rules are chosen by what the client sends
 * first, a socket's first bytes are read (at most MAX_PEEK_BYTES, for at most
 * the peek timeout) until they say what they are: a TLS ClientHello and its
 * server name, an HTTP/1.x request head and its Host, an SSH banner,
 * something else, or nothing at all (`silent`). The bytes read are handed on
 * with the answer, to be sent to the chosen backend first; nothing is
 * consumed or changed.
 *
 * Parsing is never repeated per byte: a ClientHello is parsed once its
 * lengths say it may be whole (then again only after a tenth more has come),
 * a request head once its request line ends and again once a blank line
 * ends the head, so a client that trickles its bytes one by one costs a
 * handful of parses, not thousands.
 */
import type { FirstLook } from "../match.ts";
import { parseRequestHead } from "../peek/http-request.ts";
import { MAX_PEEK_BYTES } from "../peek/limits.ts";
import { detectProtocol, type FirstBytes } from "../peek/protocol.ts";
import { parseClientHello } from "../peek/tls-hello.ts";
import { SocketPhase } from "./phases.ts";
import type { StreamSocket } from "./stream-socket.ts";

/** Told what a peek found; `origin` is what the owner gave the peek to carry (where the client came from). */
export interface PeekOwner<Origin> {
  /**
   * The first bytes are known (or the peek timed out, or the client sent its
   * FIN: `ended`): `bytes` are everything read so far, to go first.
   * `bytes` may be a view of the socket's read buffer (see StreamSocket.lendsChunks).
   */
  peeked(socket: StreamSocket<unknown>, look: FirstLook, bytes: Uint8Array, ended: boolean, origin: Origin): void;
  /** The client went away (reset) before anything was chosen, after sending `bytes`. */
  peekAbandoned(socket: StreamSocket<unknown>, bytes: number, origin: Origin): void;
}

/** A TLS record header and a handshake header: the least that tells a ClientHello's length. */
const HELLO_HEADERS = 9;
const NEWLINE = 0x0a;
const NO_BYTES = new Uint8Array(0);

export class Peeker<Origin> extends SocketPhase {
  /** Bytes read, when they came in more than one chunk (the first chunk is looked at where it lies). */
  private buffer: Uint8Array = NO_BYTES;
  private length = 0;
  private kind: FirstBytes | undefined = undefined;
  /** Bytes needed before the next parse is worth it. */
  private parseAt = 0;
  /** HTTP: where the search for a line end goes on, and whether the request line has been parsed. */
  private scanned = 0;
  private requestLineParsed = false;
  private done = false;
  private readonly timer: Timer;

  constructor(
    private readonly owner: PeekOwner<Origin>,
    socket: StreamSocket<unknown>,
    timeoutMs: number,
    private readonly origin: Origin,
  ) {
    super();
    this.timer = setTimeout(() => this.timedOut(socket), timeoutMs);
  }

  override data(socket: StreamSocket<unknown>, chunk: Uint8Array): void {
    if (this.done) return;
    let bytes: Uint8Array;
    if (this.length === 0) {
      // Most clients send their whole ClientHello or request head at once: decided from the chunk itself, no copy.
      bytes = chunk;
    } else {
      bytes = this.append(chunk);
    }
    const look = this.evaluate(bytes);
    if (look !== undefined) {
      this.decide(socket, look, bytes, false);
      return;
    }
    if (bytes === chunk) bytes = this.append(chunk);
    if (this.length >= MAX_PEEK_BYTES) this.decide(socket, { kind: "other", name: undefined }, bytes, false);
  }

  override end(socket: StreamSocket<unknown>): void {
    if (this.done) return;
    // Nothing more will come: what there is decides (nothing at all is a silent client).
    const bytes = this.buffer.subarray(0, this.length);
    this.decide(socket, this.length === 0 ? { kind: "silent", name: undefined } : { kind: "other", name: undefined }, bytes, true);
  }

  override close(socket: StreamSocket<unknown>): void {
    if (this.done) return;
    this.finish();
    this.owner.peekAbandoned(socket, this.length, this.origin);
  }

  private timedOut(socket: StreamSocket<unknown>): void {
    if (this.done) return;
    // A client that said nothing is a server-speaks-first client; one that stalled half way is something else.
    const look: FirstLook = { kind: this.length === 0 ? "silent" : "other", name: undefined };
    this.decide(socket, look, this.buffer.subarray(0, this.length), false);
  }

  private decide(socket: StreamSocket<unknown>, look: FirstLook, bytes: Uint8Array, ended: boolean): void {
    this.finish();
    this.buffer = NO_BYTES;
    this.owner.peeked(socket, look, bytes, ended, this.origin);
  }

  private finish(): void {
    this.done = true;
    clearTimeout(this.timer);
  }

  /** Keep `chunk` after what was read before; the bytes so far. */
  private append(chunk: Uint8Array): Uint8Array {
    const needed = this.length + chunk.length;
    if (needed > this.buffer.length) {
      const grown = new Uint8Array(Math.max(needed, Math.min(2 * this.buffer.length, MAX_PEEK_BYTES), 512));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    this.buffer.set(chunk, this.length);
    this.length = needed;
    return this.buffer.subarray(0, needed);
  }

  /** What `bytes` say, once they say enough; undefined: wait for more. */
  private evaluate(bytes: Uint8Array): FirstLook | undefined {
    this.kind ??= detectProtocol(bytes);
    switch (this.kind) {
      case undefined:
        return undefined;
      case "ssh":
        return { kind: "ssh", name: undefined };
      case "other":
        return { kind: "other", name: undefined };
      case "tls":
        return this.evaluateHello(bytes);
      case "http":
        return this.evaluateRequest(bytes);
    }
  }

  private evaluateHello(bytes: Uint8Array): FirstLook | undefined {
    if (bytes.length < this.parseAt) return undefined;
    const hello = parseClientHello(bytes);
    if (hello.status === "complete") return { kind: "tls", name: hello.serverName };
    if (hello.status === "invalid") return { kind: "other", name: undefined };
    if (bytes.length >= HELLO_HEADERS) {
      // The handshake header's length: the ClientHello cannot be whole before this many bytes have come.
      const declared = ((bytes[6]! << 16) | (bytes[7]! << 8) | bytes[8]!) + HELLO_HEADERS;
      this.parseAt = Math.max(declared, bytes.length + Math.max(5, bytes.length >> 3));
    }
    return undefined;
  }

  private evaluateRequest(bytes: Uint8Array): FirstLook | undefined {
    const newline = bytes.indexOf(NEWLINE, this.scanned);
    this.scanned = bytes.length;
    if (newline === -1) return undefined;
    // The request line (which may name the host) once; then only when the head may have ended.
    if (this.requestLineParsed && !endsHead(bytes, newline)) return undefined;
    this.requestLineParsed = true;
    const head = parseRequestHead(bytes);
    if (head.status === "complete") return { kind: "http", name: head.host };
    if (head.status === "invalid") return { kind: "other", name: undefined };
    return undefined;
  }
}

/** Whether an empty line (`\n\n` or `\n\r\n`) ends at or after the line end at `from`. */
function endsHead(bytes: Uint8Array, from: number): boolean {
  for (let at = bytes.indexOf(NEWLINE, Math.max(0, from - 2)); at !== -1; at = bytes.indexOf(NEWLINE, at + 1)) {
    const previous = bytes[at - 1];
    if (previous === NEWLINE || (previous === 0x0d && bytes[at - 2] === NEWLINE)) return true;
  }
  return false;
}
