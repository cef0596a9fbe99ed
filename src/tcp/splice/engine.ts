/**
 * @module The main thread's side of the splice path (`splice on`): hands
 * established TCP relays to the splice worker (worker.ts) and ends them when
 * the worker lets go.
 *
 * Handoff: dup both sockets' descriptors, make two pipes, then the relay
 * closes Bun's own sockets. Bun's close takes its descriptor out of its epoll
 * set and closes that number only; the connection lives on in the duplicate,
 * which no Bun code knows about, so no second thread ever reads it. This
 * thread owns the duplicates and the pipes and closes them only once the
 * worker said it no longer uses them: a number is never reused under the
 * worker's feet.
 *
 * An abort (idle timeout, shutdown) sets SO_LINGER 0 on both sockets at once:
 * whether the worker or the process exit closes them, the peers get resets,
 * as on the plain path. A shutdown closes a quiet relay with FINs instead
 * (closeIfQuiet): the worker lets it go as done, and the close of the
 * duplicates, the last descriptors of each connection, sends the FINs.
 */
import { consola } from "consola";
import type { SessionResult } from "../../session.ts";
import { F_GETPIPE_SZ, F_SETPIPE_SZ, FIONREAD, type Libc, loadLibc, O_CLOEXEC, O_NONBLOCK, SIOCOUTQ } from "../../libc.ts";
import {
  COMMAND_ABORT,
  COMMAND_ADD,
  COMMAND_CLOSE_QUIET,
  COMMAND_WORDS,
  layoutFor,
  type Outcome,
  SharedState,
  sharedBytes,
  TAKEN,
  WRITTEN,
  type WorkerReply,
} from "./protocol.ts";

/** Relays spliced at once; more are relayed the plain way. A power of two (the ring's size derives from it). */
const SLOTS = 8192;
/** Bytes per pipe: more bytes per splice call, at the price of pipe memory per connection. */
/** The smallest pipe worth splicing through: Linux's default pipe size. */
const MIN_PIPE_BYTES = 64 * 1024;
const PIPE_BYTES = 256 * 1024;
/** The largest bandwidth limit a command word carries (bytes per second); a relay limited above it stays plain. */
const MAX_SPLICED_RATE = 0x7fffffff;

/** The relay's result for each way the worker saw a spliced relay end by itself. */
const RESULTS: Record<Exclude<Outcome, "aborted">, SessionResult> = {
  done: "done",
  "client reset": "error: client reset",
  "backend reset": "error: backend reset",
};

/** Who is told when a spliced relay ends on its own (FINs both ways, or a reset). */
export interface SplicedOwner {
  splicedEnded(result: SessionResult): void;
}

/** One relay in the worker's hands: its slot and the descriptors this thread owns. */
export class SpliceHandle {
  /** Set once the relay was aborted or reported: the worker's answer then only frees the slot. */
  settled = false;
  /** Where in the command ring the last add or close-quiet for this slot went. */
  lastCommand = 0;
  constructor(
    readonly slot: number,
    /** client, upstream, then the two pipes' (read, write) ends. */
    readonly fds: Int32Array,
    readonly owner: SplicedOwner,
    /** Bytes per second each way the worker holds the relay to; 0: no limit. */
    readonly rate: number,
  ) {}
}

export class SpliceEngine {
  private readonly shared: SharedState;
  private readonly free: number[] = [];
  private readonly handles: Array<SpliceHandle | undefined> = new Array(SLOTS);
  private readonly one = new Uint8Array(new BigUint64Array([1n]).buffer);
  private readonly pipeFds = new Int32Array(2);
  private broken: string | undefined;

  private constructor(
    private readonly libc: Libc,
    private readonly worker: Worker,
    private readonly wakeFd: number,
    buffer: SharedArrayBuffer,
  ) {
    this.shared = new SharedState(buffer, layoutFor(SLOTS));
    for (let slot = SLOTS - 1; slot >= 0; slot--) this.free.push(slot);
    worker.onmessage = (event: MessageEvent<WorkerReply>) => this.reply(event.data);
    worker.onerror = (event) => this.fail(`splice worker failed: ${event.message}`);
  }

