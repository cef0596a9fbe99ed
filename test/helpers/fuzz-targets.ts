/**
 * Every parser a client or an operator can feed, as fuzz targets: how to
 * make inputs for it and the properties it must hold on any of them. Shared
 * by the fixed-seed test (test/fuzz.test.ts) and the open-ended fuzzer
 * (bench/fuzz.ts). The first-bytes parsers' properties live in
 * helpers/peek-fuzz.ts and are listed here under "peek".
 *
 * Properties, all parsers: nothing is thrown but the parser's own error
 * type, and each case ends within a generous time bound. Config loaders:
 * never throw, give a config exactly when there is no error, and every
 * error carries a file that was read and a line (>= 1, but for the
 * whole-file reasons of WHOLE_FILE), with a reason of bounded length. Valid
 * configs generated in the `.conf` and TOML formats load without error and
 * print (the YAML writer of GET /api/v1/config?format=yaml) to text that
 * loads back to the same rules and prints the same again.
 */
import { join } from "node:path";
import fc from "fast-check";
import { loadConfigText } from "../../src/config/load.ts";
import { configYaml } from "../../src/config/yaml-writer.ts";
import { parseRuleBody } from "../../src/admin/rule-body.ts";
import { HttpError, MAX_BODY_BYTES, readBody } from "../../src/admin/http.ts";
import { encodeProxyV1, encodeProxyV2, encodeProxyV2Local, PROXY_V1_MAX_LENGTH, PROXY_V2_MAX_LENGTH, parseProxyHeader, type ProxyHeader } from "../../src/proxy-protocol.ts";
import { FrameReader } from "../../src/udp/framing.ts";
import type { ConfigIssue, ForwardRule, LoadResult } from "../../src/types.ts";
import { mutate, mutation, PEEK_PROPERTIES, peekCase, pseudoRandomBytes } from "./peek-fuzz.ts";
import { plainAccess } from "./config.ts";

export interface FuzzTarget {
  /** `--parser NAME` of bench/fuzz.ts; a fixture file name starts with it. */
  name: string;
  input: () => fc.Arbitrary<unknown>;
  /** Throws (or rejects) when a property does not hold. */
  check: (input: never) => void | Promise<void>;
  /** Cases `npm test` runs (OI_FUZZ_RUNS, when set, replaces it for every target): a few seconds each on a loaded 2-core machine. */
  runs: number;
}

const ms = (start: number) => performance.now() - start;

/** Fails a case that took longer than `boundMs` (generous: a loaded machine and a GC pause fit in it many times). */
function withinTime<T>(what: string, boundMs: number, run: () => T): T {
  const start = performance.now();
  const result = run();
  const took = ms(start);
  if (took > boundMs) throw new Error(`${what} took ${took.toFixed(0)} ms, over its bound of ${boundMs} ms`);
  return result;
}

const PARSER_BOUND_MS = 1000;
const CONFIG_BOUND_MS = 3000;

// ---------------------------------------------------------------- PROXY protocol

const PROXY_STATUSES = new Set(["incomplete", "invalid", "ok"]);
const V4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((parts) => parts.join("."));
const V6 = fc.constantFrom("2001:db8::1", "::1", "fe80::1:2:3:4", "2001:db8:1:2:3:4:5:6", "::ffff:10.0.0.1", "::");
const PORT = fc.integer({ min: 0, max: 65535 });

/** Real headers of each kind, to be mutated. */
function proxyHeaders(): fc.Arbitrary<Uint8Array> {
  const pair = (address: fc.Arbitrary<string>) => fc.tuple(address, PORT, address, PORT);
  return fc.oneof(
    pair(V4).map(([a, p, b, q]) => encodeProxyV1({ address: a, port: p }, { address: b, port: q })),
    pair(V6).map(([a, p, b, q]) => encodeProxyV1({ address: a, port: p }, { address: b, port: q })),
    fc.tuple(fc.oneof(pair(V4), pair(V6)), fc.constantFrom("tcp" as const, "udp" as const)).map(([[a, p, b, q], transport]) => encodeProxyV2({ address: a, port: p }, { address: b, port: q }, transport)),
    fc.constant(encodeProxyV2Local()),
    fc.constant(new TextEncoder().encode("PROXY UNKNOWN\r\n")),
  );
}

