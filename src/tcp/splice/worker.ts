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
 *
 * A relay with a bandwidth limit (`rate=`) splices from its source at most
 * what its token bucket holds (a tenth of a second's worth at most, refilled
 * by elapsed time); with none left, that direction is throttled: its source
 * is left unread (so TCP slows the sender) and the relay is pumped again
 * once half a burst has come back, epoll_wait sleeping no longer than that.
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

/** The largest burst of a limited direction: this many seconds' worth of its rate (as src/rate/bucket.ts). */
const BURST_SECONDS = 0.1;

/** A bandwidth limit on one direction of a spliced relay: a token bucket, in bytes. */
class Limit {
  /** Starts empty: the relay spent its burst on the plain path before it moved here. */
  tokens = 0;
  private readonly perMs: number;
  private readonly burst: number;
  /** Tokens worth waking up for: half a burst, or a pipe's worth when less. */
  private readonly turn: number;
  private updatedAt = performance.now();
  constructor(bytesPerSecond: number, pipeCapacity: number) {
    this.perMs = bytesPerSecond / 1000;
    this.burst = Math.max(1, bytesPerSecond * BURST_SECONDS);
    this.turn = Math.max(1, Math.min(pipeCapacity, Math.floor(this.burst / 2)));
  }

  /**
   * Whole bytes that may be read now: none until a turn's worth is there
   * (tokens trickle in with every microsecond; reading them as they come
   * would splice a few bytes per call, over and over).
   */
  available(now: number): number {
    const tokens = this.tokens + (now - this.updatedAt) * this.perMs;
    this.tokens = tokens > this.burst ? this.burst : tokens;
    this.updatedAt = now;
    return this.tokens < this.turn ? 0 : Math.floor(this.tokens);
  }

  /** When (performance.now) a turn's worth will be there. */
  wakeAt(): number {
    return this.updatedAt + Math.max(0, this.turn - this.tokens) / this.perMs;
  }
}

class Direction {
  inPipe = 0;
  eof = false;
  shut = false;
  /** Its limit stopped the last read: the relay waits among the throttled. */
  throttled = false;
  constructor(
    readonly from: number,
    readonly to: number,
    readonly pipeRead: number,
    readonly pipeWrite: number,
    readonly capacity: number,
    /** Index of this direction's byte counter in the shared counts. */
    readonly counter: number,
    readonly limit: Limit | undefined,
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
  /** Relays a bandwidth limit stopped, each pumped again once its limit has refilled. */
  private readonly throttled = new Set<Spliced>();
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
      const n = this.libc.epollWait(this.epoll, this.events, MAX_EVENTS, this.again.length > 0 ? 0 : this.sleepMs());
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
      if (this.throttled.size > 0) this.pumpRefilled();
      if (this.released.slots.length > 0) {
        self.postMessage(this.released satisfies WorkerReply);
        this.released = { slots: [], outcomes: [] };
      }
    }
  }

  /** How long epoll_wait may sleep: until the first throttled relay's limit refills; -1 (for ever) with none. */
  private sleepMs(): number {
    if (this.throttled.size === 0) return -1;
    let first = Number.POSITIVE_INFINITY;
    for (const relay of this.throttled) first = Math.min(first, this.wakeAt(relay));
    if (first === Number.POSITIVE_INFINITY) return -1;
    return Math.max(0, Math.ceil(first - performance.now()));
  }

  /** When a throttled relay is worth pumping again: the earlier of its throttled directions' refills. */
  private wakeAt(relay: Spliced): number {
    const up = relay.up.throttled ? relay.up.limit!.wakeAt() : Number.POSITIVE_INFINITY;
    const down = relay.down.throttled ? relay.down.limit!.wakeAt() : Number.POSITIVE_INFINITY;
    return Math.min(up, down);
  }

  private pumpRefilled(): void {
    const now = performance.now();
    for (const relay of this.throttled) {
      if (this.relays[relay.slot] !== relay) {
        this.throttled.delete(relay);
        continue;
      }
      if (this.wakeAt(relay) > now) continue;
      this.throttled.delete(relay);
      this.pump(relay);
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
        this.add(slot, ring[at + 2]!, ring[at + 3]!, ring[at + 4]!, ring[at + 5]!, ring[at + 6]!, ring[at + 7]!, ring[at + 8]!);
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

  private add(slot: number, client: number, upstream: number, upRead: number, upWrite: number, downRead: number, downWrite: number, rate: number): void {
    const capacity = this.pipeCapacity;
    const up = new Direction(client, upstream, upRead, upWrite, capacity, slot * 2, rate > 0 ? new Limit(rate, capacity) : undefined);
    const down = new Direction(upstream, client, downRead, downWrite, capacity, slot * 2 + 1, rate > 0 ? new Limit(rate, capacity) : undefined);
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
    if (relay.up.shut && relay.down.shut) {
      this.release(relay, "done");
      return;
    }
    if (up === MORE || down === MORE) this.again.push(relay);
    // A relay waits among the throttled exactly while a direction of it is.
    if (relay.up.throttled || relay.down.throttled) this.throttled.add(relay);
    else this.throttled.delete(relay);
  }

  private move(d: Direction): number {
    const libc = this.libc;
    const counts = this.shared.counts;
    const limit = d.limit;
    d.throttled = false;
    for (let round = 0; round < ROUNDS; round++) {
      let progressed = false;
      // What the limit allows now, when there is one: the source is then read no further than that.
      const room = limit === undefined ? d.capacity - d.inPipe : Math.min(d.capacity - d.inPipe, limit.available(performance.now()));
      if (limit !== undefined && room === 0 && d.inPipe < d.capacity && !d.eof) d.throttled = true;
      if (!d.eof && room > 0) {
        const n = libc.splice(d.from, null, d.pipeWrite, null, room, SPLICE_FLAGS);
        if (n > 0) {
          d.inPipe += n;
          counts[d.counter]! += n;
          if (limit !== undefined) limit.tokens -= n;
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
    this.throttled.delete(relay);
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