  /** Start the worker; the reason when splicing is not possible here. */
  static async start(): Promise<SpliceEngine | string> {
    const result = await loadLibc();
    if ("unavailable" in result) return result.unavailable;
    const libc = result.libc;
    const wakeFd = libc.eventfd(O_NONBLOCK | O_CLOEXEC);
    if (wakeFd < 0) return `eventfd failed (errno ${libc.errno()})`;
    const layout = layoutFor(SLOTS);
    const buffer = new SharedArrayBuffer(sharedBytes(layout));
    let worker: Worker;
    try {
      worker = new Worker(workerUrl());
    } catch (error) {
      libc.close(wakeFd);
      return `cannot start the splice worker: ${error instanceof Error ? error.message : String(error)}`;
    }
    const started = await new Promise<WorkerReply | string>((resolve) => {
      worker.onmessage = (event: MessageEvent<WorkerReply>) => resolve(event.data);
      worker.onerror = (event) => resolve(event.message);
      worker.postMessage({ buffer, layout, wakeFd, pipeCapacity: PIPE_BYTES });
    });
    if (typeof started === "string" || "failed" in started) {
      worker.terminate();
      libc.close(wakeFd);
      return typeof started === "string" ? started : started.failed;
    }
    // The worker never returns to its event loop; it must not keep the process alive either.
    worker.unref();
    return new SpliceEngine(libc, worker, wakeFd, buffer);
  }

  /**
   * Duplicate the two sockets' descriptors and make the pipes; undefined
   * (nothing changed) when there is no slot, or a descriptor is missing.
   * After this the caller closes Bun's sockets and calls `begin`.
   */
  prepare(clientFd: number, upstreamFd: number, owner: SplicedOwner, rate = 0): SpliceHandle | undefined {
    if (this.broken !== undefined || clientFd < 0 || upstreamFd < 0 || !(rate >= 0 && rate <= MAX_SPLICED_RATE)) return undefined;
    const slot = this.free.pop();
    if (slot === undefined) return undefined;
    const libc = this.libc;
    const fds = new Int32Array(6).fill(-1);
    fds[0] = libc.dupCloexec(clientFd);
    fds[1] = libc.dupCloexec(upstreamFd);
    for (const at of [2, 4]) {
      if (libc.pipe2(this.pipeFds, O_NONBLOCK | O_CLOEXEC) !== 0) break;
      fds[at] = this.pipeFds[0]!;
      fds[at + 1] = this.pipeFds[1]!;
      libc.fcntl(fds[at]!, F_SETPIPE_SZ, PIPE_BYTES);
    }
    // Past the per-user pipe memory limit (fs.pipe-user-pages-soft) Linux gives
    // new pipes a single page: splicing 4 KiB a call would cost more than the
    // plain relay, so such a relay stays plain.
    const small = fds[2]! >= 0 && fds[4]! >= 0 && (libc.fcntl(fds[2]!, F_GETPIPE_SZ, 0) < MIN_PIPE_BYTES || libc.fcntl(fds[4]!, F_GETPIPE_SZ, 0) < MIN_PIPE_BYTES);
    if (small || fds.some((fd) => fd < 0)) {
      for (const fd of fds) if (fd >= 0) libc.close(fd);
      this.free.push(slot);
      return undefined;
    }
    const counts = this.shared.counts;
    counts[slot * 2] = 0;
    counts[slot * 2 + 1] = 0;
    return new SpliceHandle(slot, fds, owner, Math.round(rate));
  }

  /** Bun's sockets are closed: the worker takes over. */
  begin(handle: SpliceHandle): void {
    this.handles[handle.slot] = handle;
    const f = handle.fds;
    handle.lastCommand = this.command(COMMAND_ADD, handle.slot, f[0]!, f[1]!, f[2]!, f[3]!, f[4]!, f[5]!, handle.rate);
  }

  /**
   * A shutdown found the relay quiet: when no byte is in its pipes or unsent
   * in its sockets, ask the worker to let it go as done (it checks the pipes
   * again itself, and keeps the relay if bytes arrived meanwhile). Asked
   * again only once the worker took the slot's previous command, which keeps
   * the ring from overflowing.
   */
  closeIfQuiet(handle: SpliceHandle): void {
    if (handle.settled || this.broken !== undefined) return;
    if (((Atomics.load(this.shared.header, TAKEN) - handle.lastCommand) | 0) <= 0) return;
    const f = handle.fds;
    const { libc } = this;
    if (libc.ioctlCount(f[2]!, FIONREAD) !== 0 || libc.ioctlCount(f[4]!, FIONREAD) !== 0) return;
    if (libc.ioctlCount(f[0]!, SIOCOUTQ) !== 0 || libc.ioctlCount(f[1]!, SIOCOUTQ) !== 0) return;
    handle.lastCommand = this.command(COMMAND_CLOSE_QUIET, handle.slot, 0, 0, 0, 0, 0, 0);
  }

