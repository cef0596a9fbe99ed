import { describe, expect, test } from "bun:test";
import { AffinityTable } from "../src/balance/affinity.ts";
import { fmix32, fnv1a32, hash32 } from "../src/balance/hash.ts";
import {
  type Algorithm,
  type BackendSpec,
  BackendPool,
  defaultMaxAttempts,
  markTried,
  POOL_DEFAULTS,
  type PoolOptions,
} from "../src/balance/pool.ts";
import { seededRandom } from "./helpers/seeded-random.ts";

/** A clock the test moves by hand. */
class FakeClock {
  time = 1_000;
  readonly now = (): number => this.time;
  advance(ms: number): void {
    this.time += ms;
  }
}

function backends(...weights: number[]): BackendSpec[] {
  return weights.map((weight, i) => ({ name: `b${i}`, weight, key: `10.0.0.${i + 1}:80` }));
}

function pool(specs: BackendSpec[], options: Partial<PoolOptions> = {}): BackendPool {
  return new BackendPool(specs, { ...POOL_DEFAULTS, ...options });
}

/** Picks for `count` short connections (each opened and closed at once), counted per backend. */
function shortConnections(p: BackendPool, count: number, client = (i: number) => `192.0.2.${i % 250}`): number[] {
  const counts = new Array<number>(p.backends.length).fill(0);
  for (let i = 0; i < count; i++) {
    const index = p.pick(client(i));
    if (index === undefined) throw new Error("no backend");
    p.opened(index);
    p.closed(index, 0, 0);
    counts[index] = (counts[index] ?? 0) + 1;
  }
  return counts;
}

/** Picks whose outcome never comes (given up before connecting): health is left as it is. */
function picksOnly(p: BackendPool, count: number): number[] {
  const counts = new Array<number>(p.backends.length).fill(0);
  for (let i = 0; i < count; i++) {
    const index = p.pick("192.0.2.1") ?? -1;
    p.closed(index, 0, 0);
    counts[index] = (counts[index] ?? 0) + 1;
  }
  return counts;
}

function clientAddress(i: number): string {
  return `10.${(i >> 16) & 0xff}.${(i >> 8) & 0xff}.${i & 0xff}`;
}

describe("hash", () => {
  test("FNV-1a matches the published 32-bit test vectors", () => {
    expect(fnv1a32("")).toBe(0x811c9dc5);
    expect(fnv1a32("a")).toBe(0xe40c292c);
    expect(fnv1a32("foobar")).toBe(0xbf9cf968);
  });

  test("fmix32 is MurmurHash3's finalizer; the result is stable across runs", () => {
    expect(fmix32(0)).toBe(0);
    expect(fmix32(1)).toBe(0x514e28b7);
    // Pinned: a change here would move clients between backends on upgrade.
    expect(hash32("192.0.2.1", fnv1a32("10.0.0.1:80"))).toBe(3148440143);
  });
});

describe("roundrobin (smooth weighted, as nginx)", () => {
  test("5:1:1 interleaves as nginx does: a a b a c a a, in every cycle", () => {
    const p = pool(backends(5, 1, 1));
    const names = "abc";
    let sequence = "";
    for (let i = 0; i < 70; i++) {
      const index = p.pick("client") ?? -1;
      p.closed(index, 0, 0);
      sequence += names[index];
    }
    expect(sequence.slice(0, 7)).toBe("aabacaa");
    expect(sequence).toBe("aabacaa".repeat(10));
    // Never the five-in-a-row of plain weighted round robin (at most 4, across a cycle boundary).
    expect(Math.max(...(sequence.match(/a+/g) ?? []).map((run) => run.length))).toBe(4);
  });

  test("3:2:1 gives exactly its shares, and equal weights strict rotation", () => {
    expect(shortConnections(pool(backends(3, 2, 1)), 600)).toEqual([300, 200, 100]);
    const equal = pool(backends(1, 1, 1));
    const order = Array.from({ length: 6 }, () => {
      const index = equal.pick("c") ?? -1;
      equal.closed(index, 0, 0);
      return index;
    });
    expect(order).toEqual([0, 1, 2, 0, 1, 2]);
  });
});

