/**
 * @module A/B of oi's TCP paths on loopback: the plain relay, `splice on`
 * and `splice auto`, run side by side (one oi each, same iperf3 server) and
 * measured interleaved, one after the other, round after round, so drift and
 * noise of a shared machine fall on both alike. Per run: iperf3's received
 * rate and the oi process's CPU seconds (user + system, all threads, from
 * /proc/PID/stat) per GiB moved. Prints medians and min..max.
 *
 *   bun bench/splice-ab.ts [--rounds 5] [--seconds 5] [--parallel 1,8]
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { freePort } from "./net.ts";
import { cpuTimes } from "./proc-stats.ts";
import { waitForOutput } from "./procs.ts";
import { spread } from "./stats.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    seconds: { type: "string", default: "5" },
    parallel: { type: "string", default: "1,8" },
  },
});
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
const parallels = values.parallel.split(",").map(Number);

const CLI = join(import.meta.dir, "..", "src", "cli.ts");
const GiB = 1024 ** 3;

/** The process's user + system CPU seconds so far, all threads. */
function cpuSeconds(pid: number): number {
  const { user, system } = cpuTimes(pid);
  return user + system;
}

const dir = mkdtempSync(join(tmpdir(), "oi-splice-ab-"));
const backendPort = freePort();
const iperfServer = Bun.spawn(["iperf3", "-s", "--forceflush", "-B", "127.0.0.1", "-p", String(backendPort)], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });

interface Mode {
  name: string;
  port: number;
  proc: Bun.Subprocess<"ignore", "pipe", "inherit">;
}

async function startOi(splice: "off" | "on" | "auto"): Promise<Mode> {
  const name = splice === "off" ? "plain" : `splice ${splice}`;
  const port = freePort();
  const config = join(dir, `${splice}.conf`);
  writeFileSync(config, `splice ${splice}\n127.0.0.1 ${port} 127.0.0.1 ${backendPort}\n`);
  const proc = Bun.spawn([process.execPath, CLI, "-c", config], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
  await waitForOutput(proc, "listening");
  return { name, port, proc };
}

interface Run {
  gbps: number;
  cpuPerGiB: number;
}

async function iperf(mode: Mode, parallel: number): Promise<Run | undefined> {
  const before = cpuSeconds(mode.proc.pid);
  const client = Bun.spawn(["iperf3", "-c", "127.0.0.1", "-p", String(mode.port), "-t", String(seconds), "-P", String(parallel), "-J"], {
    stdout: "pipe",
    stderr: "ignore",
  });
  const timer = setTimeout(() => client.kill("SIGKILL"), (seconds + 20) * 1000);
  const text = await new Response(client.stdout).text();
  await client.exited;
  clearTimeout(timer);
  // Let the last connection's end reach oi before reading its CPU time.
  await Bun.sleep(300);
  const cpu = cpuSeconds(mode.proc.pid) - before;
  try {
    const sum = (JSON.parse(text) as { end?: { sum_received?: { bytes: number; bits_per_second: number } } }).end?.sum_received;
    if (sum === undefined || sum.bytes === 0) return undefined;
    return { gbps: sum.bits_per_second / 1e9, cpuPerGiB: cpu / (sum.bytes / GiB) };
  } catch {
    return undefined;
  }
}

await waitForOutput(iperfServer, "Server listening");
const modes = [await startOi("off"), await startOi("on"), await startOi("auto")];
const results = new Map<string, Run[]>();
try {
  for (const parallel of parallels) {
    for (let round = 0; round < rounds; round++) {
      for (const mode of modes) {
        const run = await iperf(mode, parallel);
        const key = `${mode.name} -P ${parallel}`;
        results.set(key, [...(results.get(key) ?? []), ...(run === undefined ? [] : [run])]);
        console.error(`${key} round ${round + 1}: ${run === undefined ? "failed" : `${run.gbps.toFixed(2)} Gbit/s, ${run.cpuPerGiB.toFixed(3)} CPU s/GiB`}`);
      }
    }
  }
} finally {
  for (const mode of modes) mode.proc.kill("SIGTERM");
  iperfServer.kill("SIGTERM");
}

console.log(`| path | iperf3 -P | Gbit/s median (min..max) | oi CPU s/GiB median (min..max) | runs |`);
console.log(`|---|---|---|---|---|`);
for (const parallel of parallels) {
  for (const mode of modes) {
    const runs = results.get(`${mode.name} -P ${parallel}`) ?? [];
    console.log(
      `| ${mode.name} | ${parallel} | ${spread(runs.map((r) => r.gbps), 2)} | ${spread(runs.map((r) => r.cpuPerGiB), 3)} | ${runs.length} |`,
    );
  }
}
