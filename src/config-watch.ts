/**
 * @module `--watch`: notice when the config file or a file it includes
 * changes, and say so once per burst of writes.
 *
 * Events on a file itself are not enough: an editor that saves by rename, or
 * Kubernetes updating a ConfigMap volume (`oi.conf -> ..data/oi.conf`, with
 * `..data` a symlink replaced by rename), never writes to the file oi opened.
 * So the directory of each file is watched (and that of the file the path
 * resolves to), any event there starts a quiet period, and once it is quiet
 * the contents each path resolves to now are compared with those last seen:
 * only a real change is reported. A directory that cannot be watched is
 * looked at by polling instead.
 */
import { readFileSync, realpathSync, watch, type FSWatcher } from "node:fs";
import { basename, dirname, resolve } from "node:path";

/** A burst of writes (an editor's save, a `cp` in pieces) ends when nothing happened for this long. */
export const WATCH_QUIET_MS = 200;
/** For a directory fs.watch refuses: how often its files are compared. */
const POLL_MS = 2000;

/** What a path holds now: a hash of its contents, or "missing" (a file in the middle of being replaced). */
function contentsOf(path: string): string {
  try {
    return String(Bun.hash(readFileSync(path)));
  } catch {
    return "missing";
  }
}

/** The directories whose entries decide what `path` reads: its own, and that of the file it resolves to. */
function directoriesOf(path: string): string[] {
  const absolute = resolve(path);
  const directories = [dirname(absolute)];
  try {
    const real = dirname(realpathSync(absolute));
    if (real !== directories[0]) directories.push(real);
  } catch {
    // Missing just now (a swap under way): its own directory tells when it is back.
  }
  return directories;
}

export class ConfigWatch {
  /** Last contents seen, by path as the config names it. */
  private readonly seen = new Map<string, string>();
  private readonly watchers = new Map<string, FSWatcher>();
  private quiet: ReturnType<typeof setTimeout> | undefined;
  private poll: ReturnType<typeof setInterval> | undefined;
  private stopped = false;

  /** `changed` gets the first changed path (as the config names it) once a burst of changes is over. */
  constructor(private readonly changed: (path: string) => void) {}

  /** Watch these files (a load's files) from now on; their present contents are the baseline. */
  setFiles(files: readonly string[]): void {
    if (this.stopped) return;
    const wanted = new Set(files);
    for (const path of [...this.seen.keys()]) if (!wanted.has(path)) this.seen.delete(path);
    for (const path of wanted) if (!this.seen.has(path)) this.seen.set(path, contentsOf(path));
    this.watchDirectories();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.quiet);
    clearInterval(this.poll);
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
  }

  /** Watch every directory that matters now; let go of those that no longer do (an old `..2026_...` directory). */
  private watchDirectories(): void {
    const wanted = new Set([...this.seen.keys()].flatMap(directoriesOf));
    for (const [directory, watcher] of this.watchers) {
      if (!wanted.has(directory)) {
        watcher.close();
        this.watchers.delete(directory);
      }
    }
    let unwatched = false;
    for (const directory of wanted) {
      if (this.watchers.has(directory)) continue;
      try {
        const watcher = watch(directory, { persistent: false }, () => this.stir());
        // The directory went away (an old ConfigMap revision): forget it; the next look finds the new one.
        watcher.on("error", () => {
          watcher.close();
          if (this.watchers.get(directory) === watcher) this.watchers.delete(directory);
          this.stir();
        });
        this.watchers.set(directory, watcher);
      } catch {
        unwatched = true;
      }
    }
    if (unwatched && this.poll === undefined) this.poll = setInterval(() => this.look(), POLL_MS);
    if (!unwatched && this.poll !== undefined) {
      clearInterval(this.poll);
      this.poll = undefined;
    }
  }

  /** Something happened in a watched directory: look once it has been quiet for a while. */
  private stir(): void {
    if (this.stopped) return;
    clearTimeout(this.quiet);
    this.quiet = setTimeout(() => this.look(), WATCH_QUIET_MS);
  }

  private look(): void {
    if (this.stopped) return;
    let first: string | undefined;
    for (const [path, before] of this.seen) {
      const now = contentsOf(path);
      if (now === before) continue;
      this.seen.set(path, now);
      first ??= path;
    }
    // A swap may have moved a file's target to a new directory.
    this.watchDirectories();
    if (first !== undefined) this.changed(first);
  }
}

/** The name a change is logged under: `watch: oi.conf changed`. */
export function watchTrigger(path: string): string {
  return `watch: ${basename(path)} changed`;
}
