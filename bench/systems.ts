/**
 * @module The systems under test: each forwarder started with its own config
 * in the bench's temp dir, listening on its own ports, and `direct` (the
 * client talks to the backend itself). Every process is stopped by its PID.
 */
import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Backends } from "./backends.ts";
import { dnatRuleset, removeDnat, installDnat } from "./dnat.ts";
import { BACKEND_PORTS, frontPort, waitForPort } from "./net.ts";
import { runBounded, spawnLogged, type Started } from "./procs.ts";
import { SERVICES, type Service, type SystemName, type Topology, UDP_SERVICES } from "./types.ts";

const CHECKOUT = join(import.meta.dir, "..");

/**
 * Copy this checkout's src/ and package.json (as in the working tree, or as
 * committed at git revision `rev`) into `dir` and return the copied cli.ts:
 * every oi the bench starts (fresh instances too) runs that one snapshot, even
 * if src/ is edited while the bench runs. Dependencies still resolve from the
 * checkout's node_modules (a parent directory of `dir`).
 */
export async function snapshotOi(dir: string, rev: string | undefined): Promise<string> {
  const target = join(dir, "oi-snapshot");
  mkdirSync(target, { recursive: true });
  if (rev === undefined) {
    cpSync(join(CHECKOUT, "src"), join(target, "src"), { recursive: true });
    cpSync(join(CHECKOUT, "package.json"), join(target, "package.json"));
  } else {
    const tar = join(dir, "oi-snapshot.tar");
    const archive = await runBounded(["git", "-C", CHECKOUT, "archive", "--format=tar", "-o", tar, rev, "src", "package.json"], 60_000);
    if (archive.code !== 0) throw new Error(`git archive ${rev}: ${archive.stderr.trim()}`);
    const untar = await runBounded(["tar", "-xf", tar, "-C", target], 60_000);
    if (untar.code !== 0) throw new Error(`tar: ${untar.stderr.trim()}`);
  }
  return join(target, "src", "cli.ts");
}

export type ForwarderName = Exclude<SystemName, "direct" | "dnat">;

export interface RunningSystem {
  name: SystemName;
  /** Address and port a client connects to for `service`. */
  host: string;
  port(service: Service): number;
  /** The process whose CPU and memory count for `service` (a forwarder, or for `direct` the backend). */
  pid(service: Service): number | undefined;
  /** Every process of the system (socat runs one per service). */
  procs: Started[];
  logFiles: string[];
  stop(): Promise<void>;
  /** Called before and after each measurement of this system (dnat: its nftables table exists only then). */
  activate?(): Promise<void>;
  deactivate?(): Promise<void>;
}

/** One forwarding: listen on `listen` (forward host), connect to `backend` (backend host), over TCP or UDP. */
export interface Rule {
  service: Service;
  listen: number;
  backend: number;
  proto: "tcp" | "udp";
}

/** haproxy has no UDP forwarding. */
export function forwardsUdp(name: SystemName): boolean {
  return name !== "haproxy";
}

/**
 * The rules of system `name`: one TCP rule per TCP service; for `udp` a UDP
 * rule and a TCP rule on the same port (iperf3's control connection), for
 * `dns` a UDP rule; none of these for haproxy.
 */
export function serviceRules(name: SystemName, services: readonly Service[], offset = 0): Rule[] {
  const rules: Rule[] = [];
  for (const service of services) {
    const listen = frontPort(name, service) + offset;
    const backend = BACKEND_PORTS[service];
    if (service === "udp" || service === "dns") {
      if (!forwardsUdp(name)) continue;
      if (service === "udp") rules.push({ service, listen, backend, proto: "tcp" });
      rules.push({ service, listen, backend, proto: "udp" });
    } else {
      rules.push({ service, listen, backend, proto: "tcp" });
    }
  }
  return rules;
}

function rinetdStyleRules(rules: Rule[], topology: Topology): string {
  const suffix = (rule: Rule) => (rule.proto === "udp" ? "/udp" : "");
  return rules
    .map((rule) => `${topology.forwardHost} ${rule.listen}${suffix(rule)} ${topology.backendHost} ${rule.backend}${suffix(rule)}\n`)
    .join("");
}

/** socat's inactivity timeout for a UDP peer's child process (it has no other end for a UDP "connection"). */
const SOCAT_UDP_IDLE_SECONDS = 10;

