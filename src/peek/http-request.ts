/**
 * @module The head of the HTTP/1.x request a client sends first (RFC 9112:
 * request line, header fields, empty line), read before any byte is relayed
 * so that a connection can be routed by the host it asks for.
 *
 * The host is the absolute-form target's (`GET http://host:port/ ...`, for
 * http and https) when the target is one, since RFC 9112 §3.2.2 tells a
 * server to ignore the Host field then; otherwise the Host field's. Either
 * way it comes back lowercased, without its port or a trailing dot, and an
 * IPv6 literal without its brackets, in canonical form (`[0::1]:80` is
 * `::1`). An empty Host, or none, gives no host (HTTP/1.0 needs none; an
 * HTTP/1.1 request without one is the backend's to refuse). Hosts are held
 * to the shape of DNS names (`[A-Za-z0-9._-]`, as TLS SNI names are), not
 * to all of RFC 3986's reg-name: a Host with `%`, `~` or sub-delims is
 * refused rather than routed by a name no rule can be written for.
 *
 * The answer is "complete" only once the whole head has come (its empty
 * line), for every form of target: even when an absolute-form target has
 * already given the host, the rest of the head must still be checked (a
 * second Host field, obs-fold), and `length` then always means the head.
 *
 * Strict, as a request smuggling defence: only HTTP/1.0 and HTTP/1.1,
 * single spaces in the request line, no empty line before it, token field
 * names with the colon right after them, no obs-fold, no control characters
 * but HTAB in field values, no CR but before LF (bare LF ends a line, as
 * RFC 9112 §2.2 allows), at most one Host field. Anything else is "invalid"
 * with a short reason, given as soon as the bytes so far show it, as is a
 * head longer than MAX_PEEK_BYTES. The HTTP/2 preface (`PRI * HTTP/2.0`) is
 * refused as an unsupported version. Work is one pass, nothing throws.
 */
import { formatIp, parseIPv6 } from "../ip.ts";
import { normalizeHostName } from "./host-name.ts";
import { MAX_PEEK_BYTES } from "./limits.ts";

export type RequestHeadParse =
  | { status: "incomplete" }
  | { status: "invalid"; reason: string }
  | { status: "complete"; method: string; host: string | undefined; length: number };

const SP = 0x20;
const HTAB = 0x09;
const CR = 0x0d;
const LF = 0x0a;
const COLON = 0x3a;
const VERSIONS = ["HTTP/1.0", "HTTP/1.1"];
const VERSION_LENGTH = 8;
/** The longest IPv6 text: eight groups, or six and a dotted IPv4 tail. */
const MAX_IPV6_TEXT = 45;
const MAX_PORT = 65535;

/** One object for every "need more bytes" answer: waiting allocates nothing. */
const INCOMPLETE: RequestHeadParse = Object.freeze({ status: "incomplete" });

function invalid(reason: string): RequestHeadParse {
  return { status: "invalid", reason };
}

/** tchar (RFC 9110 §5.6.2): the characters of methods and field names. */
function isTokenByte(byte: number): boolean {
  if ((byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)) return true;
  return "!#$%&'*+-.^_`|~".includes(String.fromCharCode(byte));
}

/** Visible ASCII, the characters of a request target and of the version. */
function isVisible(byte: number): boolean {
  return byte > SP && byte < 0x7f;
}

function byteName(byte: number): string {
  return `0x${byte.toString(16).padStart(2, "0")}`;
}

function latin1(bytes: Uint8Array, start: number, end: number): string {
  let text = "";
  for (let i = start; i < end; i++) text += String.fromCharCode(bytes[i]!);
  return text;
}

/**
 * The request head at the start of a client's stream: "complete" once its
 * empty line has come, "incomplete" while the bytes so far are a valid
 * beginning, else "invalid" with the reason.
 */
