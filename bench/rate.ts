/**
 * @module CPU cost of a bandwidth limit, on loopback: oi's CPU seconds per
 * GiB moved through a rate-limited rule (`rate=R`: iperf3 sending flat out,
 * oi holding it to the limit) beside an unlimited rule that iperf3 itself
 * paces at the same rate (`-b`), each on the plain relay (`splice off`) and
 * with the default `splice auto` (bulk relays move to the splice worker,
 * which holds a limited one to its rate itself). Runs interleave,
 * round after round, so a shared machine's noise falls on all alike. Per
 * run: iperf3's received rate and the oi process's CPU seconds (all
 * threads, from their schedstat) per GiB received.
 *
 *   bun bench/rate.ts [--rates 100mbit,1gbit] [--rounds 3] [--seconds 5]
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { parseRate } from "../src/rate/units.ts";
import { freePort } from "./net.ts";
import { cpuTimes } from "./proc-stats.ts";
import { waitForOutput } from "./procs.ts";
import { spread } from "./stats.ts";

const { values } = parseArgs({
  options: {
    rates: { type: "string", default: "100mbit,1gbit" },
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "5" },
  },
});
const rates = values.rates.split(",");
const rounds = Number(values.rounds);
const seconds = Number(values.seconds);
/** Each rate in bits per second, as iperf3 -b takes it. */
const bitsPerSecond = new Map<string, string>();
for (const rate of rates) {
  const parsed = parseRate("--rates", rate);
  if (!parsed.ok) throw new Error(parsed.reason);
  bitsPerSecond.set(rate, String(Math.round(parsed.value * 8)));
}

const CLI = join(import.meta.dir, "..", "src", "cli.ts");
const GiB = 1024 ** 3;

/**
 * CPU seconds of every thread of `pid`, from each one's schedstat (in
 * nanoseconds: /proc/PID/stat counts 10 ms ticks, too coarse for the few
 * hundredths of a second a run at 100 Mbit/s costs); /proc/PID/stat as a
 * fallback.
 */
function cpuSeconds(pid: number): number {
  try {
    let nanoseconds = 0;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      nanoseconds += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ")[0]);
    }
    return nanoseconds / 1e9;
  } catch {
    const { user, system } = cpuTimes(pid);
    return user + system;
  }
}

const dir = mkdtempSync(join(tmpdir(), "oi-rate-bench-"));
const backendPort = freePort();
const iperfServer = Bun.spawn(["iperf3", "-s", "--forceflush", "-B", "127.0.0.1", "-p", String(backendPort)], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });

interface Oi {
  proc: Bun.Subprocess<"ignore", "pipe", "inherit">;
  /** Listening port per rule name. */
  ports: Map<string, number>;
}

/** One oi with `splice` and a rule per entry of `rules` (name to bracket options, "" for none). */
async function startOi(splice: "off" | "auto", rules: Array<[name: string, options: string]>): Promise<Oi> {
  const ports = new Map<string, number>();
  const lines = [`splice ${splice}`];
  for (const [name, options] of rules) {
    const port = freePort();
    ports.set(name, port);
    lines.push(`127.0.0.1 ${port} 127.0.0.1 ${backendPort}${options === "" ? "" : ` [${options}]`}`);
  }
  const config = join(dir, `${splice}.conf`);
  writeFileSync(config, `${lines.join("\n")}\n`);
  const proc = Bun.spawn([process.execPath, CLI, "-c", config], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
  await waitForOutput(proc, "listening");
  return { proc, ports };
}

interface Run {
  mbps: number;
  cpuPerGiB: number;
}

async function iperf(oi: Oi, port: number, extra: string[]): Promise<Run | undefined> {
  const before = cpuSeconds(oi.proc.pid);
  const client = Bun.spawn(["iperf3", "-c", "127.0.0.1", "-p", String(port), "-t", String(seconds), "-J", ...extra], { stdout: "pipe", stderr: "ignore" });
  const timer = setTimeout(() => client.kill("SIGKILL"), (seconds + 20) * 1000);
  const text = await new Response(client.stdout).text();
  await client.exited;
  clearTimeout(timer);
  // Let the connection's end reach oi before reading its CPU time.
  await Bun.sleep(300);
  const cpu = cpuSeconds(oi.proc.pid) - before;
  try {
    const sum = (JSON.parse(text) as { end?: { sum_received?: { bytes: number; bits_per_second: number } } }).end?.sum_received;
    if (sum === undefined || sum.bytes === 0) return undefined;
    return { mbps: sum.bits_per_second / 1e6, cpuPerGiB: cpu / (sum.bytes / GiB) };
  } catch {
    return undefined;
  }
}

interface Mode {
  name: string;
  run(rate: string): Promise<Run | undefined>;
}

await waitForOutput(iperfServer, "Server listening");
const limitedRules: Array<[string, string]> = rates.map((rate) => [rate, `rate=${rate}`]);
const plain = await startOi("off", [...limitedRules, ["any", ""]]);
const auto = await startOi("auto", [...limitedRules, ["any", ""]]);
const paced = (rate: string) => ["-b", bitsPerSecond.get(rate)!];
const modes: Mode[] = [
  { name: "limited rate=R, plain relay", run: (rate) => iperf(plain, plain.ports.get(rate)!, []) },
  { name: "unlimited, plain relay, iperf3 -b R", run: (rate) => iperf(plain, plain.ports.get("any")!, paced(rate)) },
  { name: "limited rate=R, splice auto", run: (rate) => iperf(auto, auto.ports.get(rate)!, []) },
  { name: "unlimited, splice auto, iperf3 -b R", run: (rate) => iperf(auto, auto.ports.get("any")!, paced(rate)) },
];
const results = new Map<string, Run[]>();
try {
  for (const rate of rates) {
    for (let round = 0; round < rounds; round++) {
      for (const mode of modes) {
        const run = await mode.run(rate);
        const key = `${mode.name} ${rate}`;
        results.set(key, [...(results.get(key) ?? []), ...(run === undefined ? [] : [run])]);
        console.error(`${key} round ${round + 1}: ${run === undefined ? "failed" : `${run.mbps.toFixed(1)} Mbit/s, ${run.cpuPerGiB.toFixed(3)} CPU s/GiB`}`);
      }
    }
  }
} finally {
  for (const oi of [plain, auto]) oi.proc.kill("SIGTERM");
  iperfServer.kill("SIGTERM");
}

console.log("| rate R | path | Mbit/s received, median (min..max) | oi CPU s/GiB, median (min..max) | runs |");
console.log("|---|---|---|---|---|");
for (const rate of rates) {
  for (const mode of modes) {
    const runs = results.get(`${mode.name} ${rate}`) ?? [];
    console.log(`| ${rate} | ${mode.name} | ${spread(runs.map((r) => r.mbps), 1)} | ${spread(runs.map((r) => r.cpuPerGiB), 3)} | ${runs.length} |`);
  }
}
