/**
 * @module `oi check`'s look at host names: a backend (or bind) name that
 * does not resolve on this machine is reported, not fatal. The config may be
 * meant for another host, and a backend name may come to resolve later (oi
 * looks names up when connections need them), so these are warnings.
 * An `srv:` backend's SRV records are looked up too, and what they list now
 * is shown. Lookups go to the `dns-servers` when the config names them.
 */
import { isAddressLiteral, type LookupFn, serverLookup } from "../dns.ts";
import { formatHostPort } from "../ip.ts";
import { srvLookup, type SrvLookupFn } from "../srv.ts";
import type { Config, ConfigIssue, SourceLocation } from "../types.ts";

/** A lookup that has not answered by then counts as not resolving. */
const LOOKUP_TIMEOUT_MS = 5000;

function defaultLookup(host: string): ReturnType<LookupFn> {
  return Bun.dns.lookup(host);
}

/** Every host name of the config's rules, with where it is first used. */
function namesOf(config: Config): Map<string, { at: SourceLocation; role: "bind" | "backend" }> {
  const names = new Map<string, { at: SourceLocation; role: "bind" | "backend" }>();
  for (const rule of config.rules) {
    const endpoints = [{ endpoint: rule.bind, role: "bind" as const }, ...rule.backends.map((backend) => ({ endpoint: backend.endpoint, role: "backend" as const }))];
    for (const { endpoint, role } of endpoints) {
      if (endpoint.transport === "unix" || endpoint.srv === true || isAddressLiteral(endpoint.host) || names.has(endpoint.host)) continue;
      names.set(endpoint.host, { at: rule.at, role });
    }
  }
  return names;
}

/** What a lookup's failure says, short (its code without `DNS_`). */
function failureText(error: unknown): string {
  const code = typeof error === "object" && error !== null && "code" in error ? String(error.code) : String(error);
  return code.replace(/^DNS_/, "");
}

/** `answer`, or the reason it failed or took too long. */
async function withinTimeout<T>(answer: Promise<T>): Promise<{ value: T } | { failure: string }> {
  let timer: Timer | undefined;
  const timeout = new Promise<{ failure: string }>((resolve) => {
    timer = setTimeout(() => resolve({ failure: `no answer within ${LOOKUP_TIMEOUT_MS / 1000}s` }), LOOKUP_TIMEOUT_MS);
  });
  const settled = answer.then(
    (value) => ({ value }),
    (error: unknown) => ({ failure: failureText(error) }),
  );
  try {
    return await Promise.race([settled, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function failureOf(host: string, lookup: LookupFn): Promise<string | undefined> {
  const result = await withinTimeout(lookup(host));
  if ("failure" in result) return result.failure;
  return result.value.length === 0 ? "no addresses" : undefined;
}

/**
 * Each `srv:` backend's SRV records as they stand: a line saying what they
 * list (`srv:_web._tcp.example.com now lists web1.example.com:8080 weight 1
 * priority 0, ...`), or a warning at the rule's line when the lookup fails.
 */
export async function lookUpSrvNames(config: Config, lookup: SrvLookupFn = srvLookup(config.dnsServers)): Promise<{ lines: string[]; issues: ConfigIssue[] }> {
  const names = new Map<string, SourceLocation>();
  for (const rule of config.rules) {
    for (const backend of rule.backends) if (backend.endpoint.srv === true && !names.has(backend.endpoint.host)) names.set(backend.endpoint.host, rule.at);
  }
  const lines: string[] = [];
  const issues: ConfigIssue[] = [];
  for (const [name, at] of names) {
    const result = await withinTimeout(lookup(name));
    if ("failure" in result) {
      issues.push({ file: at.file, line: at.line, reason: `SRV name 'srv:${name}' has no usable records here (${result.failure}): connections fail until it does` });
      continue;
    }
    const records = [...result.value].sort((a, b) => a.priority - b.priority || b.weight - a.weight);
    const listed = records.map((record) => `${formatHostPort(record.target || ".", record.port)} weight ${record.weight} priority ${record.priority}`);
    const ttl = Math.min(...records.map((record) => record.ttl));
    lines.push(`srv:${name} now lists ${listed.join(", ")}${Number.isFinite(ttl) ? ` (TTL ${ttl}s)` : ""}`);
  }
  return { lines, issues };
}

/** One warning per host name of the config that does not resolve here, at the line of its first use. */
export async function findUnresolvedNames(
  config: Config,
  lookup: LookupFn = config.dnsServers === undefined ? defaultLookup : serverLookup(config.dnsServers),
): Promise<ConfigIssue[]> {
  const names = [...namesOf(config)];
  const failures = await Promise.all(names.map(([host]) => failureOf(host, lookup)));
  return names.flatMap(([host, { at, role }], index) => {
    const failure = failures[index];
    if (failure === undefined) return [];
    const consequence = role === "bind" ? "oi cannot listen on it here" : "connections to it fail until it does";
    return [{ file: at.file, line: at.line, reason: `${role} host name '${host}' does not resolve here (${failure}): ${consequence}` }];
  });
}
