/**
 * @module A small client of etcd's v3 API through its JSON gateway, over
 * fetch: a prefix's keys with the revision they were read at
 * (`POST /v3/kv/range`), and a watch of the prefix (`POST /v3/watch`, a
 * response that streams one JSON message a line). Members are tried in
 * turn; with a user file it logs in (`POST /v3/auth/authenticate`) and
 * sends the token, logging in again when etcd says the token is stale.
 */
import { readFileSync } from "node:fs";
import type { EtcdAddress } from "./address.ts";

/** How long a member gets to answer a read or a login before the next is tried. */
const REQUEST_TIMEOUT_MS = 3000;
/** gRPC's UNAUTHENTICATED, as the gateway reports an expired or unknown token. */
const GRPC_UNAUTHENTICATED = 16;

export interface EtcdClientOptions {
  /** PEM files for `etcds://`: the CA that signed the members' certificates, and a client certificate and key. */
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  /** A file holding `user:password` for etcd's authentication. */
  userFile?: string | undefined;
}

export interface KeyValue {
  key: string;
  value: string;
}

/** One message of a watch stream, as oi needs it. */
export type WatchMessage =
  | { kind: "created" }
  /** `revision`: the latest change among them; every change of the prefix up to it has been delivered. */
  | { kind: "events"; keys: string[]; revision: number }
  /** The watch ended on etcd's side (its start revision was compacted away, or it was cancelled): read again. */
  | { kind: "canceled"; reason: string };

/** etcd answered, with an error. */
export class EtcdError extends Error {}

const encoder = new TextEncoder();

function base64(text: string): string {
  return Buffer.from(text, "utf8").toString("base64");
}

function unbase64(text: string | undefined): string {
  return Buffer.from(text ?? "", "base64").toString("utf8");
}

/** The first key (as bytes) after every key that starts with `prefix`: etcd's `range_end` for a prefix; a zero byte for "to the end". */
export function prefixEnd(prefix: string): Uint8Array {
  const bytes = [...encoder.encode(prefix)];
  while (bytes.length > 0) {
    const last = bytes.pop()!;
    if (last < 0xff) return Uint8Array.from([...bytes, last + 1]);
  }
  return Uint8Array.of(0);
}

/** The key and range_end of every key under `prefix/` (every key when the prefix is empty), base64. */
function rangeOf(prefix: string): { key: string; range_end: string } {
  if (prefix === "") return { key: base64("\0"), range_end: base64("\0") };
  const start = `${prefix}/`;
  return { key: base64(start), range_end: Buffer.from(prefixEnd(start)).toString("base64") };
}

const CONNECT_ERRORS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ConnectionRefused: "connection refused",
  ECONNRESET: "connection reset",
  ConnectionClosed: "connection closed",
};

function reasonOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.name === "TimeoutError") return `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`;
  const code = "code" in error && typeof error.code === "string" ? error.code : undefined;
  if (code === undefined) return error.message;
  return CONNECT_ERRORS[code] ?? `${error.message} (${code})`;
}

/** `user:password` from a file (the first line; the password may hold colons). */
function readCredentials(path: string): { name: string; password: string } {
  const line = readFileSync(path, "utf8").split(/\r?\n/)[0] ?? "";
  const colon = line.indexOf(":");
  if (colon <= 0) throw new Error(`${path}: expected one line USER:PASSWORD`);
  return { name: line.slice(0, colon), password: line.slice(colon + 1) };
}

export class EtcdClient {
  /** The member that answered last: asked first next time. */
  private current = 0;
  private token: string | undefined;
  private readonly tls: { ca?: string; cert?: string; key?: string } | undefined;
  private readonly credentials: { name: string; password: string } | undefined;

  /** Reads the certificate and user files now: a missing one is an error at start, not at the first request. */
  constructor(
    private readonly address: EtcdAddress,
    options: EtcdClientOptions = {},
  ) {
    const read = (path: string | undefined) => (path === undefined ? undefined : readFileSync(path, "utf8"));
    const tlsGiven = [options.ca, options.cert, options.key].some((path) => path !== undefined);
    if (tlsGiven && !address.tls) throw new Error("--etcd-ca, --etcd-cert and --etcd-key are for etcds:// addresses (TLS)");
    if ((options.cert === undefined) !== (options.key === undefined)) throw new Error("--etcd-cert and --etcd-key go together");
    if (address.tls) {
      const tls: { ca?: string; cert?: string; key?: string } = {};
      const ca = read(options.ca);
      const cert = read(options.cert);
      const key = read(options.key);
      if (ca !== undefined) tls.ca = ca;
      if (cert !== undefined) tls.cert = cert;
      if (key !== undefined) tls.key = key;
      this.tls = tls;
    } else this.tls = undefined;
    this.credentials = options.userFile === undefined ? undefined : readCredentials(options.userFile);
  }

  /** Every key under the prefix, and the store's revision they were read at. */
  async range(): Promise<{ revision: number; kvs: KeyValue[] }> {
    const answer = (await this.call("/v3/kv/range", rangeOf(this.address.prefix))) as {
      header?: { revision?: string };
      kvs?: Array<{ key?: string; value?: string }>;
    };
    const kvs = (answer.kvs ?? []).map((kv) => ({ key: unbase64(kv.key), value: unbase64(kv.value) }));
    return { revision: Number(answer.header?.revision ?? 0), kvs };
  }

