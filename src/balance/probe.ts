/**
 * @module Active health checks, which rinetd-uv lacks: every interval, a TCP
 * connect to each backend, closed as soon as it is established. Passive
 * checks only notice a dead backend by failing real clients on it (and only
 * retry it by risking one more); a probe finds out first, and brings a
 * backend back as soon as it listens again instead of after a fixed
 * recovery time.
 *
 * Results go to `report` (BackendPool.setProbeResult), which applies the
 * threshold: `healthThreshold` failed probes in a row put a backend out,
 * one successful probe puts it back. A single lost probe therefore does not
 * take a backend out; a backend that is really gone is out after about
 * `healthThreshold` intervals.
 *
 * Bounded: at most one probe per backend at a time. Bun cannot cancel a
 * connect in progress, so a probe that times out (a backend that drops
 * SYNs) keeps its slot until the kernel gives up on that connect; until
 * then each interval counts as one more failed probe instead of starting
 * another connect. stop() clears every timer; a connect still in progress
 * then ends on its own without reporting anything.
 */
import type { Socket } from "bun";

/** One address to probe; a backend's addresses are tried in order, as connections try them. */
export interface ProbeAddress {
  host: string;
  port: number;
  /** A unix socket path to connect to instead of host and port (as Bun takes it: abstract names start with NUL). */
  unix?: string;
  /** Local address to connect from (the rule's `src`), if any. */
  localAddress?: string;
}

export interface ProbeOptions {
  /** Number of backends: indexes 0 .. count-1. */
  count: number;
  intervalMs: number;
  /** How long one probe may take, resolution included; at most the interval makes sense. */
  timeoutMs: number;
  /** Where backend `index` is now (through the DNS cache); a rejection counts as a failed probe. */
  targets: (index: number) => readonly ProbeAddress[] | Promise<readonly ProbeAddress[]>;
  /** Each probe's outcome: true when a connect succeeded. */
  report: (index: number, up: boolean) => void;
  /** Backends not probed for now (in maintenance); asked at each interval. */
  paused?: (index: number) => boolean;
}

/** Options Bun accepts for Bun.connect although its type definitions omit them. */
interface ConnectSourceOptions {
  localAddress?: string;
}

class Probe {
  addresses: readonly ProbeAddress[] = [];
  next = 0;
  timer: Timer | undefined;
  /** Reported (up, down or timed out): later events of this probe change nothing. */
  reported = false;

  constructor(
    readonly prober: HealthProber,
    readonly index: number,
  ) {}
}

/** Shared by every probe socket; the probe rides on socket.data. */
const probeHandlers = {
  open(socket: Socket<Probe>): void {
    // end() is a full close in Bun: the probe only needed the handshake.
    socket.end();
    socket.data.prober.connected(socket.data);
  },
  connectError(socket: Socket<Probe>, _error: Error): void {
    socket.data.prober.refused(socket.data);
  },
  data(): void {},
  close(): void {},
  error(): void {},
};

function probeTimedOut(probe: Probe): void {
  probe.timer = undefined;
  probe.prober.timedOut(probe);
}

function ignoreRejection(): void {}

export class HealthProber {
  /** The probe in progress per backend, if any. */
  private readonly probes: Array<Probe | undefined>;
  private interval: Timer | undefined;
  private stopped = false;

  constructor(private readonly options: ProbeOptions) {
    if (!Number.isInteger(options.count) || options.count < 0) throw new RangeError(`bad backend count ${options.count}`);
    if (!(options.intervalMs > 0)) throw new RangeError(`probe interval must be positive, not ${options.intervalMs}`);
    if (!(options.timeoutMs > 0)) throw new RangeError(`probe timeout must be positive, not ${options.timeoutMs}`);
    this.probes = new Array<Probe | undefined>(options.count).fill(undefined);
  }

  /** Probe every backend now, then every interval. */
  start(): void {
    if (this.interval !== undefined || this.stopped) return;
    this.tick();
    this.interval = setInterval(() => this.tick(), this.options.intervalMs);
    // Probes alone should not keep the process alive.
    this.interval.unref();
  }

