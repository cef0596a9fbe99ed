/**
 * @module The UDP leg towards a backend, shared by UDP→UDP and TCP→UDP
 * sessions: one socket per session, connected to the backend the rule's
 * balancer picked for it, so the backend sees one stable source per client
 * and the kernel delivers each session only its own backend's datagrams.
 * Sockets share one handler object; the leg a socket serves is attached to
 * it.
 *
 * Backends and their addresses come from the session's DialPlan (the
 * balancer and the DNS cache), as for a TCP connect; the socket binds to the
 * backend's source address (`src`), else to the wildcard of the target's
 * family. A socket that cannot be opened (a source address of the other
 * family, one that is not local) is a failed attempt: on to the next target.
 *
 * UDP has no handshake, so a backend's verdict comes later. A target is
 * unconfirmed until it answers:
 *
 * - its first datagram back confirms it: it is the session's backend for
 *   good, and the balancer hears `opened` (and `closed` when the session
 *   ends). A target that never answers and never refuses (syslog, statsd,
 *   NetFlow collectors need not answer) counts as reached when the session
 *   ends;
 * - an ICMP error from an unconfirmed target (port unreachable, which Bun
 *   reports as ECONNREFUSED; host or network unreachable) is a failed
 *   connect: the leg moves to the plan's next target (the backend's next
 *   address, then the next backend), sending it again what the refused
 *   target was sent in the last RESEND_WINDOW_MS (a bounded few: the
 *   datagrams the error may be about), so the client loses nothing. The
 *   balancer counts the failure once all of the backend's addresses failed,
 *   as for TCP, and takes the backend out after `health_threshold` of them
 *   in a row;
 * - an ICMP error once the target answered means the backend went away
 *   under the session: the session ends as `refused` (as a TCP connection
 *   would be reset), and the client's next datagram opens a new session
 *   that picks again. A client that keeps sending from one port (a log
 *   shipper) is thus not left on a dead backend, as long as something
 *   reports it dead: a host that is silently gone (no ICMP at all) cannot
 *   be told from a backend that just does not answer.
 *
 * When no target is left the leg stays on its last one (as a single-backend
 * rule always did): the session is not lost, its datagrams keep going there
 * and it works as soon as that backend answers; a session that never got an
 * answer ends as `refused`.
 *
 * With `proxy=v2` the leg puts a PROXY v2 header (DGRAM, the client's
 * address and port, the address and port it sent to) at the start of the
 * first datagram to each target, which is the session's first datagram to
 * its backend; later datagrams go as they came (as Cloudflare Spectrum
 * sends v2 over UDP; receivers that want a header in every datagram, such
 * as go-mmproxy, drop the later ones). A first datagram that no longer fits
 * in a UDP datagram with the header is dropped, and the header goes with
 * the next one.
 */
import type { udp } from "bun";
import type { DialPlan, DialTarget } from "../backends.ts";
import { encodeProxyV2, type ProxyAddress } from "../proxy-protocol.ts";
import type { SessionResult } from "../session.ts";
import type { Backend, ForwardRule } from "../types.ts";
import { QUEUE_LIMIT_BYTES, QUEUE_LIMIT_DATAGRAMS } from "./framing.ts";

/** A session as its upstream UDP socket sees it. */
export interface UdpLink {
  fromBackend(datagram: Uint8Array): void;
  /** Bun reports ICMP errors (ECONNREFUSED for port unreachable) here, after the send that caused them. */
  backendError(error: Error): void;
}

/** Bun's UDP sockets have no `data` slot like TCP sockets: the session rides on the socket object. */
export type UpstreamSocket = udp.ConnectedSocket<"uint8array"> & { link?: UdpLink };

/** What a UDP leg reports to the session that owns it. */
export interface UdpLegOwner {
  /** A datagram from the backend, for the client. */
  fromBackend(datagram: Uint8Array): void;
  /** A socket to a target is open: datagrams flow (a TCP client may be resumed). */
  legReady(): void;
  /** A refused target is being replaced: datagrams wait meanwhile (a TCP client may be paused). */
  legSwitching(): void;
  /** Not a single target could be used: the session ends with `result`. */
  legFailed(result: SessionResult): void;
  /** Counted here: datagrams dropped, ICMP errors from backends. */
  readonly counters: { droppedDatagrams: number; backendErrors: number };
}

