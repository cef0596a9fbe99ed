/**
 * @module Entry point of `npm run bench`: checks the tools, starts the shared
 * backends and every system, runs each figure for each system in interleaved
 * rounds (A B C A B C ...), and writes the report. Every process is stopped
 * by its PID when the bench ends, fails or is interrupted.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { startBackends } from "./backends.ts";
import { machineInfo } from "./machine.ts";
import type { MeasureContext } from "./measure/context.ts";
import { measureConnections, measureConnectionsHigh } from "./measure/connections.ts";
import { measureIdleMemory } from "./measure/idle-memory.ts";
import { measureLatency } from "./measure/latency.ts";
import { measureScaling } from "./measure/scaling.ts";
import { buildOiBinary, measureStartup } from "./measure/startup.ts";
import { measureSyscalls } from "./measure/syscalls.ts";
import { measureThroughputAndCost } from "./measure/throughput.ts";
import { measureUdp } from "./measure/udp.ts";
import { HELP, parseOptions, UsageError } from "./options.ts";
import { alive, type MemoryKiB, rssKiB, treeMemoryKiB } from "./proc-stats.ts";
import { installSignalHandlers, runBounded, stopAll } from "./procs.ts";
import { runProfile } from "./profile.ts";
import { RESULTS_DIR, type SystemRuns, summarize, writeReport, markdownTable } from "./report.ts";
import { forwardsEndToEnd, type RunningSystem, snapshotOi, startSystem } from "./systems.ts";
import { ensureTools, hardwareCountersAvailable, isRoot, syscallTracepointAvailable, toolVersions, which } from "./tools.ts";
import { runTlsSection, TLS_TOOLS } from "./tls-section.ts";
import { createNetnsTopology, loopbackTopology } from "./topology.ts";
import { type BenchOptions, type BenchReport, type Sample, type SystemName, UDP_SYSTEMS } from "./types.ts";

const started = Date.now();

function log(line: string): void {
  const seconds = Math.round((Date.now() - started) / 1000);
  const stamp = `${String(Math.floor(seconds / 60)).padStart(2, "0")}:${String(seconds % 60).padStart(2, "0")}`;
  console.log(`[${stamp}] ${line}`);
}

/** The peer tool each forwarder needs. */
const SYSTEM_TOOL: Partial<Record<SystemName, string>> = { rinetd: "rinetd", socat: "socat", haproxy: "haproxy", dnat: "nft" };

/** Figure keys (figures.ts) that do not apply to `name`, and why. */
function notApplicable(name: SystemName): Record<string, string> {
  const na: Record<string, string> = {};
  if (!UDP_SYSTEMS.includes(name)) {
    const why = name === "haproxy" ? "haproxy has no UDP forwarding" : "its UDP path is oi's (splice concerns TCP relays only)";
    for (const key of ["udp", "udploss", "dns", "dnslost"]) na[key] = why;
  }
  if (name === "dnat") {
    for (const key of ["start", "idle", "sys", "cs", "cpu", "private"]) na[key] = "no process: the kernel forwards";
  }
  if (name === "direct") {
    na.start = "no forwarder";
    na.private = "no forwarder";
  }
  return na;
}

/** Memory of every process of the system (none for direct and dnat). */
function systemMemory(system: RunningSystem): MemoryKiB | undefined {
  if (system.procs.length === 0) return undefined;
  return treeMemoryKiB(system.procs.map((proc) => proc.pid));
}

/** `prlimit --nofile=N:N --` so forwarders, backends and clients can hold thousands of sockets. */
async function descriptorLimit(): Promise<{ prefix: string[]; limit: number }> {
  const match = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(readFileSync("/proc/self/limits", "utf8"));
  const hard = match?.[2] === "unlimited" ? 1 << 20 : Number(match?.[2] ?? 1024);
  const soft = Number(match?.[1] ?? 1024);
  if (which("prlimit") === undefined) return { prefix: [], limit: soft };
  // Root may raise the hard limit too, unless a sandbox withholds CAP_SYS_RESOURCE: try it.
  for (const wanted of isRoot() && hard < 65536 ? [65536, hard] : [hard]) {
    const prefix = ["prlimit", `--nofile=${wanted}:${wanted}`, "--"];
    if ((await runBounded([...prefix, "true"], 10_000)).code === 0) return { prefix, limit: wanted };
  }
  return { prefix: [], limit: soft };
}

