/**
 * Shared by the config conformance suites: `oi check` on a config text, and
 * the `[line, reason]` view of what it printed.
 */
import { runOi, writeTempFile } from "../helpers/oi-process.ts";

export interface CheckResult {
  code: number;
  stdout: string;
  stderr: string;
  path: string;
}

/** `oi check --no-resolve` (no DNS queries leave the machine) on `text` written to a fresh `name`. */
export async function check(name: string, text: string, args: string[] = ["--no-resolve"]): Promise<CheckResult> {
  const path = writeTempFile(name, text);
  return { ...(await runOi(["check", "-c", path, ...args])), path };
}

/** The `FILE:LINE: reason` errors (or warnings) of a check's stderr that concern `path`, as [line, reason]. */
export function issuesIn(result: CheckResult, level: "ERROR" | "WARN" = "ERROR", path = result.path): Array<[number, string]> {
  const issues: Array<[number, string]> = [];
  for (const line of result.stderr.split("\n")) {
    const at = line.indexOf(`${path}:`);
    if (at === -1 || !line.slice(0, at).toUpperCase().includes(level)) continue;
    const match = /^:(\d+): (.*)$/.exec(line.slice(at + path.length).trimEnd());
    if (match !== null) issues.push([Number(match[1]), match[2] ?? ""]);
  }
  return issues;
}
