/**
 * @module The event loop of the direct socket layer: an edge-triggered epoll
 * set of oi's own, driven from the JavaScript thread that uses it, in turns
 * with Bun's event loop.
 *
 * Why this works beside Bun: Bun's own epoll descriptor is put in this set,
 * so the wait here ends as soon as Bun has anything to do (a socket of its
 * own, a signal, a message from a worker, a finished lookup); after every
 * wake the loop yields to Bun (setImmediate), which then polls its set
 * without waiting and runs what is ready. Bun's timers are the one thing that
 * does not wake this set: the wait is capped at MAX_WAIT_MS, so a timer is at
 * most that late. The loop runs only while something is registered; with
 * nothing left it returns, and Bun waits on its own again.
 *
 * Each registration carries its descriptor and a generation in the event's
 * data, so an event for a descriptor closed (and its number reused) earlier
 * in the same batch is recognised and dropped.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { consola } from "consola";
import {
  EPOLL_CTL_ADD,
  EPOLL_CTL_DEL,
  EPOLL_DATA_OFFSET,
  EPOLL_EVENT_SIZE,
  EPOLLET,
  EPOLLIN,
  EPOLLOUT,
  EPOLLRDHUP,
  type Libc,
  loadLibc,
} from "../libc.ts";

/** What a registered descriptor's owner is told: the epoll events that came. */
export interface FdOwner {
  ready(events: number): void;
}

/** An owner that asked to be called again at the next turn (see `FdLoop.later`). */
export interface FdRetry {
  again(): void;
}

/** The longest wait for events: how late one of Bun's timers can run. */
const MAX_WAIT_MS = 25;
const MAX_EVENTS = 256;
/** Reads go through one buffer per loop; a chunk handed on is a view of it, valid during the data call (see StreamSocket.lendsChunks). */
export const READ_BUFFER_BYTES = 256 * 1024;
/** Event data of Bun's own epoll descriptor (no descriptor number is this large). */
const BUN_LOOP = 0xffffffff;
/** Every stream socket: readable, writable, and the peer's FIN, edge-triggered. */
export const STREAM_EVENTS = (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) >>> 0;
/** A listening socket: level-triggered, so accepting can stop at a limit and pick up later. */
export const LISTEN_EVENTS = EPOLLIN;

const yieldToBun = (): Promise<void> => new Promise((resume) => setImmediate(resume));

export class FdLoop {
  private buffer: Uint8Array | undefined;
  private readonly owners: Array<FdOwner | undefined> = [];
  private readonly generations: number[] = [];
  private registered = 0;
  private retries: FdRetry[] = [];
  private running = false;
  private readonly events = new Uint8Array(MAX_EVENTS * EPOLL_EVENT_SIZE);
  private readonly eventView = new DataView(this.events.buffer);

  private constructor(
    readonly libc: Libc,
    private readonly epoll: number,
    bunLoop: number,
  ) {
    this.control(EPOLL_CTL_ADD, bunLoop, EPOLLIN, BUN_LOOP, 0);
  }

  /** The loop for this thread, or why there can be none here. */
  static async create(): Promise<FdLoop | string> {
    const result = await loadLibc();
    if ("unavailable" in result) return result.unavailable;
    const libc = result.libc;
    const bunLoop = bunLoopDescriptor();
    if (bunLoop === undefined) return "cannot find Bun's own epoll descriptor to nest";
    const epoll = libc.epollCreate();
    if (epoll < 0) return `epoll_create1 failed (errno ${libc.errno()})`;
    return new FdLoop(libc, epoll, bunLoop);
  }

  /** The buffer every read of this loop lands in (made at the first read: an idle oi does not need it). */
  get readBuffer(): Uint8Array {
    this.buffer ??= new Uint8Array(READ_BUFFER_BYTES);
    return this.buffer;
  }