/** `git describe`-like revision of the checkout, marked dirty when src/ has uncommitted changes. */
async function checkoutRevision(): Promise<string> {
  const cwd = join(import.meta.dir, "..");
  const head = await runBounded(["git", "-C", cwd, "rev-parse", "--short", "HEAD"], 10_000).catch(() => undefined);
  if (head === undefined || head.code !== 0) return "unknown revision";
  const status = await runBounded(["git", "-C", cwd, "status", "--porcelain", "--", "src", "package.json"], 10_000);
  return `${head.stdout.trim()}${status.stdout.trim() === "" ? "" : " + uncommitted changes in src/"}`;
}

async function commitOf(rev: string): Promise<string> {
  const result = await runBounded(["git", "-C", join(import.meta.dir, ".."), "rev-parse", "--short", rev], 10_000);
  return `${result.stdout.trim() || rev} (git archive)`;
}

function logTail(path: string, pattern: RegExp): string[] {
  try {
    return readFileSync(path, "utf8").split("\n").filter((line) => pattern.test(line)).slice(0, 3);
  } catch {
    return [];
  }
}

async function measureRound(ctx: MeasureContext, system: RunningSystem, round: number, notes: string[]): Promise<Partial<Sample>> {
  const sample: Partial<Sample> = {};
  Object.assign(sample, await measureThroughputAndCost(ctx, system, round));
  Object.assign(sample, await measureLatency(ctx, system));
  Object.assign(sample, await measureConnections(ctx, system, notes));
  Object.assign(sample, await measureConnectionsHigh(ctx, system, notes));
  Object.assign(sample, await measureUdp(ctx, system, notes));
  Object.assign(sample, await measureStartup(ctx, system, notes));
  Object.assign(sample, await measureIdleMemory(ctx, system, round, notes));
  Object.assign(sample, (await measureSyscalls(ctx, system, round)).sample);
  return sample;
}

function describeSample(sample: Partial<Sample>): string {
  const f = (value: number | undefined | null, digits: number) => (value === undefined || value === null ? "—" : value.toFixed(digits));
  return [
    `P1 ${f(sample.throughputP1, 2)} P8 ${f(sample.throughputP8, 2)} Gbit/s`,
    `p50/p99 ${f(sample.latencyP50, 1)}/${f(sample.latencyP99, 1)} µs`,
    `${f(sample.connPerS, 0)} conn/s (${f(sample.connPerS1000, 0)} at 1000 clients, ${f(sample.connFailed1000, 0)} failed)`,
    `UDP ${f(sample.udpGbps, 2)} Gbit/s ${f(sample.udpLossPercent, 1)}% lost, DNS ${f(sample.dnsQps, 0)} q/s ${f(sample.dnsLostPercent, 2)}% lost`,
    `start ${f(sample.startupMs, 1)} ms`,
    `${f(sample.idleKiBPerConn, 2)} KiB/conn`,
    `${f(sample.syscallsPerGiB, 0)} syscalls/GiB`,
    `${f(sample.contextSwitchesPerGiB, 0)} cs/GiB`,
    `${f(sample.cpuSecondsPerGiB, 3)} CPU s/GiB`,
  ].join(", ");
}