  /** Stop probing for good: no timer is left and nothing more is reported. */
  stop(): void {
    this.stopped = true;
    if (this.interval !== undefined) clearInterval(this.interval);
    this.interval = undefined;
    for (let i = 0; i < this.probes.length; i++) {
      const probe = this.probes[i];
      if (probe === undefined) continue;
      if (probe.timer !== undefined) clearTimeout(probe.timer);
      probe.timer = undefined;
      probe.reported = true;
      this.probes[i] = undefined;
    }
  }

  /** Probes whose connect (or resolution) has not ended yet, timed-out ones included. */
  get inFlight(): number {
    let count = 0;
    for (const probe of this.probes) if (probe !== undefined) count++;
    return count;
  }

  private tick(): void {
    for (let index = 0; index < this.probes.length; index++) {
      if (this.options.paused?.(index) === true) continue;
      const probe = this.probes[index];
      if (probe === undefined) this.begin(index);
      // Still stuck after its timeout: one more failed probe, and no second connect.
      else if (probe.reported) this.options.report(index, false);
    }
  }

  private begin(index: number): void {
    const probe = new Probe(this, index);
    this.probes[index] = probe;
    probe.timer = setTimeout(probeTimedOut, this.options.timeoutMs, probe);
    probe.timer.unref();
    let targets: readonly ProbeAddress[] | Promise<readonly ProbeAddress[]>;
    try {
      targets = this.options.targets(index);
    } catch {
      this.finish(probe, false);
      return;
    }
    if (targets instanceof Promise) {
      targets.then(
        (addresses) => this.resolved(probe, addresses),
        () => this.finish(probe, false),
      );
    } else {
      this.resolved(probe, targets);
    }
  }

  private resolved(probe: Probe, addresses: readonly ProbeAddress[]): void {
    if (probe.reported) {
      // Timed out (or stopped) while resolving: the slot is free again, nothing was connected.
      this.release(probe);
      return;
    }
    probe.addresses = addresses;
    this.connectNext(probe);
  }

  private connectNext(probe: Probe): void {
    const address = probe.addresses[probe.next++];
    if (address === undefined) {
      this.finish(probe, false);
      return;
    }
    const options: Bun.TCPSocketConnectOptions<Probe> & ConnectSourceOptions = {
      hostname: address.host,
      port: address.port,
      data: probe,
      socket: probeHandlers,
    };
    if (address.localAddress !== undefined) options.localAddress = address.localAddress;
    try {
      // Failures arrive through connectError; the promise's rejection carries nothing more.
      if (address.unix !== undefined) Bun.connect({ unix: address.unix, data: probe, socket: probeHandlers }).catch(ignoreRejection);
      else Bun.connect(options).catch(ignoreRejection);
    } catch {
      // An address Bun will not even try (malformed): on to the next one.
      this.connectNext(probe);
    }
  }

  /** @internal Called by the socket handlers. */
  connected(probe: Probe): void {
    this.finish(probe, true);
  }

  /** @internal Called by the socket handlers: try the backend's next address, if it has one. */
  refused(probe: Probe): void {
    if (probe.reported) this.release(probe);
    else this.connectNext(probe);
  }

  /** @internal Called by the probe's timer. */
  timedOut(probe: Probe): void {
    if (probe.reported) return;
    probe.reported = true;
    this.options.report(probe.index, false);
    // The slot stays taken until the connect in progress ends (refused(), connected()).
  }

  private finish(probe: Probe, up: boolean): void {
    if (probe.timer !== undefined) clearTimeout(probe.timer);
    probe.timer = undefined;
    const report = !probe.reported;
    probe.reported = true;
    this.release(probe);
    if (report) this.options.report(probe.index, up);
  }

  private release(probe: Probe): void {
    if (this.probes[probe.index] === probe) this.probes[probe.index] = undefined;
  }
}
