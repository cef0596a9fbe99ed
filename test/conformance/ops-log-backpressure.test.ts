/**
 * Logging never stalls forwarding nor ends the process: `oi -v` with its
 * stdout on a pipe that nobody reads and its log file on a full disk
 * (/dev/full) forwards thousands of connections, drops the log lines it
 * cannot write, counts them (metric) and says so (stderr notice); with stdout
 * and stderr on a full disk it keeps forwarding too.
 */
import { describe, expect, test } from "bun:test";
import { closeSync, constants, openSync } from "node:fs";
import { join } from "node:path";
import { cleanUpAfterEachTest, onCleanup } from "../helpers/harness.ts";
import { tempDir, writeTempFile } from "../helpers/oi-process.ts";
import { freePort } from "../helpers/peers.ts";
import { echoBackend, fetchMetrics, metricSum, roundTrip } from "./ops-helpers.ts";

cleanUpAfterEachTest();

const CLI = join(import.meta.dir, "..", "..", "src", "cli.ts");
const CONNECTIONS = 4000;
const CONCURRENCY = 40;

/** A pipe (a FIFO) whose read end this process holds open and never reads: returns its write end. */
function unreadPipe(): number {
  const path = join(tempDir(), "stuck");
  expect(Bun.spawnSync(["mkfifo", path]).exitCode).toBe(0);
  const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  onCleanup(() => closeSync(reader));
  return openSync(path, constants.O_WRONLY);
}

/** Start `oi` with the given stdout and stderr; ready once its metrics answer. */
async function startWithOutputs(config: string, args: string[], stdout: number | "pipe", stderr: number | "pipe", metricsPort: number) {
  const proc = Bun.spawn([process.execPath, CLI, "-c", writeTempFile("oi.conf", config), "--grace", "0.2", ...args], { stdin: "ignore", stdout, stderr });
  onCleanup(async () => {
    proc.kill("SIGKILL");
    await proc.exited;
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`oi exited with ${proc.exitCode}`);
    try {
      await fetchMetrics(metricsPort);
      return proc;
    } catch {
      if (Date.now() > deadline) throw new Error("oi's metrics never answered");
      await Bun.sleep(50);
    }
  }
}

/** `count` echo round trips, `concurrency` at a time; resolves with how many came back whole. */
async function forwardMany(port: number, count: number, concurrency: number): Promise<number> {
  let next = 0;
  let whole = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      if ((await roundTrip({ port }, "ping")) === 4) whole++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return whole;
}

describe("log output that cannot keep up", () => {
  test("oi -v with stdout on a pipe nobody reads and the log file on a full disk: all connections forwarded, lines dropped and counted", async () => {
    const echo = echoBackend();
    const [port, metricsPort] = [freePort(), freePort()];
    const stuck = unreadPipe();
    const proc = await startWithOutputs(
      `logfile /dev/full\nmetrics 127.0.0.1:${metricsPort}\n127.0.0.1 ${port} 127.0.0.1 ${echo.port}\n`,
      ["-v"],
      stuck,
      "pipe",
      metricsPort,
    );
    closeSync(stuck);
    const stderr = new Response(proc.stderr as ReadableStream<Uint8Array>).text();

    const began = performance.now();
    expect(await forwardMany(port, CONNECTIONS, CONCURRENCY)).toBe(CONNECTIONS);
    const seconds = (performance.now() - began) / 1000;
    expect(seconds).toBeLessThan(30);

    const metrics = await fetchMetrics(metricsPort);
    expect(metricSum(metrics, "oi_connections_total")).toBe(CONNECTIONS);
    // About 64 KiB in the pipe and 256 KiB pending in oi: the rest of the 4000 lines (about 100 bytes each) is dropped.
    expect(metricSum(metrics, "oi_log_lines_dropped_total", { sink: "stdout" })).toBeGreaterThan(500);
    // Every line of the log file fails with ENOSPC within a second.
    await Bun.sleep(1200);
    expect(metricSum(await fetchMetrics(metricsPort), "oi_log_lines_dropped_total", { sink: "logfile" })).toBe(CONNECTIONS);

    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    expect(await stderr).toMatch(/\[WARN\] log output cannot keep up: \d+ line\(s\) dropped \(stdout \d+/);
  });

  test("stdout and stderr on a full disk: oi keeps forwarding", async () => {
    const echo = echoBackend();
    const [port, metricsPort] = [freePort(), freePort()];
    const full = openSync("/dev/full", "w");
    const proc = await startWithOutputs(`metrics 127.0.0.1:${metricsPort}\n127.0.0.1 ${port} 127.0.0.1 ${echo.port}\n`, ["-v"], full, full, metricsPort);
    closeSync(full);
    expect(await forwardMany(port, 200, 20)).toBe(200);
    // The notice about the lost lines is lost as well, a while later: oi is still there.
    await Bun.sleep(300);
    expect(await forwardMany(port, 10, 5)).toBe(10);
    const metrics = await fetchMetrics(metricsPort);
    expect(metricSum(metrics, "oi_log_lines_dropped_total", { sink: "stdout" })).toBeGreaterThanOrEqual(210);
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
  });
});
