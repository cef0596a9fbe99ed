/**
 * @module How deep TOML and YAML text nests, found in one linear pass before
 * Bun's parsers see it: they recurse per level and overflow the JavaScript
 * stack a few thousand levels down (the message was "Maximum call stack
 * size exceeded", and finding its line took minutes). The scan is a bound,
 * not a parser: it follows strings and comments well enough not to count
 * brackets inside them, and counts every level it sees (block indentation,
 * `- ` items on one line, flow `[`/`{`, TOML's dotted keys and headers).
 * Bun.TOML.parse also takes the square of a table's key count, so the TOML
 * scan counts keys per table too.
 */
import { MAX_NESTING_DEPTH, MAX_TABLE_KEYS, tooDeep, tooManyKeys } from "./text-limits.ts";

/** What makes text too costly for Bun's parser, and the line it shows first. */
export interface TextProblem {
  line: number;
  reason: string;
}

/** The first place where `text` nests deeper than MAX_NESTING_DEPTH (or, TOML, a table holds more than MAX_TABLE_KEYS keys). */
export function nestingProblem(text: string, format: "toml" | "yaml"): TextProblem | undefined {
  if (format === "toml") return tomlProblem(text);
  const line = yamlDeepLine(text);
  return line === undefined ? undefined : { line, reason: tooDeep() };
}

const isBlank = (char: string | undefined) => char === " " || char === "\t";

// ---------------------------------------------------------------- YAML

