/**
 * @module Shapes shared by the bench's modules: options, the network paths
 * measured, the systems under test and the figures recorded for them.
 */

/**
 * `oi` runs with its defaults (`splice auto`: bulk relays move to a splice(2) worker);
 * `oi-plain` with `splice off` (every byte through JavaScript);
 * `oi-w2` is oi with `--workers 2` (not in the default set; ask for it with --systems);
 * `dnat` (--netns only) is the kernel forwarding with an nftables DNAT rule: no process at all.
 */
export type SystemName = "oi" | "oi-plain" | "oi-w2" | "rinetd" | "socat" | "haproxy" | "direct" | "dnat";

export const ALL_SYSTEMS: readonly SystemName[] = ["oi", "oi-plain", "oi-w2", "rinetd", "socat", "haproxy", "dnat", "direct"];
/** The default set; `dnat` joins it with --netns (see parseOptions). */
export const DEFAULT_SYSTEMS: readonly SystemName[] = ALL_SYSTEMS.filter((name) => name !== "oi-w2" && name !== "dnat");

/** Systems that forward UDP in the bench (haproxy has no UDP forwarding; oi-plain's UDP path is oi's: `splice` is TCP only). */
export const UDP_SYSTEMS: readonly SystemName[] = ["oi", "oi-w2", "rinetd", "socat", "dnat", "direct"];

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
  /** Concurrent clients of the second ab figure (conn_per_s_1000). */
  abHighConcurrency: number;
  /** Seconds per dnsperf run. */
  dnsSeconds: number;
  /** Run the "how cost grows" section (--no-scaling turns it off). */
  scaling: boolean;
  /** Run oi as committed at this git revision instead of the working tree. */
  oiRev?: string;
  /** Skip installing missing Debian packages even as root. */
  noInstall: boolean;
  /** Run the TLS section alone (routing by SNI, TLS termination, memory of connections waiting in the peek). */
  tls: boolean;
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

/**
 * The services behind every forwarder: four over TCP, and two over UDP
 * (`udp`: iperf3 -u, whose control connection is TCP on the same port, so a
 * forwarder carries both protocols there; `dns`: dnsmasq).
 */
export type Service = "iperf" | "sockperf" | "http" | "hold" | "udp" | "dns";

export const SERVICES: readonly Service[] = ["iperf", "sockperf", "http", "hold"];
export const UDP_SERVICES: readonly Service[] = ["udp", "dns"];

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
  /** ab at 1,000 concurrent clients: connections per second, and requests that failed. */
  connPerS1000: number | null;
  connFailed1000: number | null;
  /** iperf3 -u -l 1400 -b 2G: rate the iperf3 server received, Gbit/s, and the share of sent bytes lost, %. */
  udpGbps: number | null;
  udpLossPercent: number | null;
  /** dnsperf against dnsmasq: answered queries per second, and the share of queries lost, %. */
  dnsQps: number | null;
  dnsLostPercent: number | null;
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
  /** Resident memory (VmRSS) of the forwarder at start and at the end of the bench, KiB (file-backed pages included). */
  rss_kib: { start: number | null; end: number | null };
  /** Private memory: Pss_Anon summed over the system's processes, idle at start and at the end of the bench, KiB. */
  private_kib: { idle: number | null; end: number | null };
  /** RssAnon summed over the system's processes (copy-on-write pages of forked children counted in each), KiB. */
  rss_anon_kib: { idle: number | null; end: number | null };
  /** RssFile: file-backed resident pages (the program's own binary and libraries, shared and reclaimable), KiB. */
  file_kib: { idle: number | null; end: number | null };
  /** VmRSS summed the same way (rss_kib is the first process's alone). */
  vm_rss_kib: { idle: number | null; end: number | null };
  conn_per_s_1000: number | null;
  /** Failed requests of the ab -c 1000 runs (median over the rounds; each round's count is in runs). */
  conn_1000_failed: number | null;
  udp: { gbps: number | null; loss_percent: number | null };
  dns: { qps: number | null; lost_percent: number | null };
  /** Figures that do not apply to this system, and why (haproxy has no UDP; dnat has no process). */
  not_applicable: Record<string, string>;
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
  /** The "how cost grows" section (absent with --no-scaling). */
  scaling?: ScalingReport;
}

