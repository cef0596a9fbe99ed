/**
 * @module The TCP forwarding state machine: one `Relay` per forwarded
 * connection, holding its two legs (client and upstream). The socket handlers
 * here are shared by every socket of every rule; all per-connection state
 * lives on `socket.data` (a `Leg`), none in closures.
 *
 * Bun's `write()` is a single non-blocking send that returns how much the
 * kernel took and drops the rest, so the unwritten tail is ours to keep. The
 * chunk Bun hands to `data` is a fresh copy of exactly its length, so the
 * relay keeps that very chunk plus an offset as its only buffer: nothing is
 * allocated or copied per chunk. Direct sockets lend a view of their read
 * buffer instead (no copy at all when the write takes it whole); only a tail
 * that must wait is copied then. While a tail is held, the leg it came from is
 * paused (reading stops at the kernel, so the sender is throttled by TCP
 * itself); `drain` on the other side writes the tail and resumes it. Memory
 * per connection is therefore bounded by one read chunk per direction.
 */
import type { StreamHandlers, StreamSocket } from "./stream-socket.ts";
import type { DialPlan } from "../backends.ts";
import type { SessionResult } from "../session.ts";
import type { ForwardRule } from "../types.ts";
import type { SpliceEngine, SpliceHandle, SplicedOwner } from "./splice/engine.ts";
import type { SpliceChoice } from "./splice/choice.ts";
import { type ClientHold, NO_CLIENT_HOLD } from "../client-limits.ts";
import { type Libc, SIOCOUTQ } from "../libc.ts";

export type Side = "client" | "upstream";

/** Client bytes kept in memory while its backend connects, before the client is paused. */
export const PRECONNECT_HOLD_BYTES = 64 * 1024;

/** What the owner of relays (one forwarding rule) is told. */
export interface RelayOwner {
  relayEnded(relay: Relay): void;
  /** Count `descriptors` more for `relay` (its move to the splice worker); false when the budget has no room. */
  reserveDescriptors(relay: Relay, descriptors: number): boolean;
  returnDescriptors(relay: Relay, descriptors: number): void;
}

/**
 * Descriptors a relay holds beyond its two sockets once spliced: the worker's
 * two duplicates of the sockets and two pipes of two ends each, less Bun's
 * two sockets, which are closed at the handoff.
 */
export const SPLICE_EXTRA_DESCRIPTORS = 4;

/**
 * A bandwidth limit on one direction of a relay, as the relay sees it: how
 * many bytes may move now, that some did, and a call back (flush of the leg)
 * once more may. The policy (token buckets, their timers, turns among the
 * connections that share a limit) lives in src/rate/.
 */
export interface LegBudget {
  /** Bytes of `wanted` that may be written now; 0 while waiting. */
  allowance(wanted: number): number;
  /** `bytes` were written. */
  spend(bytes: number): void;
  /** The budget held back `wanted` bytes: flush the leg when it allows more. */
  waitForRefill(wanted: number): void;
}

/** A read this large is taken as a sign of bulk transfer (see pump). */
const SPLICE_BULK_READ_BYTES = 64 * 1024;

export class Leg {
  socket: StreamSocket<Leg> | undefined = undefined;
  /** The leg this leg's bytes are written to. */
  peer: Leg;
  /** This leg's remote sent its FIN (or went away cleanly): nothing more will be read. */
  eof = false;
  /** We passed a FIN to this leg's remote (shutdown of our write side). */
  shut = false;
  closed = false;
  /** Reading from this leg is paused (its bytes wait in the kernel). */
  paused = false;
  /**
   * Bytes read from this leg that the peer's kernel has not taken yet: the
   * chunk exactly as Bun handed it, and how much of it is already written.
   */
  pending: Uint8Array | undefined = undefined;
  pendingOffset = 0;
  /** Bytes read from this leg's remote. */
  bytesRead = 0;
  /** The bandwidth limit on bytes read from this leg; undefined: unlimited (and never asked). */
  budget: LegBudget | undefined = undefined;
  /** Last error Bun reported on this socket, for the close that follows. */
  error: Error | undefined = undefined;

  constructor(
    readonly relay: Relay,
    readonly side: Side,
  ) {
    // Legs are created in pairs by the Relay, which links them.
    this.peer = this;
  }
}

