/**
 * @module Access control: allow/deny patterns compiled once at load time, and
 * the per-connection decision with rinetd's semantics. Patterns are rinetd
 * globs (`192.168.2.*`, `fe80:*`), CIDR blocks (`10.0.0.0/8`) or exact
 * addresses (`::1`, compared by bytes).
 */

import type { AccessList, AccessRule, AddressPattern, ClientAddress } from "./types.ts";
import { formatIp, isIPv4Mapped, parseIp, unmapIPv4 } from "./ip.ts";

const GLOB_CHARACTERS = /^[0-9a-fA-F.:?*]*$/;
const HOST_NAME_CHARACTERS = /^[A-Za-z0-9.*?_-]+$/;
const MAPPED_PREFIX = "::ffff:";

/**
 * The longest pattern taken: an address is at most 45 characters (IPv6 with
 * an IPv4 tail), 49 with a prefix. A longer glob cannot mean anything more,
 * and a glob of a megabyte is a regular expression too large to compile.
 */
const MAX_PATTERN_CHARS = 64;

/** Compile an allow/deny pattern, or say why it is not one. */
export function compilePattern(text: string): AddressPattern | string {
  if (text.length === 0) return "empty pattern";
  if (text.length > MAX_PATTERN_CHARS) return `pattern of ${text.length} characters: an address pattern has at most ${MAX_PATTERN_CHARS}`;
  if (text.includes("/")) return compileCidr(text);
  if (looksLikeHostName(text)) return "host names are not permitted in allow/deny rules (rinetd)";
  if (!GLOB_CHARACTERS.test(text)) {
    const bad = [...text].find((char) => !GLOB_CHARACTERS.test(char)) ?? "";
    return `bad character '${bad}' (patterns may use 0-9, a-f, '.', ':', '?' and '*')`;
  }
  if (text.includes("*") || text.includes("?")) return new GlobPattern(text);
  const bytes = parseIp(text);
  if (bytes === undefined) return "malformed IP address (use '*' or '?' for wildcards, or ADDRESS/PREFIX)";
  return new ExactPattern(text, unmapIPv4(bytes));
}

/**
 * A word with letters that cannot be an IPv6 pattern (no ':'). Hex-only
 * words with a wildcard and no dot (`fe80*`) stay globs: they can match IPv6.
 */
function looksLikeHostName(text: string): boolean {
  if (text.includes(":") || !HOST_NAME_CHARACTERS.test(text) || !/[A-Za-z]/.test(text)) return false;
  const hasWildcard = text.includes("*") || text.includes("?");
  return /[g-zG-Z_-]/.test(text) || text.includes(".") || !hasWildcard;
}

function compileCidr(text: string): AddressPattern | string {
  const slash = text.lastIndexOf("/");
  const addressText = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  if (addressText.includes("*") || addressText.includes("?")) return "wildcards cannot be combined with a CIDR prefix";
  const parsed = parseIp(addressText);
  if (parsed === undefined) return `malformed address '${addressText}' in CIDR pattern`;

  const maxPrefix = parsed.length * 8;
  const prefix = /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : Number.NaN;
  if (!(prefix <= maxPrefix)) {
    return `bad CIDR prefix length '${prefixText}' (0..${maxPrefix} for ${parsed.length === 4 ? "IPv4" : "IPv6"})`;
  }
  // Clients on mapped addresses are matched as IPv4, so a block inside ::ffff:0:0/96 becomes an IPv4 block.
  if (isIPv4Mapped(parsed) && prefix >= 96) return new CidrPattern(text, unmapIPv4(parsed), prefix - 96);
  return new CidrPattern(text, parsed, prefix);
}

/** rinetd's glob over the address text: `?` is one character, `*` any run, including none. */
class GlobPattern implements AddressPattern {
  private readonly regex: RegExp;

  constructor(readonly text: string) {
    // Mapped clients are presented as plain IPv4, so `::ffff:1.2.*` must be matched as `1.2.*`.
    const lower = text.toLowerCase();
    const body = lower.startsWith(MAPPED_PREFIX) && lower.includes(".") ? lower.slice(MAPPED_PREFIX.length) : lower;
    const source = body.replaceAll(".", "\\.").replaceAll("?", ".").replaceAll("*", ".*");
    this.regex = new RegExp(`^${source}$`, "i");
  }

  matches(address: ClientAddress): boolean {
    return this.regex.test(address.text);
  }
}

class CidrPattern implements AddressPattern {
  constructor(
    readonly text: string,
    private readonly network: Uint8Array,
    private readonly prefix: number,
  ) {}

  matches(address: ClientAddress): boolean {
    const bytes = address.bytes;
    if (bytes.length !== this.network.length) return false;
    const fullBytes = this.prefix >> 3;
    for (let i = 0; i < fullBytes; i++) if (bytes[i] !== this.network[i]) return false;
    const remainingBits = this.prefix & 7;
    if (remainingBits === 0) return true;
    const mask = (0xff << (8 - remainingBits)) & 0xff;
    return ((bytes[fullBytes] ?? 0) & mask) === ((this.network[fullBytes] ?? 0) & mask);
  }
}

/** One address, compared by bytes so every spelling of it (`::1`, `0:0:0:0:0:0:0:1`) matches. */
class ExactPattern implements AddressPattern {
  constructor(
    readonly text: string,
    private readonly address: Uint8Array,
  ) {}

  matches(address: ClientAddress): boolean {
    const bytes = address.bytes;
    if (bytes.length !== this.address.length) return false;
    for (let i = 0; i < bytes.length; i++) if (bytes[i] !== this.address[i]) return false;
    return true;
  }
}

/**
 * A socket's remote address as the access checks see it. IPv4-mapped IPv6
 * (`::ffff:10.1.2.3`, from dual-stack listeners) becomes plain IPv4 so IPv4
 * patterns apply; a zone id (`%eth0`) is dropped. The text is canonical
 * (RFC 5952 for IPv6) whatever spelling the runtime used, so globs see one form.
 */
export function parseClientAddress(text: string): ClientAddress | undefined {
  const zone = text.indexOf("%");
  const bare = zone === -1 ? text : text.slice(0, zone);
  const parsed = parseIp(bare);
  if (parsed === undefined) return undefined;
  const bytes = unmapIPv4(parsed);
  return { text: formatIp(bytes), bytes };
}

/**
 * rinetd's decision: a non-empty global allow list must be matched, any global
 * deny match refuses, then the same with the rule's own lists. Runs per
 * connection, so it only walks arrays: no allocation.
 */
export function isAllowed(client: ClientAddress, global: AccessList, rule: AccessList): boolean {
  return passes(client, global) && passes(client, rule);
}

function passes(client: ClientAddress, list: AccessList): boolean {
  if (list.allow.length > 0 && !matchesAny(client, list.allow)) return false;
  return !matchesAny(client, list.deny);
}

function matchesAny(client: ClientAddress, rules: AccessRule[]): boolean {
  for (let i = 0; i < rules.length; i++) {
    if (rules[i]?.pattern.matches(client)) return true;
  }
  return false;
}
