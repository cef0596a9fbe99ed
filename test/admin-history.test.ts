import { describe, expect, test } from "bun:test";
import { TrafficHistory } from "../src/admin/history.ts";
import type { RuleSnapshot } from "../src/metrics.ts";

describe("TrafficHistory: the dashboard's charts", () => {
  test("samples every rule's bytes and open connections on its interval, keeps the last N, and answers only what is newer than `since`", async () => {
    let bytes = 0;
    const history = new TrafficHistory(
      async () => [{ name: "web", bytesIn: (bytes += 100), bytesOut: bytes * 2, active: 3 } as RuleSnapshot],
      4,
      20,
    );
    history.start();
    await Bun.sleep(200);
    history.stop();
    const samples = history.samples();
    expect(samples).toHaveLength(4);
    expect(samples.map((sample) => sample.rules.web![0])).toEqual([bytes - 300, bytes - 200, bytes - 100, bytes]);
    expect(samples[3]!.rules.web).toEqual([bytes, bytes * 2, 3]);
    expect(history.samples(samples[1]!.time).map((sample) => sample.time)).toEqual([samples[2]!.time, samples[3]!.time]);
    // Stopped: no more samples.
    await Bun.sleep(60);
    expect(history.samples()).toEqual(samples);
  });
});