export class Relay implements SplicedOwner {
  readonly client: Leg;
  readonly upstream: Leg;
  readonly startedAt = Date.now();
  /** The connect attempt in progress (an object of the forwarder's); an older attempt that completes late is dropped. */
  attempt: object | undefined = undefined;
  /** How the last connect attempt failed: the result when no target is left. */
  lastFailure: SessionResult = "refused";
  /** Where the client connected to (for a PROXY header to the backend). */
  destination: { address: string; port: number } | undefined = undefined;
  result: SessionResult | undefined = undefined;
  /** For the idle sweep: bytes moved when it last looked, and when they last changed. */
  bytesAtLastSweep = 0;
  lastActivity = Date.now();
  /** Descriptors admitted for this relay, released when it ends. */
  descriptors = 2;
  /** Its client's hold on the rule's per-client limits, released when it ends. */
  clientHold: ClientHold = NO_CLIENT_HOLD;
  /** Set when the relay may move to the splice worker (once it holds nothing in JS); undefined: plain for good. */
  splice: SpliceChoice | undefined = undefined;
  /** The engine the relay moved to. */
  spliceEngine: SpliceEngine | undefined = undefined;
  /** The relay is in the splice worker's hands. */
  spliced: SpliceHandle | undefined = undefined;
  /** The bandwidth budgets of its legs (the owner's), released when it ends; undefined: unlimited. */
  budgets: { close(): void } | undefined = undefined;
  /** Bytes per second, each way, the splice worker holds the relay to once it moves there (its own limit); 0: none. */
  spliceRate = 0;
  private reported = false;

  constructor(
    readonly owner: RelayOwner,
    /** The rule as it was at accept: a reload does not change an open connection. */
    readonly rule: ForwardRule,
    clientSocket: StreamSocket<Leg>,
    readonly clientAddress: string,
    readonly clientPort: number,
    /** Which backends (and addresses) this connection tries, in order. */
    readonly dial: DialPlan,
  ) {
    this.client = new Leg(this, "client");
    this.upstream = new Leg(this, "upstream");
    this.client.peer = this.upstream;
    this.upstream.peer = this.client;
    this.client.socket = clientSocket;
    clientSocket.data = this.client;
  }

  /** Bytes received from the client. */
  get bytesIn(): number {
    const spliced = this.spliced;
    return spliced === undefined ? this.client.bytesRead : this.client.bytesRead + this.spliceEngine!.bytesIn(spliced);
  }

  /** Bytes received from the backend (and so sent towards the client). */
  get bytesOut(): number {
    const spliced = this.spliced;
    return spliced === undefined ? this.upstream.bytesRead : this.upstream.bytesRead + this.spliceEngine!.bytesOut(spliced);
  }

  /** The splice worker saw both FINs, or a reset. */
  splicedEnded(result: SessionResult): void {
    if (this.ended) return;
    this.result = result;
    this.report();
  }

  get ended(): boolean {
    return this.result !== undefined;
  }

  /** Called once both legs are closed, or once after an abort. */
  report(): void {
    if (this.reported) return;
    this.reported = true;
    const spliced = this.spliced;
    if (spliced !== undefined) {
      // Final counts: what was read in JS before the handoff plus what the worker moved.
      this.client.bytesRead = this.bytesIn;
      this.upstream.bytesRead = this.bytesOut;
      this.spliced = undefined;
    }
    this.result ??= "done";
    this.owner.relayEnded(this);
  }
}

/**
 * Each pause or resume costs Bun epoll_ctl calls (and a spurious writable
 * event): they are only issued when the state really changes.
 */
function pauseLeg(leg: Leg): void {
  if (leg.paused || leg.socket === undefined) return;
  leg.paused = true;
  leg.socket.pause();
}

function resumeLeg(leg: Leg): void {
  if (!leg.paused || leg.socket === undefined) return;
  leg.paused = false;
  leg.socket.resume();
}

/** Data read from `src`: pass it to the peer, or keep the tail and pause `src`. */
function pump(src: Leg, chunk: Uint8Array): void {
  src.bytesRead += chunk.length;
  const out = src.peer.socket;
  if (out === undefined) {
    holdUntilConnected(src, chunk);
    return;
  }
  if (src.pending !== undefined) {
    hold(src, chunk);
    return;
  }
  if (src.budget !== undefined) {
    pumpLimited(src, out, chunk, src.budget);
    return;
  }
  const written = out.write(chunk);
  if (written === chunk.length) {
    // `splice auto`: a relay that turns out to carry bulk moves to the splice
    // worker. A large read means the sender keeps ahead of the relay; chatty
    // small-message traffic never reads that much at once and stays here,
    // where a message costs no more calls.
    if (src.relay.splice !== undefined && chunk.length >= SPLICE_BULK_READ_BYTES) trySplice(src.relay);
    return;
  }
  if (written < 0) {
    // The peer socket is already shut or closed: these bytes cannot be delivered.
    abort(src.relay, "error: write failed");
    return;
  }
  keepTail(src, chunk, written);
  pauseLeg(src);
}

