/**
 * @module The TLS ClientHello a client sends first (RFC 8446 §4.1.2, RFC
 * 5246 §7.4.1.2), read before any byte is relayed so that a connection can
 * be routed by the name it asks for (SNI, RFC 6066 §3) without terminating
 * TLS. Also reports the ALPN list (RFC 7301), for logging, and whether the
 * hello carries Encrypted Client Hello (draft-ietf-tls-esni): the name
 * returned is then the outer one, ECH's public name, which is the name to
 * route by since only the backend can decrypt the inner hello.
 *
 * The parse is strict: the record layer (type 22, version 3.x, 1..2^14
 * bytes a record, as RFC 8446 §5.1 allows for plaintext: no slack for
 * expansion since handshake records before the keys are never protected)
 * and every length in the hello must agree, or the answer is "invalid" with
 * a short reason. The hello may come in several records and several reads:
 * called with everything read so far, the parser answers "incomplete" while
 * the bytes could still become a valid hello, and says "invalid" as soon as
 * they cannot, including as soon as the declared lengths put the end of the
 * hello past MAX_PEEK_BYTES of records. Work is one pass over the bytes,
 * without recursion, and nothing throws.
 *
 * "complete" depends only on the records that carried the hello (`length`
 * bytes): whatever the client sends after them does not change the answer.
 */
import { normalizeHostName } from "./host-name.ts";
import { MAX_PEEK_BYTES } from "./limits.ts";

export type HelloParse =
  | { status: "incomplete" }
  | { status: "invalid"; reason: string }
  | { status: "complete"; serverName: string | undefined; alpn: string[]; ech: boolean; length: number };

const RECORD_HEADER = 5;
const CONTENT_HANDSHAKE = 22;
/** Plaintext records carry at most 2^14 bytes (RFC 8446 §5.1). */
const MAX_RECORD_LENGTH = 16384;
const HANDSHAKE_HEADER = 4;
const HANDSHAKE_CLIENT_HELLO = 1;
/** version, random, empty session id, one cipher suite, one compression method. */
const MIN_BODY_LENGTH = 2 + 32 + 1 + 2 + 2 + 1 + 1;
const RANDOM_LENGTH = 32;
const MAX_SESSION_ID = 32;

const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const EXT_ENCRYPTED_CLIENT_HELLO = 0xfe0d;
const NAME_TYPE_HOST_NAME = 0;

/** One object for every "need more bytes" answer: waiting allocates nothing. */
const INCOMPLETE: HelloParse = Object.freeze({ status: "incomplete" });

function invalid(reason: string): HelloParse {
  return { status: "invalid", reason };
}

function hex16(value: number): string {
  return `0x${value.toString(16).padStart(4, "0")}`;
}

function u16(bytes: Uint8Array, at: number): number {
  return (bytes[at]! << 8) | bytes[at + 1]!;
}

/**
 * The ClientHello at the start of a client's stream: "complete" once every
 * record that carries it has come, "incomplete" while the bytes so far are
 * a valid beginning, else "invalid" with the reason.
 */
export function parseClientHello(bytes: Uint8Array): HelloParse {
  const records = gatherHandshake(bytes);
  if (!("message" in records)) return records;
  const { message, bodyLength, recordsEnd } = records;
  if (bodyLength === undefined) return INCOMPLETE;
  const body = message.subarray(HANDSHAKE_HEADER);
  const hello = walkBody(body, bodyLength);
  if (hello.status !== "complete") return hello;
  // The walk completes only on the whole body, which has come only with its last record.
  if (recordsEnd === undefined) return INCOMPLETE;
  return { ...hello, length: recordsEnd };
}

// ---------------------------------------------------------------- records

interface Handshake {
  /** The handshake message bytes that have come so far (header included), from one or more records. */
  message: Uint8Array;
  /** The ClientHello body's declared length, once its 4-byte header has come. */
  bodyLength: number | undefined;
  /** Where the last record of the hello ends, once all its records have fully come. */
  recordsEnd: number | undefined;
}

