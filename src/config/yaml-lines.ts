/**
 * @module Line numbers for YAML, which `Bun.YAML.parse` does not give:
 * neither for values (it returns plain objects) nor for syntax errors (the
 * error's `line`/`column` are those of the JavaScript caller). A light scan
 * of the block style rinetd-uv configs are written in (`key:` lines, `- `
 * items, nesting by indentation, flow lists and maps such as
 * `["10.*", "192.168.*"]`, also over several lines) maps a value's path to
 * its line. The scan also finds what the parser lets pass: a key given twice
 * in one mapping (Bun keeps the last silently).
 *
 * Not followed: values reached through an alias (`*name`) or a merge key
 * (`<<`), complex keys (`? key`), and plain scalars continued on the next
 * lines; their paths fall back to the nearest enclosing key that was found.
 */

import { firstFailingLine } from "./prefix-search.ts";

/** Paths look like `global.status.file` or `rules[2].connect[1].dest`; indexes count from 0. */
export interface YamlLineIndex {
  /** The line of `path`, else of the nearest enclosing key or item that was found, else 1. */
  lineOf(path: string): number;
  /** A plain scalar as written on its key's line (`mode: 0660` gives "0660", where the parser gives 660). */
  scalarOf(path: string): string | undefined;
  /** Keys given more than once in one mapping. */
  duplicates: DuplicateKey[];
  /** The first line of the multi-line flow collection or quoted string `line` belongs to, else `line`. */
  valueStart(line: number): number;
  /** Whether `line` ends inside a flow collection or quoted string (a prefix of the text cut there cannot parse). */
  endsOpen(line: number): boolean;
}

export interface DuplicateKey {
  /** Path of the mapping (`rules[0]`; "" for the top level). */
  mapping: string;
  key: string;
  line: number;
  firstLine: number;
}

/** A block mapping or sequence being read, by the column its keys or dashes start at. */
interface Frame {
  indent: number;
  kind: "map" | "seq";
  path: string;
  /** The path a more indented block below belongs to: the last key's, or the last item's. */
  child: string;
  keys: Map<string, number>;
  count: number;
}

/** A flow collection (`[...]`, `{...}`) being read. */
interface FlowFrame {
  kind: "seq" | "map";
  path: string;
  count: number;
  key: string | undefined;
  expectingKey: boolean;
  keys: Map<string, number>;
}

type Recorder = (path: string, line: number) => void;
type DuplicateRecorder = (mapping: string, key: string, line: number, firstLine: number) => void;

const FLOW_INDICATORS = ",[]{}";

