/**
 * @module Host names as the first-bytes parsers return them (TLS SNI, HTTP
 * Host): checked against one shape and written one way, so a routing rule
 * for `example.com` matches `Example.COM.` from either protocol.
 */

/** The longest name DNS can carry in text form, without the root's trailing dot (RFC 1035 §3.1). */
export const MAX_HOST_NAME_LENGTH = 253;
const MAX_LABEL_LENGTH = 63;
const DOT = 0x2e;

/** Letters, digits, `-` and `_` (seen in real service names, and harmless to route on). */
function isLabelByte(byte: number): boolean {
  return (
    (byte >= 0x61 && byte <= 0x7a) || // a-z
    (byte >= 0x41 && byte <= 0x5a) || // A-Z
    (byte >= 0x30 && byte <= 0x39) || // 0-9
    byte === 0x2d || // -
    byte === 0x5f // _
  );
}

/**
 * The name in `bytes[start, end)` lowercased and without a trailing dot, or
 * the reason it is not a host name: 1..253 bytes of `[A-Za-z0-9._-]` in
 * labels of 1..63 bytes. An all-digits name such as `192.0.2.1` passes as a
 * name like any other.
 */
export function normalizeHostName(bytes: Uint8Array, start: number, end: number): string | { problem: string } {
  // The root's dot is optional in a fully qualified name; it names the same host.
  const stop = end > start && bytes[end - 1] === DOT ? end - 1 : end;
  if (stop <= start) return { problem: "empty host name" };
  if (stop - start > MAX_HOST_NAME_LENGTH) return { problem: `host name longer than ${MAX_HOST_NAME_LENGTH} bytes` };
  let name = "";
  let labelStart = start;
  for (let i = start; i < stop; i++) {
    const byte = bytes[i]!;
    if (byte === DOT) {
      if (i === labelStart) return { problem: "empty label in host name" };
      labelStart = i + 1;
    } else if (!isLabelByte(byte)) {
      return { problem: `byte 0x${byte.toString(16).padStart(2, "0")} in host name` };
    } else if (i - labelStart >= MAX_LABEL_LENGTH) {
      return { problem: `host name label longer than ${MAX_LABEL_LENGTH} bytes` };
    }
    name += String.fromCharCode(byte >= 0x41 && byte <= 0x5a ? byte + 0x20 : byte);
  }
  if (labelStart === stop) return { problem: "empty label in host name" };
  return name;
}