/**
 * The handshake message gathered from the records at the start of `bytes`,
 * with every record header and the message header checked as far as they
 * have come.
 */
function gatherHandshake(bytes: Uint8Array): Handshake | HelloParse {
  const fragments: Uint8Array[] = [];
  const header: number[] = [];
  let messageLength: number | undefined; // header and body
  let declared = 0; // message bytes the records seen so far carry, by their headers
  let offset = 0;
  while (messageLength === undefined || declared < messageLength) {
    const record = checkRecordHeader(bytes, offset);
    // A record header still coming: what came before it is still to be judged.
    if (record === INCOMPLETE) return { message: join(fragments), bodyLength: bodyLengthOf(messageLength), recordsEnd: undefined };
    if (typeof record !== "number") return record;
    const recordEnd = offset + RECORD_HEADER + record;
    const fragment = bytes.subarray(offset + RECORD_HEADER, Math.min(recordEnd, bytes.length));
    fragments.push(fragment);
    declared += record;

    // The handshake header may itself be split over records.
    for (let i = 0; header.length < HANDSHAKE_HEADER && i < fragment.length; i++) header.push(fragment[i]!);
    if (header[0] !== undefined && header[0] !== HANDSHAKE_CLIENT_HELLO) {
      return invalid(`handshake type ${header[0]} is not a ClientHello`);
    }
    if (messageLength === undefined && header.length === HANDSHAKE_HEADER) {
      const bodyLength = (header[1]! << 16) | (header[2]! << 8) | header[3]!;
      if (bodyLength < MIN_BODY_LENGTH) return invalid(`ClientHello of ${bodyLength} bytes is too short`);
      messageLength = HANDSHAKE_HEADER + bodyLength;
    }
    if (messageLength !== undefined) {
      // Nothing shares the hello's records: what a client may send before the server answers
      // (change_cipher_spec, early data) comes in records of other types.
      if (declared > messageLength) return invalid("record carries data after the ClientHello");
      // The fewest record bytes that can still carry the rest: one more record for all of it.
      const earliestEnd = declared === messageLength ? recordEnd : recordEnd + RECORD_HEADER + (messageLength - declared);
      if (earliestEnd > MAX_PEEK_BYTES) return invalid(`ClientHello longer than ${MAX_PEEK_BYTES / 1024} KiB`);
    } else if (recordEnd > MAX_PEEK_BYTES) {
      return invalid(`ClientHello longer than ${MAX_PEEK_BYTES / 1024} KiB`);
    }
    if (recordEnd > bytes.length) return { message: join(fragments), bodyLength: bodyLengthOf(messageLength), recordsEnd: undefined };
    offset = recordEnd;
  }
  return { message: join(fragments), bodyLength: bodyLengthOf(messageLength), recordsEnd: offset };
}

function bodyLengthOf(messageLength: number | undefined): number | undefined {
  return messageLength === undefined ? undefined : messageLength - HANDSHAKE_HEADER;
}

/** The record's length, once its header at `offset` has come and is a plaintext handshake record's. */
function checkRecordHeader(bytes: Uint8Array, offset: number): number | HelloParse {
  const have = bytes.length - offset;
  if (have < 1) return INCOMPLETE;
  const type = bytes[offset]!;
  if (type !== CONTENT_HANDSHAKE) return invalid(`record type ${type} is not a handshake`);
  if (have < 2) return INCOMPLETE;
  const major = bytes[offset + 1]!;
  if (major !== 3) return invalid(`record version ${major}.x is not TLS`);
  if (have < 3) return INCOMPLETE;
  const minor = bytes[offset + 2]!;
  if (minor > 4) return invalid(`record version 3.${minor} is unknown`);
  if (have < RECORD_HEADER) return INCOMPLETE;
  const length = u16(bytes, offset + 3);
  // Zero-length handshake fragments are forbidden (RFC 8446 §5.1).
  if (length === 0) return invalid("empty handshake record");
  if (length > MAX_RECORD_LENGTH) return invalid(`record of ${length} bytes is longer than ${MAX_RECORD_LENGTH}`);
  return length;
}

