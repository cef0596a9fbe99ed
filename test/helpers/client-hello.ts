/**
 * ClientHellos for the first-bytes parser tests: the real ones captured
 * under test/fixtures/client-hello/ with what each asks for, and a builder
 * of synthetic ones (every field settable, so a test can break exactly one).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ascii, concat } from "./bytes.ts";

export interface HelloFixture {
  file: string;
  bytes: Uint8Array;
  serverName: string;
  alpn: string[];
  ech: boolean;
}

const FIXTURES = join(import.meta.dir, "..", "fixtures", "client-hello");

const EXPECTED: ReadonlyArray<Omit<HelloFixture, "bytes">> = [
  { file: "openssl-tls13.bin", serverName: "openssl.oi.test", alpn: [], ech: false },
  { file: "openssl-tls12.bin", serverName: "openssl12.oi.test", alpn: [], ech: false },
  { file: "openssl-tls13-3-records.bin", serverName: "openssl.oi.test", alpn: [], ech: false },
  { file: "curl.bin", serverName: "curl.oi.test", alpn: ["h2", "http/1.1"], ech: false },
  { file: "bun.bin", serverName: "bun.oi.test", alpn: [], ech: false },
  { file: "node.bin", serverName: "node.oi.test", alpn: ["http/1.1"], ech: false },
  { file: "python.bin", serverName: "python.oi.test", alpn: ["h2", "http/1.1"], ech: false },
  { file: "go.bin", serverName: "go.oi.test", alpn: ["h2", "http/1.1"], ech: false },
  { file: "chromium.bin", serverName: "chromium.oi.test", alpn: ["h2", "http/1.1"], ech: true },
  { file: "chromium-2-records.bin", serverName: "chromium.oi.test", alpn: ["h2", "http/1.1"], ech: true },
];

/** Every captured ClientHello with the answer expected of it. */
export function helloFixtures(): HelloFixture[] {
  return EXPECTED.map((expected) => ({ ...expected, bytes: new Uint8Array(readFileSync(join(FIXTURES, expected.file))) }));
}

function u16(value: number): number[] {
  return [(value >> 8) & 0xff, value & 0xff];
}

function u24(value: number): number[] {
  return [(value >> 16) & 0xff, (value >> 8) & 0xff, value & 0xff];
}

/** An extension: type, 16-bit length, data. */
export function extension(type: number, data: Uint8Array | number[]): Uint8Array {
  return concat(u16(type), u16(data.length), data);
}

/** A server_name extension whose list holds a host_name entry for each name given (bytes as given). */
export function serverNameExtension(...names: Array<string | Uint8Array>): Uint8Array {
  const entries = names.map((name) => {
    const bytes = typeof name === "string" ? ascii(name) : name;
    return concat([0], u16(bytes.length), bytes);
  });
  const list = concat(...entries);
  return extension(0, concat(u16(list.length), list));
}

/** An ALPN extension listing these protocol names (one byte a character: latin1). */
export function alpnExtension(...protocols: string[]): Uint8Array {
  const list = concat(...protocols.map((name) => concat([name.length], ascii(name))));
  return extension(16, concat(u16(list.length), list));
}

export interface HelloParts {
  version?: number;
  sessionId?: Uint8Array;
  cipherSuites?: Uint8Array;
  compression?: Uint8Array;
  /** The extensions block's contents; `null`: no block at all (TLS 1.2 and before allow it). */
  extensions?: Uint8Array[] | null;
  /** Overrides the extensions block's length field. */
  extensionsLength?: number;
}

/** A ClientHello body, TLS 1.2 shape unless told otherwise; random bytes are all 0x42. */
export function helloBody(parts: HelloParts = {}): Uint8Array {
  const sessionId = parts.sessionId ?? new Uint8Array(32).fill(7);
  const suites = parts.cipherSuites ?? Uint8Array.of(0x13, 0x01, 0xc0, 0x2f);
  const compression = parts.compression ?? Uint8Array.of(0);
  const fixed = concat(u16(parts.version ?? 0x0303), new Uint8Array(32).fill(0x42), [sessionId.length], sessionId, u16(suites.length), suites, [compression.length], compression);
  if (parts.extensions === null) return fixed;
  const block = concat(...(parts.extensions ?? [serverNameExtension("example.com")]));
  return concat(fixed, u16(parts.extensionsLength ?? block.length), block);
}

/** The handshake message: type (1, ClientHello), 24-bit length (the body's unless given), body. */
export function handshake(body: Uint8Array, options: { type?: number; length?: number } = {}): Uint8Array {
  return concat([options.type ?? 1], u24(options.length ?? body.length), body);
}

/** A TLS record header: type, version, 16-bit length. */
export function recordHeader(length: number, options: { type?: number; version?: number } = {}): Uint8Array {
  return concat([options.type ?? 22], u16(options.version ?? 0x0301), u16(length));
}

/**
 * `message` framed into handshake records: one record unless `sizes` gives
 * the lengths of the first ones (the last takes the rest).
 */
export function records(message: Uint8Array, sizes: number[] = [], version = 0x0301): Uint8Array {
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const size of [...sizes, message.length - sizes.reduce((sum, size) => sum + size, 0)]) {
    parts.push(recordHeader(size, { version }), message.subarray(offset, offset + size));
    offset += size;
  }
  return concat(...parts);
}

/** A whole ClientHello in one record. */
export function clientHello(parts: HelloParts = {}): Uint8Array {
  return records(handshake(helloBody(parts)));
}

/**
 * The handshake message carried by the records of a single-message capture,
 * for re-framing it (records() again) in other record sizes.
 */
export function handshakeOf(framed: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let offset = 0;
  while (offset + 5 <= framed.length) {
    const length = (framed[offset + 3]! << 8) | framed[offset + 4]!;
    parts.push(framed.subarray(offset + 5, offset + 5 + length));
    offset += 5 + length;
  }
  return concat(...parts);
}
