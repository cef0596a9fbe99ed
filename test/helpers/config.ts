/**
 * Helpers for the config tests: write a config to a temporary directory and
 * load it through the real loader, and flatten a config into plain values
 * (compiled patterns become their text) for exact comparisons.
 */

import { afterAll } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../../src/config/load.ts";
import { defaultRuleName } from "../../src/config/model.ts";
import { BALANCE_DEFAULTS } from "../../src/config/options.ts";
import { formatTarget } from "../../src/endpoint.ts";
import type { AccessList, Backend, Config, ConfigIssue, Endpoint, ForwardRule, LoadResult } from "../../src/types.ts";
import { DEFAULT_DNS_REFRESH_SECONDS, DEFAULT_MAX_UDP_SESSIONS, MAX_UDP_PAYLOAD } from "../../src/types.ts";

export type TextLoader = (name: string, text: string) => Promise<LoadResult & { path: string }>;

/**
 * A loader that writes `text` as `name` (its extension picks the format) in a
 * temporary directory and loads it. Call it at the top of a test file: the
 * directory is removed when that file's tests are done.
 */
export function textLoader(): TextLoader {
  const directory = mkdtempSync(join(tmpdir(), "oi-config-test-"));
  afterAll(() => rmSync(directory, { recursive: true, force: true }));
  return async (name, text) => {
    const path = join(directory, name);
    writeFileSync(path, text);
    return { ...(await loadConfig(path)), path };
  };
}

export interface PlainAccess {
  allow: Array<[pattern: string, line: number]>;
  deny: Array<[pattern: string, line: number]>;
}

export function plainAccess(list: AccessList): PlainAccess {
  return {
    allow: list.allow.map((rule) => [rule.pattern.text, rule.at.line]),
    deny: list.deny.map((rule) => [rule.pattern.text, rule.at.line]),
  };
}

/**
 * A rule as plain values. A rinetd-style rule (one backend, weight 1, no
 * name or src of its own) shows its backend as `connect`, and a name equal
 * to the default (the bind endpoint) is left out, so fixtures read like the
 * config lines they come from.
 */
export type PlainRule = Omit<ForwardRule, "access" | "at" | "backends" | "name"> & {
  name?: string;
  connect?: Endpoint;
  backends?: Backend[];
  line: number;
  access: PlainAccess;
};

function isPlainBackend(backend: Backend): boolean {
  return backend.weight === 1 && backend.sourceAddress === undefined && backend.name === formatTarget(backend.endpoint);
}

export function plainRule(rule: ForwardRule): PlainRule {
  const { access, at, backends, name, ...rest } = rule;
  const [only] = backends;
  return {
    ...rest,
    ...(name === defaultRuleName(rule) ? {} : { name }),
    ...(backends.length === 1 && only !== undefined && isPlainBackend(only) ? { connect: only.endpoint } : { backends }),
    line: at.line,
    access: plainAccess(access),
  };
}

export function plainConfig(config: Config) {
  return {
    format: config.format,
    globalAccess: plainAccess(config.globalAccess),
    logFile: config.logFile,
    pidFile: config.pidFile,
    logFormat: config.logFormat,
    rules: config.rules.map(plainRule),
  };
}

/** [line, reason] pairs, the shape the error tests assert on. */
export function linesAndReasons(issues: ConfigIssue[]): Array<[number, string]> {
  return issues.map((issue) => [issue.line, issue.reason]);
}

export const NO_ACCESS: PlainAccess = { allow: [], deny: [] };

/** Defaults of the options the older fixtures never set (limits, UDP sessions, framing). */
export const OTHER_OPTION_DEFAULTS = {
  maxConnections: undefined,
  maxConnectionsPerClient: undefined,
  connectionRatePerClient: undefined,
  clientTableSize: 100_000,
  idleTimeout: undefined,
  maxSessions: DEFAULT_MAX_UDP_SESSIONS,
  framing: "none" as const,
  maxDatagram: MAX_UDP_PAYLOAD,
  bufferSize: 65536,
  proxyProtocol: undefined,
  acceptProxy: false,
  keepalive: undefined,
  socketMode: undefined,
  dnsRefresh: DEFAULT_DNS_REFRESH_SECONDS,
  dnsFamily: "ipv4" as const,
  dnsSpread: false,
  match: undefined,
  peekTimeout: undefined,
  tls: undefined,
  tlsConnect: undefined,
  rate: undefined,
  rateRule: undefined,
  rateClient: undefined,
  balance: BALANCE_DEFAULTS,
};

/** One rule, 127.0.0.1:8080 to 127.0.0.1:80, in each format: the smallest config a global directive can be tried on. */
export const ONE_RULE = {
  conf: "127.0.0.1 8080 127.0.0.1 80\n",
  toml: '[[forwarding_rules]]\nbind_address = "127.0.0.1"\nbind_port = 8080\nconnect_address = "127.0.0.1"\nconnect_port = 80\n',
  yaml: 'rules:\n  - name: web\n    bind: "127.0.0.1:8080"\n    connect: "127.0.0.1:80"\n',
};
