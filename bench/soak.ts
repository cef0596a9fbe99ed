/**
 * @module A soak run: one `oi` under steady mixed traffic for N minutes,
 * watched for what grows. The traffic, every byte of it checked:
 *
 * - TCP request/response (echo, hashed), 20 a second, on the plain relay;
 * - bulk TCP, a 4 MiB echo every 2 s, which the splice worker takes over;
 * - UDP, 50 datagrams a second, each echoed and compared;
 * - a unix-socket backend, 10 requests a second;
 * - a rule with two backends, one of which goes away for 10 s every 40 s
 *   (oi must fail over: no client sees it);
 * - 100 idle connections held open for the whole run;
 * - a reload (SIGHUP) every 30 s, alternating the order of those two backends.
 *
 * Every 5 s it samples oi's private memory (RssAnon), open descriptors, the
 * admin server's /healthz round trip (an upper bound on event-loop lag) and
 * the error counters of /metrics. At the end the idle connections are let
 * go and the descriptors must be back at their baseline.
 *
 * Pass: after the warm-up (the first fifth of the run, at least 2 min; half of a short run),
 * RssAnon stays within 8 MiB; descriptors return to the baseline; no
 * transfer failed or differed; no log line outside the expected ones.
 * Writes bench/results/soak.{json,md,svg}.
 *
 *   bun bench/soak.ts --minutes 30 [--kinds tcp,bulk,udp,unix,failover,idle] [--reload-seconds 30] [--results soak]
 */
import { mkdirSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Socket, TCPSocketListener, UnixSocketListener } from "bun";
import { openDescriptors, percentile } from "../test/helpers/abuse.ts";
import { startOi } from "../test/helpers/oi-process.ts";
import { rssAnonKiB } from "../test/helpers/udp-flood.ts";

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "30" },
    "sample-seconds": { type: "string", default: "5" },
    // To find what grows: only some kinds of traffic, reloads at another period (0: none).
    kinds: { type: "string", default: "tcp,bulk,udp,unix,failover,idle" },
    "reload-seconds": { type: "string", default: "30" },
    // The reports' base name in bench/results/.
    results: { type: "string", default: "soak" },
  },
});
const kinds = new Set(values.kinds.split(","));
const reloadMs = Number(values["reload-seconds"]) * 1000;
const minutes = Number(values.minutes);
const sampleMs = Number(values["sample-seconds"]) * 1000;
const runMs = minutes * 60_000;
// A fifth of the run, at least 2 min, but never more than half of a short run.
const warmupMs = Math.min(Math.max(2 * 60_000, runMs / 5), runMs / 2);
const RESULTS = join(import.meta.dir, "results");

function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/** Bytes an echo could not write yet, by socket: written at the next drain, so nothing is dropped. */
const unsent = new WeakMap<Socket<undefined>, Uint8Array[]>();
function echoWrite(socket: Socket<undefined>): void {
  const queue = unsent.get(socket);
  while (queue !== undefined && queue.length > 0) {
    const next = queue[0]!;
    const taken = Math.max(0, socket.write(next));
    if (taken < next.length) {
      queue[0] = next.subarray(taken);
      return;
    }
    queue.shift();
  }
}
const echoHandlers = {
  data(socket: Socket<undefined>, chunk: Uint8Array) {
    const queue = unsent.get(socket) ?? [];
    unsent.set(socket, queue);
    queue.push(chunk.slice());
    echoWrite(socket);
  },
  drain: echoWrite,
  end(socket: Socket<undefined>) {
    socket.end();
  },
};

const directory = mkdtempSync(join(tmpdir(), "oi-soak-"));
const echo = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: echoHandlers });
const unixPath = join(directory, "echo.sock");
const unixEcho: UnixSocketListener<undefined> = Bun.listen({ unix: unixPath, socket: echoHandlers });
const hold = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
const udpEcho = await Bun.udpSocket({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    data(socket, data, port, address) {
      socket.send(data, port, address);
    },
  },
});
// The pair of backends of the fail-over rule: the second comes and goes.
const steady = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: echoHandlers });
const flappingPort = freePort();
let flapping: TCPSocketListener<undefined> | undefined = Bun.listen({ hostname: "127.0.0.1", port: flappingPort, socket: echoHandlers });

