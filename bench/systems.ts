/**
 * @module The systems under test: each forwarder started with its own config
 * in the bench's temp dir, listening on its own ports for the four services,
 * and `direct` (the client talks to the backend itself). Every process is
 * stopped by its PID.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Backends } from "./backends.ts";
import { BACKEND_PORTS, frontPort, waitForPort } from "./net.ts";
import { spawnLogged, type Started } from "./procs.ts";
import { SERVICES, type Service, type SystemName, type Topology } from "./types.ts";

export const OI_CLI = join(import.meta.dir, "..", "src", "cli.ts");

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
}

function rinetdStyleRules(system: SystemName, topology: Topology): string {
  return SERVICES.map(
    (service) => `${topology.forwardHost} ${frontPort(system, service)} ${topology.backendHost} ${BACKEND_PORTS[service]}\n`,
  ).join("");
}

function haproxyConfig(topology: Topology): string {
  const sections = SERVICES.map(
    (service) => `listen ${service}
  bind ${topology.forwardHost}:${frontPort("haproxy", service)}
  server backend ${topology.backendHost}:${BACKEND_PORTS[service]}
`,
  ).join("");
  return `global
  maxconn 40000
defaults
  mode tcp
  timeout connect 10s
  timeout client 1h
  timeout server 1h
${sections}`;
}

function forwarder(name: SystemName, procs: Started[], logFiles: string[], topology: Topology, pidOf: (service: Service) => number | undefined): RunningSystem {
  return {
    name,
    host: topology.forwardHost,
    port: (service) => frontPort(name, service),
    pid: pidOf,
    procs,
    logFiles,
    async stop(): Promise<void> {
      await Promise.all(procs.map((proc) => proc.stop()));
    },
  };
}

/** Start `oi` from this checkout with `extraEnv` (the profiler's JIT dump settings). */
export function spawnOi(dir: string, topology: Topology, limitPrefix: string[], extraEnv: Record<string, string> = {}, tag = "oi"): { proc: Started; log: string } {
  const config = join(dir, `${tag}.conf`);
  writeFileSync(config, rinetdStyleRules("oi", topology));
  const log = join(dir, `${tag}.log`);
  const proc = spawnLogged(tag, [...limitPrefix, process.execPath, OI_CLI, "-c", config], { log, env: extraEnv });
  return { proc, log };
}

/** Start `name` (or describe `direct`); resolves once its listeners accept, or throws. */
export async function startSystem(
  name: SystemName,
  topology: Topology,
  dir: string,
  backends: Backends,
  limitPrefix: string[],
): Promise<RunningSystem> {
  if (name === "direct") {
    return {
      name,
      host: topology.backendHost,
      port: (service) => BACKEND_PORTS[service],
      pid: (service) => backends.procs[service]?.pid,
      procs: [],
      logFiles: [],
      stop: async () => {},
    };
  }
  let system: RunningSystem;
  if (name === "oi") {
    const { proc, log } = spawnOi(dir, topology, limitPrefix);
    system = forwarder(name, [proc], [log], topology, () => proc.pid);
  } else if (name === "rinetd") {
    const config = join(dir, "rinetd.conf");
    writeFileSync(config, rinetdStyleRules("rinetd", topology));
    const log = join(dir, "rinetd.log");
    const proc = spawnLogged("rinetd", [...limitPrefix, "rinetd", "-f", "-c", config], { log });
    system = forwarder(name, [proc], [log], topology, () => proc.pid);
  } else if (name === "haproxy") {
    const config = join(dir, "haproxy.cfg");
    writeFileSync(config, haproxyConfig(topology));
    const log = join(dir, "haproxy.log");
    const proc = spawnLogged("haproxy", [...limitPrefix, "haproxy", "-db", "-f", config], { log });
    system = forwarder(name, [proc], [log], topology, () => proc.pid);
  } else {
    // socat serves one address pair per process: one per service, each forking a child per connection.
    const byService = new Map<Service, Started>();
    const logs: string[] = [];
    for (const service of SERVICES) {
      const log = join(dir, `socat-${service}.log`);
      logs.push(log);
      const listen = `TCP-LISTEN:${frontPort("socat", service)},fork,reuseaddr,backlog=4096,bind=${topology.forwardHost}`;
      const connect = `TCP:${topology.backendHost}:${BACKEND_PORTS[service]}`;
      byService.set(service, spawnLogged(`socat ${service}`, [...limitPrefix, "socat", listen, connect], { log }));
    }
    system = forwarder(name, [...byService.values()], logs, topology, (service) => byService.get(service)?.pid);
  }
  // The holder takes probe connections quietly (iperf3 would log a failed test).
  const ready = await waitForPort(system.host, system.port("hold"), 15_000);
  await Bun.sleep(300);
  const dead = system.procs.filter((proc) => proc.proc.exitCode !== null);
  if (!ready || dead.length > 0) {
    await system.stop();
    throw new Error(`${name} did not start (see ${system.logFiles.join(", ")})`);
  }
  return system;
}