/** Keep what the peer did not take of `chunk` (all but its first `written` bytes) until it can. */
function keepTail(src: Leg, chunk: Uint8Array, written: number): void {
  if (src.socket?.lendsChunks === true) {
    // A view of the read buffer the next read reuses: keep a copy of the tail.
    src.pending = chunk.slice(written);
    src.pendingOffset = 0;
  } else {
    src.pending = chunk;
    src.pendingOffset = written;
  }
}

/**
 * pump under a bandwidth limit: write what the budget allows now; the tail
 * is kept as any tail is, and `src` paused (TCP slows its sender), until the
 * peer drains (the kernel took less) or the budget refills (it allowed less).
 */
function pumpLimited(src: Leg, out: StreamSocket<Leg>, chunk: Uint8Array, budget: LegBudget): void {
  const allowed = budget.allowance(chunk.length);
  const written = allowed === 0 ? 0 : out.write(chunk, 0, allowed);
  if (written < 0) {
    abort(src.relay, "error: write failed");
    return;
  }
  budget.spend(written);
  if (written === chunk.length) {
    // As in pump: bulk moves to the splice worker, which holds a relay to its own rate (see Relay.spliceRate).
    if (src.relay.splice !== undefined && chunk.length >= SPLICE_BULK_READ_BYTES) trySplice(src.relay);
    return;
  }
  keepTail(src, chunk, written);
  pauseLeg(src);
  if (written === allowed) budget.waitForRefill(chunk.length - written);
}

/** `chunk` as `leg` may keep it past the data handler: a lent chunk (see StreamSocket.lendsChunks) is copied. */
function kept(leg: Leg, chunk: Uint8Array): Uint8Array {
  return leg.socket?.lendsChunks === true ? chunk.slice() : chunk;
}

/**
 * Keep `chunk` until the peer can take it. The common case (nothing held yet)
 * keeps Bun's chunk as is; only data arriving while a tail is already held
 * (possible before the upstream connects) is merged, a rare path that copies.
 */
function hold(src: Leg, chunk: Uint8Array): void {
  const held = src.pending;
  if (held === undefined) {
    src.pending = kept(src, chunk);
    src.pendingOffset = 0;
  } else {
    const rest = held.length - src.pendingOffset;
    const merged = new Uint8Array(rest + chunk.length);
    merged.set(held.subarray(src.pendingOffset), 0);
    merged.set(chunk, rest);
    src.pending = merged;
    src.pendingOffset = 0;
  }
  pauseLeg(src);
}

/**
 * Bytes a client sends before its backend answers. Pausing the client here
 * and resuming it at connect costs Bun about six epoll_ctl and setsockopt
 * calls per connection (and a spurious writable event), a large share of
 * connection setup; so the first bytes (a request, typically) are kept in
 * memory, and the client is paused only once it has sent more than
 * `PRECONNECT_HOLD_BYTES`, which bounds that memory.
 */
export function holdUntilConnected(src: Leg, chunk: Uint8Array): void {
  const held = src.pending;
  if (held === undefined) {
    src.pending = kept(src, chunk);
    src.pendingOffset = 0;
  } else {
    const merged = new Uint8Array(held.length - src.pendingOffset + chunk.length);
    merged.set(held.subarray(src.pendingOffset), 0);
    merged.set(chunk, held.length - src.pendingOffset);
    src.pending = merged;
    src.pendingOffset = 0;
  }
  if (src.pending.length > PRECONNECT_HOLD_BYTES) pauseLeg(src);
}

/** Put `bytes` before anything `src` holds, to be written first (not counted as read from `src`). */
function putFirst(src: Leg, bytes: Uint8Array): void {
  const held = src.pending;
  if (held === undefined) {
    src.pending = bytes;
  } else {
    const rest = held.subarray(src.pendingOffset);
    const merged = new Uint8Array(bytes.length + rest.length);
    merged.set(bytes, 0);
    merged.set(rest, bytes.length);
    src.pending = merged;
  }
  src.pendingOffset = 0;
}