function yamlDeepLine(text: string): number | undefined {
  /** Columns of the block collections the current line is inside, outermost first. */
  const indents: number[] = [];
  let flow = 0;
  let quote: string | undefined;
  /** Lines indented more than this are a block scalar's text (`key: |`). */
  let blockScalarAbove: number | undefined;
  let valueStart = true;
  let lineNumber = 0;
  for (let start = 0; start <= text.length; ) {
    lineNumber++;
    let end = text.indexOf("\n", start);
    if (end === -1) end = text.length;
    const lineBegin = start;
    let i = start;
    start = end + 1;
    while (i < end && text[i] === " ") i++;
    const ownIndent = i - lineBegin;
    const blankLine = i >= end || text[i] === "\r" || text[i] === "#";
    if (blockScalarAbove !== undefined) {
      if (blankLine || ownIndent > blockScalarAbove) continue;
      blockScalarAbove = undefined;
    }
    if (quote === undefined && flow === 0) {
      if (blankLine) continue;
      while (indents.length > 0 && indents[indents.length - 1]! > ownIndent) indents.pop();
      if (indents.length === 0 || indents[indents.length - 1]! < ownIndent) indents.push(ownIndent);
      if (indents.length > MAX_NESTING_DEPTH) return lineNumber;
      valueStart = true;
    }
    /** `- ` items opened on this line, each a level. */
    let inline = 0;
    /** Column of the node a block scalar on this line would belong to. */
    let node = ownIndent;
    for (; i < end; i++) {
      const char = text[i]!;
      if (quote !== undefined) {
        if (quote === '"' && char === "\\") i++;
        else if (char === quote) {
          if (quote === "'" && text[i + 1] === "'") i++;
          else quote = undefined;
        }
        continue;
      }
      if (isBlank(char) || char === "\r") {
        if (text[i + 1] === "#") break;
        continue;
      }
      if (valueStart) {
        if (char === "#") break;
        if (char === '"' || char === "'") {
          quote = char;
          valueStart = false;
          continue;
        }
        if (char === "[" || char === "{") {
          flow++;
          if (indents.length + inline + flow > MAX_NESTING_DEPTH) return lineNumber;
          continue;
        }
        if (flow === 0 && (char === "-" || char === "?") && (i + 1 >= end || isBlank(text[i + 1]))) {
          inline++;
          node = i - lineBegin + 2;
          if (indents.length + inline > MAX_NESTING_DEPTH) return lineNumber;
          continue;
        }
        if (flow === 0 && (char === "|" || char === ">")) {
          blockScalarAbove = node;
          break;
        }
        if (char === "&" || char === "!") {
          // An anchor or tag comes before the node it names.
          while (i + 1 < end && !isBlank(text[i + 1])) i++;
          continue;
        }
        valueStart = false;
      }
      if (flow > 0) {
        if (char === "," || char === "[" || char === "{") valueStart = true;
        if (char === "[" || char === "{") {
          flow++;
          if (indents.length + inline + flow > MAX_NESTING_DEPTH) return lineNumber;
        } else if (char === "]" || char === "}") flow--;
        else if (char === ":" && (i + 1 >= end || isBlank(text[i + 1]) || ",[]{}".includes(text[i + 1]!))) valueStart = true;
      } else if (char === ":" && (i + 1 >= end || isBlank(text[i + 1]) || text[i + 1] === "\r")) valueStart = true;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------- TOML

function tomlProblem(text: string): TextProblem | undefined {
  /** Open arrays (`[`) and inline tables (`{`), innermost last, with the keys of each inline table so far. */
  const open: Array<{ bracket: string; keys: number }> = [];
  /** Levels the current table header gives (`[a.b.c]`: 3). */
  let tableDepth = 0;
  /** Keys (and sub-tables) per table: Bun.TOML.parse takes the square of their number (40,000 keys in one table: 4.5 s). */
  const keysOf = new Map<string, number>();
  const headersSeen = new Set<string>();
  let table = "";
  let headers = 0;
  const addKey = (path: string) => {
    const keys = (keysOf.get(path) ?? 0) + 1;
    keysOf.set(path, keys);
    return keys > MAX_TABLE_KEYS;
  };
  /** Dots of the key being read (`a.b.c = `: 2). */
  let keyDots = 0;
  let readingKey = true;
  let lineNumber = 1;
  let atLineStart = true;
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!;
    if (char === "\n") {
      lineNumber++;
      atLineStart = true;
      if (open.length === 0) readingKey = true;
      continue;
    }
    if (isBlank(char) || char === "\r") continue;
    const lineStarts = atLineStart;
    atLineStart = false;
    if (char === "#") {
      const end = text.indexOf("\n", i);
      i = (end === -1 ? text.length : end) - 1;
      continue;
    }
    if (char === '"' || char === "'") {
      const multi = text.startsWith(char.repeat(3), i);
      const close = multi ? char.repeat(3) : char;
      let j = i + close.length;
      for (; j < text.length; j++) {
        if (text.startsWith(close, j)) break;
        if (char === '"' && text[j] === "\\") j++;
        else if (text[j] === "\n") {
          if (!multi) break;
          lineNumber++;
        }
      }
      // An unterminated string ends at its line's end, which is read as one.
      i = text[j] === "\n" ? j - 1 : j + close.length - 1;
      continue;
    }
    if (char === "[" && lineStarts && open.length === 0) {
      // A table header: its dotted name's parts are its levels, and it is a key of its parent.
      const end = text.indexOf("\n", i);
      const header = (text.slice(i, end === -1 ? text.length : end).split("#")[0] ?? "").trim();
      const path = header.replace(/^\[+|\]+$/g, "").replace(/\s/g, "");
      tableDepth = 1 + countOutsideQuotes(path, ".");
      if (tableDepth > MAX_NESTING_DEPTH) return { line: lineNumber, reason: tooDeep() };
      if (!headersSeen.has(path)) {
        headersSeen.add(path);
        if (addKey(path.slice(0, Math.max(0, path.lastIndexOf("."))))) return { line: lineNumber, reason: tooManyKeys() };
      }
      // Each header opens a table of its own: every [[x]] is a new one, and so is
      // [x.sub] under each of them (re-opening a table is a TOML error anyway).
      table = `${path}#${headers}`;
      headers++;
      i = (end === -1 ? text.length : end) - 1;
      continue;
    }
    const inner = open[open.length - 1];
    if (readingKey) {
      if (char === ".") keyDots++;
      else if (char === "=") {
        if (tableDepth + keyDots + 1 + open.length > MAX_NESTING_DEPTH) return { line: lineNumber, reason: tooDeep() };
        if (inner === undefined ? addKey(table) : ++inner.keys > MAX_TABLE_KEYS) return { line: lineNumber, reason: tooManyKeys() };
        keyDots = 0;
        readingKey = false;
      }
      continue;
    }
    if (char === "[" || char === "{") {
      open.push({ bracket: char, keys: 0 });
      if (tableDepth + open.length > MAX_NESTING_DEPTH) return { line: lineNumber, reason: tooDeep() };
      if (char === "{") readingKey = true;
    } else if (char === "]" || char === "}") open.pop();
    else if (char === "," && inner?.bracket === "{") readingKey = true;
  }
  return undefined;
}

/** How often `char` occurs in `text` outside '...' and "..." strings. */
function countOutsideQuotes(text: string, char: string): number {
  let count = 0;
  let quote: string | undefined;
  for (const c of text) {
    if (quote !== undefined) {
      if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === char) count++;
  }
  return count;
}
