/**
 * @module The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and
 * 2): a header a proxy sends first on its connection to a backend, saying
 * which client the connection is for, since the backend only sees the
 * proxy's address. `send_proxy` writes one (encodeProxyV1, encodeProxyV2);
 * `accept_proxy` reads one from clients that are themselves proxies
 * (parseProxyHeader), before the first byte is relayed.
 *
 * The parser is strict, as the spec asks of receivers: a header is accepted
 * only when every field is well formed, and a client whose first bytes
 * cannot start a header is refused at once rather than waited on. While the
 * bytes so far could still become a valid header it answers "incomplete";
 * bounding that wait (in bytes and time) is the caller's job.
 */
import { formatIp, isIPv4Mapped, parseIPv4, parseIPv6, parseIp, unmapIPv4 } from "./ip.ts";

export interface ProxyAddress {
  address: string;
  port: number;
}

export type ProxyTransport = "tcp" | "udp";

export type ProxyHeader =
  | { readonly status: "incomplete" }
  | { readonly status: "invalid"; readonly reason: string }
  | {
      readonly status: "ok";
      readonly version: 1 | 2;
      /** Bytes the header takes at the start of the data: what follows is the client's. */
      readonly headerLength: number;
      /**
       * v2 LOCAL: the sender speaks for itself (a health check), so the
       * connection's own endpoints apply. Headers without addresses that are
       * not LOCAL (v1 UNKNOWN, v2 UNSPEC or UNIX) mean the same in practice:
       * use the real peer whenever `source` is absent.
       */
      readonly local: boolean;
      readonly transport?: ProxyTransport;
      readonly source?: ProxyAddress;
      readonly destination?: ProxyAddress;
    };

/** The longest v1 header, CRLF included (the spec's worst case: UNKNOWN with two full IPv6 addresses). */
export const PROXY_V1_MAX_LENGTH = 107;
/** v2: 12-byte signature, version and command, family and transport, 16-bit length. */
export const PROXY_V2_FIXED_LENGTH = 16;
export const PROXY_V2_MAX_LENGTH = PROXY_V2_FIXED_LENGTH + 0xffff;

const V2_SIGNATURE = Uint8Array.of(0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a);
const V1_PREFIX = "PROXY ";
const V2_VERSION = 0x2;
const COMMAND_LOCAL = 0x0;
const COMMAND_PROXY = 0x1;
const FAMILY_UNSPEC = 0x0;
const FAMILY_INET = 0x1;
const FAMILY_INET6 = 0x2;
const FAMILY_UNIX = 0x3;
const TRANSPORT_STREAM = 0x1;
const TRANSPORT_DGRAM = 0x2;
/** Address block sizes per family: two addresses, then two ports (none for UNIX paths). */
const INET_BLOCK = 4 + 4 + 2 + 2;
const INET6_BLOCK = 16 + 16 + 2 + 2;
const UNIX_BLOCK = 108 + 108;
const TLV_HEADER = 3;
const CR = 0x0d;
const LF = 0x0a;
const textEncoder = new TextEncoder();

// ---------------------------------------------------------------- encoding

/**
 * The two endpoints as raw addresses of one family: IPv4 when both are
 * IPv4 (IPv4-mapped IPv6 counts, as a dual-stack listener shows IPv4
 * clients), else IPv6 with any IPv4 one mapped (a mixed pair cannot be
 * written otherwise and should not lose the client's address). Undefined
 * when either is not an IP address.
 */
function addressPair(source: ProxyAddress, destination: ProxyAddress): [Uint8Array, Uint8Array] | undefined {
  const from = parseEndpointAddress(source.address);
  const to = parseEndpointAddress(destination.address);
  if (from === undefined || to === undefined) return undefined;
  const from4 = unmapIPv4(from);
  const to4 = unmapIPv4(to);
  if (from4.length === 4 && to4.length === 4) return [from4, to4];
  return [asIPv6(from), asIPv6(to)];
}

/** An address as Bun reports it; a zone id (`fe80::1%eth0`) cannot be carried and is dropped. */
function parseEndpointAddress(text: string): Uint8Array | undefined {
  const zone = text.indexOf("%");
  return parseIp(zone < 0 ? text : text.slice(0, zone));
}

function asIPv6(bytes: Uint8Array): Uint8Array {
  if (bytes.length === 16) return bytes;
  const mapped = new Uint8Array(16);
  mapped[10] = 0xff;
  mapped[11] = 0xff;
  mapped.set(bytes, 12);
  return mapped;
}

function checkPort(port: number): number {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new RangeError(`not a port: ${port}`);
  return port;
}