/** The `global` and `defaults` sections every haproxy of the bench starts with: TCP mode, a maxconn the descriptor limit allows. */
export function haproxyPreamble(fdLimit: number): string {
  // haproxy refuses to start when maxconn needs more descriptors than it may open (two per connection).
  const maxconn = Math.max(1000, Math.min(40000, Math.floor(fdLimit / 2) - 500));
  return `global
  maxconn ${maxconn}
defaults
  mode tcp
  timeout connect 10s
  timeout client 1h
  timeout server 1h
`;
}

function haproxyConfig(rules: Rule[], topology: Topology, fdLimit: number): string {
  const sections = rules
    .filter((rule) => rule.proto === "tcp")
    .map((rule) => `listen ${rule.service}\n  bind ${topology.forwardHost}:${rule.listen}\n  server backend ${topology.backendHost}:${rule.backend}\n`)
    .join("");
  return `${haproxyPreamble(fdLimit)}${sections}`;
}

export interface LaunchOptions {
  topology: Topology;
  dir: string;
  limitPrefix: string[];
  /** oi's entry point (the snapshot made by `snapshotOi`). */
  oiCli: string;
  /** Descriptor limit the processes get (`limitPrefix`). */
  fdLimit: number;
  /** Distinguishes the files (and process names) of several instances of one forwarder. */
  tag: string;
  /** Extra environment (the profiler's JIT dump settings for oi). */
  env?: Record<string, string>;
}

/** Start forwarder `name` with `rules`; resolves once its first rule's port accepts, or throws. */
async function launch(name: ForwarderName, rules: Rule[], options: LaunchOptions): Promise<RunningSystem> {
  const { topology, dir, limitPrefix, tag } = options;
  const byService = new Map<Service, Started>();
  const extra: Started[] = [];
  const logFiles: string[] = [];
  const log = join(dir, `${tag}.log`);
  if (name === "socat") {
    // socat serves one address pair per process, forking a child per connection (per UDP peer).
    for (const rule of rules) {
      const ruleLog = join(dir, `${tag}-${rule.service}-${rule.proto}.log`);
      logFiles.push(ruleLog);
      let cmd: string[];
      if (rule.proto === "udp") {
        const listen = `UDP4-LISTEN:${rule.listen},fork,reuseaddr,bind=${topology.forwardHost}`;
        cmd = ["socat", "-T", String(SOCAT_UDP_IDLE_SECONDS), listen, `UDP4:${topology.backendHost}:${rule.backend}`];
      } else {
        const listen = `TCP-LISTEN:${rule.listen},fork,reuseaddr,backlog=4096,bind=${topology.forwardHost}`;
        cmd = ["socat", listen, `TCP:${topology.backendHost}:${rule.backend}`];
      }
      // Its forked children (a TCP connection still closing, a UDP peer within its -T timeout) outlive it: stopped with it.
      const proc = spawnLogged(`${tag} ${rule.service}/${rule.proto}`, [...limitPrefix, ...cmd], { log: ruleLog, withDescendants: true });
      // The UDP service's TCP rule (iperf3's control connection) is an extra process; the UDP one counts for it.
      if (rule.service === "udp" && rule.proto === "tcp") extra.push(proc);
      else byService.set(rule.service, proc);
    }
  } else {
    logFiles.push(log);
    let cmd: string[];
    if (name === "haproxy") {
      const config = join(dir, `${tag}.cfg`);
      writeFileSync(config, haproxyConfig(rules, topology, options.fdLimit));
      cmd = ["haproxy", "-db", "-f", config];
    } else {
      const config = join(dir, `${tag}.conf`);
      writeFileSync(config, (name === "oi-plain" ? "splice off\n" : "") + rinetdStyleRules(rules, topology));
      if (name === "oi" || name === "oi-plain") cmd = [process.execPath, options.oiCli, "-c", config];
      else if (name === "oi-w2") cmd = [process.execPath, options.oiCli, "-c", config, "--workers", "2"];
      else cmd = ["rinetd", "-f", "-c", config];
    }
    const proc = spawnLogged(tag, [...limitPrefix, ...cmd], { log, env: options.env ?? {} });
    for (const rule of rules) byService.set(rule.service, proc);
  }
  const procs = [...new Set([...byService.values(), ...extra])];
  const system: RunningSystem = {
    name,
    host: topology.forwardHost,
    port: (service) => rules.find((rule) => rule.service === service)?.listen ?? 0,
    pid: (service) => byService.get(service)?.pid,
    procs,
    logFiles,
    async stop(): Promise<void> {
      await Promise.all(procs.map((proc) => proc.stop()));
    },
  };
  // Probe a port whose backend takes an empty connection quietly (iperf3 would log a failed test).
  const tcpRules = rules.filter((rule) => rule.proto === "tcp");
  const probe = tcpRules.find((rule) => rule.service === "hold") ?? tcpRules.find((rule) => rule.service !== "iperf") ?? tcpRules[0]!;
  const ready = await waitForPort(system.host, probe.listen, 15_000);
  await Bun.sleep(300);
  if (!ready || procs.some((proc) => proc.proc.exitCode !== null)) {
    await system.stop();
    throw new Error(`${name} did not start (see ${logFiles.join(", ")})`);
  }
  return system;
}