/**
 * Datagrams sent to an unconfirmed target this recently are sent again to
 * the next one when it refuses: an ICMP error comes back within a round
 * trip, so older datagrams were not what it is about.
 */
export const RESEND_WINDOW_MS = 2000;
/** At most this many datagrams (and bytes) are kept for a resend, per session. */
export const RESEND_LIMIT_DATAGRAMS = 32;
export const RESEND_LIMIT_BYTES = 64 * 1024;

/** ICMP errors that say the target is not there: port unreachable, host or network unreachable. */
const UNREACHABLE = ["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EHOSTDOWN"];

const upstreamHandlers: udp.ConnectedSocketHandler<"uint8array"> = {
  data(socket, datagram, _port, _address, flags) {
    // A truncated datagram (larger than Bun's receive buffer) is not the datagram that was sent.
    if (flags.truncated) return;
    (socket as UpstreamSocket).link?.fromBackend(datagram);
  },
  // Bun calls this as error.call(socket, err), one argument, whatever the types say: take the last.
  error(this: UpstreamSocket, ...args: unknown[]) {
    const error = args[args.length - 1];
    this.link?.backendError(error instanceof Error ? error : new Error(String(error)));
  },
};

/** True when `error` is an ICMP report that the target is not there (what a session counts as a refusal). */
export function isRefusal(error: Error): boolean {
  const code = (error as Error & { code?: unknown }).code;
  return UNREACHABLE.some((name) => code === name || error.message.includes(name));
}

/**
 * The datagrams sent to an unconfirmed target in the last RESEND_WINDOW_MS,
 * at most RESEND_LIMIT_DATAGRAMS and RESEND_LIMIT_BYTES of them (the oldest
 * give way): a ring, so a target that never answers costs no allocation per
 * datagram.
 */
class RecentDatagrams {
  private readonly datagrams: Array<Uint8Array | undefined> = new Array(RESEND_LIMIT_DATAGRAMS).fill(undefined);
  private readonly times = new Float64Array(RESEND_LIMIT_DATAGRAMS);
  /** Index of the oldest kept, and how many are kept. */
  private oldest = 0;
  private count = 0;
  private bytes = 0;

  add(datagram: Uint8Array, now: number): void {
    if (datagram.length > RESEND_LIMIT_BYTES) return;
    this.forgetBefore(now - RESEND_WINDOW_MS);
    while (this.count === RESEND_LIMIT_DATAGRAMS || this.bytes + datagram.length > RESEND_LIMIT_BYTES) this.dropOldest();
    const at = (this.oldest + this.count) % RESEND_LIMIT_DATAGRAMS;
    this.datagrams[at] = datagram;
    this.times[at] = now;
    this.count++;
    this.bytes += datagram.length;
  }

  /** The datagrams still within the window, oldest first; the ring is emptied. */
  take(now: number): Uint8Array[] {
    this.forgetBefore(now - RESEND_WINDOW_MS);
    const out: Uint8Array[] = [];
    while (this.count > 0) {
      const datagram = this.datagrams[this.oldest];
      if (datagram !== undefined) out.push(datagram);
      this.dropOldest();
    }
    return out;
  }

  clear(): void {
    while (this.count > 0) this.dropOldest();
  }

  private forgetBefore(time: number): void {
    while (this.count > 0 && this.times[this.oldest]! < time) this.dropOldest();
  }

