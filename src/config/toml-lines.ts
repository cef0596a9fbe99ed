/**
 * @module Line numbers for TOML, which `Bun.TOML.parse` does not give:
 * neither for values (it returns plain objects) nor for syntax errors (the
 * error's `line`/`column` are those of the JavaScript caller, not of the TOML
 * text). A light scan of table headers and `key =` lines maps a value's path
 * to its line, and re-parsing prefixes of the text finds a syntax error's line.
 */

import { firstFailingLine } from "./prefix-search.ts";

/** Paths look like `forwarding_rules[2].bind_port` or `forwarding_rules[0].rules[1].pattern`; indexes count from 0. */
export interface TomlLineIndex {
  /** The line of `path`, else of the nearest enclosing table or key that was found, else 1. */
  lineOf(path: string): number;
}

const BARE_KEY = /^[A-Za-z0-9_-]+/;

export function indexTomlLines(text: string): TomlLineIndex {
  const lines = new Map<string, number>();
  const arrayLengths = new Map<string, number>();
  let table = "";
  let openMultilineString: string | undefined;

  const record = (path: string, line: number): void => {
    if (!lines.has(path)) lines.set(path, line);
  };

  const sourceLines = text.split(/\r?\n/);
  for (let i = 0; i < sourceLines.length; i++) {
    const line = i + 1;
    const source = sourceLines[i] ?? "";
    if (openMultilineString !== undefined) {
      // Inside a """ or ''' string nothing is a key or a header.
      if (source.includes(openMultilineString)) openMultilineString = undefined;
      continue;
    }
    const trimmed = source.trim();
    if (trimmed.startsWith("[")) {
      const isArray = trimmed.startsWith("[[");
      const keys = readKeyPath(trimmed, isArray ? 2 : 1);
      // Lines of a multi-line array (`[1, 2],`) also start with a bracket but are no header.
      if (keys === undefined || !closesHeader(trimmed, keys.end, isArray)) continue;
      table = resolveHeader(keys.keys, isArray, arrayLengths, (path) => record(path, line));
      record(table, line);
      continue;
    }
    const keys = readKeyPath(trimmed, 0);
    if (keys === undefined || trimmed[keys.end] !== "=") continue;
    let path = table;
    for (const key of keys.keys) {
      path = joinPath(path, key);
      record(path, line);
    }
    openMultilineString = opensMultilineString(trimmed.slice(keys.end + 1));
  }

  return {
    lineOf(path: string): number {
      for (let current = path; current !== ""; current = parentPath(current)) {
        const line = lines.get(current);
        if (line !== undefined) return line;
      }
      return 1;
    },
  };
}

/**
 * The concrete path a header opens. Inner names that are arrays of tables
 * refer to their latest element, as in TOML: `[[forwarding_rules.rules]]`
 * appends to the rules of the last `[[forwarding_rules]]`.
 */
function resolveHeader(
  keys: string[],
  isArray: boolean,
  arrayLengths: Map<string, number>,
  recordArray: (path: string) => void,
): string {
  let path = "";
  for (let i = 0; i < keys.length; i++) {
    path = joinPath(path, keys[i] ?? "");
    const length = arrayLengths.get(path);
    if (i < keys.length - 1 && length !== undefined) path += `[${length - 1}]`;
  }
  if (!isArray) return path;
  const length = arrayLengths.get(path) ?? 0;
  arrayLengths.set(path, length + 1);
  recordArray(path);
  return `${path}[${length}]`;
}

/**
 * A dotted key starting at `start` (`a.b`, `"quoted".c`), and the index of
 * the first character after it and its trailing spaces. For headers, the
 * index is that of the closing bracket.
 */
function readKeyPath(text: string, start: number): { keys: string[]; end: number } | undefined {
  const keys: string[] = [];
  let i = skipSpaces(text, start);
  for (;;) {
    const quote = text[i];
    if (quote === '"' || quote === "'") {
      const close = text.indexOf(quote, i + 1);
      if (close === -1) return undefined;
      keys.push(text.slice(i + 1, close));
      i = close + 1;
    } else {
      const bare = BARE_KEY.exec(text.slice(i));
      if (bare === null) return undefined;
      keys.push(bare[0]);
      i += bare[0].length;
    }
    i = skipSpaces(text, i);
    if (text[i] !== ".") return { keys, end: i };
    i = skipSpaces(text, i + 1);
  }
}

/** A header's key is followed by `]` (or `]]`) and nothing but a comment. */
function closesHeader(text: string, end: number, isArray: boolean): boolean {
  const close = isArray ? "]]" : "]";
  if (!text.startsWith(close, end)) return false;
  const rest = text.slice(end + close.length).trim();
  return rest === "" || rest.startsWith("#");
}

function skipSpaces(text: string, from: number): number {
  let i = from;
  while (text[i] === " " || text[i] === "\t") i++;
  return i;
}

/** The delimiter of a multi-line string the value opens and does not close on its line. */
function opensMultilineString(value: string): string | undefined {
  for (const delimiter of ['"""', "'''"]) {
    const count = value.split(delimiter).length - 1;
    if (count % 2 === 1) return delimiter;
  }
  return undefined;
}

function joinPath(path: string, key: string): string {
  return path === "" ? key : `${path}.${key}`;
}

/** `a[1].b` → `a[1]` → `a` → "". */
function parentPath(path: string): string {
  const cut = Math.max(path.lastIndexOf("."), path.lastIndexOf("["));
  return cut === -1 ? "" : path.slice(0, cut);
}

/**
 * The line of the syntax error `Bun.TOML.parse` reported for `text`: the
 * first line `n` such that lines 1..n alone already fail with the same
 * message. A prefix cut inside an earlier valid multi-line string fails too,
 * but with an "unterminated" message, so it is only mistaken for the real
 * error when that error is itself an unterminated construct.
 */
export function locateTomlSyntaxError(text: string, message: string): number {
  // Keep the newline: some messages name the character found, and a cut before it reads as end of file.
  return firstFailingLine(text, (prefix) => tomlErrorMessage(prefix) === message);
}

/** The message `Bun.TOML.parse` throws for `text`, or undefined when it parses. */
export function tomlErrorMessage(text: string): string | undefined {
  try {
    Bun.TOML.parse(text);
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}
