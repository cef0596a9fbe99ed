/**
 * The bandwidth budgets without sockets: a burst of at most a tenth of a
 * second's worth (a 64 KiB read at 1 Mbit/s is cut to 12.5 kB), refill by
 * elapsed time, the tightest of several limits, turns in order among
 * waiters sharing a limit, datagrams whole or not at all, and the client
 * buckets a rule keeps only while the client has connections.
 */
import { describe, expect, test } from "bun:test";
import { Budget } from "../src/rate/budget.ts";
import { TokenBucket } from "../src/rate/bucket.ts";
import { type RateLimits, RuleBandwidth } from "../src/rate/rule-bandwidth.ts";

const MBIT = 1e6 / 8;
const UNLIMITED: RateLimits = { rate: undefined, rateRule: undefined, rateClient: undefined };

describe("token buckets", () => {
  test("a read far larger than the burst is cut to a tenth of a second's worth", () => {
    const budget = new Budget([new TokenBucket(1 * MBIT)], () => {});
    expect(budget.allowance(64 * 1024)).toBe(12_500);
    budget.spend(12_500);
    expect(budget.allowance(64 * 1024)).toBeLessThan(100);
  });

  test("tokens come back with elapsed time, never above the burst", async () => {
    const bucket = new TokenBucket(10 * MBIT);
    const budget = new Budget([bucket], () => {});
    budget.spend(budget.allowance(1e9));
    await Bun.sleep(50);
    const refilled = budget.allowance(1e9);
    // 50 ms of 1.25 MB/s is 62.5 kB (timers are late rather than early).
    expect(refilled).toBeGreaterThanOrEqual(60_000);
    expect(refilled).toBeLessThan(125_000);
    await Bun.sleep(200);
    expect(budget.allowance(1e9)).toBe(125_000);
  });

  test("a byte must be allowed by every limit: the tightest applies", () => {
    const budget = new Budget([new TokenBucket(100 * MBIT), new TokenBucket(1 * MBIT), new TokenBucket(10 * MBIT)], () => {});
    expect(budget.allowance(1e9)).toBe(12_500);
  });

  test("waiters sharing a limit are served in turn, a quantum each, and a newcomer waits behind them", async () => {
    const bucket = new TokenBucket(8 * MBIT);
    const moved = [0, 0];
    const budgets: Budget[] = [];
    // Each waiter always has more to send: it takes what it may and waits again.
    for (const index of [0, 1]) {
      const budget: Budget = new Budget([bucket], () => {
        const allowed = budget.allowance(1e9);
        budget.spend(allowed);
        moved[index]! += allowed;
        budget.waitForRefill(1e9);
      });
      budgets.push(budget);
    }
    budgets[0]!.spend(budgets[0]!.allowance(1e9));
    budgets[0]!.waitForRefill(1e9);
    budgets[1]!.allowance(1e9);
    budgets[1]!.waitForRefill(1e9);
    const newcomer = new Budget([bucket], () => {});
    await Bun.sleep(20);
    expect(newcomer.allowance(1e9)).toBe(0);
    await Bun.sleep(480);
    for (const budget of budgets) budget.close();
    const total = moved[0]! + moved[1]!;
    // Half a second of 1 MB/s, the burst spent before: about 500 kB, split evenly.
    expect(total).toBeGreaterThan(400_000);
    expect(total).toBeLessThan(600_000);
    expect(moved[0]! / total).toBeGreaterThan(0.4);
    expect(moved[0]! / total).toBeLessThan(0.6);
  });

  test("a datagram goes whole or not at all; one larger than the burst needs a full bucket and leaves a debt", () => {
    const budget = new Budget([new TokenBucket(1 * MBIT)], () => {});
    expect(budget.admitDatagram(10_000)).toBe(true);
    expect(budget.admitDatagram(10_000)).toBe(false);
    const other = new Budget([new TokenBucket(1 * MBIT)], () => {});
    expect(other.admitDatagram(60_000)).toBe(true);
    expect(other.admitDatagram(1)).toBe(false);
  });
});

describe("a rule's limits", () => {
  test("no budgets for a rule without limits; rate-client buckets are shared per client and forgotten with its last connection", () => {
    const none = new RuleBandwidth(UNLIMITED);
    expect(none.budgetsFor(UNLIMITED, "127.0.0.2", () => {}, () => {})).toBeUndefined();

    const rule = { ...UNLIMITED, rateClient: 1 * MBIT };
    const bandwidth = new RuleBandwidth(rule);
    const first = bandwidth.budgetsFor(rule, "127.0.0.2", () => {}, () => {})!;
    const second = bandwidth.budgetsFor(rule, "127.0.0.2", () => {}, () => {})!;
    const other = bandwidth.budgetsFor(rule, "127.0.0.3", () => {}, () => {})!;
    first.fromClient.spend(first.fromClient.allowance(1e9));
    // The same client's second connection shares the spent bucket; another client has its own; the other direction is apart.
    expect(second.fromClient.allowance(1e9)).toBeLessThan(100);
    expect(other.fromClient.allowance(1e9)).toBe(12_500);
    expect(second.toClient.allowance(1e9)).toBe(12_500);
    first.close();
    second.close();
    const returning = bandwidth.budgetsFor(rule, "127.0.0.2", () => {}, () => {})!;
    expect(returning.fromClient.allowance(1e9)).toBe(12_500);
  });

  test("a reload's new rate-rule and rate-client reach open connections; splicing is for connections under their own rate only", () => {
    const before = { rate: 10 * MBIT, rateRule: 10 * MBIT, rateClient: 10 * MBIT };
    const bandwidth = new RuleBandwidth(before);
    const open = bandwidth.budgetsFor(before, "127.0.0.2", () => {}, () => {})!;
    // Each limit starts with a burst of 125 kB.
    expect(open.fromClient.allowance(1e9)).toBe(125_000);
    bandwidth.update({ ...before, rateClient: 2 * MBIT });
    expect(open.fromClient.allowance(1e9)).toBe(25_000);
    expect(open.toClient.allowance(1e9)).toBe(25_000);
    bandwidth.update({ ...before, rateClient: 2 * MBIT, rateRule: 1 * MBIT });
    expect(open.fromClient.allowance(1e9)).toBe(12_500);
    // Under shared limits a connection stays on the plain relay; with only its own, the splice worker can hold it to that.
    expect(open.spliceRate).toBeUndefined();
    const ownOnly = new RuleBandwidth({ rate: 10 * MBIT, rateRule: undefined, rateClient: undefined }).budgetsFor({ rate: 10 * MBIT, rateRule: undefined, rateClient: undefined }, "127.0.0.2", () => {}, () => {})!;
    expect(ownOnly.spliceRate).toBe(10 * MBIT);
  });
});