const ports = { tcp: freePort(), bulk: freePort(), udp: freePort(), unix: freePort(), failover: freePort(), idle: freePort(), admin: freePort() };
const config = join(directory, "soak.conf");
let reloads = 0;
function writeConfig(): void {
  const pair = reloads % 2 === 0 ? [steady.port, flappingPort] : [flappingPort, steady.port];
  writeFileSync(
    config,
    [
      `admin 127.0.0.1:${ports.admin}`,
      `127.0.0.1 ${ports.tcp} 127.0.0.1 ${echo.port}`,
      `127.0.0.1 ${ports.bulk} 127.0.0.1 ${echo.port}`,
      // A short UDP session timeout, so the session is gone soon after the traffic stops (the descriptor count at the end).
      `127.0.0.1 ${ports.udp}/udp 127.0.0.1 ${udpEcho.port}/udp [timeout=3]`,
      `127.0.0.1 ${ports.unix} unix:${unixPath}`,
      `127.0.0.1 ${ports.failover} 127.0.0.1:${pair[0]},127.0.0.1:${pair[1]} [lb=roundrobin]`,
      `127.0.0.1 ${ports.idle} 127.0.0.1 ${hold.port}`,
      "",
    ].join("\n"),
  );
}
writeConfig();
const oi = await startOi(config);
const pid = oi.proc.pid;
// However this script ends (an error, Ctrl-C, a kill), the oi it started goes with it.
process.on("exit", () => oi.proc.kill("SIGKILL"));
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => process.exit(130));

/** What happened to the traffic, by kind. */
const traffic: Record<string, { ok: number; failed: number; errors: string[] }> = {};
function count(kind: string, ok: boolean, error?: string): void {
  const entry = (traffic[kind] ??= { ok: 0, failed: 0, errors: [] });
  if (ok) entry.ok++;
  else {
    entry.failed++;
    if (entry.errors.length < 20 && error !== undefined) entry.errors.push(error);
  }
}

const deadline = performance.now() + runMs;
const running = () => performance.now() < deadline;
const timers: Timer[] = [];
function every(ms: number, work: () => Promise<void> | void): void {
  timers.push(setInterval(() => void work(), ms));
}

const request = new Uint8Array(2048).map((_, i) => (i * 31) & 0xff);
/** A request/response checked byte for byte (echoRoundTrip only counts). */
async function checkedEcho(kind: string, port: number, payload: Uint8Array, timeoutMs: number): Promise<void> {
  const expected = Bun.hash(payload);
  await new Promise<void>((resolve) => {
    const parts: Uint8Array[] = [];
    let received = 0;
    let done = false;
    const finish = (ok: boolean, error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      count(kind, ok, error);
      resolve();
    };
    const timer = setTimeout(() => finish(false, `no full echo within ${timeoutMs} ms (${received} of ${payload.length})`), timeoutMs);
    let offset = 0;
    const pump = (socket: Socket<undefined>) => {
      while (offset < payload.length) {
        const taken = socket.write(payload.subarray(offset, offset + 256 * 1024));
        if (taken <= 0) return;
        offset += taken;
      }
    };
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open: pump,
        drain: pump,
        data(socket, chunk) {
          parts.push(chunk.slice());
          received += chunk.length;
          if (received >= payload.length) {
            const whole = Buffer.concat(parts);
            finish(whole.length === payload.length && Bun.hash(whole) === expected, "echo differs");
            socket.end();
          }
        },
        close() {
          finish(false, `closed after ${received} of ${payload.length}`);
        },
        connectError(_socket, error) {
          finish(false, error.message);
        },
      },
    }).catch((error: Error) => finish(false, error.message));
  });
}

