/**
 * @module IP address literals: parsing to bytes, canonical text, and the
 * IPv4-mapped IPv6 form. Our own small parser, so the config loader and the
 * access checks agree on what an address is without depending on the
 * platform's resolver.
 *
 * Zone ids (`fe80::1%eth0`) are not part of a literal here: `parseIp` rejects
 * them. Client addresses have theirs stripped first (see access.ts), because
 * allow/deny patterns match the address, never the interface.
 */

const IPV4_BYTES = 4;
const IPV6_BYTES = 16;
const IPV6_GROUPS = 8;

/** Dotted-quad IPv4, four decimal parts 0..255. Leading zeros are refused, as inet_pton does (they read as octal elsewhere). */
export function parseIPv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== IPV4_BYTES) return undefined;
  const bytes = new Uint8Array(IPV4_BYTES);
  for (let i = 0; i < IPV4_BYTES; i++) {
    const value = parseDecimalOctet(parts[i] ?? "");
    if (value === undefined) return undefined;
    bytes[i] = value;
  }
  return bytes;
}

function parseDecimalOctet(part: string): number | undefined {
  if (part.length === 0 || part.length > 3) return undefined;
  if (part.length > 1 && part[0] === "0") return undefined;
  let value = 0;
  for (let i = 0; i < part.length; i++) {
    const digit = part.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return undefined;
    value = value * 10 + digit;
  }
  return value <= 255 ? value : undefined;
}

/** IPv6 in any RFC 4291 text form: full, `::`-compressed, with a dotted IPv4 tail. No zone id, no brackets. */
export function parseIPv6(text: string): Uint8Array | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const compressed = halves.length === 2;
  const head = splitGroups(halves[0] ?? "");
  const tail = compressed ? splitGroups(halves[1] ?? "") : [];
  if (head === undefined || tail === undefined) return undefined;

  // The embedded IPv4 form may only be the very last thing written.
  const headWords = groupsToWords(head, !compressed);
  const tailWords = groupsToWords(tail, compressed);
  if (headWords === undefined || tailWords === undefined) return undefined;

  // `::` stands for at least one zero group.
  const written = headWords.length + tailWords.length;
  if (compressed ? written > IPV6_GROUPS - 1 : written !== IPV6_GROUPS) return undefined;
  const words = [...headWords];
  for (let i = written; i < IPV6_GROUPS; i++) words.push(0);
  words.push(...tailWords);

  const bytes = new Uint8Array(IPV6_BYTES);
  for (let i = 0; i < IPV6_GROUPS; i++) {
    const word = words[i] ?? 0;
    bytes[i * 2] = word >> 8;
    bytes[i * 2 + 1] = word & 0xff;
  }
  return bytes;
}

/** "" is no groups (one side of `::`); an empty group anywhere else is malformed. */
function splitGroups(text: string): string[] | undefined {
  if (text === "") return [];
  const groups = text.split(":");
  return groups.includes("") ? undefined : groups;
}

/** Hex groups to 16-bit words; the final group may be a dotted IPv4 address when `allowIPv4Tail`. */
function groupsToWords(groups: string[], allowIPv4Tail: boolean): number[] | undefined {
  const words: number[] = [];
  for (let i = 0; i < groups.length; i++) {
    const group = groups[i] ?? "";
    if (group.includes(".")) {
      if (!allowIPv4Tail || i !== groups.length - 1) return undefined;
      const v4 = parseIPv4(group);
      if (v4 === undefined) return undefined;
      words.push(((v4[0] ?? 0) << 8) | (v4[1] ?? 0), ((v4[2] ?? 0) << 8) | (v4[3] ?? 0));
      continue;
    }
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return undefined;
    words.push(Number.parseInt(group, 16));
  }
  return words;
}

/** 4 bytes for IPv4, 16 for IPv6, undefined for anything else (host names, zone ids, brackets). */
export function parseIp(text: string): Uint8Array | undefined {
  return text.includes(":") ? parseIPv6(text) : parseIPv4(text);
}

export function isIpLiteral(text: string): boolean {
  return parseIp(text) !== undefined;
}

/** True for `::ffff:a.b.c.d`, how a dual-stack socket shows an IPv4 peer. */
export function isIPv4Mapped(bytes: Uint8Array): boolean {
  if (bytes.length !== IPV6_BYTES) return false;
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/** The IPv4 address inside a mapped IPv6 one; any other address is returned as is. */
export function unmapIPv4(bytes: Uint8Array): Uint8Array {
  return isIPv4Mapped(bytes) ? bytes.slice(12) : bytes;
}

/** Canonical text: dotted quad, or RFC 5952 IPv6 (lowercase, longest zero run as `::`, mapped IPv4 dotted). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === IPV4_BYTES) return bytes.join(".");
  if (isIPv4Mapped(bytes)) return `::ffff:${bytes.slice(12).join(".")}`;

  const words: number[] = [];
  for (let i = 0; i < IPV6_GROUPS; i++) words.push(((bytes[i * 2] ?? 0) << 8) | (bytes[i * 2 + 1] ?? 0));
  const [runStart, runLength] = longestZeroRun(words);
  // RFC 5952 4.2.2: a single zero group is never shortened to `::`.
  if (runLength < 2) return words.map((word) => word.toString(16)).join(":");
  const before = words.slice(0, runStart).map((word) => word.toString(16)).join(":");
  const after = words.slice(runStart + runLength).map((word) => word.toString(16)).join(":");
  return `${before}::${after}`;
}

/** [start, length] of the first longest run of zero words. */
function longestZeroRun(words: number[]): [number, number] {
  let bestStart = 0;
  let bestLength = 0;
  let start = 0;
  let length = 0;
  for (let i = 0; i < words.length; i++) {
    if (words[i] === 0) {
      if (length === 0) start = i;
      length++;
      if (length > bestLength) [bestStart, bestLength] = [start, length];
    } else {
      length = 0;
    }
  }
  return [bestStart, bestLength];
}

/** Canonical text of an IP literal (so `0::0` and `::` compare equal), or undefined when `text` is not one. */
export function normalizeIp(text: string): string | undefined {
  const bytes = parseIp(text);
  return bytes === undefined ? undefined : formatIp(bytes);
}

/** `host:port`, with IPv6 literals in brackets (`[::1]:80`) so the port stays readable. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
