/**
 * @module Who "one client" is for the per-client limits (connections,
 * connection rate, bandwidth), and the bounded table that keeps their state.
 *
 * An IPv4 client is its address. An IPv6 client is its /64: a host is
 * usually given a whole /64, and could rotate through its addresses to dodge
 * a per-address limit. The table is a least-recently-used map of at most
 * `maxEntries` clients, so a flood of sources costs bounded memory: the
 * client touched longest ago is forgotten first (its counts start again from
 * zero if it comes back).
 */
import { parseIPv6 } from "./ip.ts";

/** Clients a per-client table keeps at most, unless told otherwise. */
export const DEFAULT_CLIENT_TABLE_ENTRIES = 100_000;

/**
 * The key of the client at `address` (as a socket or PROXY header gives it):
 * `192.0.2.7`, or `2001:db8:1:2::/64`. IPv4-mapped IPv6 is its IPv4 address.
 * An address that does not parse (a unix socket's "") is its own key.
 */
export function clientKey(address: string): string {
  // The common case costs one scan: a plain IPv4 address is its own key.
  if (address.indexOf(":") < 0) return address;
  const zone = address.indexOf("%");
  const bare = zone < 0 ? address : address.slice(0, zone);
  const lower = bare.toLowerCase();
  if (lower.startsWith("::ffff:") && lower.indexOf(".") > 0) return lower.slice(7);
  const bytes = parseIPv6(lower);
  if (bytes === undefined) return address;
  const groups: string[] = [];
  for (let i = 0; i < 8; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return `${groups.join(":")}::/64`;
}

/** A least-recently-used map of per-client state, bounded in entries. */
export class ClientTable<T> {
  private readonly entries = new Map<string, T>();

  constructor(readonly maxEntries: number = DEFAULT_CLIENT_TABLE_ENTRIES) {}

  get size(): number {
    return this.entries.size;
  }

  /** The state of `key`, made by `make` when it has none; either way it becomes the most recently used. */
  touch(key: string, make: () => T): T {
    const entries = this.entries;
    const found = entries.get(key);
    if (found !== undefined) {
      // Map keeps insertion order: re-inserting moves the key to the young end.
      entries.delete(key);
      entries.set(key, found);
      return found;
    }
    const made = make();
    entries.set(key, made);
    if (entries.size > this.maxEntries) {
      const oldest = entries.keys().next().value;
      if (oldest !== undefined) entries.delete(oldest);
    }
    return made;
  }

  /** The state of `key` without making it the most recently used; undefined when it has none (or was forgotten). */
  peek(key: string): T | undefined {
    return this.entries.get(key);
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}
