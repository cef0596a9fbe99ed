/**
 * @module Reading /proc for a process and its descendants (socat forks a
 * child per connection, so its cost lives in a tree): CPU time and memory.
 */
import { readdirSync, readFileSync } from "node:fs";

const CLOCK_TICKS = 100; // USER_HZ: 100 on every Linux architecture Debian ships.

function read(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** Fields of /proc/PID/stat after the command name (field 3 onwards, 0-based index 0 = state). */
function statFields(pid: number): string[] | undefined {
  const text = read(`/proc/${pid}/stat`);
  if (text === undefined) return undefined;
  return text.slice(text.lastIndexOf(")") + 2).split(" ");
}

/** User and system CPU seconds of `pid` itself so far (all its threads; not its children). Throws when it is gone. */
export function cpuTimes(pid: number): { user: number; system: number } {
  const fields = statFields(pid);
  if (fields === undefined) throw new Error(`process ${pid} is gone`);
  // utime and stime are fields 14 and 15 of stat (index 11 and 12 here).
  return { user: Number(fields[11]) / CLOCK_TICKS, system: Number(fields[12]) / CLOCK_TICKS };
}

/** `pid` and every live descendant. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (fields === undefined) continue;
    const parent = Number(fields[1]);
    const list = children.get(parent) ?? [];
    list.push(Number(entry));
    children.set(parent, list);
  }
  const tree: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const next = queue.shift()!;
    tree.push(next);
    queue.push(...(children.get(next) ?? []));
  }
  return tree;
}

/**
 * CPU seconds used by `pid` and its descendants so far: user + system time of
 * the live ones, plus what exited children left in their parents' counters.
 */
export function treeCpuSeconds(pid: number): number {
  let ticks = 0;
  for (const member of processTree(pid)) {
    const fields = statFields(member);
    if (fields === undefined) continue;
    // utime, stime, cutime, cstime are fields 14-17 of stat (index 11-14 here).
    for (const index of [11, 12, 13, 14]) ticks += Number(fields[index] ?? 0);
  }
  return ticks / CLOCK_TICKS;
}

function statusKiB(pid: number, key: string): number | undefined {
  const match = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(read(`/proc/${pid}/status`) ?? "");
  return match === null ? undefined : Number(match[1]);
}

/** Resident set size of one process, KiB. */
export function rssKiB(pid: number): number | undefined {
  return statusKiB(pid, "VmRSS");
}

/**
 * Anonymous resident memory of the tree, KiB, with pages shared between
 * processes (socat's forked children and their parent, copy-on-write) divided
 * among them: the sum of Pss_Anon (Pss on kernels without it). This is what a
 * connection costs in heap and buffers. File-backed pages are left out on
 * purpose: their proportional share moves whenever another process mapping the
 * same binary starts or exits (the bench's own Bun clients share oi's binary),
 * which has nothing to do with the connections.
 */
export function treeAnonKiB(pid: number): number {
  let total = 0;
  for (const member of processTree(pid)) {
    const text = read(`/proc/${member}/smaps_rollup`) ?? "";
    const match = /^Pss_Anon:\s+(\d+) kB/m.exec(text) ?? /^Pss:\s+(\d+) kB/m.exec(text);
    if (match !== null) total += Number(match[1]);
  }
  return total;
}

export function alive(pid: number): boolean {
  const fields = statFields(pid);
  return fields !== undefined && fields[0] !== "Z";
}

/** Memory of a set of processes and their descendants, KiB (see treeMemoryKiB). */
export interface MemoryKiB {
  /** Sum of Pss_Anon: private memory, pages shared copy-on-write split among the sharers. */
  pssAnon: number;
  /** Sum of RssAnon (a page shared by forked children counts in each). */
  rssAnon: number;
  /** Sum of RssFile: file-backed pages (the program and its libraries), shared with every process mapping them and reclaimable. */
  rssFile: number;
  /** Sum of VmRSS (RssAnon + RssFile + RssShmem). */
  vmRss: number;
}

/**
 * Memory of `pids` and all their live descendants, each process counted once
 * (socat: one process per rule plus a child per connection or UDP peer).
 * Undefined when none of them can be read.
 */
export function treeMemoryKiB(pids: readonly number[]): MemoryKiB | undefined {
  const members = new Set<number>();
  for (const pid of pids) for (const member of processTree(pid)) members.add(member);
  const total: MemoryKiB = { pssAnon: 0, rssAnon: 0, rssFile: 0, vmRss: 0 };
  let read = 0;
  for (const member of members) {
    const status = readStatus(member);
    if (status === undefined) continue;
    read++;
    const rollup = readRollup(member);
    total.rssAnon += status.rssAnon;
    total.rssFile += status.rssFile;
    total.vmRss += status.vmRss;
    total.pssAnon += rollup ?? status.rssAnon;
  }
  return read === 0 ? undefined : total;
}

function readStatus(pid: number): { rssAnon: number; rssFile: number; vmRss: number } | undefined {
  const text = read(`/proc/${pid}/status`);
  if (text === undefined) return undefined;
  const field = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
  return { rssAnon: field("RssAnon"), rssFile: field("RssFile"), vmRss: field("VmRSS") };
}

/** Pss_Anon of one process from smaps_rollup (undefined on kernels without it). */
function readRollup(pid: number): number | undefined {
  const match = /^Pss_Anon:\s+(\d+) kB/m.exec(read(`/proc/${pid}/smaps_rollup`) ?? "");
  return match === null ? undefined : Number(match[1]);
}

/** Start time of a process (clock ticks since boot, /proc/PID/stat field 22): tells a PID's process from a later one reusing it. */
export function startTicks(pid: number): number | undefined {
  const fields = statFields(pid);
  return fields === undefined ? undefined : Number(fields[19]);
}
