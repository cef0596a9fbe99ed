/**
 * @module The Debian tools the bench drives: which are present, installing
 * the missing ones when running as root, and their versions for the report.
 */
import { runBounded } from "./procs.ts";

/** A command the bench runs, and the Debian package that provides it. */
interface Tool {
  command: string;
  pkg: string;
  /** What cannot be measured without it. */
  neededFor: string;
  /** Arguments that print the version, and a pattern that picks it out. */
  versionArgs: string[];
  versionPattern: RegExp;
}

export const TOOLS: readonly Tool[] = [
  { command: "iperf3", pkg: "iperf3", neededFor: "throughput and CPU cost", versionArgs: ["--version"], versionPattern: /iperf (\S+)/ },
  { command: "sockperf", pkg: "sockperf", neededFor: "latency", versionArgs: ["--version"], versionPattern: /version (\S+)/ },
  { command: "rinetd", pkg: "rinetd", neededFor: "the rinetd system", versionArgs: ["--version"], versionPattern: /rinetd (\S+)/ },
  { command: "socat", pkg: "socat", neededFor: "the socat system", versionArgs: ["-V"], versionPattern: /socat version (\S+)/ },
  { command: "haproxy", pkg: "haproxy", neededFor: "the haproxy system", versionArgs: ["-v"], versionPattern: /version (\S+)/ },
  { command: "nginx", pkg: "nginx-light", neededFor: "connections per second (backend)", versionArgs: ["-v"], versionPattern: /nginx\/(\S+)/ },
  { command: "ab", pkg: "apache2-utils", neededFor: "connections per second (client)", versionArgs: ["-V"], versionPattern: /Version (\S+)/ },
  { command: "strace", pkg: "strace", neededFor: "syscalls per GiB", versionArgs: ["-V"], versionPattern: /version (\S+)/ },
  { command: "perf", pkg: "linux-perf", neededFor: "context switches per GiB, --profile", versionArgs: ["--version"], versionPattern: /perf version (\S+)/ },
  { command: "prlimit", pkg: "util-linux", neededFor: "raising the descriptor limit", versionArgs: ["--version"], versionPattern: /util-linux (\S+)/ },
  { command: "ip", pkg: "iproute2", neededFor: "--netns", versionArgs: ["-V"], versionPattern: /iproute2-([^\s,]+)/ },
  { command: "dnsmasq", pkg: "dnsmasq-base", neededFor: "DNS queries per second (backend)", versionArgs: ["--version"], versionPattern: /Dnsmasq version (\S+)/ },
  { command: "dnsperf", pkg: "dnsperf", neededFor: "DNS queries per second (client)", versionArgs: ["-h"], versionPattern: /Version (\S+)/ },
  { command: "nft", pkg: "nftables", neededFor: "the dnat system (--netns)", versionArgs: ["--version"], versionPattern: /nftables v(\S+)/ },
  { command: "openssl", pkg: "openssl", neededFor: "--tls (certificates, the ClientHello)", versionArgs: ["version"], versionPattern: /OpenSSL (\S+)/ },
  { command: "curl", pkg: "curl", neededFor: "--tls (bulk throughput over TLS)", versionArgs: ["--version"], versionPattern: /curl (\S+)/ },
];

export function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

/** Absolute path of `command` on PATH (plus the sbin directories), or undefined. */
export function which(command: string): string | undefined {
  const path = `${process.env.PATH ?? ""}:/usr/sbin:/sbin:/usr/local/sbin`;
  return Bun.which(command, { PATH: path }) ?? undefined;
}

function missingTools(only: readonly string[] | undefined): Tool[] {
  return TOOLS.filter((tool) => (only === undefined || only.includes(tool.command)) && which(tool.command) === undefined);
}

/**
 * Install what is missing when root (unless told not to); otherwise name it.
 * Returns the commands still missing afterwards. `only`: the commands a
 * section needs (the others are neither installed nor reported).
 */
export async function ensureTools(install: boolean, log: (line: string) => void, only?: readonly string[]): Promise<Set<string>> {
  let missing = missingTools(only);
  if (missing.length > 0 && install && isRoot()) {
    const pkgs = [...new Set(missing.map((tool) => tool.pkg))];
    log(`installing Debian packages: ${pkgs.join(" ")}`);
    const env = { DEBIAN_FRONTEND: "noninteractive" };
    const apt = ["apt-get", "install", "-y", "-q", "--no-install-recommends", ...pkgs];
    let result = await runBounded(apt, 600_000, env);
    if (result.code !== 0) {
      // A fresh machine has no package lists yet.
      log("apt-get install failed; running apt-get update and trying again");
      await runBounded(["apt-get", "update", "-q"], 600_000, env);
      result = await runBounded(apt, 600_000, env);
    }
    if (result.code !== 0) log(`apt-get install failed:\n${result.stderr.trim().split("\n").slice(-5).join("\n")}`);
    missing = missingTools(only);
  }
  for (const tool of missing) {
    const hint = isRoot() ? "" : " (run as root to install it)";
    log(`missing: ${tool.command} (Debian package ${tool.pkg}), needed for ${tool.neededFor}: skipped${hint}`);
  }
  return new Set(missing.map((tool) => tool.command));
}

/** Version string of every tool present, for the machine section of the report. */
export async function toolVersions(): Promise<Record<string, string>> {
  const versions: Record<string, string> = {};
  for (const tool of TOOLS) {
    const path = which(tool.command);
    if (path === undefined) continue;
    const result = await runBounded([path, ...tool.versionArgs], 10_000);
    const text = `${result.stdout}\n${result.stderr}`;
    versions[tool.command] = tool.versionPattern.exec(text)?.[1] ?? "unknown";
  }
  return versions;
}

/** perf can count hardware events (cycles, instructions) on this machine (often not in a VM). */
export async function hardwareCountersAvailable(): Promise<boolean> {
  if (which("perf") === undefined) return false;
  const result = await runBounded(["perf", "stat", "-x", ",", "-e", "instructions,cycles", "true"], 10_000);
  return result.code === 0 && !/not supported|not counted/.test(result.stderr);
}

/** perf can count syscalls through the raw_syscalls:sys_enter tracepoint. */
export async function syscallTracepointAvailable(): Promise<boolean> {
  if (which("perf") === undefined) return false;
  const result = await runBounded(["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "true"], 10_000);
  return result.code === 0 && !/not supported|not counted|unknown|invalid/i.test(result.stderr);
}
