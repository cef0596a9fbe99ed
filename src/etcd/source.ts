/**
 * @module The config from etcd: read all keys under the prefix, build the
 * config (assemble.ts), and watch the prefix from the revision after the
 * read so no change is missed; each change asks the daemon for a reload,
 * which reads again. While etcd is unreachable the running config stays and
 * the watch reconnects with backoff, logging the loss once and the return
 * once. At start, an unreachable etcd falls back to the cache (`--cache`).
 */
import { consola } from "consola";
import type { ConfigSource } from "../config-source.ts";
import type { LoadResult } from "../types.ts";
import { type EtcdAddress, keyLabel, keyOf } from "./address.ts";
import { assemble, type KeySet, keySetOf } from "./assemble.ts";
import { readCache, writeCache } from "./cache.ts";
import { EtcdClient, type EtcdClientOptions, EtcdError } from "./client.ts";

export interface EtcdOptions extends EtcdClientOptions {
  /** `--cache FILE`. */
  cache?: string | undefined;
  /** `oi check`: what is stored is judged, nothing else (no cache, no fallbacks). */
  checking?: boolean | undefined;
}

/** Changes that come in a burst (several `etcdctl put`s) make one reload. */
const GATHER_MS = 50;
const FIRST_BACKOFF_MS = 250;
const LAST_BACKOFF_MS = 5000;
/**
 * A watch that ran at least this long and then ended (fetch's idle timeout
 * ends a quiet stream after 5 minutes) is opened again at once, without a
 * word; only when that fails is etcd lost.
 */