  /**
   * Watch the prefix from `startRevision` (undefined: from now) on the
   * member that answered last; `onMessage` gets each message. Resolves when
   * the stream ends (the member went away) or `signal` aborts; throws when
   * it cannot be opened.
   */
  async watch(startRevision: number | undefined, signal: AbortSignal, onMessage: (message: WatchMessage) => void): Promise<void> {
    const create: Record<string, unknown> = { ...rangeOf(this.address.prefix) };
    if (startRevision !== undefined) create.start_revision = String(startRevision);
    const response = await this.openWatch(create, signal);
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of response.body) {
      pending += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = pending.indexOf("\n")) !== -1) {
        const line = pending.slice(0, newline).trim();
        pending = pending.slice(newline + 1);
        if (line === "") continue;
        const message = watchMessage(line);
        // A watch refused for its token (expired while the stream was closed) opens again with a fresh one.
        if (message.kind === "canceled") this.token = undefined;
        onMessage(message);
      }
    }
  }

  /** The watch's response, from the first member that takes it. */
  private openWatch(create: Record<string, unknown>, signal: AbortSignal): Promise<Response & { body: ReadableStream<Uint8Array> }> {
    return this.onSomeMember(
      async (endpoint) => {
        if (this.credentials !== undefined && this.token === undefined) await this.login(endpoint);
        const response = await this.post(endpoint, "/v3/watch", { create_request: create }, signal);
        if (response.status === 401) this.token = undefined;
        if (!response.ok || response.body === null) throw new EtcdError(`watch refused: HTTP ${response.status} ${await response.text()}`);
        return response as Response & { body: ReadableStream<Uint8Array> };
      },
      () => signal.aborted,
    );
  }

  /** POST to the members in turn; etcd's own errors are not retried elsewhere. */
  private call(path: string, body: unknown): Promise<unknown> {
    return this.onSomeMember(
      (endpoint) => this.callOne(endpoint, path, body),
      (error) => error instanceof EtcdError,
    );
  }

  /** `attempt` on the members in turn, from the one that answered last, until one succeeds; an error `final` says so of ends the tries. */
  private async onSomeMember<T>(attempt: (endpoint: string) => Promise<T>, final: (error: unknown) => boolean): Promise<T> {
    const failures: string[] = [];
    const count = this.address.endpoints.length;
    for (let tried = 0; tried < count; tried++) {
      const index = (this.current + tried) % count;
      const endpoint = this.address.endpoints[index]!;
      try {
        const result = await attempt(endpoint);
        this.current = index;
        return result;
      } catch (error) {
        if (final(error)) throw error;
        failures.push(`${endpoint}: ${reasonOf(error)}`);
      }
    }
    throw new Error(failures.join("; "));
  }

  private async callOne(endpoint: string, path: string, body: unknown, again = true): Promise<unknown> {
    if (this.credentials !== undefined && this.token === undefined) await this.login(endpoint);
    const response = await this.post(endpoint, path, body, AbortSignal.timeout(REQUEST_TIMEOUT_MS));
    const text = await response.text();
    let answer: { code?: number; error?: string; message?: string } = {};
    try {
      answer = JSON.parse(text) as typeof answer;
    } catch {
      // Reported below with the status.
    }
    if (response.ok) return answer;
    if (again && this.credentials !== undefined && (response.status === 401 || answer.code === GRPC_UNAUTHENTICATED)) {
      this.token = undefined;
      return this.callOne(endpoint, path, body, false);
    }
    throw new EtcdError(`${path}: HTTP ${response.status}: ${answer.message ?? answer.error ?? text}`);
  }

  private async login(endpoint: string): Promise<void> {
    const response = await this.post(endpoint, "/v3/auth/authenticate", this.credentials, AbortSignal.timeout(REQUEST_TIMEOUT_MS), false);
    const answer = (await response.json().catch(() => ({}))) as { token?: string; message?: string; error?: string };
    if (!response.ok || answer.token === undefined) {
      throw new EtcdError(`login as '${this.credentials?.name}' refused: ${answer.message ?? answer.error ?? `HTTP ${response.status}`}`);
    }
    this.token = answer.token;
  }

  private post(endpoint: string, path: string, body: unknown, signal: AbortSignal, withToken = true): Promise<Response> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (withToken && this.token !== undefined) headers.authorization = this.token;
    return fetch(`${endpoint}${path}`, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      signal,
      ...(this.tls === undefined ? {} : { tls: this.tls }),
    });
  }
}

/** One line of a watch stream, as oi needs it (exported for its tests). */
export function watchMessage(line: string): WatchMessage {
  let parsed: { result?: Record<string, unknown>; error?: { message?: string } };
  try {
    parsed = JSON.parse(line) as typeof parsed;
  } catch {
    return { kind: "canceled", reason: `unreadable watch message: ${line.slice(0, 200)}` };
  }
  const result = parsed.result;
  if (result === undefined) return { kind: "canceled", reason: parsed.error?.message ?? line.slice(0, 200) };
  if (result.canceled === true || result.compact_revision !== undefined) {
    const compacted = result.compact_revision === undefined ? "" : ` (revision compacted up to ${String(result.compact_revision)})`;
    return { kind: "canceled", reason: `${typeof result.cancel_reason === "string" ? result.cancel_reason : "watch cancelled"}${compacted}` };
  }
  const events = Array.isArray(result.events) ? (result.events as Array<{ kv?: { key?: string; mod_revision?: string } }>) : [];
  if (events.length > 0) {
    const revision = Math.max(...events.map((event) => Number(event.kv?.mod_revision ?? 0)));
    return { kind: "events", keys: events.map((event) => unbase64(event.kv?.key)), revision };
  }
  return { kind: "created" };
}