const bulk = new Uint8Array(4 * 2 ** 20).map((_, i) => (i * 7 + (i >> 10)) & 0xff);
// Priming: each kind of traffic once, so what oi makes the first time it is needed (the splice worker's
// thread, epoll set and pipes) exists before the descriptor baseline is taken.
await checkedEcho("priming", ports.bulk, bulk, 20_000);
await checkedEcho("priming", ports.tcp, request, 5000);
await checkedEcho("priming", ports.unix, request, 5000);
await checkedEcho("priming", ports.failover, request, 5000);
delete traffic.priming;
await Bun.sleep(1000);
const baselineFds = openDescriptors(pid);
const baselineKinds = descriptorKinds(pid);

if (kinds.has("tcp")) every(50, () => checkedEcho("tcp request/response", ports.tcp, request, 5000));
if (kinds.has("bulk")) every(2000, () => checkedEcho("tcp bulk 4 MiB (spliced)", ports.bulk, bulk, 20_000));
if (kinds.has("unix")) every(100, () => checkedEcho("unix backend", ports.unix, request, 5000));
if (kinds.has("failover")) every(250, () => checkedEcho("fail-over rule", ports.failover, request, 5000));

// UDP: one client socket, datagrams numbered, each must come back as sent.
const udpOutstanding = new Map<number, number>();
let udpSequence = 0;
const udpClient = await Bun.udpSocket({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    data(_socket, data) {
      const sequence = new DataView(data.buffer, data.byteOffset).getUint32(0);
      const sentAt = udpOutstanding.get(sequence);
      udpOutstanding.delete(sequence);
      count("udp datagram", sentAt !== undefined && data.length === 512 && data[511] === (sequence & 0xff), "unexpected datagram");
    },
  },
});
if (kinds.has("udp")) every(20, () => {
  const datagram = new Uint8Array(512);
  new DataView(datagram.buffer).setUint32(0, udpSequence);
  datagram[511] = udpSequence & 0xff;
  udpOutstanding.set(udpSequence, performance.now());
  udpSequence++;
  udpClient.send(datagram, ports.udp, "127.0.0.1");
});
every(1000, () => {
  // A datagram unanswered for 5 s is lost (on loopback, at this rate, none should be).
  const now = performance.now();
  for (const [sequence, sentAt] of udpOutstanding) {
    if (now - sentAt < 5000) continue;
    udpOutstanding.delete(sequence);
    count("udp datagram", false, `datagram ${sequence} unanswered`);
  }
});

// The second backend of the fail-over rule goes away for 10 s every 40 s.
every(40_000, async () => {
  flapping?.stop(true);
  flapping = undefined;
  await Bun.sleep(10_000);
  flapping = Bun.listen({ hostname: "127.0.0.1", port: flappingPort, socket: echoHandlers });
});

if (reloadMs > 0) every(reloadMs, () => {
  reloads++;
  writeConfig();
  oi.signal("SIGHUP");
});

// Idle connections, held for the whole run.
const idle: Array<Socket<undefined>> = [];
if (kinds.has("idle")) for (let i = 0; i < 100; i++) idle.push(await Bun.connect({ hostname: "127.0.0.1", port: ports.idle, socket: { data() {} } }));

interface Sample {
  atSeconds: number;
  rssAnonKiB: number;
  fds: number;
  healthzMs: number;
  errors: number;
}
const samples: Sample[] = [];
const started = performance.now();
async function metricErrors(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${ports.admin}/metrics`, { keepalive: false, headers: { connection: "close" } })).text();
  let total = 0;
  for (const line of text.split("\n")) if (line.startsWith("oi_errors_total")) total += Number(line.split(" ").at(-1));
  return total;
}
async function sample(): Promise<void> {
  const t0 = performance.now();
  const healthy = await fetch(`http://127.0.0.1:${ports.admin}/healthz`, { keepalive: false, headers: { connection: "close" } }).then((r) => r.ok, () => false);
  const healthzMs = performance.now() - t0;
  samples.push({
    atSeconds: Math.round((performance.now() - started) / 1000),
    rssAnonKiB: rssAnonKiB(pid),
    fds: openDescriptors(pid),
    healthzMs: healthy ? healthzMs : Number.NaN,
    errors: await metricErrors().catch(() => Number.NaN),
  });
  const last = samples.at(-1)!;
  console.log(`${String(last.atSeconds).padStart(5)} s  RssAnon ${(last.rssAnonKiB / 1024).toFixed(1)} MiB  fds ${last.fds}  healthz ${last.healthzMs.toFixed(1)} ms  errors ${last.errors}`);
}
await sample();
while (running()) {
  await Bun.sleep(Math.min(sampleMs, Math.max(0, deadline - performance.now())));
  await sample();
}
for (const timer of timers) clearInterval(timer);
// Let the last transfers finish and the UDP session time out (3 s), then let the idle connections go.
await Bun.sleep(6000);
for (const socket of idle) socket.end();
let finalFds = openDescriptors(pid);
for (let i = 0; i < 50 && finalFds > baselineFds; i++) {
  await Bun.sleep(200);
  finalFds = openDescriptors(pid);
}

