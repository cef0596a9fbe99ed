/**
 * @module Network faults between clients and the forwarder: a namespace of
 * the bench's own joined to the host by an impaired link (bench/impair/, a
 * TUN shim: this kernel has no sch_netem), and the same transfers made
 * directly to the backend, through oi and through rinetd across it, in the
 * same run. For each fault (loss 1 % and 5 %, 50 ms delay with 10 ms
 * jitter, reordering, duplication, a link that goes down for 2 s and comes
 * back): iperf3's throughput and a hash-checked transfer (every byte
 * compared end to end). The backends listen on the host; oi and rinetd
 * forward from the link's host address to them over loopback.
 *
 * Root only. Writes bench/results/faults.json and faults.md.
 *
 * Throughput is the median of `--rounds` iperf3 runs per fault and system,
 * the systems taking turns within each round.
 *
 *   bun bench/faults.ts [--seconds 5] [--rounds 3] [--mib 16] [--seed 1] [--systems direct,oi,rinetd]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ImpairedLink, LINK } from "./impair/link.ts";
import { NO_IMPAIRMENT, type Impairment } from "./impair/impairment.ts";
import { startHashSink, type SinkVerdict, type TransferResult } from "./impair/transfer.ts";
import { startOi } from "../test/helpers/oi-process.ts";
import { median } from "./stats.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    mib: { type: "string", default: "16" },
    seed: { type: "string", default: "1" },
    systems: { type: "string", default: "direct,oi,rinetd" },
    rounds: { type: "string", default: "3" },
  },
});
const seconds = Number(values.seconds);
const transferBytes = Number(values.mib) * 2 ** 20;
const seed = Number(values.seed);
const systems = values.systems.split(",") as Array<"direct" | "oi" | "rinetd">;
const rounds = Number(values.rounds);
if (process.getuid?.() !== 0) throw new Error("bench/faults.ts needs root (network namespaces and TUN devices)");

interface FaultCase {
  name: string;
  impairment: Impairment;
  /** The link goes down `downAtMs` into each measurement, for `downForMs`. */
  flap?: { downAtMs: number; downForMs: number };
}

const CASES: FaultCase[] = [
  { name: "none", impairment: NO_IMPAIRMENT },
  { name: "loss 1 %", impairment: { ...NO_IMPAIRMENT, loss: 0.01 } },
  { name: "loss 5 %", impairment: { ...NO_IMPAIRMENT, loss: 0.05 } },
  { name: "delay 50 ms ± 10 ms", impairment: { ...NO_IMPAIRMENT, delayMs: 50, jitterMs: 10 } },
  { name: "reorder 5 % by 10 ms", impairment: { ...NO_IMPAIRMENT, delayMs: 1, reorderShare: 0.05, reorderExtraMs: 10 } },
  { name: "duplicate 2 %", impairment: { ...NO_IMPAIRMENT, duplicateShare: 0.02 } },
  { name: "link down 2 s", impairment: NO_IMPAIRMENT, flap: { downAtMs: 1000, downForMs: 2000 } },
];

