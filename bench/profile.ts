/**
 * @module `--profile`: oi alone under an iperf3 -P 1 load on loopback. A
 * fresh oi started with Bun's JIT dump on is sampled by `perf record -g`
 * (frame pointers: Bun's native code and JIT code both keep them), its JIT
 * frames are named from the dump (see jitdump.ts), and the stacks become
 * bench/results/oi-flamegraph.svg (plus the folded stacks). A second run under
 * `strace -c -f` gives bench/results/oi-strace.txt.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startBackends } from "./backends.ts";
import { collapsePerfScript, foldedText, renderFlamegraph } from "./flamegraph.ts";
import { perfMapFromJitDumps } from "./jitdump.ts";
import type { MeasureContext } from "./measure/context.ts";
import { runIperf } from "./measure/iperf.ts";
import { measureSyscalls } from "./measure/syscalls.ts";
import { onCleanup, runBounded, spawnLogged } from "./procs.ts";
import { RESULTS_DIR } from "./report.ts";
import { startFresh } from "./systems.ts";
import { loopbackTopology } from "./topology.ts";
import type { BenchOptions } from "./types.ts";

export interface ProfileOptions {
  options: BenchOptions;
  tmpDir: string;
  limitPrefix: string[];
  fdLimit: number;
  oiCli: string;
  missing: Set<string>;
  log(line: string): void;
  seconds: number;
}

export async function runProfile(profile: ProfileOptions): Promise<number> {
  const { tmpDir, log, missing } = profile;
  for (const tool of ["perf", "iperf3", "strace"]) {
    if (missing.has(tool)) {
      log(`--profile needs ${tool}`);
      return 1;
    }
  }
  const topology = loopbackTopology();
  // Only iperf3 and the holder (a quiet port for the readiness probe) are needed.
  const backends = await startBackends(topology, tmpDir, new Set([...missing, "sockperf", "nginx"]), profile.limitPrefix, log);
  const env = { BUN_JSC_useJITDump: "1", BUN_JSC_jitDumpDirectory: tmpDir };
  const oi = await startFresh("oi", "iperf", { topology, dir: tmpDir, limitPrefix: profile.limitPrefix, fdLimit: profile.fdLimit, oiCli: profile.oiCli, tag: "oi-profile", env }, ["hold"]);
  const pid = oi.pid("iperf");
  if (pid === undefined) return 1;
  const ctx: MeasureContext = {
    topology, options: { ...profile.options, straceSeconds: profile.seconds }, backends, missing, limitPrefix: profile.limitPrefix,
    fdLimit: profile.fdLimit, oiCli: profile.oiCli, hardwareCounters: false, syscallTracepoint: false, tmpDir, log,
  };

  // Warm up first, so the JIT has compiled the hot path before sampling starts.
  await runIperf(ctx, oi, 1, 2);
  const data = join(tmpDir, "perf.data");
  log(`profile: perf record -F 499 -g on oi (PID ${pid}) during iperf3 -P 1 for ${profile.seconds} s`);
  const record = spawnLogged("perf record", ["perf", "record", "-F", "499", "-g", "-p", String(pid), "-o", data], { log: join(tmpDir, "perf-record.log") });
  await Bun.sleep(500);
  const run = await runIperf(ctx, oi, 1, profile.seconds);
  await record.stop("SIGINT", 20_000);
  if (!existsSync(data)) {
    log(`perf record wrote nothing: ${readFileSync(join(tmpDir, "perf-record.log"), "utf8").trim().slice(0, 300)}`);
    return 1;
  }

  // perf script reads /tmp/perf-PID.map for frames in anonymous (JIT) memory.
  const mapPath = `/tmp/perf-${pid}.map`;
  const map = perfMapFromJitDumps(tmpDir, pid);
  writeFileSync(mapPath, map.text);
  onCleanup(() => rmSync(mapPath, { force: true }));
  log(`profile: ${map.count} JIT code blobs named from Bun's JIT dump`);
  const script = await runBounded(["perf", "script", "-i", data], 300_000);
  rmSync(mapPath, { force: true });
  const folded = collapsePerfScript(script.stdout);
  const samples = [...folded.values()].reduce((a, b) => a + b, 0);
  const svgPath = join(RESULTS_DIR, "oi-flamegraph.svg");
  const rate = run === null ? "" : `, ${run.gbps.toFixed(2)} Gbit/s`;
  const subtitle = `iperf3 -P 1 through oi for ${profile.seconds} s${rate}; ${samples} samples at 499 Hz; ${new Date().toISOString()}\norange: kernel, green: JIT (named from Bun's JIT dump), grey: Bun native (unnamed: Bun ships without internal symbols)`;
  writeFileSync(svgPath, renderFlamegraph(folded, "oi under iperf3 -P 1 (perf record -g)", subtitle));
  writeFileSync(join(tmpDir, "oi.folded"), foldedText(folded));
  log(`profile: wrote ${svgPath} (${samples} samples; folded stacks in ${join(tmpDir, "oi.folded")})`);

  const strace = await measureSyscalls(ctx, oi, 0);
  const tablePath = join(RESULTS_DIR, "oi-strace.txt");
  const header = `# strace -c -f on oi (PID ${pid}) during iperf3 -P 1 for ${profile.seconds} s through it (strace slows oi, which can change how much each read returns; syscalls_per_gib_perf in the report counts without that slowdown)\n# syscalls per GiB: ${strace.sample.syscallsPerGiB?.toFixed(0) ?? "n/a"}\n`;
  writeFileSync(tablePath, header + strace.table);
  log(`profile: wrote ${tablePath}`);
  // Kept in tmp/ (git-ignored): perf.data is large.
  log(`profile: raw data in ${tmpDir}`);
  await oi.stop();
  return samples > 0 && strace.table !== "" ? 0 : 1;
}