/** The system as measured by every figure: all four services, on its own ports. */
export async function startSystem(name: SystemName, backends: Backends, options: Omit<LaunchOptions, "tag">): Promise<RunningSystem> {
  if (name === "direct") {
    return {
      name,
      host: options.topology.backendHost,
      port: (service) => BACKEND_PORTS[service],
      pid: (service) => backends.procs[service]?.pid,
      procs: [],
      logFiles: [],
      stop: async () => {},
    };
  }
  if (name === "dnat") return startDnat(options.topology);
  return launch(name, serviceRules(name, [...SERVICES, ...UDP_SERVICES]), { ...options, tag: name });
}

/**
 * `dnat`: no process. The kernel forwards from the host's client-side address
 * to the server namespace through an nftables DNAT rule per port; the table
 * exists only while dnat is measured (see activate), so the connection
 * tracking it brings never touches the other systems' traffic.
 */
async function startDnat(topology: Topology): Promise<RunningSystem> {
  if (topology.kind !== "netns") throw new Error("dnat needs the --netns path");
  const rules = serviceRules("dnat", [...SERVICES, ...UDP_SERVICES]);
  const ruleset = dnatRuleset(rules, topology);
  return {
    name: "dnat",
    host: topology.forwardHost,
    port: (service) => rules.find((rule) => rule.service === service)?.listen ?? 0,
    pid: () => undefined,
    procs: [],
    logFiles: [],
    activate: () => installDnat(ruleset),
    deactivate: () => removeDnat(),
    stop: () => removeDnat(),
  };
}

/** Port offset of the fresh instances started for one measurement. */
export const FRESH_PORT_OFFSET = 100;

/**
 * A fresh instance of forwarder `name` forwarding only `service` (on its usual
 * port + 100): for figures a warmed-up process would distort (idle memory:
 * freed buffers stay resident and are reused) and for the profiler.
 */
export async function startFresh(name: ForwarderName, service: Service, options: LaunchOptions, extra: Service[] = []): Promise<RunningSystem> {
  return launch(name, serviceRules(name, [service, ...extra], FRESH_PORT_OFFSET), options);
}

const IDLE_CLIENT = join(import.meta.dir, "agents", "idle-client.ts");

/**
 * True when a byte sent to the system's hold port reaches the holder: the
 * system really forwards. Sent from this process, or for dnat (whose rule
 * matches packets coming from the client namespace only) from a one-connection
 * idle client in that namespace.
 */
export async function forwardsEndToEnd(system: RunningSystem, backends: Backends, topology?: Topology, dir?: string): Promise<boolean> {
  const before = backends.holdTotal();
  if (system.name === "dnat" && topology !== undefined && dir !== undefined) {
    const cmd = [...topology.clientPrefix, process.execPath, IDLE_CLIENT, system.host, String(system.port("hold")), "1"];
    const client = spawnLogged("dnat check", cmd, { log: join(dir, "dnat-check.log"), collect: true });
    try {
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline && backends.holdTotal() <= before) await Bun.sleep(50);
      return backends.holdTotal() > before;
    } finally {
      await client.stop();
    }
  }
  try {
    const socket = await Bun.connect({ hostname: system.host, port: system.port("hold"), socket: { data(): void {}, error(): void {} } });
    socket.write("x");
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && backends.holdTotal() <= before) await Bun.sleep(50);
    const arrived = backends.holdTotal() > before;
    socket.end();
    return arrived;
  } catch {
    return false;
  }
}