/** Figures that must be present for a system for the run to pass (given the tools present). */
function missingFigures(result: ReturnType<typeof summarize>, missing: Set<string>): string[] {
  const wanted: Array<[string, number | null, string]> = [
    ["throughput_gbps.P1", result.throughput_gbps.P1, "iperf3"],
    ["throughput_gbps.P8", result.throughput_gbps.P8, "iperf3"],
    ["latency_us.p50", result.latency_us.p50, "sockperf"],
    ["latency_us.p99", result.latency_us.p99, "sockperf"],
    ["conn_per_s", result.conn_per_s, "ab"],
    ["conn_per_s_1000", result.conn_per_s_1000, "ab"],
    ...(UDP_SYSTEMS.includes(result.system)
      ? ([["udp.gbps", result.udp.gbps, "iperf3"], ["dns.qps", result.dns.qps, "dnsperf"]] as Array<[string, number | null, string]>)
      : []),
    // dnat has no process: no memory, start-up or cost figures.
    ...(result.system === "dnat"
      ? []
      : ([
          ["idle_kib_per_conn", result.idle_kib_per_conn, "prlimit"],
          // direct has no start-up; every forwarder does.
          ...(result.system === "direct" ? [] : [["startup_ms", result.startup_ms, "nginx"] as [string, number | null, string]]),
          ["syscalls_per_gib", result.syscalls_per_gib, "strace"],
          // Unprivileged perf counts user space only, where context switches do not happen: not a failure then.
          ["context_switches_per_gib", result.context_switches_per_gib, isRoot() ? "perf" : "perf (as root)"],
          ["cpu_s_per_gib", result.cpu_s_per_gib, "iperf3"],
        ] as Array<[string, number | null, string]>)),
  ];
  return wanted.filter(([, value, tool]) => value === null && !missing.has(tool) && tool !== "perf (as root)").map(([name]) => name);
}