/**
 * A v1 (text) header: `PROXY TCP4 src dst sport dport\r\n`, TCP6 for IPv6,
 * or `PROXY UNKNOWN\r\n` when an address is not an IP address. v1 has no
 * UDP: it is for TCP connections only.
 */
export function encodeProxyV1(source: ProxyAddress, destination: ProxyAddress): Uint8Array {
  const sourcePort = checkPort(source.port);
  const destinationPort = checkPort(destination.port);
  const pair = addressPair(source, destination);
  if (pair === undefined) return textEncoder.encode("PROXY UNKNOWN\r\n");
  const [from, to] = pair;
  const protocol = from.length === 4 ? "TCP4" : "TCP6";
  const line = `PROXY ${protocol} ${formatIp(from)} ${formatIp(to)} ${sourcePort} ${destinationPort}\r\n`;
  return textEncoder.encode(line);
}

/**
 * A v2 (binary) header with the PROXY command, for a TCP connection or a
 * UDP datagram. When an address is not an IP address the family is UNSPEC
 * with no address block, which tells the receiver to use the connection's
 * own endpoints.
 */
export function encodeProxyV2(source: ProxyAddress, destination: ProxyAddress, transport: ProxyTransport): Uint8Array {
  const sourcePort = checkPort(source.port);
  const destinationPort = checkPort(destination.port);
  const pair = addressPair(source, destination);
  if (pair === undefined) return v2Fixed(COMMAND_PROXY, FAMILY_UNSPEC << 4, 0);
  const [from, to] = pair;
  const family = from.length === 4 ? FAMILY_INET : FAMILY_INET6;
  const blockLength = from.length === 4 ? INET_BLOCK : INET6_BLOCK;
  const header = v2Fixed(COMMAND_PROXY, (family << 4) | (transport === "udp" ? TRANSPORT_DGRAM : TRANSPORT_STREAM), blockLength);
  let offset = PROXY_V2_FIXED_LENGTH;
  header.set(from, offset);
  offset += from.length;
  header.set(to, offset);
  offset += to.length;
  header[offset++] = sourcePort >> 8;
  header[offset++] = sourcePort & 0xff;
  header[offset++] = destinationPort >> 8;
  header[offset] = destinationPort & 0xff;
  return header;
}

/** A v2 LOCAL header: the connection is the proxy's own (a health check), not a client's. */
export function encodeProxyV2Local(): Uint8Array {
  return v2Fixed(COMMAND_LOCAL, FAMILY_UNSPEC << 4, 0);
}

/** The 16 fixed bytes, in a buffer with room for `blockLength` more. */
function v2Fixed(command: number, familyTransport: number, blockLength: number): Uint8Array {
  const header = new Uint8Array(PROXY_V2_FIXED_LENGTH + blockLength);
  header.set(V2_SIGNATURE, 0);
  header[12] = (V2_VERSION << 4) | command;
  header[13] = familyTransport;
  header[14] = blockLength >> 8;
  header[15] = blockLength & 0xff;
  return header;
}

// ---------------------------------------------------------------- decoding

/** One object for every "need more bytes" answer: waiting allocates nothing. */
const INCOMPLETE: ProxyHeader = Object.freeze({ status: "incomplete" });

function invalid(reason: string): ProxyHeader {
  return { status: "invalid", reason };
}

const NOT_A_HEADER = "not a PROXY protocol header";

/**
 * The PROXY header at the start of `data` (v1 or v2, told apart by the
 * first byte), "incomplete" while the bytes so far are a valid beginning,
 * or "invalid" with the reason as soon as they cannot be.
 */
export function parseProxyHeader(data: Uint8Array): ProxyHeader {
  if (data.length === 0) return INCOMPLETE;
  if (data[0] === V2_SIGNATURE[0]) return parseV2(data);
  if (data[0] === V1_PREFIX.charCodeAt(0)) return parseV1(data);
  return invalid(NOT_A_HEADER);
}

