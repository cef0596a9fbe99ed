/**
 * @module Which rule of a shared bind a client's first bytes choose: the
 * rules' `sni=`, `host=` and `protocol=` entries compiled once per config
 * into lookups, then asked once per connection. Order of precedence: an
 * exact name, then the longest wildcard that covers the name, then the
 * protocol, then the bind's default (its rule without a match).
 */
import type { ForwardRule, MatchProtocol } from "./types.ts";

/** What the first bytes turned out to be; `other` is anything else (or a ClientHello or request that does not parse), `silent` nothing within the peek timeout. */
export type FirstBytesKind = MatchProtocol | "other";

/** What a client sent first, as far as choosing a rule goes. */
export interface FirstLook {
  kind: FirstBytesKind;
  /** TLS: the ClientHello's server_name; HTTP: the request's Host; undefined when there is none. */
  name: string | undefined;
}

/** Names of one kind (SNI or Host): exact ones by lookup, wildcards by suffix, longest first. */
class NameTable<Route> {
  private readonly exact = new Map<string, Route>();
  /** `[".example.com", route]`, longest suffix first. */
  private wildcards: Array<[string, Route]> = [];

  add(name: string, route: Route): void {
    if (name.startsWith("*.")) {
      this.wildcards.push([name.slice(1), route]);
      this.wildcards.sort((a, b) => b[0].length - a[0].length);
    } else {
      this.exact.set(name, route);
    }
  }

  find(name: string): Route | undefined {
    const exact = this.exact.get(name);
    if (exact !== undefined) return exact;
    for (const [suffix, route] of this.wildcards) {
      // `*.example.com` covers names below example.com, not example.com itself.
      if (name.length > suffix.length && name.endsWith(suffix)) return route;
    }
    return undefined;
  }
}

/** The rules of one bind, ready to be chosen among. */
export class RouteTable<Route> {
  private readonly sni = new NameTable<Route>();
  private readonly host = new NameTable<Route>();
  private readonly protocols = new Map<FirstBytesKind, Route>();
  private readonly fallback: Route | undefined;
  /** Whether any rule has a match: without one there is nothing to peek for, every client takes the default. */
  readonly choosesByFirstBytes: boolean;

  /** The config check (validate.ts) has made sure no name or protocol is claimed twice and at most one rule has no match. */
  constructor(routes: ReadonlyArray<readonly [ForwardRule, Route]>) {
    let fallback: Route | undefined;
    let choosing = false;
    for (const [rule, route] of routes) {
      const match = rule.match;
      if (match === undefined) {
        fallback = route;
        continue;
      }
      choosing = true;
      for (const name of match.sni) this.sni.add(name, route);
      for (const name of match.host) this.host.add(name, route);
      for (const protocol of match.protocol) this.protocols.set(protocol, route);
    }
    this.fallback = fallback;
    this.choosesByFirstBytes = choosing;
  }

  /** The default route, the only one when no rule has a match. */
  get default(): Route | undefined {
    return this.fallback;
  }

  /** The route for what a client sent first; undefined when nothing matches and the bind has no default. */
  choose(look: FirstLook): Route | undefined {
    const name = look.name;
    if (name !== undefined) {
      const byName = look.kind === "tls" ? this.sni.find(name) : look.kind === "http" ? this.host.find(name) : undefined;
      if (byName !== undefined) return byName;
    }
    return this.protocols.get(look.kind) ?? this.fallback;
  }
}
