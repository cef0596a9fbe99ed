import { describe, expect, test } from "bun:test";
import { isAddressLiteral, type LookupRecord, ResolveError, Resolver, type ResolverOptions } from "../src/dns.ts";

/** A stand-in for DNS: answers set by the test, every call counted. No real name is ever queried. */
class FakeDns {
  calls: string[] = [];
  answers = new Map<string, LookupRecord[] | Error>();
  /** When set, lookups wait for release() (to see concurrent callers share one). */
  private held: Array<() => void> | undefined;

  readonly lookup = async (host: string): Promise<readonly LookupRecord[]> => {
    this.calls.push(host);
    if (this.held !== undefined) {
      const held = this.held;
      await new Promise<void>((resolve) => held.push(resolve));
    }
    const answer = this.answers.get(host);
    if (answer === undefined) throw Object.assign(new Error("getaddrinfo ENOTFOUND"), { code: "DNS_ENOTFOUND" });
    if (answer instanceof Error) throw answer;
    return answer;
  };

  hold(): void {
    this.held = [];
  }

  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const resolve of held) resolve();
  }
}

class FakeClock {
  time = 5_000;
  readonly now = (): number => this.time;
}

function setup(options: Partial<ResolverOptions> = {}) {
  const dns = new FakeDns();
  const clock = new FakeClock();
  const failures: string[] = [];
  const recoveries: string[] = [];
  const resolver = new Resolver({
    lookup: dns.lookup,
    maxTtlSeconds: 600,
    now: clock.now,
    onFailure: (host, error) => failures.push(`${host}: ${error}`),
    onRecovery: (host) => recoveries.push(host),
    ...options,
  });
  return { dns, clock, resolver, failures, recoveries };
}

function records(ttl: number, ...addresses: string[]): LookupRecord[] {
  return addresses.map((address) => ({ address, ttl }));
}

