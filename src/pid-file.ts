/**
 * @module The pid file (`pidlogfile PATH`, TOML `pid_file`): written at start,
 * removed at exit, for `kill -HUP $(cat PATH)` and service managers.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";

export class PidFile {
  /** Writes the current pid to `path`; throws (with the OS reason) if it cannot. */
  constructor(readonly path: string) {
    writeFileSync(path, `${process.pid}\n`, { mode: 0o644 });
  }

  /** Remove the file, unless another process has written its own pid there since. */
  remove(): void {
    try {
      if (readFileSync(this.path, "utf8").trim() !== String(process.pid)) return;
      rmSync(this.path, { force: true });
    } catch {
      // Already gone: nothing to remove.
    }
  }
}
