/**
 * @module `oi check`'s look at host names: a backend (or bind) name that
 * does not resolve on this machine is reported, not fatal. The config may be
 * meant for another host, and a backend name may come to resolve later (oi
 * looks names up when connections need them), so these are warnings.
 */
import { isAddressLiteral, type LookupFn } from "../dns.ts";
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
      if (endpoint.transport === "unix" || isAddressLiteral(endpoint.host) || names.has(endpoint.host)) continue;
      names.set(endpoint.host, { at: rule.at, role });
    }
  }
  return names;
}

async function failureOf(host: string, lookup: LookupFn): Promise<string | undefined> {
  let timer: Timer | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer within ${LOOKUP_TIMEOUT_MS / 1000}s`), LOOKUP_TIMEOUT_MS);
  });
  const answer = lookup(host).then(
    (records) => (records.length === 0 ? "no addresses" : undefined),
    (error: unknown) => {
      const code = typeof error === "object" && error !== null && "code" in error ? String(error.code) : String(error);
      return code.replace(/^DNS_/, "");
    },
  );
  try {
    return await Promise.race([answer, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** One warning per host name of the config that does not resolve here, at the line of its first use. */
export async function findUnresolvedNames(config: Config, lookup: LookupFn = defaultLookup): Promise<ConfigIssue[]> {
  const names = [...namesOf(config)];
  const failures = await Promise.all(names.map(([host]) => failureOf(host, lookup)));
  return names.flatMap(([host, { at, role }], index) => {
    const failure = failures[index];
    if (failure === undefined) return [];
    const consequence = role === "bind" ? "oi cannot listen on it here" : "connections to it fail until it does";
    return [{ file: at.file, line: at.line, reason: `${role} host name '${host}' does not resolve here (${failure}): ${consequence}` }];
  });
}