export function indexYamlLines(text: string): YamlLineIndex {
  const lines = new Map<string, number>();
  const scalars = new Map<string, string>();
  const duplicates: DuplicateKey[] = [];
  const valueStarts = new Map<number, number>();
  const openLines = new Set<number>();
  const record: Recorder = (path, line) => lines.set(path, line);
  const duplicate: DuplicateRecorder = (mapping, key, line, firstLine) => duplicates.push({ mapping, key, line, firstLine });

  let stack: Frame[] = [rootFrame()];
  let flow: FlowScanner | undefined;
  let quote: { char: string; start: number } | undefined;
  /** Lines more indented than this belong to a block scalar (`|`, `>`). */
  let blockScalarIndent: number | undefined;

  /** A key, a `- ` item, or (as `valuePath`'s value) a scalar or flow collection, starting at `column`. */
  const readNode = (column: number, content: string, line: number, valuePath?: string): void => {
    if (content === "-" || content.startsWith("- ") || content.startsWith("-\t")) {
      popFor(column, "seq");
      const top = last(stack);
      let item: string;
      if (top.kind === "seq" && top.indent === column) {
        top.count++;
        item = `${top.path}[${top.count}]`;
        top.child = item;
      } else {
        item = `${top.child}[0]`;
        stack.push({ indent: column, kind: "seq", path: top.child, child: item, keys: new Map(), count: 0 });
      }
      record(item, line);
      const rest = content.slice(1);
      const trimmed = rest.trimStart();
      if (trimmed === "" || trimmed.startsWith("#")) return;
      readNode(column + 1 + (rest.length - trimmed.length), trimmed, line, item);
      return;
    }
    const key = matchKey(content);
    if (key === undefined) {
      if (valuePath !== undefined) readValue(valuePath, content, line, column);
      return;
    }
    popFor(column, "map");
    let frame = last(stack);
    if (frame.kind !== "map" || frame.indent !== column) {
      frame = { indent: column, kind: "map", path: frame.child, child: frame.child, keys: new Map(), count: 0 };
      stack.push(frame);
    }
    const path = joinPath(frame.path, key.name);
    const first = frame.keys.get(key.name);
    if (first !== undefined) duplicate(frame.path, key.name, line, first);
    frame.keys.set(key.name, line);
    frame.child = path;
    record(path, line);
    readValue(path, key.rest, line, column);
  };

  /** Leave the frames a node at `column` is not inside of; a key at a sequence's own column ends that sequence. */
  const popFor = (column: number, kind: "map" | "seq"): void => {
    while (stack.length > 1) {
      const top = last(stack);
      if (top.indent > column || (top.indent === column && top.kind === "seq" && kind === "map")) stack.pop();
      else break;
    }
  };

  const readValue = (path: string, written: string, line: number, column: number): void => {
    const value = stripProperties(written);
    if (value === "" || value.startsWith("#")) return;
    const first = value[0];
    if (first === "[" || first === "{") {
      flow = new FlowScanner(path, line, record, duplicate);
      flow.feed(value, line);
      if (flow.done) flow = undefined;
      else valueStarts.set(line, line);
    } else if (first === "|" || first === ">") {
      blockScalarIndent = column;
    } else if (first === '"' || first === "'") {
      if (closingQuote(value, 1, first) === -1) {
        quote = { char: first, start: line };
        valueStarts.set(line, line);
      }
    } else {
      scalars.set(path, stripComment(value));
    }
  };

  const sourceLines = text.split(/\r?\n/);
  for (let i = 0; i < sourceLines.length; i++) {
    const line = i + 1;
    const source = sourceLines[i] ?? "";
    if (flow !== undefined) {
      valueStarts.set(line, flow.start);
      flow.feed(source, line);
      if (flow.done) flow = undefined;
      else openLines.add(line);
      continue;
    }
    if (quote !== undefined) {
      valueStarts.set(line, quote.start);
      if (closingQuote(source, 0, quote.char) !== -1) quote = undefined;
      else openLines.add(line);
      continue;
    }
    const indent = source.length - source.trimStart().length;
    const content = source.trimStart();
    if (blockScalarIndent !== undefined) {
      if (content === "" || indent > blockScalarIndent) continue;
      blockScalarIndent = undefined;
    }
    if (content === "" || content.startsWith("#")) continue;
    if (indent === 0 && /^(---|\.\.\.)(\s|$)/.test(content)) {
      stack = [rootFrame()];
      continue;
    }
    if (indent === 0 && content.startsWith("%")) continue;
    readNode(indent, content, line);
    if (flow !== undefined || quote !== undefined) openLines.add(line);
  }

  return {
    lineOf(path: string): number {
      for (let current = path; ; current = parentPath(current)) {
        const line = lines.get(current);
        if (line !== undefined) return line;
        if (current === "") return 1;
      }
    },
    scalarOf: (path) => scalars.get(path),
    duplicates,
    valueStart: (line) => valueStarts.get(line) ?? line,
    endsOpen: (line) => openLines.has(line),
  };
}

function rootFrame(): Frame {
  return { indent: -1, kind: "map", path: "", child: "", keys: new Map(), count: 0 };
}

function last(stack: Frame[]): Frame {
  const top = stack[stack.length - 1];
  if (top === undefined) throw new Error("YAML line index: empty frame stack");
  return top;
}

/**
 * `key: value`, `"quoted key": value`, `key:` at the end of the line. A colon
 * not followed by a space (`10.0.0.1:80`, `unix:/run/x`) is part of a scalar.
 */
function matchKey(content: string): { name: string; rest: string } | undefined {
  const first = content[0];
  if (first === '"' || first === "'") {
    const close = closingQuote(content, 1, first);
    if (close === -1) return undefined;
    const after = /^[ \t]*:(?=\s|$)/.exec(content.slice(close + 1));
    if (after === null) return undefined;
    return { name: unquote(content.slice(0, close + 1)), rest: content.slice(close + 1 + after[0].length).trimStart() };
  }
  if (first === undefined || "[{#&*!|>%@`?".includes(first)) return undefined;
  for (let i = 0; i < content.length; i++) {
    const char = content[i];
    if (char === "#" && /\s/.test(content[i - 1] ?? "")) return undefined;
    if (char === ":" && (i + 1 === content.length || /\s/.test(content[i + 1] ?? ""))) {
      return { name: content.slice(0, i).trimEnd(), rest: content.slice(i + 1).trimStart() };
    }
  }
  return undefined;
}

/** Drop an anchor (`&name`) and a tag (`!!str`) before a value. */
function stripProperties(value: string): string {
  let rest = value;
  while (rest.startsWith("&") || rest.startsWith("!")) {
    const space = rest.search(/\s/);
    rest = space === -1 ? "" : rest.slice(space).trimStart();
  }
  return rest;
}