describe("leastconn", () => {
  test("follows active connections", () => {
    const p = pool(backends(1, 1, 1), { algorithm: "leastconn" });
    // Five long connections on backend 0 (picked, never closed)...
    const first = p.pick("c");
    expect(first).toBe(0);
    p.opened(0);
    for (let i = 0; i < 4; i++) {
      const index = p.pick("c", markTried(markTried(0, 1), 2)); // only 0 is allowed
      expect(index).toBe(0);
    }
    expect(p.backends[0]?.active).toBe(5);
    // ...so new connections go to 1 and 2, and share them evenly.
    const counts = shortConnections(p, 100);
    expect(counts).toEqual([0, 50, 50]);
    // Pending connects count too: a burst before any open lands evenly.
    const burst = pool(backends(1, 1, 1), { algorithm: "leastconn" });
    const picked = Array.from({ length: 6 }, () => burst.pick("c"));
    expect(picked.sort()).toEqual([0, 0, 1, 1, 2, 2]);
  });

  test("weights: long connections settle at 3:2:1; idle ties go to the heavier backend", () => {
    const p = pool(backends(3, 2, 1), { algorithm: "leastconn" });
    const counts = [0, 0, 0];
    for (let i = 0; i < 600; i++) {
      const index = p.pick("c") ?? -1;
      p.opened(index);
      counts[index] = (counts[index] ?? 0) + 1;
    }
    expect(counts).toEqual([300, 200, 100]);
    expect(p.backends.map((b) => b.active)).toEqual([300, 200, 100]);
    const idle = pool(backends(1, 3, 1), { algorithm: "leastconn" });
    expect(shortConnections(idle, 10)).toEqual([0, 10, 0]);
  });

  test("equal idle backends take turns, also with one of them down", () => {
    const clock = new FakeClock();
    const p = pool(backends(1, 1, 1, 1), { algorithm: "leastconn", healthThreshold: 1, now: clock.now });
    expect(shortConnections(p, 400)).toEqual([100, 100, 100, 100]);
    expect(p.pick("c", markTried(markTried(markTried(0, 0), 2), 3))).toBe(1);
    p.failed(1);
    expect(shortConnections(p, 300)).toEqual([100, 0, 100, 100]);
  });
});

describe("random (weighted)", () => {
  test("3:2:1 within 1.5% of each share over 60,000 picks (seeded)", () => {
    const p = pool(backends(3, 2, 1), { algorithm: "random", random: seededRandom(42) });
    const counts = shortConnections(p, 60_000);
    const expected = [0.5, 1 / 3, 1 / 6];
    counts.forEach((count, i) => expect(Math.abs(count / 60_000 - (expected[i] ?? 0))).toBeLessThan(0.015));
  });

  test("a down backend gets nothing; a draw at the very top still picks", () => {
    const clock = new FakeClock();
    const p = pool(backends(1, 1, 1), { algorithm: "random", healthThreshold: 1, now: clock.now, random: seededRandom(7) });
    p.pick("c");
    p.failed(0);
    p.closed(1, 0, 0);
    p.closed(2, 0, 0);
    expect(shortConnections(p, 3000)[0]).toBe(0);
    const top = pool(backends(1, 1), { algorithm: "random", random: () => 0.9999999999999999 });
    expect(top.pick("c")).toBe(1);
  });
});

describe("iphash (weighted rendezvous)", () => {
  const clients = Array.from({ length: 10_000 }, (_, i) => clientAddress(i));

  function assignment(p: BackendPool): string[] {
    return clients.map((client) => {
      const index = p.pick(client) ?? -1;
      p.closed(index, 0, 0);
      return p.backends[index]?.key ?? "none";
    });
  }

  test("the same client always gets the same backend, also from another pool", () => {
    const a = pool(backends(1, 1, 1), { algorithm: "iphash" });
    const b = pool(backends(1, 1, 1), { algorithm: "iphash" });
    for (const client of clients.slice(0, 200)) {
      const first = a.pick(client);
      expect(a.pick(client)).toBe(first);
      expect(b.pick(client)).toBe(first);
    }
  });

  test("3:2:1 within 2% of each share over 10,000 clients", () => {
    const result = assignment(pool(backends(3, 2, 1), { algorithm: "iphash" }));
    const keys = backends(3, 2, 1).map((b) => b.key);
    const expected = [0.5, 1 / 3, 1 / 6];
    keys.forEach((key, i) => {
      const share = result.filter((k) => k === key).length / clients.length;
      expect(Math.abs(share - (expected[i] ?? 0))).toBeLessThan(0.02);
    });
  });

  test("adding a 4th backend moves about 1/4 of the clients, all of them to the new one", () => {
    const before = assignment(pool(backends(1, 1, 1), { algorithm: "iphash" }));
    const four = backends(1, 1, 1, 1);
    const after = assignment(pool(four, { algorithm: "iphash" }));
    let moved = 0;
    for (let i = 0; i < clients.length; i++) {
      if (before[i] === after[i]) continue;
      moved++;
      expect(after[i]).toBe(four[3]?.key ?? "");
    }
    expect(moved).toBeGreaterThan(2200);
    expect(moved).toBeLessThan(2800);
  });

  test("removing a backend moves only its clients, whatever the list order", () => {
    const four = backends(1, 1, 1, 1);
    const before = assignment(pool(four, { algorithm: "iphash" }));
    const removed = four[1]?.key;
    // Without b1, and in another order: keys, not positions, decide.
    const after = assignment(pool([four[3]!, four[0]!, four[2]!], { algorithm: "iphash" }));
    let moved = 0;
    for (let i = 0; i < clients.length; i++) {
      if (before[i] !== removed) expect(after[i]).toBe(before[i] ?? "");
      else moved++;
    }
    expect(moved).toBeGreaterThan(2200);
    expect(moved).toBeLessThan(2800);
  });

  test("while a backend is down only its clients move, and they come back after", () => {
    const clock = new FakeClock();
    const p = pool(backends(1, 1, 1), { algorithm: "iphash", healthThreshold: 1, recoveryTimeoutMs: 1000, now: clock.now });
    const before = assignment(p);
    expect(p.pick("x", markTried(markTried(0, 1), 2))).toBe(0);
    p.failed(0); // backend 0 out
    const during = assignment(p);
    for (let i = 0; i < clients.length; i++) {
      if (before[i] === "10.0.0.1:80") expect(during[i]).not.toBe("10.0.0.1:80");
      else expect(during[i]).toBe(before[i] ?? "");
    }
    clock.advance(1000);
    expect(assignment(p)).toEqual(before);
  });
});

