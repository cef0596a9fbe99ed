/**
 * @module What the main thread and the splice worker share: a command ring
 * and per-relay byte counters in one SharedArrayBuffer, and the messages the
 * worker posts back. The worker sleeps in epoll_wait, where it cannot take
 * messages; commands therefore go through the ring, and an eventfd in its
 * epoll set wakes it.
 *
 * Each spliced relay has a slot: an index into the counters, and its name in
 * commands and replies. The main thread hands a slot out and takes it back
 * only after the worker said it is done with it, so a late counter update
 * never lands on another relay.
 */

/**
 * Start moving bytes: slot, client fd, upstream fd, client->upstream pipe
 * (read, write), upstream->client pipe (read, write), and the relay's
 * bandwidth limit in bytes per second each way (0: none).
 */
export const COMMAND_ADD = 1;
/** Stop moving bytes now (the main thread already set the resets): slot. */
export const COMMAND_ABORT = 2;
/** A shutdown found the relay quiet: let it go as done if its pipes hold nothing (else it carries on): slot. */
export const COMMAND_CLOSE_QUIET = 3;

/** Int32 words per command in the ring. */
export const COMMAND_WORDS = 9;
/** Words before the ring: commands written (main), commands taken (worker). */
const HEADER_WORDS = 2;
export const WRITTEN = 0;
export const TAKEN = 1;

export interface SharedLayout {
  slots: number;
  /**
   * Commands the ring holds: two per slot, so it can never overflow. A slot
   * has at most two commands waiting: its add or its close-quiet (a
   * close-quiet is sent only once the worker took the slot's previous
   * command), and its abort (sent once).
   */
  ringLength: number;
}

export function layoutFor(slots: number): SharedLayout {
  return { slots, ringLength: slots * 2 };
}

export function sharedBytes(layout: SharedLayout): number {
  return (HEADER_WORDS + layout.ringLength * COMMAND_WORDS) * 4 + layout.slots * 2 * 8;
}

/** Views on the shared buffer, the same on both threads. */
export class SharedState {
  readonly header: Int32Array;
  readonly ring: Int32Array;
  /** Per slot: [bytes read from the client, bytes read from the upstream]. */
  readonly counts: Float64Array;

  constructor(
    readonly buffer: SharedArrayBuffer,
    readonly layout: SharedLayout,
  ) {
    this.header = new Int32Array(buffer, 0, HEADER_WORDS);
    const ringWords = layout.ringLength * COMMAND_WORDS;
    this.ring = new Int32Array(buffer, HEADER_WORDS * 4, ringWords);
    this.counts = new Float64Array(buffer, (HEADER_WORDS + ringWords) * 4, layout.slots * 2);
  }
}

/** How a spliced relay ended, from the worker. */
export type Outcome = "done" | "client reset" | "backend reset" | "aborted";

/** Worker -> main: slots the worker let go of (it touches none of their descriptors any more). */
export interface Released {
  slots: number[];
  outcomes: Outcome[];
}

/** Main -> worker, once at start. */
export interface WorkerInit {
  buffer: SharedArrayBuffer;
  layout: SharedLayout;
  wakeFd: number;
  /** Bytes each pipe holds (what F_SETPIPE_SZ gave). */
  pipeCapacity: number;
}

/** Worker -> main: started, could not start, or slots released. */
export type WorkerReply = { ready: true } | { failed: string } | Released;
