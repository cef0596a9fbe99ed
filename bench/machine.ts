/**
 * @module The machine a run was made on, for the report: CPU, cores, kernel,
 * memory, Bun and the peer tools' versions, date.
 */
import { readFileSync } from "node:fs";
import { cpus, hostname, release, totalmem } from "node:os";
import type { MachineInfo } from "./types.ts";

function osName(): string {
  try {
    return /^PRETTY_NAME="?([^"\n]+)"?/m.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? "unknown";
  } catch {
    return "unknown";
  }
}

export function machineInfo(tools: Record<string, string>, hardwareCounters: boolean): MachineInfo {
  const cpuList = cpus();
  return {
    date: new Date().toISOString(),
    hostname: hostname(),
    cpu_model: cpuList[0]?.model.trim() ?? "unknown",
    cores: cpuList.length,
    kernel: release(),
    os: osName(),
    memory_mib: Math.round(totalmem() / 2 ** 20),
    bun: Bun.version,
    tools,
    hardware_counters: hardwareCounters,
  };
}
