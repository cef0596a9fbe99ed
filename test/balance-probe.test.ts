import { afterEach, describe, expect, test } from "bun:test";
import type { TCPSocketListener } from "bun";
import { BackendPool, POOL_DEFAULTS } from "../src/balance/pool.ts";
import { HealthProber, type ProbeAddress, type ProbeOptions } from "../src/balance/probe.ts";
import { type Blackhole, startBlackhole } from "./helpers/blackhole.ts";
import { freePort } from "./helpers/peers.ts";

const INTERVAL_MS = 100;

function listen(port = 0): TCPSocketListener<undefined> {
  return Bun.listen<undefined>({ hostname: "127.0.0.1", port, socket: { data() {} } });
}

/** Polls `condition` every 5 ms; resolves with the time it took, or rejects after `limitMs`. */
async function within(limitMs: number, what: string, condition: () => boolean): Promise<number> {
  const start = performance.now();
  while (!condition()) {
    if (performance.now() - start > limitMs) throw new Error(`${what}: not within ${limitMs} ms`);
    await Bun.sleep(5);
  }
  return performance.now() - start;
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

interface Setup {
  pool: BackendPool;
  prober: HealthProber;
  reports: Array<[number, boolean]>;
}

function setup(targets: ProbeOptions["targets"], count: number, healthThreshold: number, timeoutMs = INTERVAL_MS): Setup {
  const pool = new BackendPool(
    Array.from({ length: count }, (_, i) => ({ name: `b${i}`, weight: 1, key: `b${i}` })),
    { ...POOL_DEFAULTS, healthThreshold },
  );
  const reports: Array<[number, boolean]> = [];
  const prober = new HealthProber({
    count,
    intervalMs: INTERVAL_MS,
    timeoutMs,
    targets,
    report(index, up) {
      reports.push([index, up]);
      pool.setProbeResult(index, up);
    },
  });
  cleanups.push(() => prober.stop());
  prober.start();
  return { pool, prober, reports };
}

describe("active health probes against loopback listeners", () => {
  test("a backend whose listener stops is out within about 2 intervals, and back after it listens again", async () => {
    const listeners = [listen(), listen()];
    cleanups.push(() => {
      for (const listener of listeners) listener.stop(true);
    });
    const ports = listeners.map((listener) => listener.port);
    const { pool, reports } = setup((index) => [{ host: "127.0.0.1", port: ports[index] ?? 0 }], 2, 1);

    // Both answer the first probes.
    await within(INTERVAL_MS, "first probes", () => reports.filter(([, up]) => up).length >= 2);
    expect(pool.backends.map((b) => b.healthy)).toEqual([true, true]);

    listeners[0]?.stop(true);
    const downAfter = await within(4 * INTERVAL_MS, "marked down", () => pool.backends[0]?.healthy === false);
    expect(downAfter).toBeLessThan(2 * INTERVAL_MS + 50);
    expect(pool.backends[1]?.healthy).toBe(true);
    // Down by probe: no timed trial, traffic goes elsewhere until a probe succeeds.
    for (let i = 0; i < 10; i++) {
      const index = pool.pick("c");
      expect(index).toBe(1);
      pool.closed(index ?? 0, 0, 0);
    }

    listeners[0] = listen(ports[0]);
    const upAfter = await within(4 * INTERVAL_MS, "marked up", () => pool.backends[0]?.healthy === true);
    expect(upAfter).toBeLessThan(2 * INTERVAL_MS + 50);
  });

  test("with a threshold of 3, one backend is out only after 3 failed probes", async () => {
    const port = freePort();
    const { pool, reports } = setup(() => [{ host: "127.0.0.1", port }], 1, 3);
    await within(INTERVAL_MS / 2, "first probe", () => reports.length === 1);
    expect(pool.backends[0]?.healthy).toBe(true);
    await within(2 * INTERVAL_MS, "second probe", () => reports.length === 2);
    expect(pool.backends[0]?.healthy).toBe(true);
    expect(pool.backends[0]?.probeFailures).toBe(2);
    await within(2 * INTERVAL_MS, "third probe", () => reports.length === 3);
    expect(pool.backends[0]?.healthy).toBe(false);
    expect(reports.every(([, up]) => !up)).toBe(true);
  });

  test("addresses are tried in order: up when a later one answers", async () => {
    const listener = listen();
    cleanups.push(() => listener.stop(true));
    const targets: ProbeAddress[] = [
      { host: "127.0.0.1", port: freePort() },
      { host: "127.0.0.1", port: listener.port },
    ];
    const { reports } = setup(() => targets, 1, 1);
    await within(INTERVAL_MS, "first probe", () => reports.length === 1);
    expect(reports).toEqual([[0, true]]);
  });

  test("a failing resolution is a failed probe", async () => {
    const { pool, reports } = setup(() => Promise.reject(new Error("ENOTFOUND")), 1, 1);
    await within(INTERVAL_MS, "first probe", () => reports.length === 1);
    expect(reports).toEqual([[0, false]]);
    expect(pool.backends[0]?.healthy).toBe(false);
  });

  test("a backend that drops SYNs: timed out, counted each interval, one connect at a time", async () => {
    const hole: Blackhole = await startBlackhole();
    cleanups.push(() => hole.close());
    const { pool, prober, reports } = setup(() => [{ host: "127.0.0.1", port: hole.port }], 1, 3, 50);
    const took = await within(6 * INTERVAL_MS, "marked down", () => pool.backends[0]?.healthy === false);
    // Timeout at 50 ms, then one more failure per interval: the third at about 200 ms.
    expect(took).toBeGreaterThan(150);
    expect(took).toBeLessThan(3 * INTERVAL_MS + 50);
    expect(prober.inFlight).toBe(1);
    expect(reports.every(([, up]) => !up)).toBe(true);
  });

  test("stop() ends everything: no timer, no report afterwards", async () => {
    const hole = await startBlackhole();
    cleanups.push(() => hole.close());
    const listener = listen();
    cleanups.push(() => listener.stop(true));
    const { prober, reports } = setup(
      (index) => [{ host: "127.0.0.1", port: index === 0 ? hole.port : listener.port }],
      2,
      1,
    );
    await within(INTERVAL_MS, "first probe of the listener", () => reports.some(([index]) => index === 1));
    prober.stop();
    expect(prober.inFlight).toBe(0);
    const count = reports.length;
    await Bun.sleep(3 * INTERVAL_MS);
    expect(reports.length).toBe(count);
  });
});