describe("passive health", () => {
  function setup(events: string[] = []) {
    const clock = new FakeClock();
    const p = pool(backends(1, 1, 1), {
      healthThreshold: 3,
      recoveryTimeoutMs: 30_000,
      now: clock.now,
      onHealthChange: (index, backend, healthy) => events.push(`${index}:${backend.name}:${healthy ? "up" : "down"}`),
    });
    return { clock, p };
  }

  /** A connect to `index` that fails (picked with everything else excluded). */
  function failOn(p: BackendPool, index: number): void {
    let tried = 0;
    for (let i = 0; i < p.backends.length; i++) if (i !== index) tried = markTried(tried, i);
    expect(p.pick("c", tried)).toBe(index);
    p.failed(index);
  }

  test("out after the threshold of consecutive failures, for the recovery time", () => {
    const events: string[] = [];
    const { clock, p } = setup(events);
    failOn(p, 0);
    failOn(p, 0);
    expect(p.backends[0]?.healthy).toBe(true);
    expect(picksOnly(p, 30)).toEqual([10, 10, 10]);
    failOn(p, 0);
    expect(p.backends[0]?.healthy).toBe(false);
    expect(events).toEqual(["0:b0:down"]);
    expect(shortConnections(p, 30)).toEqual([0, 15, 15]);
    clock.advance(29_999);
    expect(shortConnections(p, 30)[0]).toBe(0);
    clock.advance(1);
    expect(p.backends[0]?.healthy).toBe(true);
    expect(shortConnections(p, 30)[0]).toBeGreaterThan(0);
    expect(events).toEqual(["0:b0:down", "0:b0:up"]);
  });

  test("after recovery one trial: a single failure puts it out again; a success resets it", () => {
    const events: string[] = [];
    const { clock, p } = setup(events);
    for (let i = 0; i < 3; i++) failOn(p, 0);
    clock.advance(30_000);
    failOn(p, 0);
    expect(p.backends[0]?.healthy).toBe(false);
    expect(p.backends[0]?.consecutiveFailures).toBe(4);
    clock.advance(30_000);
    const index = p.pick("c", markTried(markTried(0, 1), 2));
    expect(index).toBe(0);
    p.opened(0);
    expect(events).toEqual(["0:b0:down", "0:b0:up"]);
    expect(p.backends[0]?.consecutiveFailures).toBe(0);
    // A success in between resets the count: two failures, a success, two failures: still in.
    failOn(p, 1);
    failOn(p, 1);
    p.pick("c", markTried(markTried(0, 0), 2));
    p.opened(1);
    failOn(p, 1);
    failOn(p, 1);
    expect(p.backends[1]?.healthy).toBe(true);
  });

  test("fail-open: with every backend out, picks go to all of them anyway", () => {
    const { p } = setup();
    for (let b = 0; b < 3; b++) for (let i = 0; i < 3; i++) failOn(p, b);
    expect(p.backends.every((b) => !b.healthy)).toBe(true);
    expect(picksOnly(p, 30)).toEqual([10, 10, 10]);
    // The first connection that gets through brings its backend back.
    const index = p.pick("c") ?? -1;
    p.opened(index);
    expect(p.backends.filter((b) => b.healthy).length).toBe(1);
  });

  test("counters for the metrics", () => {
    const { p } = setup();
    const index = p.pick("c") ?? -1;
    expect(p.backends[index]?.active).toBe(1);
    p.opened(index);
    p.closed(index, 100, 2000);
    failOn(p, index);
    expect(p.backends[index]).toMatchObject({
      active: 0,
      totalConnections: 1,
      totalFailures: 1,
      consecutiveFailures: 1,
      bytesIn: 100,
      bytesOut: 2000,
      healthy: true,
      name: `b${index}`,
      weight: 1,
    });
  });
});