function proxyInput(): fc.Arbitrary<Uint8Array> {
  const mutated = fc.tuple(proxyHeaders(), fc.uint8Array({ maxLength: 32 }), fc.array(mutation, { maxLength: 4 })).map(([header, tail, changes]) =>
    changes.reduce(mutate, Buffer.concat([header, tail])),
  );
  const random = fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.tuple(fc.nat(2048), fc.integer()).map(([length, seed]) => pseudoRandomBytes(length, seed)));
  return fc.oneof({ weight: 4, arbitrary: mutated }, { weight: 1, arbitrary: random });
}

function parseProxy(bytes: Uint8Array): ProxyHeader {
  const header = parseProxyHeader(bytes);
  if (!PROXY_STATUSES.has(header.status)) throw new Error(`status ${JSON.stringify(header)}`);
  return header;
}

/** Decides within its bound, never takes back an answer when more bytes come, and a header is what it says it consumed. */
function checkProxy(bytes: Uint8Array): void {
  withinTime("parseProxyHeader", PARSER_BOUND_MS, () => {
    const whole = parseProxy(bytes);
    if (whole.status === "incomplete") {
      const bound = bytes[0] === 0x50 ? PROXY_V1_MAX_LENGTH : PROXY_V2_MAX_LENGTH;
      if (bytes.length >= bound) throw new Error(`still incomplete after ${bytes.length} bytes (bound ${bound})`);
    }
    if (whole.status === "ok") {
      if (whole.headerLength > bytes.length) throw new Error(`header length ${whole.headerLength} past the ${bytes.length} bytes`);
      const consumed = parseProxy(bytes.subarray(0, whole.headerLength));
      if (!Bun.deepEquals(consumed, whole)) throw new Error(`${JSON.stringify(whole)} on the whole, ${JSON.stringify(consumed)} on the bytes consumed`);
    }
    for (const cut of [1, 8, 13, 16, 28, 52, bytes.length >> 1, bytes.length - 1]) {
      if (cut <= 0 || cut >= bytes.length) continue;
      const early = parseProxy(bytes.subarray(0, cut));
      if (early.status === "invalid" && whole.status !== "invalid") throw new Error(`invalid on ${cut} bytes, ${whole.status} on ${bytes.length}`);
      if (early.status === "ok" && !Bun.deepEquals(early, whole)) throw new Error(`${JSON.stringify(early)} on ${cut} bytes, ${JSON.stringify(whole)} on ${bytes.length}`);
    }
  });
}

// ---------------------------------------------------------------- UDP-over-TCP framing

interface FramingCase {
  stream: Uint8Array;
  chunks: number[];
  max: number;
}

/** A len16 stream (frames of random sizes, or random bytes) cut into chunks, read with a random maximum. */
function framingInput(): fc.Arbitrary<FramingCase> {
  const frames = fc.array(fc.oneof(fc.nat(64), fc.integer({ min: 0, max: 70_000 })), { maxLength: 6 }).chain((sizes) =>
    fc.integer().map((seed) => {
      const parts: Uint8Array[] = [];
      for (const size of sizes) {
        const length = Math.min(size, 0xffff);
        parts.push(Uint8Array.of(length >> 8, length & 0xff), pseudoRandomBytes(length, seed + size));
      }
      return new Uint8Array(Buffer.concat(parts));
    }),
  );
  const random = fc.tuple(fc.nat(4096), fc.integer()).map(([length, seed]) => pseudoRandomBytes(length, seed));
  const stream = fc.tuple(fc.oneof(frames, random), fc.array(mutation, { maxLength: 2 })).map(([bytes, changes]) => changes.reduce(mutate, bytes));
  return fc.record({
    stream,
    chunks: fc.array(fc.integer({ min: 1, max: 80_000 }), { minLength: 1, maxLength: 8 }),
    max: fc.oneof(fc.constant(0xffff), fc.integer({ min: 0, max: 0xffff })),
  });
}

