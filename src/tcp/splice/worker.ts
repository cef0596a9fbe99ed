/**
 * @module The splice worker: moves the bytes of relays handed off by the
 * main thread with splice(2), socket -> pipe -> socket, so they never enter
 * JavaScript. One epoll set (edge-triggered) covers every spliced socket plus
 * an eventfd the main thread writes to when it puts a command in the shared
 * ring. The worker blocks in epoll_wait and never returns to its event loop.
 *
 * The main thread owns every descriptor (sockets and pipes): the worker only
 * uses them, and says when it stopped, so a descriptor is closed only once no
 * thread can touch its number any more.
 *
 * Per direction: splice from the source socket into the pipe while the pipe
 * has room, and from the pipe into the destination socket while it takes
 * bytes; try both again after any progress. A read that returns 0 is the
 * source's FIN: once the pipe is empty, shut the destination's write side
 * (half-close), the other direction carries on. Backpressure is the pipe:
 * a destination that does not read stops the splices from its source, and the
 * source's kernel buffers then throttle the sender by TCP itself.
 */
import {
  EAGAIN,
  EINTR,
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
  SHUT_WR,
  SPLICE_F_MOVE,
  SPLICE_F_NONBLOCK,
} from "../../libc.ts";
import { COMMAND_ABORT, COMMAND_ADD, COMMAND_CLOSE_QUIET, COMMAND_WORDS, type Outcome, type Released, SharedState, TAKEN, type WorkerInit, type WorkerReply, WRITTEN } from "./protocol.ts";

declare const self: Worker;

const EPOLLERR = 0x8;
const WAKE = 0xffffffff;
const MAX_EVENTS = 256;
/** Splice rounds per direction before other relays get their turn. */
const ROUNDS = 16;
const SPLICE_FLAGS = SPLICE_F_NONBLOCK | SPLICE_F_MOVE;
const SOCKET_EVENTS = (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) >>> 0;

const CLIENT = 0;
const UPSTREAM = 1;

/** What `move` found. */
const BLOCKED = 0;
const MORE = 1;
const FAILED_AT_SOURCE = 2;
const FAILED_AT_DESTINATION = 3;

class Direction {
  inPipe = 0;
  eof = false;
  shut = false;
  constructor(
    readonly from: number,
    readonly to: number,
    readonly pipeRead: number,
    readonly pipeWrite: number,
    readonly capacity: number,
    /** Index of this direction's byte counter in the shared counts. */
    readonly counter: number,
  ) {}
}

class Spliced {
  constructor(
    readonly slot: number,
    readonly client: number,
    readonly upstream: number,
    readonly up: Direction,
    readonly down: Direction,
  ) {}
}

class SpliceLoop {
  private readonly relays: Array<Spliced | undefined>;
  private readonly events = new Uint8Array(MAX_EVENTS * EPOLL_EVENT_SIZE);
  private readonly eventView = new DataView(this.events.buffer);
  private readonly wakeBytes = new Uint8Array(8);
  private readonly epoll: number;
  /** Relays that used up their rounds with bytes still moving: pumped again before sleeping. */
  private again: Spliced[] = [];
  private released: Released = { slots: [], outcomes: [] };

  constructor(
    private readonly libc: Libc,
    private readonly shared: SharedState,
    private readonly wakeFd: number,
    private readonly pipeCapacity: number,
  ) {
    this.relays = new Array<Spliced | undefined>(shared.layout.slots);
    this.epoll = libc.epollCreate();
    if (this.epoll < 0) throw new Error(`epoll_create1 failed (errno ${libc.errno()})`);
    this.register(wakeFd, EPOLLIN, WAKE);
  }

  run(): never {
    for (;;) {
      const n = this.libc.epollWait(this.epoll, this.events, MAX_EVENTS, this.again.length > 0 ? 0 : -1);
      if (n < 0 && this.libc.errno() !== EINTR) throw new Error(`epoll_wait failed (errno ${this.libc.errno()})`);
      const view = this.eventView;
      for (let i = 0; i < n; i++) {
        const at = i * EPOLL_EVENT_SIZE;
        const data = view.getUint32(at + EPOLL_DATA_OFFSET, true);
        if (data === WAKE) {
          this.libc.read(this.wakeFd, this.wakeBytes, 8);
          this.takeCommands();
          continue;
        }
        const relay = this.relays[data >>> 1];
        if (relay === undefined) continue;
        if ((view.getUint32(at, true) & EPOLLERR) !== 0) {
          this.release(relay, (data & 1) === CLIENT ? "client reset" : "backend reset");
          continue;
        }
        this.pump(relay);
      }
      if (this.again.length > 0) {
        const again = this.again;
        this.again = [];
        for (const relay of again) if (this.relays[relay.slot] === relay) this.pump(relay);
      }
      if (this.released.slots.length > 0) {
        self.postMessage(this.released satisfies WorkerReply);
        this.released = { slots: [], outcomes: [] };
      }
    }
  }