  /** Watch `fd` for `events` on behalf of `owner`; false when the kernel refused. */
  add(fd: number, owner: FdOwner, events: number): boolean {
    const generation = ((this.generations[fd] ?? 0) + 1) >>> 0;
    if (!this.control(EPOLL_CTL_ADD, fd, events, fd, generation)) return false;
    this.generations[fd] = generation;
    this.owners[fd] = owner;
    this.registered++;
    this.wake();
    return true;
  }

  /**
   * Forget `fd` before it is closed. Closing a descriptor takes it out of the
   * set by itself, unless another descriptor shares its file (a dup for the
   * splice worker): then `unwatch` must say so, and it is taken out here.
   */
  remove(fd: number, unwatch: boolean): void {
    if (this.owners[fd] === undefined) return;
    if (unwatch) this.control(EPOLL_CTL_DEL, fd, 0, 0, 0);
    this.owners[fd] = undefined;
    this.generations[fd] = ((this.generations[fd] ?? 0) + 1) >>> 0;
    this.registered--;
  }

  /** Call `retry.again()` at the next turn of the loop (a socket resumed with bytes waiting, a read cut short). */
  later(retry: FdRetry): void {
    this.retries.push(retry);
    this.wake();
  }

  /**
   * Start the loop if it is not running, at Bun's next turn: never inside
   * the caller's own call, which must finish (a listener's forwarder set up,
   * say) before any event of the new descriptor is handled.
   */
  private wake(): void {
    if (this.running) return;
    this.running = true;
    setImmediate(() => void this.run());
  }

  private control(op: number, fd: number, events: number, data: number, generation: number): boolean {
    return this.libc.epollCtl(this.epoll, op, fd, events, data, generation) === 0;
  }

  private async run(): Promise<void> {
    const { libc, events, eventView } = this;
    while (this.registered > 0 || this.retries.length > 0) {
      const n = libc.epollWait(this.epoll, events, MAX_EVENTS, this.retries.length > 0 ? 0 : MAX_WAIT_MS);
      for (let i = 0; i < n; i++) {
        const at = i * EPOLL_EVENT_SIZE;
        const fd = eventView.getUint32(at + EPOLL_DATA_OFFSET, true);
        if (fd === BUN_LOOP) continue;
        const owner = this.owners[fd];
        if (owner === undefined || this.generations[fd] !== eventView.getUint32(at + EPOLL_DATA_OFFSET + 4, true)) continue;
        try {
          owner.ready(eventView.getUint32(at, true));
        } catch (error) {
          reportFault(error);
        }
      }
      if (this.retries.length > 0) {
        const retries = this.retries;
        this.retries = [];
        for (const retry of retries) {
          try {
            retry.again();
          } catch (error) {
            reportFault(error);
          }
        }
      }
      await yieldToBun();
    }
    this.running = false;
  }
}

/** A handler threw: a bug, said loudly; the other connections carry on. */
function reportFault(error: unknown): void {
  consola.error(`direct sockets: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
}

/**
 * Bun's epoll descriptor for this thread: the eventpoll descriptor whose
 * watched descriptors (listed in /proc/self/fdinfo) include a listener just
 * opened through Bun for the purpose.
 */
function bunLoopDescriptor(): number | undefined {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data(): void {} } });
  try {
    // Listeners have an `fd` getter their type definitions leave out.
    const probeFd = (probe as unknown as { fd: number }).fd;
    const watched = new RegExp(`^tfd:\\s+${probeFd}\\s`, "m");
    for (const name of readdirSync("/proc/self/fd")) {
      try {
        if (readlinkSync(`/proc/self/fd/${name}`) !== "anon_inode:[eventpoll]") continue;
        if (watched.test(readFileSync(`/proc/self/fdinfo/${name}`, "utf8"))) return Number(name);
      } catch {
        // Closed while listing.
      }
    }
    return undefined;
  } finally {
    probe.stop(true);
  }
}

let loop: Promise<FdLoop | string> | undefined;

/** This thread's loop, made on first use; a string says why there is none. */
export function fdLoop(): Promise<FdLoop | string> {
  loop ??= FdLoop.create();
  return loop;
}
