/**
 * @module The servers behind every forwarder, shared by all systems: iperf3
 * (throughput, CPU cost), sockperf (latency), nginx on a private config
 * (connections per second), the holder (idle memory) and dnsmasq (DNS over
 * UDP, answering a few host records itself: no upstream, no hosts file; the
 * iperf3 server serves the UDP throughput figure too). Each runs with its own
 * files in the bench's temp dir and is stopped by its PID.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BACKEND_PORTS, waitForPort, waitForText } from "./net.ts";
import { spawnLogged, type Started } from "./procs.ts";
import type { Service, Topology } from "./types.ts";

export interface Backends {
  /** Process serving each service (undefined when its tool is missing). */
  procs: Partial<Record<Service, Started>>;
  /** Connections the holder has whose first byte arrived. */
  holdCount(): number;
  /** Connections whose first byte ever reached the holder. */
  holdTotal(): number;
}

const HOLDER = join(import.meta.dir, "agents", "holder.ts");

/** Names dnsmasq answers (A records), the queries of the DNS figure. */
export const DNS_NAMES: readonly string[] = Array.from({ length: 8 }, (_, i) => `host${i}.oibench.test`);

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

export function nginxConfig(dir: string, host: string, port: number): string {
  return `daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path ${dir}/nginx-body;
  proxy_temp_path ${dir}/nginx-proxy;
  fastcgi_temp_path ${dir}/nginx-fastcgi;
  uwsgi_temp_path ${dir}/nginx-uwsgi;
  scgi_temp_path ${dir}/nginx-scgi;
  server {
    listen ${host}:${port} backlog=4096;
    location / { return 200 "ok\\n"; }
  }
}
`;
}

export interface Holder {
  proc: Started;
  /** Connections held whose first byte arrived. */
  count(): number;
  /** Connections whose first byte ever arrived. */
  total(): number;
}

function lastReport(proc: Started): RegExpExecArray | null {
  const text = proc.output();
  return /count (\d+) total (\d+)\n$/.exec(text.slice(text.lastIndexOf("count")));
}

/** Start a holder (see agents/holder.ts) on the backend side; undefined if it does not come up. */
export async function startHolder(topology: Topology, dir: string, limitPrefix: string[], port: number, tag: string): Promise<Holder | undefined> {
  const cmd = [...topology.serverPrefix, ...limitPrefix, process.execPath, HOLDER, topology.backendHost, String(port)];
  const proc = spawnLogged(tag, cmd, { log: join(dir, `${tag}.log`), collect: true });
  if (!(await waitForText(proc.output, /listening/, 10_000))) {
    await proc.stop();
    return undefined;
  }
  return {
    proc,
    count: () => Number(lastReport(proc)?.[1] ?? 0),
    total: () => Number(lastReport(proc)?.[2] ?? 0),
  };
}

export async function startBackends(
  topology: Topology,
  dir: string,
  missing: Set<string>,
  limitPrefix: string[],
  log: (line: string) => void,
): Promise<Backends> {
  const host = topology.backendHost;
  const prefix = [...topology.serverPrefix, ...limitPrefix];
  const procs: Partial<Record<Service, Started>> = {};
  const failures: string[] = [];

  if (!missing.has("iperf3")) {
    const logFile = join(dir, "iperf3-server.log");
    const proc = spawnLogged("iperf3 -s", [...prefix, "iperf3", "-s", "-i", "0", "--forceflush", "-B", host, "-p", String(BACKEND_PORTS.iperf)], { log: logFile });
    if (await waitForText(() => readText(logFile), /Server listening/, 10_000)) {
      procs.iperf = proc;
      procs.udp = proc;
    } else failures.push("iperf3 -s");
  }
  if (!missing.has("sockperf")) {
    const logFile = join(dir, "sockperf-server.log");
    const proc = spawnLogged("sockperf sr", [...prefix, "sockperf", "sr", "--tcp", "--uc-reuseaddr", "-i", host, "-p", String(BACKEND_PORTS.sockperf)], { log: logFile });
    if (await waitForPort(host, BACKEND_PORTS.sockperf, 10_000)) procs.sockperf = proc;
    else failures.push("sockperf sr");
  }
  if (!missing.has("nginx")) {
    const config = join(dir, "nginx.conf");
    writeFileSync(config, nginxConfig(dir, host, BACKEND_PORTS.http));
    const cmd = [...prefix, "nginx", "-p", dir, "-e", join(dir, "nginx-error.log"), "-c", config];
    const proc = spawnLogged("nginx", cmd, { log: join(dir, "nginx.log") });
    if (await waitForPort(host, BACKEND_PORTS.http, 10_000)) procs.http = proc;
    else failures.push(`nginx (see ${join(dir, "nginx-error.log")})`);
  }
  if (!missing.has("dnsmasq")) {
    const logFile = join(dir, "dnsmasq.log");
    const cmd = [
      ...prefix, "dnsmasq", "-k", "--conf-file=/dev/null", `--pid-file=${join(dir, "dnsmasq.pid")}`, "--log-facility=-",
      `--port=${BACKEND_PORTS.dns}`, `--listen-address=${host}`, "--bind-interfaces", "--no-resolv", "--no-hosts",
      ...DNS_NAMES.map((name, i) => `--host-record=${name},192.0.2.${i + 1}`),
    ];
    const proc = spawnLogged("dnsmasq", cmd, { log: logFile });
    // dnsmasq serves DNS over TCP on the same port: a TCP connect shows it is up.
    if (await waitForPort(host, BACKEND_PORTS.dns, 10_000)) procs.dns = proc;
    else failures.push(`dnsmasq (see ${logFile})`);
  }
  const holder = await startHolder(topology, dir, limitPrefix, BACKEND_PORTS.hold, "holder");
  if (holder !== undefined) procs.hold = holder.proc;
  else failures.push("holder");

  for (const failure of failures) log(`backend did not start: ${failure}`);
  return {
    procs,
    holdCount: () => holder?.count() ?? 0,
    holdTotal: () => holder?.total() ?? 0,
  };
}
