/**
 * The properties the first-bytes parsers (src/peek/) must hold on any
 * input, with the inputs to try them on, shared by the fixed-seed test
 * (test/peek-fuzz.test.ts) and the open-ended fuzzer (bench/fuzz.ts, with
 * the other parsers' targets of fuzz-targets.ts).
 *
 * Inputs are random bytes (up to 20 KiB, past the 16 KiB cap) and the real
 * captures under test/fixtures/ changed by a few mutations: byte flips and
 * overwrites, cuts, insertions (random bytes or pieces of the protocols'
 * syntax), deletions, corrupted length fields of a ClientHello, and a
 * ClientHello re-framed into records of random sizes.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { formatIp, parseIPv6 } from "../../src/ip.ts";
import { parseRequestHead } from "../../src/peek/http-request.ts";
import { detectProtocol } from "../../src/peek/protocol.ts";
import { parseClientHello } from "../../src/peek/tls-hello.ts";
import { ascii, concat } from "./bytes.ts";
import { handshakeOf, helloFixtures, records } from "./client-hello.ts";

/** The longest random input: past MAX_PEEK_BYTES, to try the cap. */
const MAX_RANDOM_LENGTH = 20 * 1024;
const MAX_HOST_LENGTH = 253;
const HOST_NAME = /^[a-z0-9._-]+$/;

/** One parser's answer on an input, made comparable: "complete" answers compare whole. */
interface Answer {
  parser: string;
  status: string;
  result: unknown;
}

/** Every parser's answer; throws only if a parser does. */
function answers(bytes: Uint8Array): Answer[] {
  const hello = parseClientHello(bytes);
  const head = parseRequestHead(bytes);
  const protocol = detectProtocol(bytes);
  return [
    { parser: "parseClientHello", status: hello.status, result: hello },
    { parser: "parseRequestHead", status: head.status, result: head },
    // detectProtocol's "decided" is any answer but undefined; it never changes once given.
    { parser: "detectProtocol", status: protocol === undefined ? "incomplete" : "complete", result: protocol },
  ];
}

const FIRST_BYTES = join(import.meta.dir, "..", "fixtures", "first-bytes");

/** Request heads in the forms the captures lack: bare LF, IPv6, absolute-form with a port, HTTP/1.0. */
const SYNTHETIC_HEADS = [
  "GET / HTTP/1.0\nHost: [2001:db8::1]:8080\nX-A: b\n\n",
  "POST https://Secure.Example.:443/x?y HTTP/1.1\r\nHost: other.example\r\nContent-Length: 0\r\n\r\n",
  "OPTIONS * HTTP/1.1\r\nHost:\r\n\r\n",
];

/**
 * The inputs the mutations start from: every ClientHello captured, and
 * every HTTP request head and SSH banner captured or written above.
 */
export function seedInputs(): { hellos: Uint8Array[]; others: Uint8Array[] } {
  const captured = ["curl-http.bin", "curl-http-proxy.bin", "chromium-http.bin", "openssh.bin"].map((file) => new Uint8Array(readFileSync(join(FIRST_BYTES, file))));
  return { hellos: helloFixtures().map((fixture) => fixture.bytes), others: [...captured, ...SYNTHETIC_HEADS.map(ascii)] };
}

// ---------------------------------------------------------------- inputs

/** Bytes from a seed (xorshift32): long random inputs without fast-check drawing each byte. */
export function pseudoRandomBytes(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = seed | 0 || 1;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

/** Pieces of the three protocols' syntax, for insertions that reach deeper than random bytes do. */
const SYNTAX = [
  "\r\n",
  "\n",
  "\r",
  " ",
  "\t",
  ":",
  "\r\n\r\n",
  "Host: a.example\r\n",
  "HOST:[::1]:80\r\n",
  "http://",
  "[::1]",
  "\x00",
  "SSH-2.0-",
  "\x16\x03\x01",
  "\x16\x03\x03\x00\x05\x01\x00\x00\x01\x00",
  "\x00\x00\x00\x0e\x00\x0c\x00\x00\x09a.example",
  "\xfe\x0d\x00\x00",
  "\x00\x10\x00\x05\x00\x03\x02h2",
].map(ascii);

export type Mutation =
  | { kind: "flip"; at: number; mask: number }
  | { kind: "set"; at: number; value: number }
  | { kind: "truncate"; at: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "syntax"; at: number; piece: number }
  | { kind: "delete"; at: number; count: number }
  | { kind: "tail"; at: number; length: number; seed: number }
  | { kind: "length"; field: number; change: number };

export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant("syntax" as const), at: fc.nat(), piece: fc.nat({ max: SYNTAX.length - 1 }) }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), count: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ kind: fc.constant("tail" as const), at: fc.nat(), length: fc.nat({ max: 512 }), seed: fc.integer() }),
  fc.record({ kind: fc.constant("length" as const), field: fc.nat(), change: fc.integer({ min: -4, max: 4 }) }),
);