/** The peer of `src` may be writable again (or its budget refilled): write what `src` holds, then resume `src`. */
export function flush(src: Leg): void {
  const held = src.pending;
  const out = src.peer.socket;
  if (held === undefined || out === undefined) return;
  const rest = held.length - src.pendingOffset;
  if (src.budget !== undefined) {
    flushLimited(src, out, held, rest, src.budget);
    return;
  }
  const written = out.write(held, src.pendingOffset, rest);
  if (written < 0) {
    abort(src.relay, "error: write failed");
    return;
  }
  if (written < rest) {
    src.pendingOffset += written;
    return;
  }
  flushed(src);
}

/** flush under a bandwidth limit: write what the budget allows of the `rest` bytes held (see pumpLimited). */
function flushLimited(src: Leg, out: StreamSocket<Leg>, held: Uint8Array, rest: number, budget: LegBudget): void {
  const allowed = budget.allowance(rest);
  const written = allowed === 0 ? 0 : out.write(held, src.pendingOffset, allowed);
  if (written < 0) {
    abort(src.relay, "error: write failed");
    return;
  }
  budget.spend(written);
  if (written < rest) {
    src.pendingOffset += written;
    if (written === allowed) budget.waitForRefill(rest - written);
    return;
  }
  flushed(src);
}

/** Everything `src` held is written: pass its FIN on, or read from it again. */
function flushed(src: Leg): void {
  src.pending = undefined;
  src.pendingOffset = 0;
  if (src.eof) passEof(src);
  else if (!src.closed && (src.relay.splice === undefined || !trySplice(src.relay))) resumeLeg(src);
}

/** `src`'s remote will send nothing more: once its data is written, pass the FIN on. */
function sawEof(src: Leg): void {
  if (src.eof) return;
  src.eof = true;
  if (src.pending === undefined) passEof(src);
}

/** Half-close: shut the peer's write side, leaving the other direction flowing. */
function passEof(src: Leg): void {
  const dst = src.peer;
  if (dst.socket === undefined || dst.shut || dst.closed) return;
  dst.shut = true;
  // When dst's remote has finished sending too, both directions are done:
  // one close (which sends the FIN) replaces a shutdown and the close after it.
  if (dst.eof) dst.socket.end();
  else dst.socket.shutdown();
}

function legClosed(leg: Leg, error: Error | undefined): void {
  if (leg.closed) return;
  leg.closed = true;
  const relay = leg.relay;
  const failure = error ?? leg.error;
  if (failure !== undefined && !relay.ended) {
    abort(relay, leg.side === "client" ? "error: client reset" : "error: backend reset");
    return;
  }
  if (!relay.ended) {
    // Bytes still owed to this leg can no longer be delivered.
    if (leg.peer.pending !== undefined) {
      abort(relay, "error: closed with data undelivered");
      return;
    }
    // After our own shutdown Bun reports the remote's FIN as a close, not an
    // `end`: it is the end of this leg's data all the same.
    sawEof(leg);
  }
  // Each leg closes by itself once FINs went both ways; the second one ends the relay.
  if (leg.peer.closed) relay.report();
}

/** End the relay now: reset whatever leg is still open. */
export function abort(relay: Relay, result: SessionResult): void {
  if (relay.ended) return;
  relay.result = result;
  if (relay.spliced !== undefined) relay.spliceEngine?.abort(relay.spliced);
  for (const leg of [relay.client, relay.upstream]) {
    if (!leg.closed && leg.socket !== undefined) {
      leg.closed = true;
      leg.socket.terminate();
    }
  }
  relay.report();
}

/**
 * A shutdown's way to end a relay that has gone quiet, without losing a byte:
 * when nothing is held here and (where `libc` can tell) nothing waits in the
 * kernel to be sent, close both legs with FINs (`end()` is a full close),
 * not resets. A spliced relay is asked of the worker, which alone knows its
 * pipes are empty; it ends when the worker answers. Otherwise nothing changes.
 */
export function closeIfQuiet(relay: Relay, libc: Libc | undefined): void {
  if (relay.ended) return;
  const { client, upstream } = relay;
  if (client.pending !== undefined || upstream.pending !== undefined) return;
  if (relay.spliced !== undefined) {
    relay.spliceEngine?.closeIfQuiet(relay.spliced);
    return;
  }
  if (libc !== undefined && (unsent(client, libc) || unsent(upstream, libc))) return;
  relay.result = "done";
  for (const leg of [client, upstream]) {
    if (!leg.closed && leg.socket !== undefined) {
      leg.closed = true;
      leg.socket.end();
    }
  }
  relay.report();
}

