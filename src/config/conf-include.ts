/**
 * @module What an `include` line names: a file, a directory's `*.conf`
 * files, or the files a pattern matches, in reading order.
 */
import { readdirSync, realpathSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";

/** The files an include names, in reading order, or why it names none. */
export function expandInclude(path: string): string[] | string {
  const name = basename(path);
  if (name.includes("*") || name.includes("?")) {
    const directory = dirname(path);
    const matcher = globMatcher(name);
    // As glob(3): a pattern in a directory that does not exist matches nothing (a warning, not an error).
    const entries = listDirectory(directory, true);
    if (typeof entries === "string") return entries;
    return entries.filter((entry) => matcher.test(entry)).map((entry) => join(directory, entry));
  }
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

/** Regular files of a directory, sorted by name; a reason when it cannot be listed (none when `missingIsEmpty` and it does not exist). */
function listDirectory(directory: string, missingIsEmpty = false): string[] | string {
  try {
    return readdirSync(directory, { withFileTypes: true })
      .filter((entry) => entry.isFile() || entry.isSymbolicLink())
      .map((entry) => entry.name)
      .sort();
  } catch (error) {
    if (missingIsEmpty && error instanceof Error && "code" in error && error.code === "ENOENT") return [];
    return `cannot list ${directory}: ${error instanceof Error ? error.message : String(error)}`;
  }
}

function globMatcher(pattern: string): RegExp {
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${source}$`);
}

/** Identity of a file for cycle detection: symlinks and `..` resolved where possible. */
export function realFile(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

