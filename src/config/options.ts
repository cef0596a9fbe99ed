/**
 * @module Per-rule options, described once for every config format: the name
 * in a `.conf` option group (`[timeout=30]`), the TOML key, the value type and
 * the check. Parsers look options up here; adding an option is one entry.
 */
import type { Framing, RuleOptions } from "../types.ts";
import {
  DEFAULT_CONNECT_TIMEOUT_SECONDS,
  DEFAULT_MAX_UDP_SESSIONS,
  DEFAULT_UDP_TIMEOUT_SECONDS,
  MAX_UDP_PAYLOAD,
} from "../types.ts";
import { type Checked, checkConnectTimeout, checkSourceAddress, checkUdpTimeout } from "./validate.ts";

/** How a value is written: TOML type expected, and the .conf text accepted. */
export type OptionValueType = "integer" | "number" | "string";

export interface OptionSpec {
  /** Name inside a .conf option group. */
  conf: string;
  /** Key in a TOML forwarding rule. */
  toml: string;
  type: OptionValueType;
  /** Check a value (already of `type`) and store it on `options`; a reason when it is invalid. */
  apply(options: RuleOptions, value: string | number, written: string): string | undefined;
}

export function defaultRuleOptions(): RuleOptions {
  return {
    timeout: DEFAULT_UDP_TIMEOUT_SECONDS,
    connectTimeout: DEFAULT_CONNECT_TIMEOUT_SECONDS,
    sourceAddress: undefined,
    maxConnections: undefined,
    idleTimeout: undefined,
    maxSessions: DEFAULT_MAX_UDP_SESSIONS,
    framing: "none",
    maxDatagram: MAX_UDP_PAYLOAD,
  };
}

/** Run a shared check and store its value; the reason when it fails. */
function store<T>(checked: Checked<T>, set: (value: T) => void): string | undefined {
  if (!checked.ok) return checked.reason;
  set(checked.value);
  return undefined;
}

function checkCount(name: string, value: number, written: string, max: number): Checked<number> {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    return { ok: false, reason: `${name} must be a whole number from 1 to ${max}, got '${written}'` };
  }
  return { ok: true, value };
}

function checkSeconds(name: string, value: number, written: string): Checked<number> {
  if (!Number.isFinite(value) || value <= 0) {
    return { ok: false, reason: `${name} must be a positive number of seconds, got '${written}'` };
  }
  return { ok: true, value };
}

const FRAMINGS: readonly Framing[] = ["none", "len16"];

export const RULE_OPTIONS: readonly OptionSpec[] = [
  {
    conf: "timeout",
    toml: "timeout",
    type: "integer",
    apply: (options, value, written) => store(checkUdpTimeout(Number(value), written), (v) => (options.timeout = v)),
  },
  {
    conf: "src",
    toml: "source_address",
    type: "string",
    apply: (options, value) => store(checkSourceAddress(String(value)), (v) => (options.sourceAddress = v)),
  },
  {
    conf: "connect_timeout",
    toml: "connect_timeout",
    type: "number",
    apply: (options, value, written) =>
      store(checkConnectTimeout(Number(value), written), (v) => (options.connectTimeout = v)),
  },
  {
    conf: "maxconn",
    toml: "max_connections",
    type: "integer",
    apply: (options, value, written) =>
      store(checkCount("maxconn", Number(value), written, 10_000_000), (v) => (options.maxConnections = v)),
  },
  {
    conf: "idle",
    toml: "idle_timeout",
    type: "number",
    apply: (options, value, written) =>
      store(checkSeconds("idle", Number(value), written), (v) => (options.idleTimeout = v)),
  },
  {
    conf: "max_sessions",
    toml: "max_sessions",
    type: "integer",
    apply: (options, value, written) =>
      store(checkCount("max_sessions", Number(value), written, 1_000_000), (v) => (options.maxSessions = v)),
  },
  {
    conf: "frame",
    toml: "framing",
    type: "string",
    apply: (options, value) => {
      const framing = FRAMINGS.find((candidate) => candidate === value);
      if (framing === undefined) return `frame must be one of ${FRAMINGS.join(", ")}, got '${value}'`;
      options.framing = framing;
      return undefined;
    },
  },
  {
    conf: "max_datagram",
    toml: "max_datagram",
    type: "integer",
    apply: (options, value, written) =>
      store(checkCount("max_datagram", Number(value), written, MAX_UDP_PAYLOAD), (v) => (options.maxDatagram = v)),
  },
];

export const CONF_OPTION_NAMES = RULE_OPTIONS.map((spec) => spec.conf);
export const TOML_OPTION_KEYS = RULE_OPTIONS.map((spec) => spec.toml);

/** .conf option text to a typed value: integers and numbers must look like them. */
export function parseConfOptionValue(spec: OptionSpec, text: string): string | number {
  if (spec.type === "string") return text;
  const pattern = spec.type === "integer" ? /^\d+$/ : /^(\d+\.?\d*|\.\d+)$/;
  return pattern.test(text) ? Number(text) : Number.NaN;
}
