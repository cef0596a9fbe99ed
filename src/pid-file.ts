/**
 * @module The pid file (`pidlogfile PATH`, TOML `pid_file`): written at start,
 * removed at exit, for `kill -HUP $(cat PATH)` and service managers.
 *
 * oi usually starts as root and the pid file often sits in a directory
 * others can write (/tmp, a shared /run subdirectory): it is opened without
 * following a symbolic link planted at its path (O_NOFOLLOW), must be a
 * regular file with no other hard link, and gets mode 0644 when created.
 */
import { closeSync, constants, fstatSync, ftruncateSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { O_CLOEXEC } from "./libc.ts";

const OPEN_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW | O_CLOEXEC | constants.O_NONBLOCK;

/** Write `text` to `path`, refusing a symbolic link, a non-regular file or a file with other hard links; throws why. */
export function writeOwnFile(path: string, text: string, mode: number): void {
  let fd: number;
  try {
    fd = openSync(path, OPEN_FLAGS, mode);
  } catch (error) {
    // O_NOFOLLOW on a symbolic link fails with ELOOP: say what it means.
    if ((error as { code?: string }).code === "ELOOP") throw new Error(`${path} is a symbolic link: oi does not write through one`);
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

export class PidFile {
  /** Writes the current pid to `path`; throws (with the OS reason) if it cannot. */
  constructor(readonly path: string) {
    writeOwnFile(path, `${process.pid}\n`, 0o644);
  }

  /** Remove the file, unless another process has written its own pid there since. */
  remove(): void {
    try {
      if (readFileSync(this.path, "utf8").trim() !== String(process.pid)) return;
      rmSync(this.path, { force: true });
    } catch {
      // Already gone (or, after a privilege drop, in a directory the user cannot write: left behind).
    }
  }
}
