/**
 * @module Shapes shared by the bench's modules: options, the network paths
 * measured, the systems under test and the figures recorded for them.
 */

/**
 * `oi` runs with its defaults (`splice auto`: bulk relays move to a splice(2) worker);
 * `oi-plain` with `splice off` (every byte through JavaScript);
 * `oi-w2` is oi with `--workers 2` (not in the default set; ask for it with --systems).
 */
export type SystemName = "oi" | "oi-plain" | "oi-w2" | "rinetd" | "socat" | "haproxy" | "direct";

export const ALL_SYSTEMS: readonly SystemName[] = ["oi", "oi-plain", "oi-w2", "rinetd", "socat", "haproxy", "direct"];
export const DEFAULT_SYSTEMS: readonly SystemName[] = ALL_SYSTEMS.filter((name) => name !== "oi-w2");

export interface BenchOptions {
  quick: boolean;
  netns: boolean;
  profile: boolean;
  /** Rounds: each figure is the median of this many interleaved runs. */
  runs: number;
  systems: SystemName[];
  /** Seconds per iperf3 run (throughput and CPU cost). */
  iperfSeconds: number;
  /** Seconds per iperf3 run under strace (strace slows the traced process a lot). */
  straceSeconds: number;
  /** Seconds per sockperf ping-pong run. */
  latencySeconds: number;
  /** Requests per ab run, and its time limit in seconds. */
  abRequests: number;
  abSeconds: number;
  /** Idle connections opened for the memory figure. */
  idleConnections: number;
  /** Run oi as committed at this git revision instead of the working tree. */
  oiRev?: string;
  /** Skip installing missing Debian packages even as root. */
  noInstall: boolean;
}

/** Where the clients, the forwarders and the backends sit for one path. */
export interface Topology {
  kind: "loopback" | "netns";
  /** Address the forwarders listen on, as the client reaches it. */
  forwardHost: string;
  /** Address the backends listen on, as the forwarders (and `direct`) reach them. */
  backendHost: string;
  /** Command prefix that runs a client (`ip netns exec ...` in --netns). */
  clientPrefix: string[];
  /** Command prefix that runs a backend. */
  serverPrefix: string[];
}

/** The four services behind every forwarder. */
export type Service = "iperf" | "sockperf" | "http" | "hold";

export const SERVICES: readonly Service[] = ["iperf", "sockperf", "http", "hold"];

/** Per-process counters that cost figures come from. */
export interface PerfCounts {
  contextSwitches: number | null;
  cpuMigrations: number | null;
  taskClockMs: number | null;
  instructions: number | null;
  cycles: number | null;
  syscalls: number | null;
}

/** One run of every figure for one system (a sample; medians are taken later). */
export interface Sample {
  throughputP1: number | null;
  throughputP8: number | null;
  latencyP50: number | null;
  latencyP99: number | null;
  connPerS: number | null;
  /** Milliseconds from launch to the first request answered through the forwarder (oi: the compiled binary). */
  startupMs: number | null;
  idleKiBPerConn: number | null;
  syscallsPerGiB: number | null;
  contextSwitchesPerGiB: number | null;
  cpuMigrationsPerGiB: number | null;
  cpuSecondsPerGiB: number | null;
  instructionsPerGiB: number | null;
  cyclesPerGiB: number | null;
  /** Syscalls per GiB counted by perf's raw_syscalls tracepoint (no strace slowdown). */
  syscallsPerGiBPerf: number | null;
}

export type FigureKey = keyof Sample;

/** What the JSON holds per system (the shape, plus extras). */
export interface SystemResult {
  system: SystemName;
  version: string;
  throughput_gbps: { P1: number | null; P8: number | null };
  latency_us: { p50: number | null; p99: number | null };
  conn_per_s: number | null;
  startup_ms: number | null;
  idle_kib_per_conn: number | null;
  syscalls_per_gib: number | null;
  context_switches_per_gib: number | null;
  cpu_s_per_gib: number | null;
  cpu_migrations_per_gib: number | null;
  syscalls_per_gib_perf: number | null;
  instructions_per_gib: number | null;
  cycles_per_gib: number | null;
  /** Every run's value per figure, in run order. */
  runs: Record<FigureKey, Array<number | null>>;
  /** Errors and warnings seen while measuring (failed requests, crashes, resident memory drift). */
  notes: string[];
  /** Resident memory of the forwarder at start and at the end of the bench, KiB. */
  rss_kib: { start: number | null; end: number | null };
}

export interface MachineInfo {
  date: string;
  hostname: string;
  cpu_model: string;
  cores: number;
  kernel: string;
  os: string;
  memory_mib: number;
  bun: string;
  tools: Record<string, string>;
  hardware_counters: boolean;
}

export interface BenchReport {
  machine: MachineInfo;
  mode: "quick" | "full";
  path: "loopback" | "netns";
  command: string;
  settings: Omit<BenchOptions, "systems">;
  wall_seconds: number;
  results: SystemResult[];
  /** Systems asked for that did not run, and why. */
  skipped: Record<string, string>;
  /** How each figure was measured, for a reader of the JSON alone. */
  methods: Record<string, string>;
}
