/**
 * @module Bounds on config text, checked before a parser sees it, so that
 * no file (or admin API body) can make loading slow, take much memory, or
 * end in a JavaScript error instead of a FILE:LINE message:
 *
 * - a config file, with everything it includes, holds at most
 *   MAX_CONFIG_BYTES (a config of 5 MB of `.conf` rules took about 10 s and
 *   870 MB to check: the size bounds both);
 * - TOML and YAML nest at most MAX_NESTING_DEPTH levels (Bun.YAML.parse
 *   overflows the JavaScript stack at about 3,500 levels, Bun.TOML.parse at
 *   about 15,000; a real config nests 6 or fewer), and a TOML table holds
 *   at most MAX_TABLE_KEYS keys (Bun.TOML.parse takes the square of their
 *   number: 40,000 keys in one table took 4.5 s);
 * - a reason quotes at most a few hundred characters of what the file says,
 *   so a line of megabytes still gives a readable error (a console line
 *   longer than the log's 256 KiB stream bound would be dropped whole).
 */
import type { ConfigIssue } from "../types.ts";

export const MAX_CONFIG_BYTES = 8 * 1024 * 1024;
export const MAX_NESTING_DEPTH = 64;
export const MAX_TABLE_KEYS = 256;

/** A word (no spaces) in a reason longer than this is cut to its start and end, with its length told. */
const MAX_WORD_CHARS = 200;
const LONG_WORD = new RegExp(`\\S{${MAX_WORD_CHARS + 1},}`, "g");
/** A whole reason longer than this loses its middle (a parser's message may quote text with spaces). */
const MAX_REASON_CHARS = 1000;

/** The line (from 1) of the first NUL byte in `text`, or undefined: a config is text, and no path or name may hold one. */
export function nulByteLine(text: string): number | undefined {
  const at = text.indexOf("\0");
  if (at === -1) return undefined;
  let line = 1;
  for (let i = text.indexOf("\n"); i !== -1 && i < at; i = text.indexOf("\n", i + 1)) line++;
  return line;
}

export const NUL_BYTE = "holds a NUL byte: a config is text (a binary file, or a file saved in UTF-16?)";

/** The reason of a config too large to read (`bytes` of it, the includes counted). */
export function tooLarge(bytes: number): string {
  return `config is ${bytes} bytes, over the limit of ${MAX_CONFIG_BYTES} (${MAX_CONFIG_BYTES / 1024 / 1024} MiB, includes counted)`;
}

/** The reason of text nested deeper than the limit. */
export function tooDeep(): string {
  return `nested more than ${MAX_NESTING_DEPTH} levels deep: a config needs a handful`;
}

/** The reason of a TOML table with more keys than the limit. */
export function tooManyKeys(): string {
  return `more than ${MAX_TABLE_KEYS} keys in one table: a rule or the top level needs a few dozen`;
}

/** `issue` with long words in its reason shortened (`'aaaa…aaaa' (2000002 characters)`), and a long reason cut in the middle, keeping its end (the why). */
export function clipIssue(issue: ConfigIssue): ConfigIssue {
  if (issue.reason.length <= MAX_WORD_CHARS) return issue;
  let reason = issue.reason.replace(LONG_WORD, (word) => `${word.slice(0, 96)}…${word.slice(-16)} (${word.length} characters)`);
  if (reason.length > MAX_REASON_CHARS) reason = `${reason.slice(0, 600)} … (${reason.length} characters) … ${reason.slice(-300)}`;
  return reason === issue.reason ? issue : { ...issue, reason };
}