  private dropOldest(): void {
    this.bytes -= this.datagrams[this.oldest]?.length ?? 0;
    this.datagrams[this.oldest] = undefined;
    this.oldest = (this.oldest + 1) % RESEND_LIMIT_DATAGRAMS;
    this.count--;
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The PROXY header a rule's UDP leg sends, if any (v1 has no datagram form: the config refuses it on UDP backends). */
export function udpProxyHeader(rule: ForwardRule, client: ProxyAddress, destination: ProxyAddress): Uint8Array | undefined {
  return rule.proxyProtocol === "v2" ? encodeProxyV2(client, destination, "udp") : undefined;
}

type LegState =
  /** Waiting for the plan's next target or for its socket; datagrams queue. */
  | "dialing"
  /** A socket to a target that has not answered yet. */
  | "unconfirmed"
  /** The target answered: it is the session's backend. */
  | "established"
  /** Every target the plan allows was refused: the leg stays on the last one. */
  | "exhausted"
  | "closed";

export class UdpLeg implements UdpLink {
  private state: LegState = "dialing";
  private socket: UpstreamSocket | undefined = undefined;
  private target: DialTarget | undefined = undefined;
  /** A `plan.next()` or a socket open is in progress: its continuation releases the pick when the leg closed meanwhile. */
  private dialing = false;
  /** Datagrams from the client waiting for a socket. */
  private waiting: Uint8Array[] = [];
  private waitingBytes = 0;
  /** What the unconfirmed target was sent lately, for a resend to the next one. */
  private readonly recent = new RecentDatagrams();
  /** Datagrams to send to the next target: what the refused one was sent lately. */
  private resend: Uint8Array[] = [];
  /** The PROXY header still has to go at the start of the next datagram to the current target. */
  private headerDue = false;
  /** How the last attempt to open a socket failed, for the result when no target is left. */
  private lastFailure: SessionResult = "refused";
  /** The current target refused (ICMP) at least once. */
  refused = false;
  /** The backend sent at least one datagram. */
  answered = false;

  constructor(
    private readonly owner: UdpLegOwner,
    private readonly plan: DialPlan,
    /** Put at the start of the first datagram to each target (a PROXY v2 header), if any. */
    private readonly header: Uint8Array | undefined,
  ) {}

  /** The backend the session reached: the one that answered (or never refused); undefined when none did. */
  get backend(): Backend | undefined {
    return this.plan.connected ?? (this.answered ? this.target?.backend : undefined);
  }

  open(): void {
    void this.dial();
  }

  /** A datagram from the client, towards the backend. */
  send(datagram: Uint8Array): void {
    if (this.state === "closed") return;
    const socket = this.socket;
    if (this.state === "dialing" || socket === undefined) {
      this.queue(datagram);
      return;
    }
    if (this.state === "unconfirmed") this.recent.add(datagram, performance.now());
    this.transmit(socket, datagram);
  }

  fromBackend(datagram: Uint8Array): void {
    if (this.state === "closed") return;
    this.answered = true;
    if (this.state === "unconfirmed") {
      this.state = "established";
      this.recent.clear();
      this.plan.opened();
    }
    // buffersize, as for clients' datagrams: a reply longer than the buffer is dropped, not cut.
    if (datagram.length > this.plan.backends.rule.bufferSize) return;
    this.owner.fromBackend(datagram);
  }

  backendError(error: Error): void {
    if (this.state === "closed") return;
    this.owner.counters.backendErrors++;
    if (!isRefusal(error)) return;
    this.refused = true;
    if (this.state === "unconfirmed") this.failOver();
    // The backend went away under an answered session: end it, so the client's next datagram picks again.
    else if (this.answered && (this.state === "established" || this.state === "exhausted")) this.owner.legFailed("refused");
  }

  /**
   * The session ended: close the socket and tell the balancer how the pick
   * ended. An unconfirmed target that never refused counts as reached.
   */
  close(bytesIn: number, bytesOut: number): void {
    if (this.state === "closed") return;
    const state = this.state;
    this.state = "closed";
    this.closeSocket();
    this.waiting = [];
    this.recent.clear();
    this.resend = [];
    if (state === "unconfirmed") this.plan.opened();
    if (this.plan.connected !== undefined) this.plan.closed(bytesIn, bytesOut);
    // A dial in progress releases its own pick when it sees the leg closed.
    else if (!this.dialing) this.plan.abandon();
  }

  /** Open a socket to the plan's next target that can be opened; the first one, or after a refusal. */
  private async dial(): Promise<void> {
    for (;;) {
      this.dialing = true;
      const target = await this.plan.next();
      if (this.isClosed()) {
        this.dialing = false;
        this.plan.abandon();
        return;
      }
      if (target === undefined) {
        this.dialing = false;
        this.exhausted();
        return;
      }
      let socket: UpstreamSocket;
      try {
        socket = await openSocket(target);
      } catch (error) {
        // Not this target (a source address of the other family, a malformed address): on to the next.
        this.lastFailure = `error: ${messageOf(error)}`;
        if (this.isClosed()) {
          this.dialing = false;
          this.plan.abandon();
          return;
        }
        continue;
      }
      this.dialing = false;
      if (this.isClosed()) {
        socket.close();
        this.plan.abandon();
        return;
      }
      this.use(socket, target);
      return;
    }
  }

  /** Start sending to `target` through `socket`: what the refused target was sent lately first, then what waited. */
  private use(socket: UpstreamSocket, target: DialTarget): void {
    this.closeSocket();
    socket.link = this;
    this.socket = socket;
    this.target = target;
    this.state = "unconfirmed";
    this.refused = false;
    this.headerDue = this.header !== undefined;
    const pending = this.resend.length === 0 ? this.waiting : [...this.resend, ...this.waiting];
    this.resend = [];
    this.waiting = [];
    this.waitingBytes = 0;
    this.owner.legReady();
    // A refusal during this flush (a send can throw one) starts the next switch: send() then queues the rest.
    for (const datagram of pending) this.send(datagram);
  }

  /** The plan has no target left after a refusal: stay on the last socket; with none, the session fails. */
  private exhausted(): void {
    const socket = this.socket;
    if (socket === undefined) {
      this.owner.legFailed(this.lastFailure);
      return;
    }
    // The refused target already had these; what waited during the switch goes to it now.
    this.resend = [];
    this.state = "exhausted";
    const waiting = this.waiting;
    this.waiting = [];
    this.waitingBytes = 0;
    this.owner.legReady();
    for (const datagram of waiting) this.transmit(socket, datagram);
  }

  /** The unconfirmed target refused: a failed connect; what it was sent lately goes to the next target. */
  private failOver(): void {
    this.state = "dialing";
    this.resend = this.recent.take(performance.now());
    this.owner.legSwitching();
    void this.dial();
  }

  private queue(datagram: Uint8Array): void {
    if (this.waitingBytes + datagram.length > QUEUE_LIMIT_BYTES || this.waiting.length >= QUEUE_LIMIT_DATAGRAMS) {
      this.owner.counters.droppedDatagrams++;
      return;
    }
    this.waiting.push(datagram);
    this.waitingBytes += datagram.length;
  }

  /**
   * Send one datagram, behind the PROXY header when it is the first to this
   * target. A send can throw the ICMP error an earlier datagram caused
   * (ECONNREFUSED), taken off the socket instead of sending: the error is
   * handled as reported, and this datagram, which was not refused, gets one
   * more try unless the leg is switching targets (it is in the resend then)
   * or the session ended.
   */
  private transmit(socket: UpstreamSocket, datagram: Uint8Array): void {
    const header = this.headerDue ? this.header : undefined;
    const out = header === undefined ? datagram : withHeader(header, datagram);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        if (socket.send(out)) {
          if (header !== undefined) this.headerDue = false;
          return;
        }
        break;
      } catch (error) {
        const failure = error instanceof Error ? error : new Error(String(error));
        this.backendError(failure);
        if (!isRefusal(failure) || this.socket !== socket || this.state === "dialing" || this.state === "closed") break;
      }
    }
    if (this.state !== "dialing" && this.state !== "closed") this.owner.counters.droppedDatagrams++;
  }

  /** A method, not a comparison in place: the state may change across an await. */
  private isClosed(): boolean {
    return this.state === "closed";
  }

  private closeSocket(): void {
    const socket = this.socket;
    if (socket === undefined) return;
    socket.link = undefined;
    socket.close();
    this.socket = undefined;
  }
}

function withHeader(header: Uint8Array, datagram: Uint8Array): Uint8Array {
  const out = new Uint8Array(header.length + datagram.length);
  out.set(header, 0);
  out.set(datagram, header.length);
  return out;
}

/** A socket connected to `target`, bound to its source address or to the wildcard of its family. */
async function openSocket(target: DialTarget): Promise<UpstreamSocket> {
  const address = target.address;
  if (address === undefined) throw new Error("no address for a UDP backend");
  return await Bun.udpSocket({
    hostname: target.localAddress ?? (address.includes(":") ? "::" : "0.0.0.0"),
    port: 0,
    binaryType: "uint8array",
    connect: { hostname: address, port: target.port },
    socket: upstreamHandlers,
  });
}
