/**
 * @module What every measurement needs: the path, the settings, the shared
 * backends, the tools that are missing, and where to put raw files.
 */
import type { Backends } from "../backends.ts";
import type { BenchOptions, Topology } from "../types.ts";

export interface MeasureContext {
  topology: Topology;
  options: BenchOptions;
  backends: Backends;
  /** Commands not installed: figures that need them are skipped (null). */
  missing: Set<string>;
  /** `prlimit --nofile=...` prefix for every process that holds many sockets. */
  limitPrefix: string[];
  /** oi's entry point in the bench's snapshot of src/. */
  oiCli: string;
  /** oi compiled by `bun build --compile` from that snapshot (the start-up figure), when the build worked. */
  oiBinary?: string;
  /** The descriptor limit that prefix sets. */
  fdLimit: number;
  hardwareCounters: boolean;
  syscallTracepoint: boolean;
  /** Raw files of this run (git-ignored). */
  tmpDir: string;
  log(line: string): void;
}

/** Gibibytes in `bytes`. */
export function gib(bytes: number): number {
  return bytes / 2 ** 30;
}