async function runBounded(command: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(command, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}

function freePort(hostname: string): number {
  const probe = Bun.listen({ hostname, port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

const link = await ImpairedLink.create(seed);
const started: Array<{ kill(): void; exited: Promise<number> }> = [];
const directory = mkdtempSync(join(tmpdir(), "oi-faults-"));
let oiStop: (() => Promise<number>) | undefined;
const cleanup = async () => {
  await oiStop?.();
  for (const proc of started) proc.kill();
  await Promise.all(started.map((proc) => proc.exited));
  await link.close();
  rmSync(directory, { recursive: true, force: true });
};
process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));

try {
  // Backends: an iperf3 server and a hash sink on loopback (behind the forwarders) and on the link's host address (direct).
  const iperfLoopback = freePort("127.0.0.1");
  const iperfDirect = freePort(LINK.hostAddress);
  for (const [address, port] of [["127.0.0.1", iperfLoopback], [LINK.hostAddress, iperfDirect]] as const) {
    started.push(Bun.spawn(["iperf3", "-s", "-B", address, "-p", String(port)], { stdout: "ignore", stderr: "ignore" }));
  }
  const sinkLoopback = startHashSink("127.0.0.1");
  const sinkDirect = startHashSink(LINK.hostAddress);

  const ports = {
    direct: { iperf: iperfDirect, transfer: sinkDirect.port },
    oi: { iperf: freePort(LINK.hostAddress), transfer: freePort(LINK.hostAddress) },
    rinetd: { iperf: freePort(LINK.hostAddress), transfer: freePort(LINK.hostAddress) },
  };
  const rules = (system: "oi" | "rinetd") =>
    `${LINK.hostAddress} ${ports[system].iperf} 127.0.0.1 ${iperfLoopback}\n${LINK.hostAddress} ${ports[system].transfer} 127.0.0.1 ${sinkLoopback.port}\n`;
  if (systems.includes("oi")) {
    writeFileSync(join(directory, "oi.conf"), rules("oi"));
    const oi = await startOi(join(directory, "oi.conf"));
    oiStop = () => oi.stop();
  }
  if (systems.includes("rinetd")) {
    writeFileSync(join(directory, "rinetd.conf"), rules("rinetd"));
    started.push(Bun.spawn(["rinetd", "-f", "-c", join(directory, "rinetd.conf")], { stdout: "ignore", stderr: "ignore" }));
  }
  await Bun.sleep(500);

  /** Runs `work` with the case's impairment on (and its flap, timed from the start), then turns it off. */
  async function impaired<T>(fault: FaultCase, work: () => Promise<T>): Promise<T> {
    link.impair(fault.impairment);
    const timers: Timer[] = [];
    if (fault.flap !== undefined) {
      const { downAtMs, downForMs } = fault.flap;
      timers.push(setTimeout(() => link.setDown(true), downAtMs));
      timers.push(setTimeout(() => link.setDown(false), downAtMs + downForMs));
    }
    try {
      return await work();
    } finally {
      for (const timer of timers) clearTimeout(timer);
      link.setDown(false);
      link.impair(NO_IMPAIRMENT);
      // Let what the delays still hold drain before the next measurement.
      await Bun.sleep(300);
    }
  }

  interface Row {
    fault: string;
    system: string;
    mbits: number | null;
    retransmits: number | null;
    iperfError?: string;
    transfer: TransferResult;
    /** The sink's own verdict on the bytes it received (independent of the answer after the half-close). */
    arrived: SinkVerdict | undefined;
    shim: ReturnType<typeof link.shared.snapshot>;
  }
  const rows: Row[] = [];
  for (const fault of CASES) {
    // Alternate the order of the systems from case to case, so none is always measured first.
    const order = CASES.indexOf(fault) % 2 === 0 ? systems : [...systems].reverse();
    for (const system of order) {
      const before = link.shared.snapshot();
      const measured: number[] = [];
      const retransmitted: number[] = [];
      let iperfError: string | undefined;
      for (let round = 0; round < rounds; round++) {
        const iperf = await impaired(fault, () =>
          runBounded([...link.inNamespace, "iperf3", "-c", LINK.hostAddress, "-p", String(ports[system].iperf), "-t", String(seconds), "-J"], (seconds + 60) * 1000),
        );
        try {
          const json = JSON.parse(iperf.stdout) as { end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } }; error?: string };
          if (json.end?.sum_received !== undefined) measured.push(json.end.sum_received.bits_per_second / 1e6);
          if (json.end?.sum_sent?.retransmits !== undefined) retransmitted.push(json.end.sum_sent.retransmits);
          iperfError ??= json.error;
        } catch {
          iperfError ??= `iperf3 exited ${iperf.code}: ${iperf.stderr.trim().slice(0, 200)}`;
        }
      }
      const mbits = median(measured);
      const retransmits = median(retransmitted);
      const sink = system === "direct" ? sinkDirect : sinkLoopback;
      const verdictsBefore = sink.verdicts.length;
      const transferRun = await impaired(fault, () =>
        runBounded(
          [...link.inNamespace, process.execPath, join(import.meta.dir, "impair", "transfer.ts"), LINK.hostAddress, String(ports[system].transfer), String(transferBytes), String(seed), "120000"],
          130_000,
        ),
      );
      let transfer: TransferResult;
      try {
        transfer = JSON.parse(transferRun.stdout) as TransferResult;
      } catch {
        transfer = { intact: false, bytes: transferBytes, ms: 0, error: `transfer exited ${transferRun.code}: ${transferRun.stderr.trim().slice(0, 200)}` };
      }
      // The sink judges when its side closes: give it a moment after the client is done.
      for (let i = 0; i < 50 && sink.verdicts.length === verdictsBefore; i++) await Bun.sleep(100);
      const arrived = sink.verdicts[verdictsBefore];
      const after = link.shared.snapshot();
      const shim = Object.fromEntries(Object.entries(after).map(([key, value]) => [key, value - before[key as keyof typeof before]])) as Row["shim"];
      const row: Row = { fault: fault.name, system, mbits, retransmits, ...(iperfError === undefined ? {} : { iperfError }), transfer, arrived, shim };
      rows.push(row);
      console.log(
        `${fault.name.padEnd(22)} ${system.padEnd(7)} ${mbits === null ? "-" : mbits.toFixed(0).padStart(5)} Mbit/s retr ${retransmits ?? "-"}  bytes ${arrived?.intact ? "intact" : `BROKEN (${arrived?.received ?? "?"} of ${transferBytes})`}, answer ${transfer.intact ? "ok" : `missing (${transfer.error})`} in ${(transfer.ms / 1000).toFixed(2)} s  shim dropped ${shim.dropped}/${shim.packets}${iperfError ? `  iperf3: ${iperfError}` : ""}`,
      );
    }
  }

  const results = join(import.meta.dir, "results");
  mkdirSync(results, { recursive: true });
  const command = `bun bench/faults.ts --seconds ${seconds} --rounds ${rounds} --mib ${values.mib} --seed ${seed} --systems ${systems.join(",")}`;
  writeFileSync(join(results, "faults.json"), JSON.stringify({ command, date: new Date().toISOString(), rows }, null, 2));
  const cell = (fault: string, system: string) => rows.find((row) => row.fault === fault && row.system === system);
  const ratio = (a: number | null | undefined, b: number | null | undefined) => (a == null || b == null || b === 0 ? "-" : `×${(a / b).toFixed(2)}`);
  const markdown = [
    `# Network faults (${command})`,
    "",
    `${new Date().toISOString()}. Clients in a namespace reach the host over an impaired link (TUN shim, seed ${seed}); the backends are on the host: direct is client → backend across the link; oi and rinetd forward from the link's host address to the backend over loopback. iperf3 -t ${seconds}, median of ${rounds} (Mbit/s received; sender's retransmits) and a ${values.mib} MiB upload checked by SHA-256 at the backend ("transfers intact"), which then answers the client's half-close with the hash (rinetd does not keep a half-closed connection open, so its clients get no answer: noted, not counted as a loss).`,
    "",
    `| fault | ${systems.map((s) => `${s} Mbit/s (retr)`).join(" | ")} | oi ÷ direct | oi ÷ rinetd | transfers intact |`,
    `|---|${systems.map(() => "---|").join("")}---|---|---|`,
    ...CASES.map((fault) => {
      const cells = systems.map((system) => {
        const row = cell(fault.name, system);
        return row?.mbits == null ? `- (${row?.iperfError ?? "no run"})` : `${row.mbits.toFixed(0)} (${row.retransmits ?? "-"})`;
      });
      const intact = systems
        .map((system) => {
          const row = cell(fault.name, system);
          return `${system} ${row?.arrived?.intact ? "yes" : "NO"}${row?.arrived?.intact && !row.transfer.intact ? " (no answer after the half-close)" : ""}`;
        })
        .join(", ");
      return `| ${fault.name} | ${cells.join(" | ")} | ${ratio(cell(fault.name, "oi")?.mbits, cell(fault.name, "direct")?.mbits)} | ${ratio(cell(fault.name, "oi")?.mbits, cell(fault.name, "rinetd")?.mbits)} | ${intact} |`;
    }),
    "",
  ].join("\n");
  writeFileSync(join(results, "faults.md"), markdown);
  console.log(markdown);
  sinkLoopback.stop(true);
  sinkDirect.stop(true);
} finally {
  await cleanup();
}