/** What the stream holds, read the simplest way: whole frames, then whether it stops on a malformed one. */
function referenceFrames(stream: Uint8Array, max: number): { frames: Uint8Array[]; malformed: boolean } {
  const frames: Uint8Array[] = [];
  let at = 0;
  while (at + 2 <= stream.length) {
    const length = (stream[at]! << 8) | stream[at + 1]!;
    if (length > max) return { frames, malformed: true };
    if (at + 2 + length > stream.length) break;
    frames.push(stream.subarray(at + 2, at + 2 + length));
    at += 2 + length;
  }
  return { frames, malformed: false };
}

/** Any chunking gives the frames a plain reading gives, and a frame over the maximum stops the reader before it allocates for it. */
function checkFraming({ stream, chunks, max }: FramingCase): void {
  withinTime("FrameReader.feed", PARSER_BOUND_MS, () => {
    const expected = referenceFrames(stream, max);
    const reader = new FrameReader();
    const got: Uint8Array[] = [];
    const sink = { frame: (datagram: Uint8Array) => got.push(datagram.slice()) };
    let ok = true;
    for (let at = 0, i = 0; at < stream.length && ok; i++) {
      const size = chunks[i % chunks.length]!;
      ok = reader.feed(stream.subarray(at, at + size), max, sink);
      at += size;
    }
    if (ok === expected.malformed) throw new Error(`feed said ${ok ? "well-formed" : "malformed"}, the stream is ${expected.malformed ? "malformed" : "well-formed"}`);
    if (got.length !== expected.frames.length || got.some((frame, i) => !Buffer.from(frame).equals(Buffer.from(expected.frames[i]!)))) {
      throw new Error(`${got.length} frames read, ${expected.frames.length} in the stream`);
    }
  });
}

// ---------------------------------------------------------------- configs

/** Directory of small files that fuzzed `.conf` configs include (test/fixtures/fuzz-include). */
export const INCLUDE_DIR = join(import.meta.dir, "..", "fixtures", "fuzz-include");

/** Issues that concern the whole file, given at line 0 (documented in README's configuration chapter). */
const WHOLE_FILE = [/^config is \d+ bytes, over the limit/, /^cannot read config/, /^status file settings are given but no status file path/];
/** Longest reason a user may be shown (a reason quotes what the file says, clipped: src/config/text-limits.ts). */
const MAX_REASON_LENGTH = 2000;

interface RuleSpec {
  bind: string;
  udp: boolean;
  backends: Array<{ host: string; port: number; weight: number }>;
  timeout?: number;
  connectTimeout?: number;
  maxconn?: number;
  idle?: number;
  lb?: string;
  allow: string[];
  deny: string[];
}

interface ConfigSpec {
  rules: RuleSpec[];
  allow: string[];
  maxconn?: number;
  logCommon: boolean;
}

const PATTERNS = fc.constantFrom("127.0.0.1", "10.*", "192.168.0.0/16", "::1", "172.16.?.*", "2001:db8::/32");
const BACKEND_HOSTS = fc.constantFrom("127.0.0.1", "10.1.2.3", "::1", "backend.example", "2001:db8::7");

function ruleSpec(): fc.Arbitrary<RuleSpec> {
  return fc.record(
    {
      bind: fc.constantFrom("0.0.0.0", "127.0.0.1", "::1", "::"),
      udp: fc.boolean(),
      // Distinct: a backend listed twice is an error (its name would label two backends).
      backends: fc.uniqueArray(fc.record({ host: BACKEND_HOSTS, port: fc.integer({ min: 1, max: 65535 }), weight: fc.integer({ min: 1, max: 10 }) }), {
        minLength: 1,
        maxLength: 3,
        selector: (backend) => `${backend.host}:${backend.port}`,
      }),
      timeout: fc.integer({ min: 1, max: 3600 }),
      connectTimeout: fc.integer({ min: 1, max: 60 }),
      maxconn: fc.integer({ min: 1, max: 100_000 }),
      idle: fc.integer({ min: 1, max: 86_400 }),
      lb: fc.constantFrom("roundrobin", "leastconn", "random", "iphash"),
      allow: fc.array(PATTERNS, { maxLength: 2 }),
      deny: fc.array(PATTERNS, { maxLength: 2 }),
    },
    { requiredKeys: ["bind", "udp", "backends", "allow", "deny"] },
  );
}

