/**
 * @module How oi writes the small files it owns (pid file, status file,
 * the etcd cache):
 * never through a symbolic link or a hard link planted at their path, a
 * danger while oi runs as root and the file sits in a directory others can
 * write, and always with an explicit mode.
 *
 * The file is written aside (`PATH.tmp-PID`, created with O_EXCL, which
 * follows no link) and renamed over the path: a reader sees the old or the
 * new file whole, and rename replaces whatever entry is at the path, a link
 * included, without following it. When oi may not create files in the
 * directory (after a privilege drop), an existing file of its own is
 * rewritten in place instead, opened with O_NOFOLLOW.
 */
import { closeSync, constants, fstatSync, fsyncSync, ftruncateSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { O_CLOEXEC } from "./libc.ts";

const NEW_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | O_CLOEXEC;
const IN_PLACE = constants.O_WRONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | O_CLOEXEC;

function code(error: unknown): string | undefined {
  return (error as { code?: string }).code;
}

/** Create `path` afresh with `mode` (one left by a crashed oi of the same pid is removed first) and write `text`; `durable`: on disk before it returns. */
function writeNewFile(path: string, text: string, mode: number, durable: boolean): void {
  let fd: number;
  try {
    fd = openSync(path, NEW_FILE, mode);
  } catch (error) {
    if (code(error) !== "EEXIST") throw error;
    rmSync(path, { force: true });
    fd = openSync(path, NEW_FILE, mode);
  }
  try {
    writeSync(fd, text);
    if (durable) fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Rewrite the existing regular file `path` (one link, not a symbolic link) through a descriptor. */
function rewriteInPlace(path: string, text: string): void {
  let fd: number;
  try {
    fd = openSync(path, IN_PLACE);
  } catch (error) {
    if (code(error) === "ELOOP") throw new Error(`${path} is a symbolic link: oi does not write through one`);
    throw error;
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw new Error(`${path} is not a regular file`);
    if (stats.nlink > 1) throw new Error(`${path} has ${stats.nlink} hard links: oi does not write through one`);
    ftruncateSync(fd, 0);
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

export interface ReplaceOptions {
  /** When the directory refuses a new file, rewrite the existing file instead. */
  inPlace?: boolean;
  /** fsync the new file before it takes the path (a file that must survive a crash of the machine, as the etcd cache). */
  durable?: boolean;
}

/** Replace `path` with a file holding `text` (mode `mode` when created); throws why it cannot. */
export function replaceFile(path: string, text: string, mode: number, options: ReplaceOptions = {}): void {
  const { inPlace = false, durable = false } = options;
  const temporary = `${path}.tmp-${process.pid}`;
  try {
    writeNewFile(temporary, text, mode, durable);
  } catch (error) {
    if (inPlace && code(error) === "EACCES") return rewriteInPlace(path, text);
    throw error;
  }
  try {
    renameSync(temporary, path);
  } catch (error) {
    rmSync(temporary, { force: true });
    throw error;
  }
}
