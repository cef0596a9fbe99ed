/**
 * @module Where the config comes from: a file (read at start and at each
 * reload) or etcd (read likewise, and followed: a change asks for a reload).
 * Both give the one config model and go through the daemon's one reload
 * path.
 */
import { loadConfig } from "./config/load.ts";
import type { LoadResult } from "./types.ts";
import { isEtcdAddress, parseEtcdAddress } from "./etcd/address.ts";
import { EtcdSource, type EtcdOptions } from "./etcd/source.ts";

export interface ConfigSource {
  /** What messages call it: the file's path, or the etcd address. */
  readonly label: string;
  /**
   * Read the config. A file's is all or nothing (no config when there is an
   * error); etcd's may come with errors about keys left out.
   */
  load(): Promise<LoadResult>;
  /** The config of the last load is in force now. */
  applied?(): void;
  /** Follow changes from now on: `reload` is asked for when the config changed. */
  follow?(reload: (trigger: string) => Promise<unknown>): void;
  stop?(): void;
}

export type { EtcdOptions };

/** What `-c` names: the source, or why it cannot be one. `check`: read what is stored, never a cache. */
export function configSource(path: string, etcd: EtcdOptions, purpose: "run" | "check"): ConfigSource | string {
  if (!isEtcdAddress(path)) return { label: path, load: () => loadConfig(path) };
  const address = parseEtcdAddress(path);
  if (typeof address === "string") return address;
  try {
    return new EtcdSource(path, address, purpose === "check" ? { ...etcd, cache: undefined, checking: true } : etcd);
  } catch (error) {
    return `${path}: ${error instanceof Error ? error.message : String(error)}`;
  }
}