const HEALTHY_WATCH_MS = 1000;
/** How many changed keys a reload's log line names. */
const NAMED_KEYS = 3;

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export class EtcdSource implements ConfigSource {
  private readonly client: EtcdClient;
  /** The values in force, the fallbacks of refused keys. */
  private inForce: KeySet = { rules: {} };
  /** What the last load made, until it is applied. */
  private loaded: { used: KeySet; revision: number; fromEtcd: boolean } | undefined;
  /** Every change up to this revision has been seen: by the last read, or since by the watch. */
  private revision: number | undefined;
  private started = false;
  /** Since etcd could not be reached (at start, or by the watch); cleared when the watch is back. */
  private unreachable = false;
  private stopped = false;
  private abort: AbortController | undefined;
  private wake: (() => void) | undefined;
  private reload: ((trigger: string) => Promise<unknown>) | undefined;
  private gathered: Set<string> | undefined;

  constructor(
    readonly label: string,
    private readonly address: EtcdAddress,
    private readonly options: EtcdOptions,
  ) {
    this.client = new EtcdClient(address, options);
    // A key refused at start keeps the version the last run applied.
    if (options.cache !== undefined && options.checking !== true) {
      const cached = readCache(options.cache);
      if (typeof cached !== "string" && cached.source === label) this.inForce = cached.keys;
    }
  }

  /** How key `name` (`rules/web`) is named in messages. */
  private keyName(name: string): string {
    return keyLabel(this.address, keyOf(this.address, name));
  }

  async load(): Promise<LoadResult> {
    let read;
    try {
      read = await this.client.range();
    } catch (error) {
      const reason = error instanceof EtcdError ? `etcd refused the read: ${reasonOf(error)}` : `etcd unreachable: ${reasonOf(error)}`;
      if (!this.started && this.options.cache !== undefined) return this.loadCache(reason);
      const more = this.started || this.options.checking === true ? "" : " (and no --cache FILE to start from)";
      return { config: undefined, errors: [{ file: this.label, line: 0, reason: `${reason}${more}` }], warnings: [], files: [] };
    }
    const skip = this.address.prefix === "" ? 0 : this.address.prefix.length + 1;
    const { keys, ignored } = keySetOf(read.kvs.map((kv) => ({ name: kv.key.slice(skip), value: kv.value })));
    this.revision = Math.max(this.revision ?? 0, read.revision);
    const built = assemble(keys, this.inForce, (name) => this.keyName(name), this.label);
    const warnings = [
      ...built.warnings,
      ...ignored.map((name) => ({ file: this.keyName(name), line: 0, reason: "ignored: oi reads PREFIX/global and PREFIX/rules/NAME" })),
    ];
    this.loaded = { used: built.used, revision: read.revision, fromEtcd: true };
    return { config: built.config, errors: built.errors, warnings, files: [] };
  }

  private loadCache(reason: string): LoadResult {
    const path = this.options.cache!;
    const cached = readCache(path);
    if (typeof cached === "string") return { config: undefined, errors: [{ file: this.label, line: 0, reason: `${reason}; ${cached}` }], warnings: [], files: [] };
    if (cached.source !== this.label) {
      const other = `cache file ${path} holds the keys of ${cached.source}, not of ${this.label}`;
      return { config: undefined, errors: [{ file: this.label, line: 0, reason: `${reason}; ${other}` }], warnings: [], files: [] };
    }
    consola.warn(`${this.label}: ${reason}; starting from the cache ${path} (revision ${cached.revision}, written ${cached.written})`);
    this.unreachable = true;
    const built = assemble(cached.keys, cached.keys, (name) => this.keyName(name), this.label);
    this.loaded = { used: built.used, revision: cached.revision, fromEtcd: false };
    return { config: built.config, errors: built.errors, warnings: built.warnings, files: [] };
  }

  applied(): void {
    const loaded = this.loaded;
    this.loaded = undefined;
    this.started = true;
    if (loaded === undefined) return;
    this.inForce = loaded.used;
    if (!loaded.fromEtcd || this.options.cache === undefined) return;
    try {
      writeCache(this.options.cache, { source: this.label, revision: loaded.revision, written: new Date().toISOString(), keys: loaded.used });
    } catch (error) {
      consola.error(`cannot write the cache ${this.options.cache}: ${reasonOf(error)}`);
    }
  }

  follow(reload: (trigger: string) => Promise<unknown>): void {
    this.reload = reload;
    void this.watchLoop();
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
  }

  /** Watch until stopped; a loss of etcd is logged once, and its return once (with a reload, for what changed meanwhile). */
  private async watchLoop(): Promise<void> {
    let backoff = FIRST_BACKOFF_MS;
    /** Read again once the watch is in place: etcd was away, or cancelled the watch. */
    let reread = this.unreachable;
    while (!this.stopped) {
      const abort = new AbortController();
      this.abort = abort;
      let cancelled: string | undefined;
      let reason = "the watch stream ended";
      let createdAt: number | undefined;
      try {
        const start = this.revision === undefined || reread ? undefined : this.revision + 1;
        await this.client.watch(start, abort.signal, (message) => {
          if (message.kind === "created") {
            createdAt = Date.now();
            backoff = FIRST_BACKOFF_MS;
            if (this.unreachable) consola.info(`${this.label}: etcd reachable again: reading the keys`);
            this.unreachable = false;
            if (reread) this.changed("etcd: watch (re)started");
            reread = false;
          } else if (message.kind === "events") {
            this.revision = Math.max(this.revision ?? 0, message.revision);
            for (const key of message.keys) this.changed(key);
          } else {
            cancelled = message.reason;
            abort.abort();
          }
        });
      } catch (error) {
        reason = reasonOf(error);
      }
      if (this.stopped) break;
      // A stream that served a while and ended (an idle timeout, a member restarted): open it again at once, from what was seen.
      if (cancelled === undefined && createdAt !== undefined && Date.now() - createdAt >= HEALTHY_WATCH_MS) {
        consola.debug(`${this.label}: the watch ended after ${Math.round((Date.now() - createdAt) / 1000)} s (${reason}): watching again`);
        continue;
      }
      if (cancelled !== undefined) consola.warn(`${this.label}: etcd ended the watch (${cancelled}): reading the keys again`);
      else if (!this.unreachable) {
        consola.warn(`${this.label}: lost etcd (${reason}): the running configuration stays; reconnecting`);
        this.unreachable = true;
      }
      reread = true;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, backoff);
      });
      backoff = Math.min(backoff * 2, LAST_BACKOFF_MS);
    }
  }

  /** A key changed (or everything should be read again): one reload for a burst. */
  private changed(key: string): void {
    if (this.gathered !== undefined) {
      this.gathered.add(key);
      return;
    }
    const gathered = new Set([key]);
    this.gathered = gathered;
    setTimeout(() => {
      this.gathered = undefined;
      const names = [...gathered];
      const shown = names.slice(0, NAMED_KEYS).join(", ") + (names.length > NAMED_KEYS ? ` and ${names.length - NAMED_KEYS} more` : "");
      const trigger = names.length === 1 && names[0]!.startsWith("etcd: ") ? names[0]! : `etcd: ${shown} changed`;
      this.reload?.(trigger).catch((error: unknown) => consola.error(`reload failed: ${reasonOf(error)}`));
    }, GATHER_MS);
  }
}
