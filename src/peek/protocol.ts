/**
 * @module What protocol a client speaks, told from its first few bytes, for
 * routing by protocol (TLS, HTTP, SSH, anything else) on one port. Only a
 * first-bytes test: the full parsers (tls-hello.ts, http-request.ts) judge
 * whether what follows is valid.
 *
 * - tls: a TLS handshake record header: 0x16, then version 3.0..3.4 (0x03,
 *   0x00..0x04). SSLv2-style hellos (0x80 ...) are "other".
 * - http: an HTTP/1.x request line's method, 1..20 uppercase letters, then a
 *   space; decided at the space. The HTTP/2 prior-knowledge preface
 *   (`PRI * HTTP/2.0`) starts that way too, so it is "http" here and
 *   parseRequestHead then refuses its version.
 * - ssh: a version banner, `SSH-2.0-` or `SSH-1.99-` (RFC 4253 §4.2), decided
 *   once one of them has fully come. RFC 4253 lets a server send other lines
 *   before its banner, but a client sends the banner first.
 * - other: as soon as the bytes can no longer start any of these.
 *
 * Each answer depends only on the bytes it needed: more bytes never change
 * it. At most 21 bytes are looked at.
 */

export type FirstBytes = "tls" | "http" | "ssh" | "other";

const TLS_HANDSHAKE = 0x16;
const TLS_MAJOR = 0x03;
const TLS_MAX_MINOR = 0x04;
const MAX_METHOD_LENGTH = 20;
const SP = 0x20;
const SSH_BANNERS = ["SSH-2.0-", "SSH-1.99-"].map((banner) => Uint8Array.from(banner, (char) => char.charCodeAt(0)));

/** How far `bytes` match a pattern: "yes" once the pattern is matched, "maybe" while it still may be, else "no". */
type Match = "yes" | "maybe" | "no";

/** What the first bytes of a stream look like; undefined while too few bytes have come to tell. */
export function detectProtocol(bytes: Uint8Array): FirstBytes | undefined {
  if (bytes.length === 0) return undefined;
  const tls = matchTls(bytes);
  if (tls !== "no") return tls === "yes" ? "tls" : undefined;
  // A banner and a method both start with uppercase letters ("SSH" could be either until its '-').
  const ssh = matchSsh(bytes);
  if (ssh === "yes") return "ssh";
  const http = matchMethod(bytes);
  if (http === "yes") return "http";
  return ssh === "maybe" || http === "maybe" ? undefined : "other";
}

function matchTls(bytes: Uint8Array): Match {
  if (bytes[0] !== TLS_HANDSHAKE) return "no";
  if (bytes.length < 2) return "maybe";
  if (bytes[1] !== TLS_MAJOR) return "no";
  if (bytes.length < 3) return "maybe";
  return bytes[2]! <= TLS_MAX_MINOR ? "yes" : "no";
}

function matchSsh(bytes: Uint8Array): Match {
  let answer: Match = "no";
  for (const banner of SSH_BANNERS) {
    const seen = Math.min(bytes.length, banner.length);
    let same = true;
    for (let i = 0; i < seen && same; i++) same = bytes[i] === banner[i];
    if (!same) continue;
    if (seen === banner.length) return "yes";
    answer = "maybe";
  }
  return answer;
}

function matchMethod(bytes: Uint8Array): Match {
  const seen = Math.min(bytes.length, MAX_METHOD_LENGTH + 1);
  for (let i = 0; i < seen; i++) {
    const byte = bytes[i]!;
    if (byte === SP) return i > 0 ? "yes" : "no";
    if (byte < 0x41 || byte > 0x5a || i === MAX_METHOD_LENGTH) return "no";
  }
  return "maybe";
}