/** One array of the fragments, without a copy in the usual case of a single record. */
function join(fragments: Uint8Array[]): Uint8Array {
  if (fragments.length === 1) return fragments[0]!;
  let length = 0;
  for (const fragment of fragments) length += fragment.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const fragment of fragments) {
    out.set(fragment, offset);
    offset += fragment.length;
  }
  return out;
}

// ---------------------------------------------------------------- ClientHello body

type Hello = { status: "complete"; serverName: string | undefined; alpn: string[]; ech: boolean } | HelloParse;

/**
 * The end of a field of `size` bytes at `at`, or why the walk stops there:
 * invalid when the field would pass `limit` (the end of what encloses it),
 * incomplete when it passes the bytes that have come.
 */
function field(body: Uint8Array, at: number, size: number, limit: number, what: string): number | HelloParse {
  const end = at + size;
  if (end > limit) return invalid(`ClientHello ${what} overruns`);
  if (end > body.length) return INCOMPLETE;
  return end;
}

/**
 * The fields of the ClientHello body, `body` being what has come of its
 * `bodyLength` bytes. Each length is checked against what encloses it as
 * soon as it has come, so a bad one is refused before the rest arrives.
 */
function walkBody(body: Uint8Array, bodyLength: number): Hello {
  let at = field(body, 0, 2, bodyLength, "version");
  if (typeof at !== "number") return at;
  if (body[0] !== 3 || body[1]! > 4) return invalid(`ClientHello version ${hex16(u16(body, 0))} is not TLS`);
  at = field(body, at, RANDOM_LENGTH, bodyLength, "random");
  if (typeof at !== "number") return at;

  let lengthEnd = field(body, at, 1, bodyLength, "session id");
  if (typeof lengthEnd !== "number") return lengthEnd;
  const sessionIdLength = body[at]!;
  if (sessionIdLength > MAX_SESSION_ID) return invalid(`session id of ${sessionIdLength} bytes is longer than ${MAX_SESSION_ID}`);
  at = field(body, lengthEnd, sessionIdLength, bodyLength, "session id");
  if (typeof at !== "number") return at;

  lengthEnd = field(body, at, 2, bodyLength, "cipher suites");
  if (typeof lengthEnd !== "number") return lengthEnd;
  const suitesLength = u16(body, at);
  if (suitesLength < 2 || suitesLength % 2 !== 0) return invalid(`cipher suites length ${suitesLength} is not a positive even number`);
  at = field(body, lengthEnd, suitesLength, bodyLength, "cipher suites");
  if (typeof at !== "number") return at;

  lengthEnd = field(body, at, 1, bodyLength, "compression methods");
  if (typeof lengthEnd !== "number") return lengthEnd;
  const compressionLength = body[at]!;
  if (compressionLength === 0) return invalid("no compression methods");
  at = field(body, lengthEnd, compressionLength, bodyLength, "compression methods");
  if (typeof at !== "number") return at;

  // Before TLS 1.3 the extensions block may be absent altogether (RFC 5246 §7.4.1.2).
  if (at === bodyLength) return { status: "complete", serverName: undefined, alpn: [], ech: false };
  lengthEnd = field(body, at, 2, bodyLength, "extensions length");
  if (typeof lengthEnd !== "number") return lengthEnd;
  const extensionsLength = u16(body, at);
  if (lengthEnd + extensionsLength > bodyLength) return invalid("ClientHello extensions overrun");
  if (lengthEnd + extensionsLength < bodyLength) return invalid("ClientHello has bytes after its extensions");
  return walkExtensions(body, lengthEnd, bodyLength);
}