describe("failover order", () => {
  test("each backend once, then undefined; the default bound is min(backends, 3)", () => {
    for (const algorithm of ["roundrobin", "leastconn", "random", "iphash"] as Algorithm[]) {
      const p = pool(backends(1, 1, 1, 1), { algorithm, random: seededRandom(1) });
      let tried = 0;
      const order: number[] = [];
      for (let attempt = 0; attempt < 4; attempt++) {
        const index = p.pick("192.0.2.1", tried);
        if (index === undefined) throw new Error("ran out early");
        expect(tried & (1 << index)).toBe(0);
        order.push(index);
        tried = markTried(tried, index);
        p.failed(index);
      }
      expect(new Set(order).size).toBe(4);
      expect(p.pick("192.0.2.1", tried)).toBeUndefined();
      expect(p.backends.every((b) => b.active === 0)).toBe(true);
    }
    expect(defaultMaxAttempts(1)).toBe(1);
    expect(defaultMaxAttempts(2)).toBe(2);
    expect(defaultMaxAttempts(10)).toBe(3);
    expect(pool(backends(1, 1, 1, 1, 1)).maxAttempts).toBe(3);
    expect(pool(backends(1, 1, 1), { maxAttempts: 5 }).maxAttempts).toBe(5);
  });

  test("healthy backends first, then the ones that are out (fail-open within the untried)", () => {
    const clock = new FakeClock();
    const p = pool(backends(1, 1, 1), { healthThreshold: 1, now: clock.now });
    p.pick("c", markTried(markTried(0, 0), 1));
    p.failed(2);
    let tried = 0;
    const order: number[] = [];
    for (let index = p.pick("c", tried); index !== undefined; index = p.pick("c", tried)) {
      order.push(index);
      tried = markTried(tried, index);
      p.failed(index);
    }
    expect(order.slice(0, 2).sort()).toEqual([0, 1]);
    expect(order[2]).toBe(2);
  });

  test("a full 32-backend pool: bit 31 works", () => {
    const p = pool(backends(...new Array<number>(32).fill(1)));
    let tried = 0;
    for (let i = 0; i < 32; i++) {
      const index = p.pick("c", tried);
      expect(index).toBe(i);
      tried = markTried(tried, index ?? 0);
    }
    expect(p.pick("c", tried)).toBeUndefined();
  });
});

describe("client affinity", () => {
  test("same client, same backend within the TTL; each use restarts it", () => {
    const clock = new FakeClock();
    const p = pool(backends(1, 1, 1), { affinityTtlMs: 10_000, now: clock.now });
    expect(p.pick("192.0.2.1")).toBe(0); // round robin: 0, then 1, 2
    for (let i = 0; i < 5; i++) {
      expect(p.pick("192.0.2.9")).toBe(1); // remembered as well after its first pick
      clock.advance(9_000);
      expect(p.pick("192.0.2.1")).toBe(0);
    }
    // 10 s without a connection: forgotten, and round robin (not moved by remembered picks) says 2.
    clock.advance(10_000);
    expect(p.pick("192.0.2.1")).toBe(2);
  });

  test("an unhealthy remembered backend is replaced, and the new one remembered", () => {
    const clock = new FakeClock();
    const p = pool(backends(1, 1, 1), { affinityTtlMs: 10_000, healthThreshold: 1, now: clock.now });
    const first = p.pick("192.0.2.1") ?? -1;
    p.failed(first);
    const second = p.pick("192.0.2.1");
    expect(second).not.toBe(first);
    expect(p.pick("192.0.2.9")).toBeDefined();
    expect(p.pick("192.0.2.1")).toBe(second);
  });

  test("a retry (tried != 0) ignores the remembered backend", () => {
    const p = pool(backends(1, 1), { affinityTtlMs: 10_000 });
    const first = p.pick("c") ?? -1;
    expect(p.pick("c", markTried(0, first))).toBe(1 - first);
  });

  test("the table holds at most affinityMaxEntries clients", () => {
    const p = pool(backends(1, 1, 1), { affinityTtlMs: 60_000, affinityMaxEntries: 100 });
    for (let i = 0; i < 1000; i++) p.pick(clientAddress(i));
    expect(p.affinitySize).toBe(100);
    expect(pool(backends(1, 1)).affinitySize).toBe(0);
  });

  test("least-recently-used eviction at the bound, expired entries dropped first", () => {
    const table = new AffinityTable(1000, 3);
    table.remember("a", 0, 0);
    table.remember("b", 1, 10);
    table.remember("c", 2, 20);
    expect(table.lookup("a", 30)).toBe(0);
    table.remember("a", 0, 30); // used again: now the most recent
    table.remember("d", 1, 40); // full: b, the least recently used, goes
    expect(table.size).toBe(3);
    expect(table.lookup("b", 40)).toBeUndefined();
    expect(table.lookup("a", 40)).toBe(0);
    expect(table.lookup("c", 40)).toBe(2);
    expect(table.lookup("d", 40)).toBe(1);
    // Expiry: c was last remembered at 20, so it is gone at 1020.
    expect(table.lookup("c", 1020)).toBeUndefined();
    expect(table.size).toBe(2);
    // New clients sweep expired ones from the front before evicting anyone.
    table.remember("e", 0, 2000);
    expect(table.size).toBe(1);
  });
});