/** `bytes` changed by one mutation (shared with the other parsers' fuzzing, test/helpers/fuzz-targets.ts). */
export function mutate(bytes: Uint8Array, change: Mutation): Uint8Array {
  if (change.kind === "length") return corruptLength(bytes, change.field, change.change);
  const at = bytes.length === 0 ? 0 : change.at % bytes.length;
  switch (change.kind) {
    case "flip":
    case "set": {
      if (bytes.length === 0) return bytes;
      const out = bytes.slice();
      out[at] = change.kind === "flip" ? out[at]! ^ change.mask : change.value;
      return out;
    }
    case "truncate":
      return bytes.subarray(0, change.at % (bytes.length + 1));
    case "insert":
      return concat(bytes.subarray(0, at), change.bytes, bytes.subarray(at));
    case "syntax":
      return concat(bytes.subarray(0, at), SYNTAX[change.piece]!, bytes.subarray(at));
    case "delete":
      return concat(bytes.subarray(0, at), bytes.subarray(at + change.count));
    case "tail":
      return concat(bytes.subarray(0, at), pseudoRandomBytes(change.length, change.seed));
  }
}

/**
 * Where the length fields of a one-record ClientHello are ([offset, size]
 * pairs): record, handshake, session id, cipher suites, compression, the
 * extensions block, and each extension's. Stops quietly where the bytes stop
 * making sense (they may have been mutated already).
 */
function helloLengthFields(bytes: Uint8Array): Array<[number, number]> {
  const fields: Array<[number, number]> = [[3, 2], [6, 3]];
  const at16 = (at: number) => ((bytes[at] ?? 0) << 8) | (bytes[at + 1] ?? 0);
  let at = 9 + 2 + 32;
  fields.push([at, 1]);
  at += 1 + (bytes[at] ?? 0);
  fields.push([at, 2]);
  at += 2 + at16(at);
  fields.push([at, 1]);
  at += 1 + (bytes[at] ?? 0);
  fields.push([at, 2]);
  at += 2;
  while (at + 4 <= bytes.length) {
    fields.push([at + 2, 2]);
    // server_name and ALPN: their list lengths too.
    const type = at16(at);
    if (type === 0 || type === 16) fields.push([at + 4, 2]);
    if (type === 0) fields.push([at + 7, 2]);
    at += 4 + at16(at + 2);
  }
  return fields.filter(([offset, size]) => offset + size <= bytes.length);
}

/** One length field of a ClientHello moved by `change` (0: set to its maximum, for overruns). */
function corruptLength(bytes: Uint8Array, field: number, change: number): Uint8Array {
  const fields = helloLengthFields(bytes);
  if (fields.length === 0) return bytes;
  const [offset, size] = fields[field % fields.length]!;
  let value = 0;
  for (let i = 0; i < size; i++) value = (value << 8) | bytes[offset + i]!;
  const max = 2 ** (8 * size) - 1;
  value = change === 0 ? max : Math.min(max, Math.max(0, value + change));
  const out = bytes.slice();
  for (let i = size - 1; i >= 0; i--) {
    out[offset + i] = value & 0xff;
    value >>>= 8;
  }
  return out;
}

/** A real ClientHello's handshake message re-framed into records of these sizes (cycled), as a client could send it. */
function reframe(hello: Uint8Array, sizes: number[]): Uint8Array {
  const message = handshakeOf(hello);
  const cuts: number[] = [];
  let carried = 0;
  for (let i = 0; sizes.length > 0; i++) {
    const size = sizes[i % sizes.length]!;
    if (carried + size >= message.length) break;
    cuts.push(size);
    carried += size;
  }
  return records(message, cuts);
}

/**
 * Inputs for the properties: random bytes (short ones, and long ones around
 * the cap), and real first bytes, ClientHellos re-framed or not, through 0
 * to 4 mutations.
 */