/** The extensions from `at` to the end of the body; each is read once it has fully come. */
function walkExtensions(body: Uint8Array, start: number, end: number): Hello {
  const seen = new Set<number>();
  let serverName: string | undefined;
  let alpn: string[] = [];
  let ech = false;
  let at = start;
  while (at < end) {
    const headerEnd = field(body, at, 4, end, "extension header");
    if (typeof headerEnd !== "number") return headerEnd;
    const type = u16(body, at);
    const dataEnd = headerEnd + u16(body, at + 2);
    if (dataEnd > end) return invalid(`extension ${hex16(type)} overruns the ClientHello`);
    // RFC 8446 §4.2: at most one extension of each type; two names would leave the route ambiguous.
    if (seen.has(type)) return invalid(type === EXT_SERVER_NAME ? "two server_name extensions" : `two extensions of type ${hex16(type)}`);
    seen.add(type);
    if (dataEnd > body.length) return INCOMPLETE;

    if (type === EXT_SERVER_NAME) {
      const name = readServerName(body, headerEnd, dataEnd);
      if (typeof name === "object") return invalid(name.problem);
      serverName = name;
    } else if (type === EXT_ALPN) {
      const protocols = readAlpn(body, headerEnd, dataEnd);
      if (!Array.isArray(protocols)) return invalid(protocols.problem);
      alpn = protocols;
    } else if (type === EXT_ENCRYPTED_CLIENT_HELLO) {
      ech = true;
    }
    at = dataEnd;
  }
  return { status: "complete", serverName, alpn, ech };
}

/**
 * The host_name of a server_name extension (RFC 6066 §3): a list of
 * (name_type, 16-bit length, name) entries, of which the host_name entry is
 * used. Entries of other types are skipped, read with the same 16-bit
 * length as Go's crypto/tls does (host_name is the only type defined); the
 * list may not hold two host_names (RFC 6066: one name per type).
 */
function readServerName(body: Uint8Array, start: number, end: number): string | undefined | { problem: string } {
  if (end - start < 2) return { problem: "server_name extension too short" };
  const listEnd = start + 2 + u16(body, start);
  if (listEnd !== end) return { problem: "server_name list length does not match its extension" };
  if (listEnd === start + 2) return { problem: "empty server_name list" };
  let name: string | undefined;
  let at = start + 2;
  while (at < listEnd) {
    if (listEnd - at < 3) return { problem: "server_name entry truncated" };
    const nameType = body[at]!;
    const nameEnd = at + 3 + u16(body, at + 1);
    if (nameEnd > listEnd) return { problem: "server_name entry overruns its list" };
    if (nameType === NAME_TYPE_HOST_NAME) {
      if (name !== undefined) return { problem: "two host names in server_name" };
      const host = normalizeHostName(body, at + 3, nameEnd);
      if (typeof host !== "string") return { problem: `server_name: ${host.problem}` };
      name = host;
    }
    at = nameEnd;
  }
  // A list of other name types only (none is defined) names no host: as without the extension.
  return name;
}

/** The protocol names of an ALPN extension (RFC 7301 §3.1): a nonempty list of nonempty names. */
function readAlpn(body: Uint8Array, start: number, end: number): string[] | { problem: string } {
  if (end - start < 2) return { problem: "ALPN extension too short" };
  const listEnd = start + 2 + u16(body, start);
  if (listEnd !== end) return { problem: "ALPN list length does not match its extension" };
  if (listEnd === start + 2) return { problem: "empty ALPN list" };
  const names: string[] = [];
  let at = start + 2;
  while (at < listEnd) {
    const nameLength = body[at]!;
    const nameEnd = at + 1 + nameLength;
    if (nameLength === 0) return { problem: "empty ALPN protocol name" };
    if (nameEnd > listEnd) return { problem: "ALPN protocol name overruns its list" };
    let name = "";
    for (let i = at + 1; i < nameEnd; i++) name += String.fromCharCode(body[i]!);
    names.push(name);
    at = nameEnd;
  }
  return names;
}
