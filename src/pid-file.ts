/**
 * @module The pid file (`pidlogfile PATH`, TOML `pid_file`): written at start,
 * removed at exit, for `kill -HUP $(cat PATH)` and service managers.
 * Written as own-files.ts writes (no link followed, mode 0644).
 */
import { readFileSync, rmSync } from "node:fs";
import { replaceFile } from "./own-files.ts";

export class PidFile {
  /** Writes the current pid to `path`; throws (with the OS reason) if it cannot. */
  constructor(readonly path: string) {
    replaceFile(path, `${process.pid}\n`, 0o644, { inPlace: true });
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