const finalKinds = descriptorKinds(pid);
await oi.stop();
const logLines = `${oi.stdout.text}\n${oi.stderr.text}`.split("\n").filter((line) => line.trim() !== "");
// What a soak is expected to log: the start, each reload, the fail-over backend leaving and coming back, the stop.
const EXPECTED = [/rules? listening/, /SIGHUP: reloading/, /reload(ed)?[: ]/i, /is out of service/, /is back in service/, /SIGTERM/, /admin/i, /stopped accepting/, /connection\(s\)/];
const unexpected = logLines.filter((line) => !EXPECTED.some((pattern) => pattern.test(line)));

const afterWarmup = samples.filter((s) => s.atSeconds * 1000 >= warmupMs);
const rssValues = afterWarmup.map((s) => s.rssAnonKiB);
const rssRangeMiB = rssValues.length === 0 ? Number.NaN : (Math.max(...rssValues) - Math.min(...rssValues)) / 1024;
const failed = Object.values(traffic).reduce((sum, entry) => sum + entry.failed, 0);
const lags = samples.map((s) => s.healthzMs).filter(Number.isFinite).sort((a, b) => a - b);
const verdicts = {
  memory: rssRangeMiB <= 8,
  descriptors: finalFds <= baselineFds,
  transfers: failed === 0,
  log: unexpected.length === 0,
};
const passed = Object.values(verdicts).every(Boolean);

mkdirSync(RESULTS, { recursive: true });
writeFileSync(join(RESULTS, `${values.results}.json`), JSON.stringify({ minutes, warmupSeconds: warmupMs / 1000, reloads, traffic, samples, baselineFds, baselineKinds, finalFds, finalKinds, unexpected, verdicts }, null, 2));
writeFileSync(join(RESULTS, `${values.results}.svg`), chart(samples, warmupMs / 1000));
const mib = (kib: number) => (kib / 1024).toFixed(1);
const markdown = [
  `# Soak run (bun bench/soak.ts --minutes ${minutes}): ${passed ? "passed" : "FAILED"}`,
  "",
  `${new Date().toISOString()}. ${reloads} reloads; the fail-over rule's second backend went away ${Math.floor(runMs / 40_000)} times; 100 idle connections held. Warm-up: the first ${warmupMs / 60_000} min.`,
  "",
  "| traffic | ok | failed |",
  "|---|---|---|",
  ...Object.entries(traffic).map(([kind, entry]) => `| ${kind} | ${entry.ok} | ${entry.failed}${entry.errors.length > 0 ? ` (${entry.errors.slice(0, 3).join("; ")})` : ""} |`),
  "",
  "| figure | value | pass |",
  "|---|---|---|",
  `| RssAnon after the warm-up: min / max (range) | ${mib(Math.min(...rssValues))} / ${mib(Math.max(...rssValues))} MiB (${rssRangeMiB.toFixed(1)} MiB) | ${verdicts.memory ? "yes" : "NO"} (range ≤ 8 MiB) |`,
  `| RssAnon at the start / the end | ${mib(samples[0]?.rssAnonKiB ?? Number.NaN)} / ${mib(samples.at(-1)?.rssAnonKiB ?? Number.NaN)} MiB | |`,
  `| descriptors: baseline / with the idle connections / at the end | ${baselineFds} / ${Math.max(...samples.map((s) => s.fds))} / ${finalFds} | ${verdicts.descriptors ? "yes" : "NO"} |`,
  `| /healthz round trip: median / p99 / max | ${percentile(lags, 0.5).toFixed(1)} / ${percentile(lags, 0.99).toFixed(1)} / ${(lags.at(-1) ?? Number.NaN).toFixed(1)} ms | |`,
  `| oi_errors_total at the end | ${samples.at(-1)?.errors ?? "-"} | |`,
  `| unexpected log lines | ${unexpected.length}${unexpected.length > 0 ? `: ${unexpected.slice(0, 5).join(" / ")}` : ""} | ${verdicts.log ? "yes" : "NO"} |`,
  "",
  `![RssAnon and descriptors over the run](${values.results}.svg)`,
  "",
].join("\n");
writeFileSync(join(RESULTS, `${values.results}.md`), markdown);
console.log(markdown);