export function peekInput(): fc.Arbitrary<Uint8Array> {
  const { hellos, others } = seedInputs();
  const random = fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    fc.tuple(fc.nat({ max: MAX_RANDOM_LENGTH }), fc.integer()).map(([length, seed]) => pseudoRandomBytes(length, seed)),
  );
  // As many HTTP and SSH starts as TLS ones, though the captures are mostly ClientHellos.
  const seed = fc.oneof(fc.constantFrom(...hellos), fc.constantFrom(...others));
  const reframed = fc
    .tuple(fc.nat({ max: hellos.length - 1 }), fc.array(fc.integer({ min: 1, max: 2048 }), { minLength: 1, maxLength: 8 }))
    .map(([index, sizes]) => reframe(hellos[index]!, sizes));
  const mutated = fc
    .tuple(fc.oneof(seed, reframed), fc.array(mutation, { maxLength: 4 }))
    .map(([start, changes]) => changes.reduce(mutate, start));
  return fc.oneof({ weight: 1, arbitrary: random }, { weight: 4, arbitrary: mutated });
}

/** An input and a cut point in it (taken modulo its length + 1), what every property is given. */
export interface PeekCase {
  bytes: Uint8Array;
  cut: number;
}

export function peekCase(): fc.Arbitrary<PeekCase> {
  return fc.record({ bytes: peekInput(), cut: fc.nat() });
}

// ---------------------------------------------------------------- properties

function noThrow({ bytes }: PeekCase): void {
  answers(bytes);
}

/**
 * An answer given on a prefix stands for any longer input: "complete" (or
 * detectProtocol's kind) unchanged, "invalid" still invalid. And a
 * "complete" is decided by the bytes it says it consumed.
 */
function prefixConsistent({ bytes, cut }: PeekCase): void {
  const prefix = bytes.subarray(0, cut % (bytes.length + 1));
  const before = answers(prefix);
  const after = answers(bytes);
  for (let i = 0; i < before.length; i++) {
    const early = before[i]!;
    const late = after[i]!;
    if (early.status === "invalid" && late.status !== "invalid") {
      throw new Error(`${early.parser}: invalid on ${prefix.length} bytes, ${late.status} on ${bytes.length}`);
    }
    if (early.status === "complete" && !Bun.deepEquals(early.result, late.result)) {
      throw new Error(`${early.parser}: ${JSON.stringify(early.result)} on ${prefix.length} bytes, ${JSON.stringify(late.result)} on ${bytes.length}`);
    }
  }
  for (const late of after) {
    const result = late.result;
    if (typeof result !== "object" || result === null || !("length" in result) || typeof result.length !== "number") continue;
    if (result.length > bytes.length) throw new Error(`${late.parser}: length ${result.length} past the ${bytes.length} bytes`);
    const consumed = answers(bytes.subarray(0, result.length)).find((answer) => answer.parser === late.parser);
    if (!Bun.deepEquals(consumed?.result, result)) {
      throw new Error(`${late.parser}: ${JSON.stringify(result)} on ${bytes.length} bytes, ${JSON.stringify(consumed?.result)} on the ${result.length} consumed`);
    }
  }
}

/** Names and hosts come back in the one shape routing rules are written in. */
function wellFormedNames({ bytes }: PeekCase): void {
  const hello = parseClientHello(bytes);
  if (hello.status === "complete") {
    const name = hello.serverName;
    if (name !== undefined && (!HOST_NAME.test(name) || name.length > MAX_HOST_LENGTH)) throw new Error(`server name ${JSON.stringify(name)}`);
    if (hello.length > bytes.length) throw new Error(`hello length ${hello.length} past the input`);
  }
  const head = parseRequestHead(bytes);
  if (head.status === "complete" && head.host !== undefined) {
    const host = head.host;
    const address = host.includes(":") ? parseIPv6(host) : undefined;
    const ipv6 = address !== undefined && formatIp(address) === host;
    if (!ipv6 && (!HOST_NAME.test(host) || host.length > MAX_HOST_LENGTH)) throw new Error(`host ${JSON.stringify(host)}`);
  }
}

export interface PeekProperty {
  name: string;
  check: (input: PeekCase) => void;
}

export const PEEK_PROPERTIES: readonly PeekProperty[] = [
  { name: "no-throw", check: noThrow },
  { name: "prefix-consistent", check: prefixConsistent },
  { name: "well-formed-names", check: wellFormedNames },
];
