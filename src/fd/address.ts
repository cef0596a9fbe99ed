/**
 * @module Socket addresses as the kernel takes and gives them (struct
 * sockaddr_in and sockaddr_in6, Linux layout): an IP literal and a port
 * encoded for bind and connect, and decoded from accept and getsockname in
 * the text Bun's sockets use (`127.0.0.1`, `::1`, `::ffff:127.0.0.1`).
 */
import { AF_INET, AF_INET6, AF_UNIX } from "../libc.ts";
import { formatIp, parseIp } from "../ip.ts";

/** Room for either kind (sockaddr_in6 is the larger, 28 bytes). */
export const SOCKADDR_BYTES = 28;
const SOCKADDR_IN_BYTES = 16;

/** An encoded address: its bytes, and the family to open a socket of. */
export interface SocketAddress {
  bytes: Uint8Array;
  family: number;
}

/** `host` (an IP literal) and `port` for bind or connect; undefined when `host` is not an IP literal. */
export function encodeAddress(host: string, port: number): SocketAddress | undefined {
  const ip = parseIp(host);
  if (ip === undefined) return undefined;
  // sockaddr_in keeps the address at offset 4, sockaddr_in6 at 8 (after sin6_flowinfo).
  const [size, family, at] = ip.length === 4 ? [SOCKADDR_IN_BYTES, AF_INET, 4] : [SOCKADDR_BYTES, AF_INET6, 8];
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, family, true);
  view.setUint16(2, port, false);
  bytes.set(ip, at);
  return { bytes, family };
}

/** The port of an encoded address (network byte order at offset 2 in both layouts). */
export function portOf(bytes: Uint8Array): number {
  return ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0);
}

/** The IP of an encoded address, as text; "" for a family this does not know. */
export function hostOf(bytes: Uint8Array): string {
  const family = (bytes[0] ?? 0) | ((bytes[1] ?? 0) << 8);
  // Once per accepted connection: IPv4 is written out directly.
  if (family === AF_INET) return `${bytes[4]}.${bytes[5]}.${bytes[6]}.${bytes[7]}`;
  if (family === AF_INET6) return formatIp(bytes.subarray(8, 24));
  return "";
}

/** Addresses connected to recently, encoded: a backend's address is the same for connection after connection. */
const encoded = new Map<string, SocketAddress | undefined>();
const ENCODED_MAX = 4096;

/** As encodeAddress, remembering the result (the bytes are only read, never changed, by connect and bind). */
export function encodeAddressCached(host: string, port: number): SocketAddress | undefined {
  const key = `${port} ${host}`;
  let address = encoded.get(key);
  if (address === undefined && !encoded.has(key)) {
    address = encodeAddress(host, port);
    if (encoded.size >= ENCODED_MAX) encoded.clear();
    encoded.set(key, address);
  }
  return address;
}

/** sockaddr_un holds a 2-byte family, then up to 108 bytes of path. */
const SUN_PATH_BYTES = 108;

/**
 * A unix socket address: a path, or `@name` for Linux's abstract namespace
 * (whose name starts with a NUL byte, where a path ends with one); its bytes
 * and the length to give bind, connect or sendto. Undefined when too long.
 */
export function encodeUnixAddress(path: string): { bytes: Uint8Array; length: number } | undefined {
  const abstract = path.startsWith("@");
  const name = new TextEncoder().encode(abstract ? path.slice(1) : path);
  if (name.length + 1 > SUN_PATH_BYTES) return undefined;
  const bytes = new Uint8Array(2 + SUN_PATH_BYTES);
  new DataView(bytes.buffer).setUint16(0, AF_UNIX, true);
  bytes.set(name, abstract ? 3 : 2);
  return { bytes, length: 2 + name.length + 1 };
}