function parseV2(data: Uint8Array): ProxyHeader {
  const signatureSeen = Math.min(data.length, V2_SIGNATURE.length);
  for (let i = 0; i < signatureSeen; i++) {
    if (data[i] !== V2_SIGNATURE[i]) return invalid(`${NOT_A_HEADER} (bad v2 signature)`);
  }
  if (data.length <= 12) return INCOMPLETE;

  const versionCommand = data[12]!;
  const version = versionCommand >> 4;
  const command = versionCommand & 0x0f;
  if (version !== V2_VERSION) return invalid(`unsupported PROXY protocol version ${version}`);
  if (command !== COMMAND_LOCAL && command !== COMMAND_PROXY) return invalid(`unknown v2 command ${command}`);
  if (data.length <= 13) return INCOMPLETE;

  // LOCAL: "the receiver must ... discard the protocol block including the family".
  const familyTransport = data[13]!;
  const family = familyTransport >> 4;
  const transport = familyTransport & 0x0f;
  let blockNeeded = 0;
  if (command === COMMAND_PROXY) {
    // The spec allows exactly these seven combinations and asks receivers to reject any other.
    const known = familyTransport === 0x00 || (family >= FAMILY_INET && family <= FAMILY_UNIX && transport >= TRANSPORT_STREAM && transport <= TRANSPORT_DGRAM);
    if (!known) return invalid(`unknown v2 address family/transport 0x${familyTransport.toString(16).padStart(2, "0")}`);
    blockNeeded = family === FAMILY_INET ? INET_BLOCK : family === FAMILY_INET6 ? INET6_BLOCK : family === FAMILY_UNIX ? UNIX_BLOCK : 0;
  }
  if (data.length < PROXY_V2_FIXED_LENGTH) return INCOMPLETE;

  const blockLength = (data[14]! << 8) | data[15]!;
  if (blockLength < blockNeeded) {
    return invalid(`v2 address block of ${blockLength} bytes is too short for its family (${blockNeeded} needed)`);
  }
  const headerLength = PROXY_V2_FIXED_LENGTH + blockLength;
  if (data.length < headerLength) return INCOMPLETE;

  if (command === COMMAND_LOCAL) return { status: "ok", version: 2, headerLength, local: true };
  if (family === FAMILY_UNSPEC) return { status: "ok", version: 2, headerLength, local: false };

  const tlvProblem = checkTlvs(data, PROXY_V2_FIXED_LENGTH + blockNeeded, headerLength);
  if (tlvProblem !== undefined) return invalid(tlvProblem);
  const kind: ProxyTransport = transport === TRANSPORT_DGRAM ? "udp" : "tcp";
  if (family === FAMILY_UNIX) return { status: "ok", version: 2, headerLength, local: false, transport: kind };

  const size = family === FAMILY_INET ? 4 : 16;
  let offset = PROXY_V2_FIXED_LENGTH;
  const sourceAddress = formatIp(data.slice(offset, offset + size));
  offset += size;
  const destinationAddress = formatIp(data.slice(offset, offset + size));
  offset += size;
  const sourcePort = (data[offset]! << 8) | data[offset + 1]!;
  const destinationPort = (data[offset + 2]! << 8) | data[offset + 3]!;
  return {
    status: "ok",
    version: 2,
    headerLength,
    local: false,
    transport: kind,
    source: { address: sourceAddress, port: sourcePort },
    destination: { address: destinationAddress, port: destinationPort },
  };
}

/** TLVs (type, 16-bit length, value) fill the rest of the block exactly; their content is not ours to read. */
function checkTlvs(data: Uint8Array, start: number, end: number): string | undefined {
  let offset = start;
  while (offset < end) {
    if (end - offset < TLV_HEADER) return `truncated v2 TLV at byte ${offset}`;
    const length = (data[offset + 1]! << 8) | data[offset + 2]!;
    offset += TLV_HEADER + length;
    if (offset > end) return `v2 TLV of type 0x${data[offset - TLV_HEADER - length]!.toString(16)} overruns the header`;
  }
  return undefined;
}

function parseV1(data: Uint8Array): ProxyHeader {
  const prefixSeen = Math.min(data.length, V1_PREFIX.length);
  for (let i = 0; i < prefixSeen; i++) {
    if (data[i] !== V1_PREFIX.charCodeAt(i)) return invalid(NOT_A_HEADER);
  }

  // The line ends at the first CR, which must be followed by LF; a lone LF never ends it.
  const scan = Math.min(data.length, PROXY_V1_MAX_LENGTH);
  let end = -1;
  for (let i = 0; i < scan; i++) {
    const byte = data[i]!;
    if (byte === LF) return invalid("v1 header: LF without CR");
    if (byte === CR) {
      end = i;
      break;
    }
  }
  if (end < 0) {
    if (data.length >= PROXY_V1_MAX_LENGTH) return invalid(`v1 header: no CRLF in the first ${PROXY_V1_MAX_LENGTH} bytes`);
    return checkV1Line(latin1(data, data.length), false);
  }
  if (end + 2 > PROXY_V1_MAX_LENGTH) return invalid(`v1 header: no CRLF in the first ${PROXY_V1_MAX_LENGTH} bytes`);
  if (end + 1 === data.length) return checkV1Line(latin1(data, end), false);
  if (data[end + 1] !== LF) return invalid("v1 header: CR without LF");
  return checkV1Line(latin1(data, end), true, end + 2);
}

function latin1(data: Uint8Array, length: number): string {
  let text = "";
  for (let i = 0; i < length; i++) text += String.fromCharCode(data[i]!);
  return text;
}

