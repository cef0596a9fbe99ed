/**
 * @module `--cache FILE`: the etcd keys of the last config applied, so that
 * `oi` can start while etcd is unreachable. Written each time a config from
 * etcd is applied, as oi writes its own files (own-files.ts: a new file
 * beside it, created exclusively with mode 0600, never through a symbolic
 * link, synced, then renamed over it), so a reader sees the old contents or
 * the new, never half. Read without following a
 * symbolic link either.
 */
import { closeSync, constants, openSync, readFileSync } from "node:fs";
import { replaceFile } from "../own-files.ts";
import type { KeySet } from "./assemble.ts";

/** Owner only: the config may hold the admin API's token. */
const CACHE_MODE = 0o600;
const FORMAT = "oi etcd cache 1";

export interface CacheContents {
  /** The etcd address the keys came from. */
  source: string;
  /** etcd's revision when they were read. */
  revision: number;
  /** When they were written (ISO 8601). */
  written: string;
  keys: KeySet;
}

export function writeCache(path: string, contents: CacheContents): void {
  replaceFile(path, `${JSON.stringify({ format: FORMAT, ...contents }, null, 2)}\n`, CACHE_MODE, { durable: true });
}

/** The cache's contents, or why it cannot be used. */
export function readCache(path: string): CacheContents | string {
  let text: string;
  try {
    const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      text = readFileSync(fd, "utf8");
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    const code = error instanceof Error && "code" in error ? String(error.code) : "";
    if (code === "ENOENT") return `no cache file ${path} (one is written once a config from etcd was applied)`;
    if (code === "ELOOP") return `cache file ${path} is a symbolic link: refused`;
    return `cannot read cache file ${path}: ${error instanceof Error ? error.message : String(error)}`;
  }
  try {
    const parsed = JSON.parse(text) as Partial<CacheContents> & { format?: unknown };
    const keys = parsed.keys;
    if (parsed.format !== FORMAT || keys === undefined || typeof keys.rules !== "object" || keys.rules === null) throw new Error("not an oi etcd cache");
    const strings = Object.values(keys.rules).every((value) => typeof value === "string");
    if (!strings || (keys.global !== undefined && typeof keys.global !== "string")) throw new Error("its keys are not all text");
    return { source: String(parsed.source), revision: Number(parsed.revision), written: String(parsed.written), keys };
  } catch (error) {
    return `cache file ${path} is unusable: ${error instanceof Error ? error.message : String(error)}`;
  }
}