export function parseRequestHead(bytes: Uint8Array): RequestHeadParse {
  // A head must end within the cap; bytes past it are never looked at.
  const scanEnd = Math.min(bytes.length, MAX_PEEK_BYTES);
  let request: RequestLine | undefined;
  let hostFields = 0;
  let headerHost: string | undefined;
  let lineStart = 0;
  for (;;) {
    const lf = bytes.subarray(lineStart, scanEnd).indexOf(LF);
    const complete = lf >= 0;
    const lineEnd = complete ? lineStart + lf : scanEnd;
    // The line's text ends before a CR that is (or may yet be) followed by LF.
    const textEnd = lineEnd > lineStart && bytes[lineEnd - 1] === CR ? lineEnd - 1 : lineEnd;

    if (request === undefined) {
      const line = checkRequestLine(bytes, lineStart, textEnd, complete);
      if (typeof line === "string") return invalid(line);
      request = line;
    } else if (complete && textEnd === lineStart) {
      return { status: "complete", method: request.method, host: request.host ?? headerHost, length: lineEnd + 1 };
    } else {
      const field = checkFieldLine(bytes, lineStart, textEnd, complete);
      if (typeof field === "string") return invalid(field);
      if (field !== undefined && isHostName(bytes, field.nameStart, field.nameEnd)) {
        // Two Host fields could route one way here and another at the backend.
        if (++hostFields > 1) return invalid("two Host header fields");
        const host = parseHost(bytes, field.valueStart, field.valueEnd);
        if (typeof host === "object") return invalid(`Host: ${host.problem}`);
        headerHost = host;
      }
    }
    if (!complete) break;
    lineStart = lineEnd + 1;
  }
  if (bytes.length >= MAX_PEEK_BYTES) return invalid(`request head longer than ${MAX_PEEK_BYTES / 1024} KiB`);
  return INCOMPLETE;
}

// ---------------------------------------------------------------- request line

interface RequestLine {
  method: string;
  /** From an absolute-form target; undefined for the other forms (and while the line is still coming). */
  host: string | undefined;
}

/**
 * The request line `method SP request-target SP HTTP-version` in
 * `bytes[start, end)`, or the reason it is not one. `complete` false: the
 * line may go on, so only what has come is judged.
 */
function checkRequestLine(bytes: Uint8Array, start: number, end: number, complete: boolean): RequestLine | string {
  if (complete && end === start) return "empty line before the request line";
  let at = start;
  while (at < end && isTokenByte(bytes[at]!)) at++;
  if (at < end && at === start) return `request line starts with ${byteName(bytes[at]!)}, not a method`;
  if (at === end) return complete ? "request line has no target" : { method: "", host: undefined };
  if (bytes[at] !== SP) return `${byteName(bytes[at]!)} in the method`;
  const method = latin1(bytes, start, at);

  const targetStart = at + 1;
  at = targetStart;
  while (at < end && isVisible(bytes[at]!)) at++;
  if (at < end && bytes[at] !== SP) return `${byteName(bytes[at]!)} in the request target`;
  if (at === targetStart && at < end) return "empty request target";
  if (at === end) return complete ? "request line has no HTTP version" : { method, host: undefined };
  const targetEnd = at;

  const versionStart = at + 1;
  for (at = versionStart; at < end; at++) {
    if (!isVisible(bytes[at]!)) return `${byteName(bytes[at]!)} in the HTTP version`;
  }
  const version = latin1(bytes, versionStart, Math.min(end, versionStart + VERSION_LENGTH + 1));
  const known = VERSIONS.some((name) => (complete ? version === name : name.startsWith(version)));
  if (!known) return `HTTP version "${version}" is not HTTP/1.0 or HTTP/1.1`;
  if (!complete) return { method, host: undefined };

  const host = targetHost(bytes, targetStart, targetEnd);
  if (typeof host === "object") return `request target: ${host.problem}`;
  return { method, host };
}

/**
 * The host of an absolute-form http(s) target, undefined for any other
 * target (origin-form `/path`, `*`, CONNECT's authority-form, other schemes).
 */
function targetHost(bytes: Uint8Array, start: number, end: number): string | undefined | { problem: string } {
  const target = latin1(bytes, start, Math.min(end, start + "https://".length)).toLowerCase();
  const scheme = target.startsWith("http://") ? 7 : target.startsWith("https://") ? 8 : 0;
  if (scheme === 0) return undefined;
  let authorityEnd = start + scheme;
  while (authorityEnd < end && !"/?#".includes(String.fromCharCode(bytes[authorityEnd]!))) authorityEnd++;
  for (let i = start + scheme; i < authorityEnd; i++) {
    // RFC 9110 §4.2.4: userinfo in an http(s) URI is to be treated as an error.
    if (bytes[i] === 0x40) return { problem: "userinfo in an http(s) URI" };
  }
  const host = parseHost(bytes, start + scheme, authorityEnd);
  // RFC 9110 §4.2.1: an http(s) URI with an empty host is invalid.
  return host ?? { problem: "empty host in an http(s) URI" };
}