  /** Bytes the worker read so far from [the client, the upstream]. */
  bytesIn(handle: SpliceHandle): number {
    return this.shared.counts[handle.slot * 2]!;
  }

  bytesOut(handle: SpliceHandle): number {
    return this.shared.counts[handle.slot * 2 + 1]!;
  }

  /** Reset both peers and stop: the caller reports the relay now; the descriptors close when the worker lets go. */
  abort(handle: SpliceHandle): void {
    if (handle.settled) return;
    handle.settled = true;
    this.libc.lingerZero(handle.fds[0]!);
    this.libc.lingerZero(handle.fds[1]!);
    if (this.broken === undefined) this.command(COMMAND_ABORT, handle.slot, 0, 0, 0, 0, 0, 0);
    else this.finish(handle);
  }

  /** Put a command in the ring and wake the worker; where in the ring it went. */
  private command(op: number, slot: number, a: number, b: number, c: number, d: number, e: number, f: number, g = 0): number {
    const { header, ring, layout } = this.shared;
    const written = Atomics.load(header, WRITTEN);
    const at = (written & (layout.ringLength - 1)) * COMMAND_WORDS;
    ring[at] = op;
    ring[at + 1] = slot;
    ring[at + 2] = a;
    ring[at + 3] = b;
    ring[at + 4] = c;
    ring[at + 5] = d;
    ring[at + 6] = e;
    ring[at + 7] = f;
    ring[at + 8] = g;
    Atomics.store(header, WRITTEN, (written + 1) | 0);
    this.libc.write(this.wakeFd, this.one, 8);
    return written;
  }

  private reply(message: WorkerReply): void {
    if (!("slots" in message)) return;
    for (let i = 0; i < message.slots.length; i++) {
      const handle = this.handles[message.slots[i]!];
      const outcome = message.outcomes[i]!;
      if (handle === undefined) continue;
      if (!handle.settled && outcome !== "aborted") {
        handle.settled = true;
        // A reset on one side resets the other, as the plain path does.
        if (outcome !== "done") {
          this.libc.lingerZero(handle.fds[0]!);
          this.libc.lingerZero(handle.fds[1]!);
        }
        handle.owner.splicedEnded(RESULTS[outcome]);
      }
      this.finish(handle);
    }
  }

  /** The worker is done with this slot: close its descriptors and reuse it. */
  private finish(handle: SpliceHandle): void {
    for (const fd of handle.fds) this.libc.close(fd);
    this.handles[handle.slot] = undefined;
    this.free.push(handle.slot);
  }

  /** The worker is gone: end every relay it had, with resets. */
  private fail(reason: string): void {
    if (this.broken !== undefined) return;
    this.broken = reason;
    consola.error(`${reason}: open spliced connections are reset; new ones use the plain relay`);
    for (const handle of this.handles) {
      if (handle === undefined) continue;
      if (!handle.settled) {
        handle.settled = true;
        this.libc.lingerZero(handle.fds[0]!);
        this.libc.lingerZero(handle.fds[1]!);
        handle.owner.splicedEnded("error: splice worker failed");
      }
      this.finish(handle);
    }
  }
}

/** Where a `bun build --compile` binary keeps its entry points (src/ of the tree). */
const EMBEDDED_ROOT = "$bunfs/root/";

/**
 * The worker's module. In a `bun build --compile` binary the worker is an
 * entry point of its own (see package.json's build script), kept at its path
 * under src/ from the embedded root; this module is bundled into whichever
 * entry point uses it (cli.ts at the root, or workers/worker-main.ts a level
 * down with --workers), so the path is taken from the root, not from here.
 */
function workerUrl(): string {
  const here = import.meta.url;
  const root = here.indexOf(EMBEDDED_ROOT);
  if (root !== -1) return `${here.slice(0, root + EMBEDDED_ROOT.length)}tcp/splice/worker.ts`;
  return new URL("./worker.ts", here).href;
}

let engine: Promise<SpliceEngine | undefined> | undefined;

/** The process's splice engine, started on first use; undefined (said once, as a warning) where splicing cannot work. */
export function spliceEngine(): Promise<SpliceEngine | undefined> {
  engine ??= SpliceEngine.start().then((started) => {
    if (typeof started !== "string") return started;
    consola.warn(`splice on: not available (${started}); using the plain relay`);
    return undefined;
  });
  return engine;
}