const V1_PROTOCOLS = ["TCP4", "TCP6", "UNKNOWN"];
const V1_FIELDS = 6;
const V1_FIELD_NAMES: readonly string[] = ["PROXY", "protocol", "source address", "destination address", "source port", "destination port"];
/** Longest text of an address: `255.255.255.255`, and IPv6 with an IPv4 tail. */
const IPV4_TEXT_MAX = 15;
const IPV6_TEXT_MAX = 45;
const PARTIAL_IPV4 = /^(?:(?:0|[1-9]\d{0,2})\.){0,3}(?:0|[1-9]\d{0,2})?$/;
const PARTIAL_IPV6 = /^[0-9A-Fa-f:.]*$/;
const PORT = /^(?:0|[1-9]\d{0,4})$/;

/**
 * A v1 line without its CRLF. `complete` false: the line may go on, so the
 * last field is checked only as the beginning of a valid one.
 */
function checkV1Line(line: string, complete: boolean, headerLength = 0): ProxyHeader {
  const fields = line.split(" ");
  if (fields.length <= 1) return INCOMPLETE; // "PROXY" and not yet its space
  const protocol = fields[1]!;
  if (!complete && fields.length === 2) {
    return V1_PROTOCOLS.some((name) => name.startsWith(protocol)) ? INCOMPLETE : invalid(`v1 header: unknown protocol "${protocol}"`);
  }
  // UNKNOWN: "the receiver must ignore anything presented before the CRLF".
  if (protocol === "UNKNOWN") return complete ? { status: "ok", version: 1, headerLength, local: false } : INCOMPLETE;
  if (protocol !== "TCP4" && protocol !== "TCP6") return invalid(`v1 header: unknown protocol "${protocol}"`);
  // Two spaces in a row (an empty field) would otherwise read as a wrong field count.
  const lastComplete = complete ? fields.length : fields.length - 1;
  for (let k = 2; k < lastComplete; k++) {
    if (fields[k] === "") return invalid(`v1 header: empty ${V1_FIELD_NAMES[k] ?? "field"} (fields are separated by one space)`);
  }
  if (fields.length > V1_FIELDS) return invalid(`v1 header: more than ${V1_FIELDS} fields`);
  if (complete && fields.length < V1_FIELDS) return invalid(`v1 header: ${fields.length} fields, ${V1_FIELDS} expected`);

  const v4 = protocol === "TCP4";
  for (let k = 2; k < fields.length; k++) {
    const field = fields[k]!;
    const partial = !complete && k === fields.length - 1;
    const what = V1_FIELD_NAMES[k] ?? "field";
    if (partial) {
      if (!partialFieldOk(field, k, v4)) return invalid(`v1 header: malformed ${what} "${field}"`);
      continue;
    }
    if (k <= 3) {
      const bytes = v4 ? parseIPv4(field) : parseIPv6(field);
      if (bytes === undefined) return invalid(`v1 header: malformed ${what} "${field}" for ${protocol}`);
    } else if (!PORT.test(field) || Number(field) > 0xffff) {
      return invalid(`v1 header: ${what} "${field}" is not a port (0-65535)`);
    }
  }
  if (!complete) return INCOMPLETE;
  return {
    status: "ok",
    version: 1,
    headerLength,
    local: false,
    transport: "tcp",
    source: { address: canonical(fields[2]!), port: Number(fields[4]) },
    destination: { address: canonical(fields[3]!), port: Number(fields[5]) },
  };
}

/** Could `field` still grow into a valid field of position `k`? */
function partialFieldOk(field: string, k: number, v4: boolean): boolean {
  if (k <= 3) {
    if (v4) return field.length <= IPV4_TEXT_MAX && PARTIAL_IPV4.test(field) && field.split(".").every((part) => Number(part) <= 255);
    return field.length <= IPV6_TEXT_MAX && PARTIAL_IPV6.test(field);
  }
  return field === "" || (PORT.test(field) && Number(field) <= 0xffff);
}

/** Addresses as formatIp writes them, so v1 and v2 headers for one client read the same. */
function canonical(text: string): string {
  const bytes = parseIp(text);
  return bytes === undefined ? text : formatIp(bytes);
}

/** The client address a header stands for, IPv4-mapped IPv6 shown as IPv4 (as access rules see clients). */
export function proxiedClient(header: ProxyHeader): ProxyAddress | undefined {
  if (header.status !== "ok" || header.source === undefined) return undefined;
  const bytes = parseIp(header.source.address);
  if (bytes === undefined || !isIPv4Mapped(bytes)) return header.source;
  return { address: formatIp(unmapIPv4(bytes)), port: header.source.port };
}
