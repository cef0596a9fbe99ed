/**
 * @module The privilege drop (`user`, `group`): once every listener is
 * bound and the log, pid and status files are open, oi gives up root for
 * good: setgroups (to the target group alone), setgid, setuid, in that
 * order, then checks that it worked, down to setuid(0) failing. glibc's
 * set*id wrappers apply the change to every thread of the process (the
 * splice worker, `--workers` threads), not only the caller.
 *
 * The supplementary groups are set to the target group only, not the
 * user's other groups from /etc/group: the fewest rights that let oi run;
 * a file oi must reach after the drop is given to the user or its group.
 */
import { accessSync, constants, readdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import { type Libc, loadLibc } from "./libc.ts";
import type { Config, Endpoint, ForwardRule, PrivilegeTarget } from "./types.ts";

/** Linux's lowest port a process without CAP_NET_BIND_SERVICE may bind (net.ipv4.ip_unprivileged_port_start). */
export function unprivilegedPortStart(): number {
  try {
    const value = Number(readFileSync("/proc/sys/net/ipv4/ip_unprivileged_port_start", "utf8").trim());
    return Number.isInteger(value) ? value : 1024;
  } catch {
    return 1024;
  }
}

/** What a drop did: switched, or found the process already running as the target (an upgrade's new program). */
export type DropResult = { dropped: true } | { dropped: false; already: true };

function who(target: PrivilegeTarget): string {
  return `user ${target.user} (${target.uid}) and group ${target.group} (${target.gid})`;
}

/**
 * Switch the whole process to `target`'s user and group; throws an Error
 * saying why when it cannot or when the check afterwards finds any id left
 * behind. A process that already runs as exactly that user and group (the
 * new program of a SIGUSR2 upgrade, started by a process that had dropped)
 * has nothing to do.
 */
export async function dropPrivileges(target: PrivilegeTarget): Promise<DropResult> {
  const loaded = await loadLibc();
  if ("unavailable" in loaded) throw new Error(`cannot drop privileges to ${who(target)}: ${loaded.unavailable}`);
  const { libc } = loaded;
  const uids = libc.userIds();
  const gids = libc.groupIds();
  if (uids.every((id) => id === target.uid) && gids.every((id) => id === target.gid)) return { dropped: false, already: true };
  if (uids[1] !== 0) throw new Error(`cannot drop privileges to ${who(target)}: oi runs as uid ${uids[1]}, not root (start it as root, or leave user out)`);
  const step = (name: string, result: number) => {
    if (result !== 0) throw new Error(`cannot drop privileges to ${who(target)}: ${name} failed (errno ${libc.errno()})`);
  };
  // Groups first: once the uid is not 0 any more, the groups can no longer be changed.
  step(`setgroups([${target.gid}])`, libc.setgroups([target.gid]));
  step(`setgid(${target.gid})`, libc.setgid(target.gid));
  step(`setuid(${target.uid})`, libc.setuid(target.uid));
  const problem = checkDropped(libc, target);
  if (problem !== undefined) throw new Error(`privilege drop to ${who(target)} did not hold: ${problem}`);
  return { dropped: true };
}

/** Why the process does not run as `target` alone in every thread, or undefined when it does. */
function checkDropped(loaded: Libc, target: PrivilegeTarget): string | undefined {
  const uids = loaded.userIds();
  const gids = loaded.groupIds();
  if (!uids.every((id) => id === target.uid)) return `user ids (real, effective, saved) are ${uids.join(", ")}`;
  if (!gids.every((id) => id === target.gid)) return `group ids (real, effective, saved) are ${gids.join(", ")}`;
  const groups = loaded.groups();
  if (groups.some((id) => id !== target.gid)) return `supplementary groups are ${groups.join(", ")}`;
  if (loaded.setuid(0) === 0) return "setuid(0) succeeded afterwards: root can be regained";
  return threadsNotDropped(target);
}

/** Every thread's Uid and Gid lines in /proc (glibc changes them all; this checks it did). */
function threadsNotDropped(target: PrivilegeTarget): string | undefined {
  let tasks: string[];
  try {
    tasks = readdirSync("/proc/self/task");
  } catch {
    return undefined;
  }
  for (const task of tasks) {
    let status: string;
    try {
      status = readFileSync(`/proc/self/task/${task}/status`, "utf8");
    } catch {
      continue; // the thread ended meanwhile
    }
    const uid = /^Uid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/).map(Number) ?? [];
    const gid = /^Gid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/).map(Number) ?? [];
    if (!uid.every((id) => id === target.uid) || !gid.every((id) => id === target.gid)) {
      return `thread ${task} still has Uid ${uid.join(" ")}, Gid ${gid.join(" ")}`;
    }
  }
  return undefined;
}

/**
 * The first bind of `next` that needs a port below `start` which no rule of
 * `running` holds already (same transport, address and port): after the
 * drop, only a restart can bind it. Kept listeners need nothing new.
 */
export function newPrivilegedBind(running: readonly ForwardRule[], next: readonly ForwardRule[], start: number): { rule: ForwardRule; port: number } | undefined {
  const held = new Set<string>();
  for (const rule of running) for (const port of lowPorts(rule.bind, start)) held.add(`${rule.bind.transport} ${rule.bind.host} ${port}`);
  for (const rule of next) {
    for (const port of lowPorts(rule.bind, start)) if (!held.has(`${rule.bind.transport} ${rule.bind.host} ${port}`)) return { rule, port };
  }
  return undefined;
}

function lowPorts(bind: Endpoint, start: number): number[] {
  if (bind.transport === "unix") return [];
  const ports: number[] = [];
  for (let port = bind.port; port <= Math.min(bind.portEnd ?? bind.port, start - 1); port++) ports.push(port);
  return ports;
}

/** What a reload that needs a new privileged port says, instead of the kernel's bare EACCES. */
export function privilegedPortMessage(rule: ForwardRule, port: number, target: PrivilegeTarget, start: number): string {
  return `${rule.at.file}:${rule.at.line}: cannot bind ${port} below ${start} after dropping privileges to ${target.user}: restart oi`;
}

export function samePrivilege(a: PrivilegeTarget | undefined, b: PrivilegeTarget | undefined): boolean {
  return a?.uid === b?.uid && a?.gid === b?.gid;
}

/**
 * Files oi writes again after the drop that the user cannot: the status
 * file is replaced through a new file in its directory; a log file is
 * reopened by path on SIGHUP (logrotate). Checked as the user, just after
 * the drop, so the warning comes at start rather than at the first rotation.
 */
export function unwritableAfterDrop(config: Config): string[] {
  const warnings: string[] = [];
  const user = config.privilege?.user ?? "the user";
  if (config.status !== undefined) {
    const directory = dirname(config.status.path);
    if (!writable(directory)) {
      warnings.push(`status file ${config.status.path}: ${user} cannot write in ${directory}, where the file is replaced: it will not be updated (make the directory writable by ${user})`);
    }
  }
  if (config.logFile !== undefined && !writable(config.logFile)) {
    warnings.push(`log file ${config.logFile}: ${user} cannot open it again, so a reopen at SIGHUP (log rotation) keeps the old file (give the file to ${user}, or rotate with copytruncate)`);
  }
  return warnings;
}

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