describe("Resolver", () => {
  test("IP literals come back as they are, synchronously, without any lookup", () => {
    const { dns, resolver } = setup();
    for (const literal of ["10.0.0.1", "::1", "2001:db8::1", "::ffff:10.0.0.1", "fe80::1%eth0"]) {
      const first = resolver.resolve(literal);
      expect(first).toEqual([literal]);
      // The same array every time: nothing allocated per connection.
      expect(resolver.resolve(literal)).toBe(first);
      resolver.invalidate(literal);
      expect(resolver.resolve(literal)).toBe(first);
    }
    expect(dns.calls).toEqual([]);
    expect(isAddressLiteral("host.lan")).toBe(false);
    expect(isAddressLiteral("1.2.3.4.5")).toBe(false);
    expect(isAddressLiteral("%eth0")).toBe(false);
  });

  test("a name is looked up once, then served synchronously for its TTL", async () => {
    const { dns, clock, resolver } = setup();
    dns.answers.set("app.lan", records(30, "10.0.0.1", "10.0.0.2"));
    const pending = resolver.resolve("app.lan");
    expect(pending).toBeInstanceOf(Promise);
    expect(await pending).toEqual(["10.0.0.1", "10.0.0.2"]);
    const cached = resolver.resolve("app.lan");
    expect(cached).toEqual(["10.0.0.1", "10.0.0.2"]);
    expect(resolver.resolve("app.lan")).toBe(cached);
    clock.time += 29_999;
    expect(resolver.resolve("app.lan")).toBe(cached);
    expect(dns.calls).toEqual(["app.lan"]);
    clock.time += 1;
    dns.answers.set("app.lan", records(30, "10.0.0.3"));
    expect(await resolver.resolve("app.lan")).toEqual(["10.0.0.3"]);
    expect(dns.calls).toEqual(["app.lan", "app.lan"]);
  });

  test("the TTL is capped by dnsRefresh; a TTL of 0 (unknown) means dnsRefresh; the lowest TTL of a set wins", async () => {
    const { dns, clock, resolver } = setup({ maxTtlSeconds: 60 });
    dns.answers.set("long.lan", records(86_400, "10.0.0.1"));
    dns.answers.set("unknown.lan", records(0, "10.0.0.2"));
    dns.answers.set("mixed.lan", [
      { address: "10.0.0.3", ttl: 50 },
      { address: "10.0.0.4", ttl: 20 },
    ]);
    await resolver.resolve("long.lan");
    await resolver.resolve("unknown.lan");
    await resolver.resolve("mixed.lan");
    clock.time += 20_000;
    expect(resolver.resolve("mixed.lan")).toBeInstanceOf(Promise);
    clock.time += 39_999;
    expect(resolver.resolve("long.lan")).toEqual(["10.0.0.1"]);
    expect(resolver.resolve("unknown.lan")).toEqual(["10.0.0.2"]);
    clock.time += 1;
    expect(resolver.resolve("long.lan")).toBeInstanceOf(Promise);
    expect(resolver.resolve("unknown.lan")).toBeInstanceOf(Promise);
  });

  test("dnsRefresh 0: every connection resolves (concurrent ones still share a lookup)", async () => {
    const { dns, resolver } = setup({ maxTtlSeconds: 0 });
    dns.answers.set("app.lan", records(300, "10.0.0.1"));
    await resolver.resolve("app.lan");
    await resolver.resolve("app.lan");
    expect(dns.calls.length).toBe(2);
  });

  test("concurrent resolutions of one name share one lookup", async () => {
    const { dns, resolver } = setup();
    dns.answers.set("app.lan", records(30, "10.0.0.1"));
    dns.hold();
    const all = Array.from({ length: 50 }, () => resolver.resolve("app.lan"));
    expect(new Set(all).size).toBe(1);
    dns.release();
    const results = await Promise.all(all);
    expect(results.every((result) => result[0] === "10.0.0.1")).toBe(true);
    expect(dns.calls).toEqual(["app.lan"]);
  });

  test("invalidate (after a failed connect) makes the next resolve look up again", async () => {
    const { dns, resolver } = setup();
    dns.answers.set("app.lan", records(300, "10.0.0.1"));
    await resolver.resolve("app.lan");
    dns.answers.set("app.lan", records(300, "10.0.0.9"));
    resolver.invalidate("app.lan");
    resolver.invalidate("never.seen");
    expect(await resolver.resolve("app.lan")).toEqual(["10.0.0.9"]);
    expect(resolver.resolve("app.lan")).toEqual(["10.0.0.9"]);
    expect(dns.calls).toEqual(["app.lan", "app.lan"]);
  });

  test("a name that stops resolving keeps its last good addresses; the failure is reported once", async () => {
    const { dns, clock, resolver, failures, recoveries } = setup({ retryAfterFailureMs: 5000 });
    dns.answers.set("app.lan", records(10, "10.0.0.1"));
    await resolver.resolve("app.lan");
    dns.answers.delete("app.lan");
    for (let round = 0; round < 3; round++) {
      resolver.invalidate("app.lan");
      expect(await resolver.resolve("app.lan")).toEqual(["10.0.0.1"]);
      // Served from memory for the retry delay instead of waiting on DNS again.
      expect(resolver.resolve("app.lan")).toEqual(["10.0.0.1"]);
      clock.time += 5000;
    }
    expect(dns.calls.length).toBe(4);
    expect(failures).toEqual(["app.lan: ENOTFOUND"]);
    dns.answers.set("app.lan", records(10, "10.0.0.2"));
    expect(await resolver.resolve("app.lan")).toEqual(["10.0.0.2"]);
    expect(recoveries).toEqual(["app.lan"]);
    // A new outage is a new report.
    dns.answers.set("app.lan", new Error("SERVFAIL"));
    resolver.invalidate("app.lan");
    await resolver.resolve("app.lan");
    expect(failures).toEqual(["app.lan: ENOTFOUND", "app.lan: SERVFAIL"]);
  });

  test("a name that never resolved rejects (reported once however often it is asked)", async () => {
    const { dns, resolver, failures } = setup();
    for (let i = 0; i < 3; i++) {
      const error = await Promise.resolve(resolver.resolve("gone.lan")).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ResolveError);
      expect((error as ResolveError).message).toBe("cannot resolve gone.lan: ENOTFOUND");
    }
    expect(dns.calls.length).toBe(3);
    expect(failures).toEqual(["gone.lan: ENOTFOUND"]);
  });

  test("duplicates are dropped, order kept; the family filter applies", async () => {
    const { dns, resolver } = setup();
    dns.answers.set("dual.lan", records(30, "10.0.0.1", "2001:db8::1", "10.0.0.1", "10.0.0.2", "2001:db8::1"));
    expect(await resolver.resolve("dual.lan")).toEqual(["10.0.0.1", "2001:db8::1", "10.0.0.2"]);

    const v4 = setup({ family: 4 });
    v4.dns.answers.set("dual.lan", records(30, "2001:db8::1", "10.0.0.1"));
    v4.dns.answers.set("v6only.lan", records(30, "2001:db8::1"));
    expect(await v4.resolver.resolve("dual.lan")).toEqual(["10.0.0.1"]);
    await expect(Promise.resolve(v4.resolver.resolve("v6only.lan"))).rejects.toThrow("no IPv4 address");
    const v6 = setup({ family: 6 });
    v6.dns.answers.set("dual.lan", records(30, "2001:db8::1", "10.0.0.1"));
    expect(await v6.resolver.resolve("dual.lan")).toEqual(["2001:db8::1"]);
  });

  test("Bun's own lookup: localhost resolves to a loopback address (the only real name queried)", async () => {
    const resolver = new Resolver({ maxTtlSeconds: 600 });
    const addresses = await resolver.resolve("localhost");
    expect(addresses.length).toBeGreaterThan(0);
    expect(addresses.every((address) => address === "::1" || address.startsWith("127."))).toBe(true);
    expect(resolver.resolve("localhost")).toBe(addresses);
  });
});