function stripComment(value: string): string {
  const comment = value.search(/\s#/);
  return (comment === -1 ? value : value.slice(0, comment)).trim();
}

/** Index of the quote closing a string opened before `from`, or -1. `''` in single quotes and `\"` in double ones are escapes. */
function closingQuote(text: string, from: number, quote: string): number {
  for (let i = from; i < text.length; i++) {
    const char = text[i];
    if (quote === '"' && char === "\\") {
      i++;
      continue;
    }
    if (char !== quote) continue;
    if (quote === "'" && text[i + 1] === "'") {
      i++;
      continue;
    }
    return i;
  }
  return -1;
}

function unquote(text: string): string {
  const inner = text.slice(1, -1);
  return text.startsWith("'") ? inner.replaceAll("''", "'") : inner.replace(/\\(.)/g, "$1");
}

/**
 * Paths and keys of a flow collection, fed line by line until its last
 * bracket closes. Items are counted as they begin; a map's keys are the
 * scalars before its colons.
 */
class FlowScanner {
  private readonly stack: FlowFrame[] = [];
  private quote: string | undefined;
  done = false;

  /** `start`: the line the collection opens on. */
  constructor(
    private readonly path: string,
    readonly start: number,
    private readonly record: Recorder,
    private readonly duplicate: DuplicateRecorder,
  ) {}

  feed(text: string, line: number): void {
    let i = 0;
    if (this.quote !== undefined) {
      const close = closingQuote(text, 0, this.quote);
      if (close === -1) return;
      this.quote = undefined;
      i = close + 1;
    }
    while (i < text.length && !this.done) {
      const char = text[i] ?? "";
      if (char === " " || char === "\t") {
        i++;
      } else if (char === "#" && (i === 0 || /\s/.test(text[i - 1] ?? ""))) {
        return;
      } else if (char === "[" || char === "{") {
        this.open(char === "[" ? "seq" : "map", line);
        i++;
      } else if (char === "]" || char === "}") {
        this.stack.pop();
        if (this.stack.length === 0) this.done = true;
        i++;
      } else if (char === ",") {
        const top = this.stack[this.stack.length - 1];
        if (top?.kind === "map") {
          top.expectingKey = true;
          top.key = undefined;
        }
        i++;
      } else if (char === ":") {
        const top = this.stack[this.stack.length - 1];
        if (top?.kind === "map") top.expectingKey = false;
        i++;
      } else if (char === '"' || char === "'") {
        const close = closingQuote(text, i + 1, char);
        this.scalar(unquote(text.slice(i, close === -1 ? text.length : close + 1) + (close === -1 ? char : "")), line);
        if (close === -1) {
          this.quote = char;
          return;
        }
        i = close + 1;
      } else {
        const end = plainEnd(text, i);
        this.scalar(text.slice(i, end).trim(), line);
        i = end;
      }
    }
  }

  private open(kind: "seq" | "map", line: number): void {
    const path = this.valuePath(line) ?? this.path;
    this.stack.push({ kind, path, count: 0, key: undefined, expectingKey: kind === "map", keys: new Map() });
  }

  private scalar(text: string, line: number): void {
    const top = this.stack[this.stack.length - 1];
    if (top?.kind === "map" && top.expectingKey) {
      const first = top.keys.get(text);
      if (first !== undefined) this.duplicate(top.path, text, line, first);
      top.keys.set(text, line);
      top.key = text;
      top.expectingKey = false;
      this.record(joinPath(top.path, text), line);
      return;
    }
    this.valuePath(line);
  }

  /** Where a value beginning now goes: a new item of a sequence, or the current key of a map. */
  private valuePath(line: number): string | undefined {
    const top = this.stack[this.stack.length - 1];
    if (top === undefined) return undefined;
    if (top.kind === "seq") {
      const item = `${top.path}[${top.count++}]`;
      this.record(item, line);
      return item;
    }
    return top.key === undefined ? top.path : joinPath(top.path, top.key);
  }
}

/** Where a plain scalar inside a flow collection ends: at a flow indicator, a `: `, or a comment. */
function plainEnd(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    const char = text[i] ?? "";
    if (FLOW_INDICATORS.includes(char)) return i;
    if (char === ":" && (i + 1 === text.length || /[\s,[\]{}]/.test(text[i + 1] ?? ""))) return i;
    if (char === "#" && /\s/.test(text[i - 1] ?? "")) return i;
  }
  return text.length;
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
 * The line of the syntax error `Bun.YAML.parse` reported for `text`: the
 * first line `n` such that lines 1..n alone already fail with the same
 * message. Cuts inside a flow collection or quoted string that spans lines
 * are skipped (such a prefix fails whatever follows); an error found when
 * one closes is put on the line it began on.
 */
export function locateYamlSyntaxError(text: string, message: string): number {
  const index = indexYamlLines(text);
  return index.valueStart(firstFailingLine(text, (prefix) => yamlErrorMessage(prefix) === message, (line) => index.endsOpen(line)));
}

/** The message `Bun.YAML.parse` throws for `text`, or undefined when it parses. */
export function yamlErrorMessage(text: string): string | undefined {
  try {
    Bun.YAML.parse(text);
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}