/** Valid configs: up to 6 rules on distinct ports, some options, access rules, a few globals. */
export function configSpec(): fc.Arbitrary<ConfigSpec> {
  return fc.record({
    rules: fc.array(ruleSpec(), { maxLength: 6 }),
    allow: fc.array(PATTERNS, { maxLength: 2 }),
    maxconn: fc.option(fc.integer({ min: 1, max: 1_000_000 }), { nil: undefined }),
    logCommon: fc.boolean(),
  });
}

const portOf = (index: number) => 8000 + index;
const hostPort = (host: string, port: number) => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`);

/** The rinetd `.conf` text of a spec. */
export function confText(spec: ConfigSpec): string {
  const lines = ["# generated by test/helpers/fuzz-targets.ts"];
  if (spec.logCommon) lines.push("logcommon");
  if (spec.maxconn !== undefined) lines.push(`maxconn ${spec.maxconn}`);
  for (const pattern of spec.allow) lines.push(`allow ${pattern}`);
  spec.rules.forEach((rule, index) => {
    const suffix = rule.udp ? "/udp" : "";
    const first = rule.backends[0]!;
    const connect =
      rule.backends.length === 1 ? `${first.host} ${first.port}${suffix}` : `${rule.backends.map((b) => `${hostPort(b.host, b.port)}${b.weight > 1 ? `*${b.weight}` : ""}`).join(",")} ${first.port}${suffix}`;
    const options = [
      rule.timeout !== undefined && rule.udp ? `timeout=${rule.timeout}` : "",
      rule.connectTimeout !== undefined && !rule.udp ? `connect_timeout=${rule.connectTimeout}` : "",
      rule.maxconn !== undefined && !rule.udp ? `maxconn=${rule.maxconn}` : "",
      rule.idle !== undefined && !rule.udp ? `idle=${rule.idle}` : "",
      rule.lb !== undefined ? `lb=${rule.lb}` : "",
    ].filter((option) => option !== "");
    lines.push(`${rule.bind} ${portOf(index)}${suffix} ${connect}${options.length > 0 ? ` [${options.join(",")}]` : ""}`);
    for (const pattern of rule.allow) lines.push(`allow ${pattern}`);
    for (const pattern of rule.deny) lines.push(`deny ${pattern}`);
  });
  return `${lines.join("\n")}\n`;
}

/** oxidinetd's TOML text of a spec. */
export function tomlText(spec: ConfigSpec): string {
  const q = JSON.stringify;
  const lines = ["# generated by test/helpers/fuzz-targets.ts"];
  if (spec.logCommon) lines.push('log_format = "common"');
  if (spec.maxconn !== undefined) lines.push(`max_connections = ${spec.maxconn}`);
  for (const pattern of spec.allow) lines.push("", "[[global_rules]]", 'type = "allow"', `pattern = ${q(pattern)}`);
  spec.rules.forEach((rule, index) => {
    const first = rule.backends[0]!;
    lines.push("", "[[forwarding_rules]]", `bind_address = ${q(rule.bind)}`, `bind_port = ${portOf(index)}`);
    if (rule.backends.length === 1) lines.push(`connect_address = ${q(first.host)}`, `connect_port = ${first.port}`);
    else lines.push(`connect = [${rule.backends.map((b) => `{ address = ${q(b.host)}, port = ${b.port}, weight = ${b.weight} }`).join(", ")}]`);
    if (rule.udp) lines.push('protocol = "udp"');
    if (rule.timeout !== undefined && rule.udp) lines.push(`timeout = ${rule.timeout}`);
    if (rule.connectTimeout !== undefined && !rule.udp) lines.push(`connect_timeout = ${rule.connectTimeout}`);
    if (rule.maxconn !== undefined && !rule.udp) lines.push(`max_connections = ${rule.maxconn}`);
    if (rule.idle !== undefined && !rule.udp) lines.push(`idle_timeout = ${rule.idle}`);
    if (rule.lb !== undefined) lines.push(`load_balancing = { algorithm = ${q(rule.lb)} }`);
    for (const [type, patterns] of [["allow", rule.allow], ["deny", rule.deny]] as const) {
      for (const pattern of patterns) lines.push("", "[[forwarding_rules.rules]]", `type = ${q(type)}`, `pattern = ${q(pattern)}`);
    }
  });
  return `${lines.join("\n")}\n`;
}

/** Pieces of the three formats' syntax (and of what breaks parsers) for insertions. */
const CONFIG_SYNTAX = [
  "\n", "\r\n", " ", "\t", "#", "[", "]", "{", "}", "[[", "]]", ",", ":", ": ", "=", " = ", '"', "'", "\\", "- ", "  ", "|", ">",
  "&a ", "*a", "<<: *a", "---\n", "...", "!!str ", "? ", "\0", "\uFEFF", "\u2028", "😀", "é",
  "0.0.0.0", "::1", "[::1]:80", "65536", "-1", "0", "1e400", "99999999999999999999", "/udp", "/tcp", "unix:/tmp/x.sock", "*3", "8000-8099",
  "[timeout=0]", "[lb=bogus]", "[maxconn=5", "allow ", "deny 10.0.0.0/33", "include ", "logfile ", "pidlogfile /x\n",
  "[[forwarding_rules]]\n", "[[global_rules]]\n", "rules:\n", "global:\n", "bind: ", "connect: ", "name: ",
];

/** `include` lines (`.conf`): files, a nested include, a cycle, a directory, globs, missing files, relative and absolute. */
const INCLUDE_LINES = [
  "include rule.conf", "include nested.conf", "include cycle.conf", "include conf.d", "include conf.d/*.conf", "include conf.d/*", "include c*.conf",
  "include missing/*.conf", "include missing.conf", `include ${INCLUDE_DIR}/nested.conf`, "include /nonexistent.conf", 'include "conf.d"', "include", "include a b",
];

/** Larger pieces: deep nesting, long tokens and lines, many keys (the limits of src/config/text-limits.ts, and past them). */
const CONFIG_BULK: Array<(count: number) => string> = [
  (count) => "[".repeat(count),
  (count) => "[\n".repeat(count),
  (count) => "{a: ".repeat(count),
  (count) => "{a=".repeat(count),
  // Indentation grows as the square of the depth: kept under the size limit.
  (count) => Array.from({ length: Math.min(count, 1500) }, (_, i) => `${" ".repeat(i)}k:`).join("\n"),
  (count) => "- ".repeat(count),
  (count) => "a".repeat(count * 400),
  (count) => "a.".repeat(count),
  (count) => Array.from({ length: count * 4 }, (_, i) => `k${i} = 1`).join("\n"),
  (count) => "\n".repeat(count * 10),
];

type TextMutation =
  | { kind: "insert"; at: number; piece: number }
  | { kind: "bulk"; at: number; piece: number; count: number }
  | { kind: "includeLine"; line: number; piece: number }
  | { kind: "delete"; at: number; count: number }
  | { kind: "duplicateLine"; line: number }
  | { kind: "deleteLine"; line: number }
  | { kind: "truncate"; at: number }
  | { kind: "char"; at: number; code: number };

const textMutation: fc.Arbitrary<TextMutation> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), piece: fc.nat(CONFIG_SYNTAX.length - 1) }) },
  { weight: 1, arbitrary: fc.record({
      kind: fc.constant("bulk" as const),
      at: fc.nat(),
      piece: fc.nat(CONFIG_BULK.length - 1),
      // Around the limits of src/config/text-limits.ts, and past where Bun's parsers overflow the stack.
      count: fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 3000, max: 6000 })),
    }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("includeLine" as const), line: fc.nat(), piece: fc.nat(INCLUDE_LINES.length - 1) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), count: fc.integer({ min: 1, max: 20 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("duplicateLine" as const), line: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("deleteLine" as const), line: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("char" as const), at: fc.nat(), code: fc.integer({ min: 0, max: 0x7f }) }) },
);

function mutateText(text: string, change: TextMutation): string {
  const at = "at" in change ? change.at % (text.length + 1) : 0;
  switch (change.kind) {
    case "insert":
      return text.slice(0, at) + CONFIG_SYNTAX[change.piece]! + text.slice(at);
    case "bulk":
      return text.slice(0, at) + CONFIG_BULK[change.piece]!(change.count) + text.slice(at);
    case "delete":
      return text.slice(0, at) + text.slice(at + change.count);
    case "truncate":
      return text.slice(0, at);
    case "char":
      return text.slice(0, at) + String.fromCharCode(change.code) + text.slice(at + 1);
    case "includeLine": {
      const lines = text.split("\n");
      lines.splice(change.line % (lines.length + 1), 0, INCLUDE_LINES[change.piece]!);
      return lines.join("\n");
    }
    case "duplicateLine":
    case "deleteLine": {
      const lines = text.split("\n");
      const line = change.line % lines.length;
      lines.splice(line, change.kind === "deleteLine" ? 1 : 0, ...(change.kind === "deleteLine" ? [] : [lines[line]!]));
      return lines.join("\n");
    }
  }
}

/** A fuzzed config: its text and the name it is loaded under (the extension picks the format). */
export interface ConfigCase {
  file: string;
  text: string;
}

function configInput(format: "conf" | "toml" | "yaml"): fc.Arbitrary<ConfigCase> {
  const file = join(INCLUDE_DIR, `fuzzed.${format}`);
  const start = configSpec().map((spec) => {
    if (format === "conf") return confText(spec);
    if (format === "toml") return tomlText(spec);
    // YAML: what the writer prints for the spec's config (the format rinetd-uv users write).
    const loaded = loadConfigText(confText(spec), "spec.conf");
    return loaded.config === undefined ? "" : configYaml(loaded.config);
  });
  const random = fc.string({ unit: "binary", maxLength: 200 });
  return fc
    .tuple(fc.oneof({ weight: 5, arbitrary: start }, { weight: 1, arbitrary: random }), fc.array(textMutation, { maxLength: 5 }))
    .map(([text, changes]) => ({ file, text: changes.reduce(mutateText, text) }));
}

/** Every issue names a file read and a line, with a reason a console line can carry. */
function checkIssues(result: LoadResult, mainFile: string): void {
  const files = new Set([mainFile, ...result.files]);
  for (const issue of [...result.errors, ...result.warnings]) checkIssue(issue, files);
  if ((result.config === undefined) !== result.errors.length > 0) throw new Error(`config ${result.config === undefined ? "missing" : "given"} with ${result.errors.length} errors`);
}

function checkIssue(issue: ConfigIssue, files: Set<string>): void {
  const where = `${issue.file}:${issue.line}: ${issue.reason.slice(0, 200)}`;
  if (!files.has(issue.file)) throw new Error(`issue in a file not read: ${where}`);
  if (!Number.isInteger(issue.line) || issue.line < 0) throw new Error(`bad line: ${where}`);
  if (issue.line === 0 && !WHOLE_FILE.some((reason) => reason.test(issue.reason))) throw new Error(`no line: ${where}`);
  if (typeof issue.reason !== "string" || issue.reason.trim() === "") throw new Error(`no reason: ${where}`);
  if (issue.reason.length > MAX_REASON_LENGTH) throw new Error(`reason of ${issue.reason.length} characters: ${where}`);
  if (/Maximum call stack|RangeError|TypeError|undefined is not|null is not/.test(issue.reason)) throw new Error(`a JavaScript error as the reason: ${where}`);
}

function checkConfig({ file, text }: ConfigCase): void {
  const result = withinTime(`loading ${file}`, CONFIG_BOUND_MS, () => loadConfigText(text, file));
  checkIssues(result, file);
}

/** What must survive printing: everything but where a rule was written. */
function essence(rule: ForwardRule) {
  const { at, access, index, ...rest } = rule;
  const plain = plainAccess(access);
  return { ...rest, access: { allow: plain.allow.map(([text]) => text), deny: plain.deny.map(([text]) => text) } };
}

interface RoundTripCase {
  spec: ConfigSpec;
  format: "conf" | "toml";
}

/** A valid config loads without error; printed as YAML it loads back to the same rules, and prints the same again. */
function checkRoundTrip({ spec, format }: RoundTripCase): void {
  withinTime("round trip", CONFIG_BOUND_MS, () => {
    const text = format === "conf" ? confText(spec) : tomlText(spec);
    const first = loadConfigText(text, `generated.${format}`);
    if (first.config === undefined) throw new Error(`a valid ${format} config was refused: ${first.errors.map((e) => `${e.line}: ${e.reason}`).join("; ")}\n${text}`);
    const printed = configYaml(first.config);
    const again = loadConfigText(printed, "printed.yaml");
    if (again.config === undefined) throw new Error(`the printed config was refused: ${again.errors.map((e) => `${e.line}: ${e.reason}`).join("; ")}\n${printed}`);
    if (!Bun.deepEquals(again.config.rules.map(essence), first.config.rules.map(essence))) {
      throw new Error(`rules changed in print and load:\n${JSON.stringify(first.config.rules.map(essence))}\n${JSON.stringify(again.config.rules.map(essence))}\n${printed}`);
    }
    // The header comment names the file read; the rest must be the same.
    const body = (yaml: string) => yaml.replace(/^#.*\n/gm, "");
    const reprinted = configYaml(again.config);
    if (body(reprinted) !== body(printed)) throw new Error(`printed differently the second time:\n${printed}\n---\n${reprinted}`);
  });
}

// ---------------------------------------------------------------- admin API bodies

interface RuleBodyCase {
  name: string;
  text: string;
}

function ruleBodyInput(): fc.Arbitrary<RuleBodyCase> {
  const json = ruleSpec().map((rule) =>
    JSON.stringify({ bind: `${hostPort(rule.bind, 9000)}/${rule.udp ? "udp" : "tcp"}`, connect: rule.backends.map((b) => ({ dest: hostPort(b.host, b.port), weight: b.weight })), ...(rule.lb ? { load_balancing: { algorithm: rule.lb } } : {}) }),
  );
  const yaml = ruleSpec().map(
    (rule) =>
      `bind: "${hostPort(rule.bind, 9000)}/${rule.udp ? "udp" : "tcp"}"\nconnect:\n${rule.backends.map((b) => `  - dest: "${hostPort(b.host, b.port)}"\n    weight: ${b.weight}\n`).join("")}${rule.idle !== undefined && !rule.udp ? `idle_timeout: ${rule.idle}\n` : ""}`,
  );
  return fc.record({
    name: fc.constantFrom("web", "r1", "a-b_c"),
    text: fc.tuple(fc.oneof(json, yaml, fc.string({ maxLength: 100 })), fc.array(textMutation, { maxLength: 4 })).map(([text, changes]) => changes.reduce(mutateText, text)),
  });
}

/** PUT /api/v1/rules/NAME: never throws; a refusal is 400 or 422 with errors at lines of the body; an acceptance gives rules of that name. */
function checkRuleBody({ name, text }: RuleBodyCase): void {
  const body = withinTime("parseRuleBody", CONFIG_BOUND_MS, () => parseRuleBody(name, text));
  if (body.ok) {
    if (body.rules.length === 0 || body.rules.some((rule) => rule.name !== name)) throw new Error(`accepted as ${JSON.stringify(body.rules.map((rule) => rule.name))}`);
    return;
  }
  if (body.status !== 400 && body.status !== 422) throw new Error(`status ${body.status}`);
  if (body.message.trim() === "") throw new Error("no message");
  for (const issue of body.errors) {
    if (issue.file !== "request body" || !Number.isInteger(issue.line) || issue.line < 0) throw new Error(`error at ${issue.file}:${issue.line}`);
    if (issue.reason.length > MAX_REASON_LENGTH || /Maximum call stack/.test(issue.reason)) throw new Error(`reason: ${issue.reason.slice(0, 200)}`);
  }
}

interface RequestBodyCase {
  bytes: Uint8Array;
  /** Content-Length as announced: the true one, another one, or none. */
  announced: "true" | "none" | number;
}

function requestBodyInput(): fc.Arbitrary<RequestBodyCase> {
  const text = fc.string({ unit: "grapheme", maxLength: 200 }).map((s) => new TextEncoder().encode(s));
  const big = fc.tuple(fc.integer({ min: MAX_BODY_BYTES - 16, max: MAX_BODY_BYTES + 16 }), fc.integer()).map(([length, seed]) => pseudoRandomBytes(length, seed).map((b) => 0x20 + (b % 0x5f)));
  return fc.record({
    bytes: fc.oneof({ weight: 4, arbitrary: text }, { weight: 4, arbitrary: fc.uint8Array({ maxLength: 200 }) }, { weight: 1, arbitrary: big }),
    announced: fc.oneof(fc.constant("true" as const), fc.constant("none" as const), fc.nat(2 * MAX_BODY_BYTES)),
  });
}

/** The admin API's body reader gives the body's text, or an HttpError (400 not UTF-8, 413 too large), nothing else. */
async function checkRequestBody({ bytes, announced }: RequestBodyCase): Promise<void> {
  const headers: Record<string, string> = {};
  if (announced === "true") headers["content-length"] = String(bytes.length);
  else if (announced !== "none") headers["content-length"] = String(announced);
  const request = new Request("http://127.0.0.1/api/v1/rules/x", { method: "PUT", body: bytes, headers });
  const start = performance.now();
  let text: string | undefined;
  try {
    text = await readBody(request);
  } catch (error) {
    if (!(error instanceof HttpError) || (error.status !== 400 && error.status !== 413)) throw error;
    if (error.status === 413 && bytes.length <= MAX_BODY_BYTES && (typeof announced !== "number" || announced <= MAX_BODY_BYTES)) throw new Error(`413 for ${bytes.length} bytes`);
  }
  if (text !== undefined && text !== new TextDecoder("utf-8", { fatal: true }).decode(bytes)) throw new Error("the text read is not the body");
  if (ms(start) > PARSER_BOUND_MS) throw new Error(`readBody took ${ms(start).toFixed(0)} ms`);
}

// ---------------------------------------------------------------- the list

export const FUZZ_TARGETS: readonly FuzzTarget[] = [
  ...PEEK_PROPERTIES.map(({ name, check }) => ({ name: `peek-${name}`, input: peekCase, check, runs: 1000 })),
  { name: "proxy-protocol", input: proxyInput, check: checkProxy, runs: 20_000 },
  { name: "udp-framing", input: framingInput, check: checkFraming, runs: 5000 },
  { name: "config-conf", input: () => configInput("conf"), check: checkConfig, runs: 2000 },
  { name: "config-toml", input: () => configInput("toml"), check: checkConfig, runs: 2000 },
  { name: "config-yaml", input: () => configInput("yaml"), check: checkConfig, runs: 2000 },
  { name: "config-print", input: () => fc.record({ spec: configSpec(), format: fc.constantFrom("conf" as const, "toml" as const) }), check: checkRoundTrip, runs: 1500 },
  { name: "admin-rule-body", input: ruleBodyInput, check: checkRuleBody, runs: 2000 },
  { name: "admin-request-body", input: requestBodyInput, check: checkRequestBody, runs: 1000 },
] as FuzzTarget[];

/** Runs per target in `npm test`: the target's own, or OI_FUZZ_RUNS for every target; the seed: OI_FUZZ_SEED or a fixed one. */
export function fuzzSettings(target: FuzzTarget): { numRuns: number; seed: number } {
  return fuzzEnvironment(target.runs, FIXED_SEED);
}

/** `runs` and `seed` unless OI_FUZZ_RUNS and OI_FUZZ_SEED say otherwise (also read by peek-fuzz.test.ts). */
export function fuzzEnvironment(runs: number, seed: number): { numRuns: number; seed: number } {
  // Number("") is 0: an empty variable counts as unset.
  const runsGiven = process.env.OI_FUZZ_RUNS ? Number(process.env.OI_FUZZ_RUNS) : Number.NaN;
  const seedGiven = process.env.OI_FUZZ_SEED ? Number(process.env.OI_FUZZ_SEED) : Number.NaN;
  return { numRuns: Number.isInteger(runsGiven) && runsGiven > 0 ? runsGiven : runs, seed: Number.isInteger(seedGiven) ? seedGiven : seed };
}

const FIXED_SEED = 0x0f_022e;

// ---------------------------------------------------------------- saved cases

/** A failing case as JSON (byte arrays as base64), for test/fixtures/fuzz/. */
export function encodeCase(input: unknown): string {
  return JSON.stringify(input, (_, value) => (value instanceof Uint8Array ? { $bytes: Buffer.from(value).toString("base64") } : value), 2);
}

export function decodeCase(text: string): unknown {
  return JSON.parse(text, (_, value) => (typeof value === "object" && value !== null && typeof value.$bytes === "string" ? new Uint8Array(Buffer.from(value.$bytes, "base64")) : value));
}
