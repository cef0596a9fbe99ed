/**
 * @module Bandwidth values as a config writes them (`100mbit`, `2mb`,
 * `1.5gbit`, `65536`) and as `oi check` shows them. Units are powers of
 * 1000, case-insensitive: `kbit`, `mbit`, `gbit` are bits per second, `kb`,
 * `mb`, `gb` bytes per second, and a bare number is bytes per second.
 * Internally a rate is always bytes per second.
 */
import type { Checked } from "../config/validate.ts";

const BYTES_PER_UNIT: Readonly<Record<string, number>> = {
  "": 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  kbit: 1e3 / 8,
  mbit: 1e6 / 8,
  gbit: 1e9 / 8,
};

const RATE = /^(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)$/i;

/** The units a rate may be written in, for messages. */
export const RATE_UNITS = "kbit, mbit, gbit (bits/s) or kb, mb, gb (bytes/s); a bare number is bytes/s";

/** Bytes per second of `value` (a config's text, or a bare number from TOML/YAML); the reason when it is not a rate. */
export function parseRate(name: string, value: string | number): Checked<number> {
  const text = String(value).trim();
  const found = RATE.exec(text);
  const scale = found === null ? undefined : BYTES_PER_UNIT[found[2]!.toLowerCase()];
  if (text.startsWith("-")) return { ok: false, reason: `${name} must be above zero, got '${text}'` };
  if (found === null || scale === undefined) {
    return { ok: false, reason: `${name} must be a number with a unit, ${RATE_UNITS}; got '${text}'` };
  }
  const bytes = Number(found[1]) * scale;
  if (!Number.isFinite(bytes) || bytes <= 0) return { ok: false, reason: `${name} must be above zero, got '${text}'` };
  return { ok: true, value: bytes };
}

/** A number with at most three decimals, without trailing zeros. */
function short(value: number): string {
  return String(Number(value.toFixed(3)));
}

/** `100mbit/s (12.5MB/s)`: a rate in bits (as networks are quoted) and in bytes per second. */
export function formatRate(bytesPerSecond: number): string {
  const bits = bytesPerSecond * 8;
  const inBits = bits >= 1e9 ? `${short(bits / 1e9)}gbit/s` : bits >= 1e6 ? `${short(bits / 1e6)}mbit/s` : bits >= 1e3 ? `${short(bits / 1e3)}kbit/s` : `${short(bits)}bit/s`;
  const inBytes =
    bytesPerSecond >= 1e9
      ? `${short(bytesPerSecond / 1e9)}GB/s`
      : bytesPerSecond >= 1e6
        ? `${short(bytesPerSecond / 1e6)}MB/s`
        : bytesPerSecond >= 1e3
          ? `${short(bytesPerSecond / 1e3)}kB/s`
          : `${short(bytesPerSecond)}B/s`;
  return `${inBits} (${inBytes})`;
}