async function bench(options: BenchOptions): Promise<number> {
  const mode = options.quick ? "quick" : "full";
  log(`oi bench, ${mode} mode${options.netns ? ", netns path" : ", loopback"}${options.profile ? ", profile" : ""}${options.tls ? ", TLS section" : ""}`);
  const missing = await ensureTools(!options.noInstall, log, options.tls ? TLS_TOOLS : undefined);
  const { prefix: limitPrefix, limit } = await descriptorLimit();
  if (limit < options.idleConnections * 2 + 200) {
    options.idleConnections = Math.max(100, Math.floor((limit - 200) / 2));
    log(`descriptor limit ${limit}: idle connections lowered to ${options.idleConnections}`);
  }
  const stamp = new Date().toISOString().slice(0, 19).replace(/:/g, "-");
  const tmpDir = join(RESULTS_DIR, "tmp", stamp);
  mkdirSync(tmpDir, { recursive: true });
  const oiCli = await snapshotOi(tmpDir, options.oiRev);
  const oiRevision = options.oiRev === undefined ? await checkoutRevision() : await commitOf(options.oiRev);
  log(`oi: ${oiRevision}, run from a snapshot of src/ in ${tmpDir}`);
  const [hardwareCounters, syscallTracepoint, tools] = await Promise.all([
    hardwareCountersAvailable(),
    syscallTracepointAvailable(),
    toolVersions(),
  ]);
  log(`perf: hardware counters ${hardwareCounters ? "available" : "not available (null in the report)"}; syscall tracepoint ${syscallTracepoint ? "available" : "not available"}`);

  if (options.profile) return runProfile({ options, tmpDir, limitPrefix, fdLimit: limit, oiCli, missing, log, seconds: options.quick ? 5 : 10 });
  if (options.tls) return runTlsSection({ options, tmpDir, limitPrefix, fdLimit: limit, oiCli, oiRevision, missing, tools, hardwareCounters, started, log });

  if (options.netns && !isRoot()) {
    log("--netns needs root (it creates network namespaces and veth pairs)");
    return 2;
  }
  const topology = options.netns ? await createNetnsTopology(log) : loopbackTopology();
  const backends = await startBackends(topology, tmpDir, missing, limitPrefix, log);
  const oiBinary = options.systems.some((name) => name.startsWith("oi")) ? await buildOiBinary(oiCli, tmpDir, log) : undefined;
  const ctx: MeasureContext = { topology, options, backends, missing, limitPrefix, fdLimit: limit, oiCli, oiBinary, hardwareCounters, syscallTracepoint, tmpDir, log };

  const systems: RunningSystem[] = [];
  const runs = new Map<SystemName, SystemRuns>();
  const skipped: Record<string, string> = {};
  for (const name of options.systems) {
    const tool = SYSTEM_TOOL[name];
    if (tool !== undefined && missing.has(tool)) {
      log(`${name}: not installed, skipped`);
      skipped[name] = `${tool} is not installed`;
      continue;
    }
    try {
      const system = await startSystem(name, backends, { topology, dir: tmpDir, limitPrefix, fdLimit: limit, oiCli });
      await system.activate?.();
      const forwards = backends.procs.hold === undefined || (await forwardsEndToEnd(system, backends, topology, tmpDir));
      await system.deactivate?.();
      if (!forwards) {
        await system.stop();
        throw new Error(`a byte sent through ${name} never reached the backend (see ${system.logFiles.join(", ") || "its log"})`);
      }
      systems.push(system);
      const pid = system.pid("iperf");
      const version = name.startsWith("oi") ? oiRevision : name === "direct" ? "-" : name === "dnat" ? `nftables ${tools.nft ?? "unknown"}` : (tools[name] ?? "unknown");
      runs.set(name, {
        system: name, version, samples: [], notes: [], rssStart: pid === undefined ? null : (rssKiB(pid) ?? null), rssEnd: null,
        memoryIdle: systemMemory(system), notApplicable: notApplicable(name),
      });
      log(`${name}: ready on ${system.host}:${system.port("iperf")}..${system.port("hold")}`);
    } catch (error) {
      log(`${name}: ${String(error)}`);
      skipped[name] = String(error);
      if (name === "oi") return 1;
    }
  }

  for (let round = 1; round <= options.runs; round++) {
    for (const system of systems) {
      const entry = runs.get(system.name)!;
      log(`round ${round}/${options.runs}: ${system.name}`);
      await system.activate?.();
      let sample: Partial<Sample>;
      try {
        sample = await measureRound(ctx, system, round, entry.notes);
      } finally {
        await system.deactivate?.();
      }
      entry.samples.push(sample);
      log(`  ${describeSample(sample)}`);
      for (const proc of system.procs) {
        if (!alive(proc.pid)) {
          const message = `round ${round}: process ${proc.name} (PID ${proc.pid}) died (exit ${proc.proc.exitCode}); see ${system.logFiles.join(", ")}`;
          log(`  ${system.name}: ${message}`);
          entry.notes.push(message);
        }
      }
    }
  }

  for (const system of systems) {
    const entry = runs.get(system.name)!;
    const pid = system.pid("iperf");
    entry.rssEnd = pid === undefined ? null : (rssKiB(pid) ?? null);
    entry.memoryEnd = systemMemory(system);
    for (const file of system.logFiles) {
      for (const line of logTail(file, /\b(error|panic|segfault|uncaught|exception)\b/i)) entry.notes.push(`log: ${line.trim().slice(0, 160)}`);
    }
  }

  let scaling: BenchReport["scaling"];
  if (options.scaling) {
    log("how cost grows: the scaling section (--no-scaling skips it)");
    scaling = await measureScaling(ctx, systems);
  }

  const report: BenchReport = {
    machine: machineInfo(tools, hardwareCounters),
    mode,
    path: topology.kind,
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`,
    settings: {
      quick: options.quick, netns: options.netns, profile: options.profile, runs: options.runs,
      iperfSeconds: options.iperfSeconds, straceSeconds: options.straceSeconds, latencySeconds: options.latencySeconds,
      abRequests: options.abRequests, abSeconds: options.abSeconds, idleConnections: options.idleConnections, noInstall: options.noInstall,
      abHighConcurrency: options.abHighConcurrency, dnsSeconds: options.dnsSeconds, scaling: options.scaling, tls: options.tls,
      ...(options.oiRev === undefined ? {} : { oiRev: options.oiRev }),
    },
    wall_seconds: (Date.now() - started) / 1000,
    results: systems.map((system) => summarize(runs.get(system.name)!)),
    skipped,
    methods: METHODS,
    ...(scaling === undefined ? {} : { scaling }),
  };
  const files = writeReport(report);
  console.log(`\n${markdownTable(report)}\n`);
  log(`wrote ${files.json}, ${files.markdown}, ${files.chart}, ${files.history}`);

  let failed = false;
  for (const result of report.results) {
    const absent = missingFigures(result, missing);
    if (absent.length === 0) continue;
    const required = result.system === "oi" || result.system === "rinetd" || result.system === "direct";
    log(`${required ? "FAIL" : "warning"}: ${result.system} has no ${absent.join(", ")}`);
    if (required) failed = true;
  }
  log(`${failed ? "failed" : "passed"} in ${report.wall_seconds.toFixed(0)} s`);
  return failed ? 1 : 0;
}

const METHODS: Record<string, string> = {
  throughput_gbps: "iperf3 -c through the system, -P 1 and -P 8, rate received by the iperf3 server, Gbit/s",
  latency_us: "sockperf ping-pong --tcp -m 32 --mps=max --full-rtt: round trip of a 32-byte message, one in flight, µs",
  conn_per_s: "ab -c 50 without keep-alive (a TCP connection per request) to nginx (return 200) behind the system",
  startup_ms: "milliseconds from launching the forwarder (oi: the binary bun build --compile makes of the snapshot) with a one-rule config to the first HTTP GET answered through it by nginx, median of 5 starts per round",
  idle_kib_per_conn: "growth of the anonymous resident memory (sum of Pss_Anon over the process tree: heap and buffers, shared copy-on-write pages split) with N idle connections open through a fresh instance, divided by N; direct: a fresh holder backend's own growth",
  syscalls_per_gib: "strace -c -f attached to the system for an iperf3 -P 1 run, total calls / GiB received (strace slows the traced process, which can change how much each read returns: syscalls_per_gib_perf counts without that slowdown)",
  context_switches_per_gib: "perf stat -e context-switches on the system during the iperf3 -P 1 run, per GiB",
  cpu_s_per_gib: "utime + stime of the system's process tree (/proc) during the iperf3 -P 1 run, per GiB",
  cpu_migrations_per_gib: "perf stat -e cpu-migrations, same run",
  syscalls_per_gib_perf: "perf stat -e raw_syscalls:sys_enter, same run (no strace slowdown)",
  instructions_per_gib: "perf stat -e instructions, same run (null without hardware counters)",
  cycles_per_gib: "perf stat -e cycles, same run (null without hardware counters)",
  direct: "no forwarder: clients talk to the backends; its cost and memory figures are the backend's own (iperf3 -s receiving, the holder holding)",
  dnat: "--netns only: no forwarder process; an nftables DNAT rule per port on the host's client-side veth sends the connections to the server namespace (the kernel forwards; the table exists only while dnat is measured); CPU, memory and start-up figures n/a",
  rss_kib: "VmRSS of the forwarder's first process at start and at the end of the rounds, KiB (file-backed pages included: see private_kib and file_kib)",
  private_kib: "private memory: Pss_Anon (/proc/PID/smaps_rollup) summed over the system's processes and their children, idle right after start (one rule per service) and at the end of the rounds, KiB",
  rss_anon_kib: "RssAnon (/proc/PID/status) summed the same way (copy-on-write pages shared by forked children counted in each), KiB",
  file_kib: "RssFile (/proc/PID/status) summed the same way: file-backed resident pages, the program's binary and libraries, shared and reclaimable, KiB",
  conn_per_s_1000: "ab -c 1000 without keep-alive to nginx behind the system, every process with the raised descriptor limit; conn_1000_failed: ab's failed requests plus non-2xx answers",
  udp: "iperf3 -u -l 1400 -b 2G through the system (its TCP rule on the same port carries iperf3's control connection): gbps = rate the iperf3 server received; loss_percent = share of the sent bytes that never arrived",
  dns: "dnsperf (4 clients, 100 queries in flight, 2 s timeout) against dnsmasq answering 8 host records itself (--no-resolv --no-hosts): qps = answered queries per second, lost_percent = share of queries unanswered",
  not_applicable: "figure keys that do not apply to the system, and why (haproxy: no UDP; oi-plain: UDP not measured again, its path is oi's; dnat: no process; direct: no forwarder)",
  scaling: "how cost grows: ab at 10/100/1,000/5,000 clients (conn/s, p99 from ab's percentile table); private memory per idle connection at 1,000 and 9,000 connections (fresh instances); start (launch to every rule listening), reload (signal to oi's reloaded line, others: the moved rule's port accepting) and private memory with 10/1,000/10,000 generated rules on 127.0.0.1:40000-49999; oi's private memory with 1,000 and 15,000 UDP sessions",
};

async function main(): Promise<number> {
  let options: BenchOptions | "help";
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(error.message);
      return 2;
    }
    throw error;
  }
  if (options === "help") {
    console.log(HELP);
    return 0;
  }
  installSignalHandlers();
  try {
    return await bench(options);
  } catch (error) {
    log(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    return 1;
  } finally {
    await stopAll();
  }
}

process.exit(await main());