echo.stop(true);
unixEcho.stop(true);
hold.stop(true);
steady.stop(true);
flapping?.stop(true);
udpEcho.close();
udpClient.close();
rmSync(directory, { recursive: true, force: true });
process.exit(passed ? 0 : 1);

/** What a process's descriptors are, counted by kind ("socket", "anon_inode:[eventpoll]", "pipe", a file's path). */
function descriptorKinds(of: number): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const fd of new Bun.Glob("*").scanSync({ cwd: `/proc/${of}/fd`, onlyFiles: false })) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${of}/fd/${fd}`).replace(/:\[\d+\]$/, "");
    } catch {
      continue;
    }
    kinds[target] = (kinds[target] ?? 0) + 1;
  }
  return kinds;
}

/** RssAnon (MiB, left axis) and descriptors (right axis) over time, as a small SVG line chart. */
function chart(points: Sample[], warmupSeconds: number): string {
  const width = 800;
  const height = 300;
  const pad = { left: 60, right: 60, top: 20, bottom: 40 };
  const maxT = Math.max(1, ...points.map((p) => p.atSeconds));
  const maxRss = Math.max(1, ...points.map((p) => p.rssAnonKiB / 1024)) * 1.1;
  const maxFds = Math.max(1, ...points.map((p) => p.fds)) * 1.1;
  const x = (t: number) => pad.left + (t / maxT) * (width - pad.left - pad.right);
  const yRss = (mb: number) => height - pad.bottom - (mb / maxRss) * (height - pad.top - pad.bottom);
  const yFds = (n: number) => height - pad.bottom - (n / maxFds) * (height - pad.top - pad.bottom);
  const line = (ys: (p: Sample) => number) => points.map((p, i) => `${i === 0 ? "M" : "L"}${x(p.atSeconds).toFixed(1)},${ys(p).toFixed(1)}`).join(" ");
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<rect x="${x(0)}" y="${pad.top}" width="${(x(warmupSeconds) - x(0)).toFixed(1)}" height="${height - pad.top - pad.bottom}" fill="#f2f2f2"/>`,
    `<text x="${x(0) + 4}" y="${pad.top + 30}" fill="#888">warm-up</text>`,
    `<path d="${line((p) => yRss(p.rssAnonKiB / 1024))}" fill="none" stroke="#1f77b4" stroke-width="2"/>`,
    `<path d="${line((p) => yFds(p.fds))}" fill="none" stroke="#ff7f0e" stroke-width="2"/>`,
    `<line x1="${pad.left}" y1="${height - pad.bottom}" x2="${width - pad.right}" y2="${height - pad.bottom}" stroke="#333"/>`,
    `<text x="${width / 2}" y="${height - 8}" text-anchor="middle">seconds</text>`,
    `<text x="${pad.left}" y="${height - pad.bottom + 16}" text-anchor="middle">0</text>`,
    `<text x="${width - pad.right}" y="${height - pad.bottom + 16}" text-anchor="middle">${maxT}</text>`,
    `<text x="8" y="${pad.top + 10}" fill="#1f77b4">RssAnon MiB (max ${maxRss.toFixed(0)})</text>`,
    `<text x="${width - 8}" y="${pad.top + 10}" fill="#ff7f0e" text-anchor="end">descriptors (max ${maxFds.toFixed(0)})</text>`,
    "</svg>",
    "",
  ].join("\n");
}
