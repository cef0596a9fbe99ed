/**
 * @module What an `include` line names: a file, a directory's `*.conf`
 * files, or the files a pattern matches, in reading order.
 */
import { readdirSync, realpathSync, statSync } from "node:fs";
import { join, resolve, sep } from "node:path";

const WILDCARD = /[*?[]/;

/** The files an include names, in reading order, or why it names none. */
export function expandInclude(path: string): string[] | string {
  // No file name holds a NUL byte, and node:fs and Bun.Glob throw on one rather than find nothing.
  if (path.includes("\0")) return "a path cannot hold a NUL byte";
  if (WILDCARD.test(path)) return globFiles(path);
  let stats;
  try {
    stats = statSync(path);
  } catch {
    return "no such file or directory";
  }
  if (!stats.isDirectory()) return [path];
  const entries = listDirectory(path);
  if (typeof entries === "string") return entries;
  return entries.filter((entry) => entry.endsWith(".conf")).map((entry) => join(path, entry));
}

/**
 * The files an absolute pattern matches (`*`, `?`, `[...]` in any part, as
 * glob(3)), sorted by path. The walk starts at the deepest directory without
 * a wildcard; one that does not exist matches nothing (a warning, not an error).
 */
function globFiles(path: string): string[] {
  const parts = path.split(sep);
  const fixed = parts.findIndex((part) => WILDCARD.test(part));
  const root = parts.slice(0, fixed).join(sep) || sep;
  const pattern = parts.slice(fixed).join("/");
  try {
    if (!statSync(root).isDirectory()) return [];
  } catch {
    return [];
  }
  return [...new Bun.Glob(pattern).scanSync({ cwd: root, absolute: true, onlyFiles: true, followSymlinks: true })].sort();
}

/** Regular files of a directory, sorted by name; a reason when it cannot be listed. */
function listDirectory(directory: string): string[] | string {
  try {
    return readdirSync(directory, { withFileTypes: true })
      .filter((entry) => entry.isFile() || entry.isSymbolicLink())
      .map((entry) => entry.name)
      .sort();
  } catch (error) {
    return `cannot list ${directory}: ${error instanceof Error ? error.message : String(error)}`;
  }
}

/** Identity of a file for cycle detection: symlinks and `..` resolved where possible. */
export function realFile(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