// ---------------------------------------------------------------- header fields

interface FieldLine {
  nameStart: number;
  nameEnd: number;
  /** The value without the optional whitespace around it. */
  valueStart: number;
  valueEnd: number;
}

/**
 * The field line `name ":" OWS value OWS` in `bytes[start, end)`, or the
 * reason it is not one; undefined when it is a good beginning of one that
 * has not fully come (`complete` false).
 */
function checkFieldLine(bytes: Uint8Array, start: number, end: number, complete: boolean): FieldLine | string | undefined {
  if (start === end) return undefined; // only reached for a line still coming
  const first = bytes[start]!;
  if (first === SP || first === HTAB) return "header line starts with whitespace (obs-fold)";
  let at = start;
  while (at < end && isTokenByte(bytes[at]!)) at++;
  if (at === end) return complete ? "header field without a colon" : undefined;
  const stop = bytes[at]!;
  // RFC 9112 §5.1: whitespace before the colon must be refused.
  if (stop === SP || stop === HTAB) return "whitespace between header field name and colon";
  if (stop !== COLON) return `${byteName(stop)} in a header field name`;
  if (at === start) return "empty header field name";
  const nameEnd = at;

  for (let i = nameEnd + 1; i < end; i++) {
    const byte = bytes[i]!;
    if (byte !== HTAB && (byte < SP || byte === 0x7f)) return `control character ${byteName(byte)} in a header field value`;
  }
  if (!complete) return undefined;
  let valueStart = nameEnd + 1;
  let valueEnd = end;
  while (valueStart < valueEnd && (bytes[valueStart] === SP || bytes[valueStart] === HTAB)) valueStart++;
  while (valueEnd > valueStart && (bytes[valueEnd - 1] === SP || bytes[valueEnd - 1] === HTAB)) valueEnd--;
  return { nameStart: start, nameEnd, valueStart, valueEnd };
}

function isHostName(bytes: Uint8Array, start: number, end: number): boolean {
  return end - start === 4 && latin1(bytes, start, end).toLowerCase() === "host";
}

/**
 * `host [":" port]` (RFC 9110 §7.2, RFC 3986 §3.2.2): the host as routed
 * on, undefined when empty, or the problem with it.
 */
function parseHost(bytes: Uint8Array, start: number, end: number): string | undefined | { problem: string } {
  if (start === end) return undefined;
  if (bytes[start] === 0x5b) {
    let close = start + 1;
    while (close < end && bytes[close] !== 0x5d) close++;
    if (close === end) return { problem: "IPv6 literal without its ]" };
    const port = checkPort(bytes, close + 1, end);
    if (port !== undefined) return { problem: port };
    // No zone ids (RFC 6874) nor IPvFuture: no rule could name such a host.
    const address = close - start - 1 <= MAX_IPV6_TEXT ? parseIPv6(latin1(bytes, start + 1, close)) : undefined;
    if (address === undefined) return { problem: "not an IPv6 literal in brackets" };
    return formatIp(address);
  }
  let colon = end;
  while (colon > start && bytes[colon - 1] !== COLON) colon--;
  const nameEnd = colon > start ? colon - 1 : end;
  if (nameEnd < end) {
    const port = checkPort(bytes, nameEnd, end);
    if (port !== undefined) return { problem: port };
  }
  const name = normalizeHostName(bytes, start, nameEnd);
  return typeof name === "string" ? name : { problem: name.problem };
}

/** `[":" port]` at `bytes[start, end)`: undefined when well formed (an empty port is allowed, RFC 3986 §3.2.3). */
function checkPort(bytes: Uint8Array, start: number, end: number): string | undefined {
  if (start === end) return undefined;
  if (bytes[start] !== COLON) return "junk after the host";
  let port = 0;
  for (let i = start + 1; i < end; i++) {
    const digit = bytes[i]! - 0x30;
    if (digit < 0 || digit > 9) return "port is not a number";
    port = port * 10 + digit;
    if (port > MAX_PORT) return "port out of range";
  }
  return undefined;
}
