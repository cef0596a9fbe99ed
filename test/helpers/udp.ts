/**
 * Real UDP peers for end-to-end tests: clients that keep what they receive
 * and can wait for it, and backends (echo, or any reply) that record which
 * source each datagram came from; plus the per-test clean-up the UDP suites
 * use for them and for the `oi` processes and TCP backends they start, and
 * an `oi` served inside the test process for tests that read its state.
 */
import type { udp } from "bun";
import type { BackendStatus } from "../../src/balance/pool.ts";
import { loadConfigText } from "../../src/config/load.ts";
import { Admission } from "../../src/limits.ts";
import { Server } from "../../src/server.ts";
import type { SessionEvents, SessionRecord } from "../../src/session.ts";
import type { Config } from "../../src/types.ts";
import { onCleanup } from "./harness.ts";
import { withTimeout } from "./peers.ts";

export { cleanUpAfterEachTest, oi, onCleanup, until } from "./harness.ts";
export { backend as tcpBackend } from "./harness.ts";

/** A UDP port free on `host` right now (bind to 0, read the port, release it). */
export async function freeUdpPort(host = "127.0.0.1"): Promise<number> {
  const probe = await Bun.udpSocket({ hostname: host, port: 0 });
  const port = probe.port;
  probe.close();
  return port;
}

/** One datagram as a peer received it. */
export interface Received {
  data: Uint8Array;
  address: string;
  port: number;
}

/** Collects datagrams and lets a test wait for a count of them. */
class Inbox {
  readonly received: Received[] = [];
  private waiters: Array<() => void> = [];

  push(item: Received): void {
    this.received.push(item);
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** Resolves once `count` datagrams have arrived in all, or rejects after `timeoutMs`. */
  async waitCount(count: number, timeoutMs = 5000, what = `${count} datagrams`): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.received.length < count) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what} (have ${this.received.length})`);
      await Promise.race([new Promise<void>((wake) => this.waiters.push(wake)), Bun.sleep(Math.min(left, 50))]);
    }
  }
}

/** A client socket connected to `port` on `host`, optionally bound to `localHost` (any 127.x works on Linux). */
export class UdpClient extends Inbox {
  private constructor(readonly socket: udp.ConnectedSocket<"uint8array">) {
    super();
  }

  static async open(host: string, port: number, localHost?: string): Promise<UdpClient> {
    let client: UdpClient | undefined;
    const socket = await Bun.udpSocket({
      binaryType: "uint8array",
      // Bun binds to 0.0.0.0 by default, which cannot reach an IPv6 address.
      hostname: localHost ?? (host.includes(":") ? "::" : "0.0.0.0"),
      connect: { hostname: host, port },
      socket: {
        data(_socket, data, fromPort, address) {
          client?.push({ data, address, port: fromPort });
        },
        error() {},
      },
    });
    client = new UdpClient(socket);
    onCleanup(() => socket.close());
    return client;
  }

  get port(): number {
    return this.socket.port;
  }

  send(data: Uint8Array | string): void {
    this.socket.send(data);
  }

  close(): void {
    this.socket.close();
  }
}

export interface UdpBackend extends Inbox {
  port: number;
  socket: udp.Socket<"uint8array">;
  /** Distinct `address:port` sources seen, in order of first appearance. */
  sources(): string[];
  close(): void;
}

/**
 * A UDP backend. By default it echoes each datagram to its source; `reply`
 * may return something else to send, or undefined to stay silent.
 */
export async function startUdpBackend(
  host = "127.0.0.1",
  reply: (data: Uint8Array) => Uint8Array | undefined = (data) => data,
  port = 0,
): Promise<UdpBackend> {
  const inbox = new Inbox();
  const socket = await Bun.udpSocket({
    hostname: host,
    port,
    binaryType: "uint8array",
    socket: {
      data(self, data, fromPort, address) {
        inbox.push({ data, address, port: fromPort });
        const answer = reply(data);
        if (answer !== undefined) self.send(answer, fromPort, address);
      },
      error() {},
    },
  });
  const backend = Object.assign(inbox, {
    port: socket.port,
    socket,
    sources: () => [...new Set(inbox.received.map((item) => `${item.address}:${item.port}`))],
    close: () => socket.close(),
  });
  onCleanup(() => socket.close());
  return backend;
}

/** `payload` behind its 16-bit big-endian length, as `len16` framing writes it. */
export function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(payload.length + 2);
  out[0] = payload.length >> 8;
  out[1] = payload.length & 0xff;
  out.set(payload, 2);
  return out;
}

/** Cut a `len16` stream into its payloads; throws on a trailing partial frame. */
export function unframe(stream: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < stream.length) {
    if (stream.length - at < 2) throw new Error("partial length at the end of the stream");
    const length = ((stream[at] ?? 0) << 8) | (stream[at + 1] ?? 0);
    at += 2;
    if (stream.length - at < length) throw new Error("partial frame at the end of the stream");
    out.push(stream.subarray(at, at + length));
    at += length;
  }
  return out;
}

/** Lines of oi's verbose log about sessions ended on the rule bound at `port`, with their results. */
export function endedResults(stdout: string, port: number): string[] {
  return endedSessions(stdout, port).map((session) => session.result);
}

/** Sessions ended on the rule bound at `port`, per oi's verbose log: the backend reached ("(no backend)" when none) and the result. */
export function endedSessions(stdout: string, port: number): Array<{ client: string; backend: string; result: string }> {
  const pattern = new RegExp(`(\\S+) -> \\S+:${port}/(?:udp|tcp) -> (\\(no backend\\)|\\S+) (.+?) in=\\d+ out=\\d+ \\d+ms`, "g");
  return [...stdout.matchAll(pattern)].map((match) => ({ client: match[1] ?? "", backend: match[2] ?? "", result: match[3] ?? "" }));
}

export { withTimeout };

/**
 * A rule set served in this process, by the real Server and forwarders on
 * real loopback sockets, so a test can read what the log and metrics are
 * built from: every session's record (its backend, its result) and the
 * balancer's per-backend counts. Stopped after the test.
 */
export interface InProcessOi {
  server: Server;
  /** Records of ended sessions, in order. */
  records: SessionRecord[];
  /** Per-backend state of the rule named `rule` (the bind endpoint unless the rule has a name). */
  statuses(rule: string): ReadonlyArray<BackendStatus>;
  /** Apply another config text, as a SIGHUP would. */
  reload(text: string): Promise<void>;
}

function loadText(text: string, name: string): Config {
  const loaded = loadConfigText(text, name);
  if (loaded.config === undefined) throw new Error(`config does not load: ${loaded.errors.map((issue) => `${issue.line}: ${issue.reason}`).join("; ")}`);
  return loaded.config;
}

/** Serve `text` (its format from `name`'s extension) in this process. */
export async function inProcessOi(text: string, name = "oi.toml"): Promise<InProcessOi> {
  const records: SessionRecord[] = [];
  const events: SessionEvents = {
    denied() {},
    started() {},
    ended(record) {
      records.push(record);
    },
  };
  const server = new Server(events, new Admission(undefined));
  await server.apply(loadText(text, name));
  onCleanup(() => {
    server.stopAccepting();
    server.closeAll();
  });
  return {
    server,
    records,
    statuses(rule) {
      const found = server.backends.all.find((backends) => backends.rule.name === rule);
      if (found === undefined) throw new Error(`no backends for rule ${rule}`);
      return found.statuses;
    },
    async reload(next) {
      await server.apply(loadText(next, name));
    },
  };
}
