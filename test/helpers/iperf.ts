/**
 * iperf3 for the bandwidth tests: a one-shot server (`-s -1`) on a free
 * loopback port, started by the test and stopped by its PID after it, and a
 * client run bounded in time whose JSON report gives the receiver's figures
 * (what reached the far end, not what the sender's kernel took).
 */
import type { Subprocess } from "bun";
import { onCleanup } from "./harness.ts";
import { freePort, withTimeout } from "./peers.ts";
import { runTool, toolPath } from "./servers.ts";

export interface IperfServer {
  port: number;
  proc: Subprocess<"ignore", "pipe", "pipe">;
}

/** An iperf3 server for one test run on 127.0.0.1, listening when this resolves; stopped after the test. */
export async function iperfServer(): Promise<IperfServer> {
  const port = freePort();
  const proc = Bun.spawn([toolPath("iperf3") ?? "iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", String(port), "--forceflush"], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  onCleanup(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    await proc.exited;
  });
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes("Server listening")) {
    const { value, done } = await withTimeout(reader.read(), 5000, "iperf3 -s to listen");
    if (done) throw new Error(`iperf3 -s ended before listening:\n${text}`);
    text += decoder.decode(value, { stream: true });
  }
  // Nobody reads its report: keep the pipe from filling.
  void (async () => {
    while (!(await reader.read()).done);
  })().catch(() => {});
  return { port, proc };
}

export interface IperfResult {
  /** Bits per second that reached the receiver, all streams together. */
  bitsPerSecond: number;
  /** The same, per stream. */
  streams: number[];
}

/**
 * Run `iperf3 -c 127.0.0.1 -p PORT -t SECONDS -J` plus `args` (`-R`, `-P 2`,
 * `-B 127.0.0.2`), killed if it overruns by 10 s.
 */
export async function iperfClient(port: number, seconds: number, args: string[] = []): Promise<IperfResult> {
  const command = [toolPath("iperf3") ?? "iperf3", "-c", "127.0.0.1", "-p", String(port), "-t", String(seconds), "-J", ...args];
  const run = await runTool(command, { timeoutMs: (seconds + 10) * 1000 });
  let report: { error?: string; end?: { sum_received?: { bits_per_second: number }; streams?: Array<{ receiver: { bits_per_second: number } }> } };
  try {
    report = JSON.parse(run.stdout);
  } catch {
    throw new Error(`${command.join(" ")}: no JSON report (exit ${run.code}${run.timedOut ? ", timed out" : ""}): ${run.stderr}${run.stdout}`);
  }
  const end = report.end;
  if (report.error !== undefined || end?.sum_received === undefined) throw new Error(`${command.join(" ")}: ${report.error ?? "no receiver figures"}`);
  return { bitsPerSecond: end.sum_received.bits_per_second, streams: (end.streams ?? []).map((stream) => stream.receiver.bits_per_second) };
}