/** Whether this leg's socket holds bytes (or its FIN) that its remote has not acknowledged yet. */
function unsent(leg: Leg, libc: Libc): boolean {
  return !leg.closed && leg.socket !== undefined && libc.ioctlCount(socketFd(leg.socket), SIOCOUTQ) > 0;
}

/**
 * Handlers for a connected leg, shared by every socket; `open` (and
 * `connectError` upstream) are added by the listener and connector.
 */
export const legHandlers = {
  binaryType: "uint8array",
  data(socket: StreamSocket<Leg>, chunk: Uint8Array): void {
    pump(socket.data, chunk);
  },
  drain(socket: StreamSocket<Leg>): void {
    // Bun also fires drain spuriously (after pause/resume): flush checks its own state.
    flush(socket.data.peer);
  },
  end(socket: StreamSocket<Leg>): void {
    sawEof(socket.data);
  },
  error(socket: StreamSocket<Leg>, error: Error): void {
    const leg = socket.data as Leg | undefined;
    if (leg !== undefined) leg.error = error;
  },
  close(socket: StreamSocket<Leg>, error?: Error): void {
    // A client refused at accept never got a leg.
    const leg = socket.data as Leg | undefined;
    if (leg !== undefined) legClosed(leg, error);
  },
} satisfies StreamHandlers<Leg>;

/**
 * The upstream connected: start moving what the client held back, after
 * `preamble` (a PROXY protocol header) when there is one.
 */
export function upstreamOpened(leg: Leg, socket: StreamSocket<Leg>, preamble?: Uint8Array): void {
  const relay = leg.relay;
  if (relay.ended) {
    // The client is gone already (connect timeout, reset): drop this connection.
    socket.terminate();
    return;
  }
  leg.socket = socket;
  if (preamble !== undefined) putFirst(relay.client, preamble);
  const client = relay.client;
  if (client.pending !== undefined) flush(client);
  else if (client.eof) passEof(client);
  else if (relay.splice === undefined || !trySplice(relay)) resumeLeg(client);
}

/**
 * Hand the relay to the splice worker if nothing of it is held in JS: no
 * tail either way, no FIN seen or passed, both legs open. Bun's sockets are
 * closed here (their duplicates carry the connection on), so Bun never reads
 * them again. False, and nothing changed, when the relay stays plain.
 */
function trySplice(relay: Relay): boolean {
  const { client, upstream } = relay;
  const choice = relay.splice;
  if (choice === undefined || relay.ended || relay.spliced !== undefined) return false;
  if (client.bytesRead + upstream.bytesRead < choice.afterBytes) return false;
  if (client.pending !== undefined || upstream.pending !== undefined) return false;
  if (client.eof || upstream.eof || client.shut || upstream.shut || client.closed || upstream.closed) return false;
  const clientSocket = client.socket;
  const upstreamSocket = upstream.socket;
  if (clientSocket === undefined || upstreamSocket === undefined) return false;
  // Still starting (`splice auto` starts it at the first relay that carries bulk): a later read retries.
  const engine = choice.engineForHandoff();
  if (engine === undefined) return false;
  // The pipes and duplicates count against the descriptor budget like sockets do.
  if (!relay.owner.reserveDescriptors(relay, SPLICE_EXTRA_DESCRIPTORS)) {
    relay.splice = undefined;
    return false;
  }
  const handle = engine.prepare(socketFd(clientSocket), socketFd(upstreamSocket), relay, relay.spliceRate);
  if (handle === undefined) {
    // No slot or descriptor for it now: this relay stays plain for good.
    relay.owner.returnDescriptors(relay, SPLICE_EXTRA_DESCRIPTORS);
    relay.splice = undefined;
    return false;
  }
  for (const leg of [client, upstream]) {
    const socket = leg.socket!;
    leg.closed = true;
    leg.socket = undefined;
    // The close handler runs inside end(): without a leg it leaves the relay alone.
    (socket as StreamSocket<Leg | undefined>).data = undefined;
    socket.end();
  }
  relay.spliced = handle;
  relay.spliceEngine = engine;
  engine.begin(handle);
  return true;
}

/** Bun's undocumented descriptor getter on sockets; -1 when there is none. */
function socketFd(socket: StreamSocket<Leg>): number {
  const fd = (socket as unknown as { fd?: unknown }).fd;
  return typeof fd === "number" ? fd : -1;
}