describe("validation", () => {
  test("bad pools are refused", () => {
    expect(() => pool([])).toThrow(RangeError);
    expect(() => pool(backends(...new Array<number>(33).fill(1)))).toThrow("at most 32");
    expect(() => pool(backends(1, 0))).toThrow("weight");
    expect(() => pool(backends(1, Number.NaN))).toThrow("weight");
    expect(() => pool(backends(1), { healthThreshold: 0 })).toThrow("threshold");
    expect(() => pool(backends(1), { algorithm: "fastest" as Algorithm })).toThrow("algorithm");
    expect(() => pool(backends(1), { maxAttempts: 0 })).toThrow("attempts");
    expect(() => pool(backends(1)).opened(1)).toThrow("no backend 1");
  });
});

describe("failover tiers (SRV priorities)", () => {
  function tiered(...tiers: number[]): BackendSpec[] {
    return tiers.map((tier, i) => ({ name: `b${i}`, weight: 1, key: `10.0.0.${i + 1}:80`, tier }));
  }

  test("only the lowest tier serves while one of its backends is up", () => {
    const p = pool(tiered(0, 0, 10));
    expect(shortConnections(p, 100)).toEqual([50, 50, 0]);
  });

  test("the next tier serves while every backend of the lower one is down, and stops when one comes back", () => {
    const clock = new FakeClock();
    const p = pool(tiered(0, 0, 10, 20), { healthThreshold: 1, recoveryTimeoutMs: 1000, now: clock.now });
    for (const index of [0, 1]) {
      p.pick("192.0.2.1", ~(1 << index));
      p.failed(index);
    }
    expect(shortConnections(p, 10)).toEqual([0, 0, 10, 0]);
    clock.advance(1000);
    expect(shortConnections(p, 10)).toEqual([5, 5, 0, 0]);
  });

  test("drained and maintained backends count as down; a client's retry reaches the backup after trying the primaries", () => {
    const p = pool(tiered(0, 0, 10));
    p.setState(0, "drain");
    expect(shortConnections(p, 4)).toEqual([0, 4, 0]);
    p.setState(1, "maint");
    expect(shortConnections(p, 4)).toEqual([0, 0, 4]);
    p.setState(0, "ready");
    p.setState(1, "ready");
    const first = p.pick("192.0.2.1");
    expect(first === 0 || first === 1).toBe(true);
    p.failed(first!);
    const second = p.pick("192.0.2.1", markTried(0, first!));
    expect(second).toBe(first === 0 ? 1 : 0);
    p.failed(second!);
    expect(p.pick("192.0.2.1", markTried(markTried(0, first!), second!))).toBe(2);
  });

  test("with every backend of every tier down, the lowest tier is tried (fail-open)", () => {
    const p = pool(tiered(5, 10), { healthThreshold: 1 });
    p.pick("192.0.2.1");
    p.failed(0);
    p.pick("192.0.2.1", markTried(0, 0));
    p.failed(1);
    expect(p.pick("192.0.2.1")).toBe(0);
  });

  test("setTier moves a backend between tiers", () => {
    const p = pool(tiered(0, 0));
    p.setTier(1, 1);
    expect(shortConnections(p, 6)).toEqual([6, 0]);
  });
});
