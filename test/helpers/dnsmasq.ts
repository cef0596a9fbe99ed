/**
 * A private dnsmasq for DNS tests: authoritative for the records a test
 * gives (SRV and host records), on a loopback port of its own, with no
 * upstream, no /etc/hosts and no system config; stopped by PID after the
 * test. Restarting it on the same port with other records is how a test
 * changes what DNS says.
 */
import { Resolver } from "node:dns/promises";
import type { Subprocess } from "bun";
import { onCleanup } from "./harness.ts";
import { freeBlock } from "./port-block.ts";
import { toolPath } from "./servers.ts";

export interface DnsRecords {
  /** `_svc._tcp.x.test,target.x.test,PORT,PRIORITY,WEIGHT` (dnsmasq's --srv-host). */
  srv?: string[];
  /** `name,address` (dnsmasq's --host-record). */
  hosts?: string[];
  /** TTL of every answer, seconds. */
  ttl?: number;
}

export interface Dnsmasq {
  port: number;
  /** Stop it and start it again on the same port with `records`. */
  restart(records: DnsRecords): Promise<void>;
  stop(): Promise<void>;
}

function args(port: number, records: DnsRecords): string[] {
  return [
    "-k",
    "--conf-file=/dev/null",
    `--port=${port}`,
    "--listen-address=127.0.0.1",
    "--bind-interfaces",
    "--no-resolv",
    "--no-hosts",
    `--local-ttl=${records.ttl ?? 1}`,
    ...(records.srv ?? []).map((record) => `--srv-host=${record}`),
    ...(records.hosts ?? []).map((record) => `--host-record=${record}`),
  ];
}

/** Wait until the server answers for `name` (its first host record), or fail. */
async function answering(port: number, name: string, proc: Subprocess, timeoutMs: number): Promise<void> {
  const resolver = new Resolver({ timeout: 200, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await resolver.resolve4(name);
      return;
    } catch (error) {
      if (proc.exitCode !== null) throw new Error(`dnsmasq exited with ${proc.exitCode}`);
      if (Date.now() > deadline) throw new Error(`dnsmasq on port ${port} does not answer for ${name}: ${String(error)}`);
      await Bun.sleep(50);
    }
  }
}

/** Start dnsmasq with `records` (at least one host record, which is used to see it answer). */
export async function startDnsmasq(records: DnsRecords): Promise<Dnsmasq> {
  const command = toolPath("dnsmasq");
  if (command === undefined) throw new Error("dnsmasq is not installed (Debian package dnsmasq-base)");
  const port = await freeBlock(1);
  let proc: Subprocess | undefined;
  const stop = async () => {
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const running = proc;
    running.kill("SIGTERM");
    const timer = setTimeout(() => running.kill("SIGKILL"), 3000);
    await running.exited;
    clearTimeout(timer);
  };
  const start = async (given: DnsRecords) => {
    const first = given.hosts?.[0]?.split(",")[0];
    if (first === undefined) throw new Error("startDnsmasq needs a host record to see it answer");
    proc = Bun.spawn([command, ...args(port, given)], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
    await answering(port, first, proc, 5000);
  };
  onCleanup(stop);
  await start(records);
  return {
    port,
    async restart(given) {
      await stop();
      await start(given);
    },
    stop,
  };
}