  private takeCommands(): void {
    const { header, ring, layout } = this.shared;
    let taken = Atomics.load(header, TAKEN);
    const written = Atomics.load(header, WRITTEN);
    while (taken !== written) {
      const at = (taken & (layout.ringLength - 1)) * COMMAND_WORDS;
      const slot = ring[at + 1]!;
      if (ring[at] === COMMAND_ADD) {
        this.add(slot, ring[at + 2]!, ring[at + 3]!, ring[at + 4]!, ring[at + 5]!, ring[at + 6]!, ring[at + 7]!);
      } else if (ring[at] === COMMAND_ABORT) {
        const relay = this.relays[slot];
        if (relay !== undefined) this.release(relay, "aborted");
      } else if (ring[at] === COMMAND_CLOSE_QUIET) {
        // Only here is it certain that no byte sits in a pipe: this thread is the one that fills them.
        const relay = this.relays[slot];
        if (relay !== undefined && relay.up.inPipe === 0 && relay.down.inPipe === 0) this.release(relay, "done");
      }
      taken = (taken + 1) | 0;
    }
    Atomics.store(header, TAKEN, taken);
  }

  private add(slot: number, client: number, upstream: number, upRead: number, upWrite: number, downRead: number, downWrite: number): void {
    const up = new Direction(client, upstream, upRead, upWrite, this.pipeCapacity, slot * 2);
    const down = new Direction(upstream, client, downRead, downWrite, this.pipeCapacity, slot * 2 + 1);
    const relay = new Spliced(slot, client, upstream, up, down);
    this.relays[slot] = relay;
    if (!this.register(client, SOCKET_EVENTS, slot * 2 + CLIENT) || !this.register(upstream, SOCKET_EVENTS, slot * 2 + UPSTREAM)) {
      this.release(relay, "aborted");
      return;
    }
    this.pump(relay);
  }

  private register(fd: number, events: number, data: number): boolean {
    return this.libc.epollCtl(this.epoll, EPOLL_CTL_ADD, fd, events, data, 0) === 0;
  }

  private pump(relay: Spliced): void {
    const up = this.move(relay.up);
    if (up >= FAILED_AT_SOURCE) {
      this.release(relay, up === FAILED_AT_SOURCE ? "client reset" : "backend reset");
      return;
    }
    const down = this.move(relay.down);
    if (down >= FAILED_AT_SOURCE) {
      this.release(relay, down === FAILED_AT_SOURCE ? "backend reset" : "client reset");
      return;
    }
    if (relay.up.shut && relay.down.shut) this.release(relay, "done");
    else if (up === MORE || down === MORE) this.again.push(relay);
  }

  private move(d: Direction): number {
    const libc = this.libc;
    const counts = this.shared.counts;
    for (let round = 0; round < ROUNDS; round++) {
      let progressed = false;
      if (!d.eof && d.inPipe < d.capacity) {
        const n = libc.splice(d.from, null, d.pipeWrite, null, d.capacity - d.inPipe, SPLICE_FLAGS);
        if (n > 0) {
          d.inPipe += n;
          counts[d.counter]! += n;
          progressed = true;
        } else if (n === 0) {
          d.eof = true;
        } else {
          const errno = libc.errno();
          if (errno !== EAGAIN && errno !== EINTR) return FAILED_AT_SOURCE;
        }
      }
      if (d.inPipe > 0) {
        const n = libc.splice(d.pipeRead, null, d.to, null, d.inPipe, SPLICE_FLAGS);
        if (n > 0) {
          d.inPipe -= n;
          progressed = true;
        } else if (n < 0) {
          const errno = libc.errno();
          if (errno !== EAGAIN && errno !== EINTR) return FAILED_AT_DESTINATION;
        }
      }
      if (d.eof && d.inPipe === 0) {
        if (!d.shut) {
          d.shut = true;
          // The destination may be gone already; its own events tell.
          libc.shutdown(d.to, SHUT_WR);
        }
        return BLOCKED;
      }
      if (!progressed) return BLOCKED;
    }
    return MORE;
  }

  /** Stop watching the relay's sockets and tell the main thread, which closes the descriptors. */
  private release(relay: Spliced, outcome: Outcome): void {
    this.relays[relay.slot] = undefined;
    this.libc.epollCtl(this.epoll, EPOLL_CTL_DEL, relay.client, 0, 0, 0);
    this.libc.epollCtl(this.epoll, EPOLL_CTL_DEL, relay.upstream, 0, 0, 0);
    this.released.slots.push(relay.slot);
    this.released.outcomes.push(outcome);
  }
}

self.onmessage = async (event: MessageEvent<WorkerInit>) => {
  const init = event.data;
  const result = await loadLibc();
  if ("unavailable" in result) {
    self.postMessage({ failed: result.unavailable } satisfies WorkerReply);
    return;
  }
  let loop: SpliceLoop;
  try {
    loop = new SpliceLoop(result.libc, new SharedState(init.buffer, init.layout), init.wakeFd, init.pipeCapacity);
  } catch (error) {
    self.postMessage({ failed: error instanceof Error ? error.message : String(error) } satisfies WorkerReply);
    return;
  }
  self.postMessage({ ready: true } satisfies WorkerReply);
  loop.run();
};