/** One point of the concurrency sweep: ab -c CLIENTS through one system. */
export interface ConcurrencyPoint {
  clients: number;
  requests: number;
  conn_per_s: number | null;
  /** 99th percentile of ab's request times, ms. */
  p99_ms: number | null;
  failed: number | null;
  complete: number | null;
  note?: string;
}

export interface IdlePoint {
  connections: number;
  kib_per_conn: number | null;
  note?: string;
}

export interface ConfigPoint {
  rules: number;
  /** Launch to every rule listening, ms. */
  start_ms: number | null;
  /** Signal to the reload done (oi: its "reloaded" line; the others: the changed rule's new port accepting), ms. */
  reload_ms: number | null;
  private_kib: number | null;
  file_kib: number | null;
  note?: string;
}

export interface UdpSessionPoint {
  sessions: number;
  /** Sessions whose datagram came back through oi. */
  answered: number | null;
  private_kib: number | null;
  kib_per_session: number | null;
  note?: string;
}

export interface ScalingReport {
  concurrency: { points: number[]; runs: number; systems: Partial<Record<SystemName, ConcurrencyPoint[]>> };
  idle: { points: number[]; systems: Partial<Record<SystemName, IdlePoint[]>> };
  config: { points: number[]; runs: number; ports: string; systems: Partial<Record<SystemName, ConfigPoint[]>> };
  udp_sessions: { points: number[]; systems: Partial<Record<SystemName, UdpSessionPoint[]>> };
  /** Parts or systems left out, and why. */
  skipped: string[];
  wall_seconds: number;
}

/** The --tls section's systems: oi, haproxy (TCP mode, SNI from the ClientHello, `bind ... ssl`) and direct (the client to nginx over TLS). */
export type TlsSystemName = "oi" | "haproxy" | "direct";
export const TLS_SYSTEMS: readonly TlsSystemName[] = ["oi", "haproxy", "direct"];

/** One round's figures of the --tls section for one system (null: not taken; the reason is in the notes). */
export interface TlsSample {
  /** ab -c 50 over https through the SNI-routed bind, and through a plain rule to the same nginx site: connections per second. */
  sniConnPerS: number | null;
  plainConnPerS: number | null;
  /** The forwarder's CPU time (user + system) per connection of those runs, µs. */
  sniCpuUsPerConn: number | null;
  plainCpuUsPerConn: number | null;
  /** ab -c 50 over https to the terminating rule (plain HTTP behind): handshakes per second, and CPU µs per handshake. */
  handshakesPerS: number | null;
  handshakeCpuUsPerConn: number | null;
  /** curl downloading a file of random bytes through the terminating rule: Gbit/s, and CPU s per GiB. */
  bulkGbps: number | null;
  bulkCpuSPerGiB: number | null;
  /** Private memory (Pss_Anon) a fresh instance gains per connection that sent half a ClientHello and waits, KiB. */
  waitingKiBPerConn: number | null;
}

export type TlsFigureKey = keyof TlsSample;

export interface TlsSystemResult {
  system: TlsSystemName;
  version: string;
  /** Medians of the rounds. */
  figures: Record<TlsFigureKey, number | null>;
  /** Every round's value per figure, in round order. */
  runs: Record<TlsFigureKey, Array<number | null>>;
  /** Set when this revision of the system refuses the section's config (oi before its routing landed): what it said. */
  not_supported?: string;
  /** Figures that do not apply, and why. */
  not_applicable: Partial<Record<TlsFigureKey, string>>;
  notes: string[];
}

export interface TlsReport {
  machine: MachineInfo;
  mode: "quick" | "full";
  command: string;
  settings: { runs: number; abRequests: number; abSeconds: number; abClients: number; bulkMiB: number; bulkDownloads: number; waitingConnections: number; oiRev?: string };
  /** The ClientHello the waiting clients send half of: its length, how much is sent, where the SNI name sits. */
  client_hello: { bytes: number; sent: number; sni_offset: number };
  wall_seconds: number;
  results: TlsSystemResult[];
  skipped: Record<string, string>;
  methods: Record<string, string>;
}
