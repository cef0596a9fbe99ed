/**
 * @module What one new connection costs, and how far below oi's cost a Bun
 * process can go at all: ApacheBench without keep-alive against nginx on
 * loopback, through oi (on Bun's sockets, and on its direct sockets), through
 * two minimal forwarders in Bun (one on Bun's
 * sockets, one on bun:ffi system calls with an epoll loop of its own; see
 * bench/agents/), through rinetd and through haproxy, interleaved round after
 * round. Per system: requests per second, failed requests, and the
 * forwarder's CPU time per connection split into user and system time (from
 * /proc/PID/stat), medians with min..max.
 *
 *   bun bench/conn-floor.ts [--rounds 5] [--requests 20000] [--concurrency 50]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { nginxConfig } from "./backends.ts";
import { freePort, waitForPort } from "./net.ts";
import { cpuTimes } from "./proc-stats.ts";
import { spread } from "./stats.ts";
import { installSignalHandlers, runBounded, spawnLogged, type Started, stopAll } from "./procs.ts";
import { ensureTools } from "./tools.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    requests: { type: "string", default: "20000" },
    concurrency: { type: "string", default: "50" },
  },
});
const rounds = Number(values.rounds);
const requests = Number(values.requests);
const concurrency = Number(values.concurrency);
const AGENTS = join(import.meta.dir, "agents");
const CLI = join(import.meta.dir, "..", "src", "cli.ts");

interface System {
  name: string;
  port: number;
  proc: Started;
}

interface Run {
  rate: number;
  failed: number;
  userUs: number;
  systemUs: number;
}

installSignalHandlers();
const missing = await ensureTools(true, (line) => console.error(line));
for (const tool of ["nginx", "ab"]) if (missing.has(tool)) throw new Error(`${tool} is needed and missing`);
const dir = mkdtempSync(join(tmpdir(), "oi-conn-floor-"));
const backendPort = freePort();
writeFileSync(join(dir, "nginx.conf"), nginxConfig(dir, "127.0.0.1", backendPort));
const nginx = spawnLogged("nginx", ["nginx", "-p", dir, "-e", join(dir, "nginx-error.log"), "-c", join(dir, "nginx.conf")], { log: join(dir, "nginx.log") });
if (!(await waitForPort("127.0.0.1", backendPort, 10_000))) throw new Error("nginx did not start");

/** Each system's command, given the port it listens on. */
const commands: Array<[string, (port: number) => string[] | undefined]> = [
  ...(["bun", "direct"] as const).map((sockets): [string, (port: number) => string[]] => [
    `oi, sockets ${sockets}`,
    (port) => {
      writeFileSync(join(dir, `oi-${sockets}.conf`), `sockets ${sockets}\n127.0.0.1 ${port} 127.0.0.1 ${backendPort}\n`);
      return [process.execPath, CLI, "-c", join(dir, `oi-${sockets}.conf`)];
    },
  ]),
  ["bun sockets, minimal", (port) => [process.execPath, join(AGENTS, "bun-forwarder.ts"), String(port), String(backendPort)]],
  ["bun:ffi epoll, minimal", (port) => [process.execPath, join(AGENTS, "ffi-forwarder.ts"), String(port), String(backendPort)]],
  ["rinetd", (port) => {
    if (missing.has("rinetd")) return undefined;
    writeFileSync(join(dir, "rinetd.conf"), `127.0.0.1 ${port} 127.0.0.1 ${backendPort}\n`);
    return ["rinetd", "-f", "-c", join(dir, "rinetd.conf")];
  }],
  ["haproxy", (port) => {
    if (missing.has("haproxy")) return undefined;
    const config = `global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 10s\n  timeout client 1h\n  timeout server 1h\nlisten fwd\n  bind 127.0.0.1:${port}\n  server backend 127.0.0.1:${backendPort}\n`;
    writeFileSync(join(dir, "haproxy.cfg"), config);
    return ["haproxy", "-f", join(dir, "haproxy.cfg"), "-db"];
  }],
];

const systems: System[] = [];
for (const [name, command] of commands) {
  const port = freePort();
  const cmd = command(port);
  if (cmd === undefined) {
    console.error(`${name}: missing, skipped`);
    continue;
  }
  const proc = spawnLogged(name, cmd, { log: join(dir, `${name.replace(/\W+/g, "-")}.log`) });
  if (!(await waitForPort("127.0.0.1", port, 10_000))) throw new Error(`${name} did not start (see ${dir})`);
  systems.push({ name, port, proc });
}

async function ab(system: System): Promise<Run | undefined> {
  const before = cpuTimes(system.proc.pid);
  const cmd = ["ab", "-q", "-r", "-s", "10", "-c", String(concurrency), "-n", String(requests), `http://127.0.0.1:${system.port}/`];
  const result = await runBounded(cmd, 120_000);
  const after = cpuTimes(system.proc.pid);
  const rate = /Requests per second:\s+([\d.]+)/.exec(result.stdout);
  if (rate === null) return undefined;
  const perConnection = (seconds: number) => (seconds / requests) * 1e6;
  return {
    rate: Number(rate[1]),
    failed: Number(/Failed requests:\s+(\d+)/.exec(result.stdout)?.[1] ?? 0),
    userUs: perConnection(after.user - before.user),
    systemUs: perConnection(after.system - before.system),
  };
}

const results = new Map<string, Run[]>();
try {
  // A warm-up run each, not counted: JIT compilation, the kernel's first connections.
  for (const system of systems) await ab(system);
  for (let round = 1; round <= rounds; round++) {
    for (const system of systems) {
      const run = await ab(system);
      if (run !== undefined) results.set(system.name, [...(results.get(system.name) ?? []), run]);
      console.error(`round ${round} ${system.name}: ${run === undefined ? "failed" : `${run.rate.toFixed(0)}/s, ${(run.userUs + run.systemUs).toFixed(1)} µs CPU per connection (user ${run.userUs.toFixed(1)})`}`);
    }
  }
} finally {
  await nginx.stop();
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
}

console.log(`ab -c ${concurrency} -n ${requests}, ${rounds} rounds, nginx on loopback behind each system\n`);
console.log("| system | requests/s median (min..max) | CPU µs per connection: user | system | total | failed |");
console.log("|---|---|---|---|---|---|");
for (const system of systems) {
  const runs = results.get(system.name) ?? [];
  console.log(
    `| ${system.name} | ${spread(runs.map((r) => r.rate), 0)} | ${spread(runs.map((r) => r.userUs), 1)} | ${spread(runs.map((r) => r.systemUs), 1)} | ${spread(runs.map((r) => r.userUs + r.systemUs), 1)} | ${runs.reduce((sum, r) => sum + r.failed, 0)} |`,
  );
}
