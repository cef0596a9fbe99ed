/**
 * @module Abusive clients against one `oi`, each case measured while a
 * well-behaved client keeps making requests on the same rule:
 *
 * - slow-sni: N connections to a rule chosen by SNI, each sending one byte
 *   of a ClientHello every 10 s. The peek timeout (5 s) must close them all;
 *   oi's private memory and the probe's latency are sampled throughout.
 * - slow-proxy: the same against an `accept_proxy` rule (header wait 5 s).
 * - zero-window: M clients of a backend that streams without end, which
 *   never read: oi must stop reading the backend (its memory stays flat).
 * - udp-amplification: datagrams through a UDP rule whose backend answers
 *   0, 1 or 3 times: a client never receives more than its backend sent.
 *
 * Writes bench/results/abuse.json and abuse.md.
 *
 *   bun bench/abuse.ts [--clients 10000] [--zero-window 200] [--seconds 10] [--splice auto|off]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { clientHello, serverNameExtension } from "../test/helpers/client-hello.ts";
import {
  openDescriptors,
  percentile,
  probeLatency,
  slowClientsElsewhere,
  startEndlessSource,
  startRepeatingUdpEcho,
  udpAmplification,
  zeroWindowClients,
  type AmplificationResult,
  type SlowClientsResult,
  type ZeroWindowResult,
} from "../test/helpers/abuse.ts";
import { rssAnonKiB } from "../test/helpers/udp-flood.ts";
import { startOi } from "../test/helpers/oi-process.ts";

const { values } = parseArgs({
  options: {
    clients: { type: "string", default: "10000" },
    "zero-window": { type: "string", default: "200" },
    seconds: { type: "string", default: "10" },
    splice: { type: "string", default: "auto" },
  },
});
const clients = Number(values.clients);
const zeroWindowCount = Number(values["zero-window"]);
const stallSeconds = Number(values.seconds);
const RESULTS = join(import.meta.dir, "results");

function freeTcpPort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

// An echo backend: the probe's requests come back byte for byte.
const echo = Bun.listen({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    data(socket, chunk) {
      socket.write(chunk);
    },
  },
});

const [sniPort, proxyPort, plainPort, udpPort] = [freeTcpPort(), freeTcpPort(), freeTcpPort(), freeTcpPort()];
const directory = mkdtempSync(join(tmpdir(), "oi-abuse-"));
const config = join(directory, "abuse.conf");
const source = startEndlessSource();
const udpBackend = await startRepeatingUdpEcho();
writeFileSync(
  config,
  [
    `splice ${values.splice}`,
    `127.0.0.1 ${sniPort} 127.0.0.1 ${echo.port} [sni=abuse.test]`,
    `127.0.0.1 ${proxyPort} 127.0.0.1 ${echo.port} [accept_proxy]`,
    `127.0.0.1 ${plainPort} 127.0.0.1 ${source.port}`,
    `127.0.0.1 ${udpPort}/udp 127.0.0.1 ${udpBackend.port}/udp`,
    "",
  ].join("\n"),
);
const forwarder = await startOi(config);
const oi = forwarder.proc;

interface Sample {
  atMs: number;
  rssAnonKiB: number;
  fds: number;
}

/**
 * oi's private memory and descriptors every 250 ms while `work` runs, 2 s
 * after, and once settled: 32 s after, when oi's memory trim (every 30 s,
 * once a burst of connections is over) has run, so the next case starts
 * from a settled baseline.
 */
async function sampled<T>(work: () => Promise<T>): Promise<{ result: T; samples: Sample[]; baseline: Sample; after: Sample; settled: Sample }> {
  const started = performance.now();
  const sample = (): Sample => ({ atMs: Math.round(performance.now() - started), rssAnonKiB: rssAnonKiB(oi.pid), fds: openDescriptors(oi.pid) });
  Bun.gc(true);
  const baseline = sample();
  const samples: Sample[] = [];
  const timer = setInterval(() => samples.push(sample()), 250);
  const result = await work();
  clearInterval(timer);
  await Bun.sleep(2000);
  const after = sample();
  await Bun.sleep(30_000);
  return { result, samples, baseline, after, settled: sample() };
}

const helloRequest = clientHello({ extensions: [serverNameExtension("abuse.test")] });
const proxyPayload = new TextEncoder().encode("hello through a PROXY header\n");
const proxyRequest = new Uint8Array([...new TextEncoder().encode("PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n"), ...proxyPayload]);

interface SlowCase {
  slow: SlowClientsResult;
  probe: { times: number[]; failures: string[] };
  quietProbe: { times: number[]; failures: string[] };
}

async function slowCase(port: number, trickled: Uint8Array, request: Uint8Array, expect: number) {
  // The probe's latency with nobody abusing the rule first, for comparison.
  const quietProbe = await probeLatency("127.0.0.1", port, request, 100, Bun.sleep(3000), expect);
  return sampled(async (): Promise<SlowCase> => {
    let done!: () => void;
    const finished = new Promise<void>((wake) => (done = wake));
    const probing = probeLatency("127.0.0.1", port, request, 100, finished, expect);
    const slow = await slowClientsElsewhere({ host: "127.0.0.1", port, count: clients, bytes: trickled, intervalMs: 10_000, giveUpMs: 30_000 });
    done();
    return { slow, probe: await probing, quietProbe };
  });
}

const ms = (value: number) => (Number.isFinite(value) ? value.toFixed(1) : "-");
const mib = (kib: number) => (kib / 1024).toFixed(1);
const lines: string[] = [];
const report: Record<string, unknown> = { clients, zeroWindowCount, stallSeconds, splice: values.splice, date: new Date().toISOString() };

for (const [name, port, trickled, request, expect] of [
  ["slow-sni", sniPort, helloRequest, helloRequest, helloRequest.length],
  ["slow-proxy", proxyPort, proxyRequest, proxyRequest, proxyPayload.length],
] as const) {
  console.log(`${name}: ${clients} clients, one byte every 10 s`);
  const run = await slowCase(port, trickled, request, expect);
  const { slow, probe, quietProbe } = run.result;
  const peak = Math.max(run.baseline.rssAnonKiB, ...run.samples.map((s) => s.rssAnonKiB));
  const peakFds = Math.max(...run.samples.map((s) => s.fds));
  report[name] = { ...run, result: { ...slow, closedAfterMs: undefined, probe, quietProbe } };
  lines.push(
    `| ${name} | ${slow.opened} (${slow.failed} failed) | ${ms(percentile(slow.closedAfterMs, 0.5))} / ${ms(slow.closedAfterMs.at(-1) ?? Number.NaN)} | ${slow.outlived} | ${mib(run.baseline.rssAnonKiB)} → ${mib(peak)} → ${mib(run.after.rssAnonKiB)} → ${mib(run.settled.rssAnonKiB)} | ${run.baseline.fds} → ${peakFds} → ${run.after.fds} | ${ms(percentile(quietProbe.times, 0.5))} / ${ms(percentile(quietProbe.times, 0.99))} | ${ms(percentile(probe.times, 0.5))} / ${ms(percentile(probe.times, 0.99))} (${probe.times.length} requests, ${probe.failures.length} failed) |`,
  );
  console.log(lines.at(-1));
}

console.log(`zero-window: ${zeroWindowCount} clients that never read, ${stallSeconds} s`);
const zero = await sampled(() => zeroWindowClients("127.0.0.1", plainPort, zeroWindowCount, stallSeconds * 1000, source));
const zeroPeak = Math.max(...zero.samples.map((s) => s.rssAnonKiB));
report["zero-window"] = zero;
const zeroLine = `| zero-window | ${zero.result.connected} clients | backend wrote ${(zero.result.backendBytes / 2 ** 20).toFixed(0)} MiB, the last second ${(zero.result.backendBytesLastSecond / 2 ** 20).toFixed(2)} MiB | RssAnon ${mib(zero.baseline.rssAnonKiB)} → ${mib(zeroPeak)} → ${mib(zero.after.rssAnonKiB)} → ${mib(zero.settled.rssAnonKiB)} MiB |`;
console.log(zeroLine);

console.log("udp-amplification");
const amplification: AmplificationResult[] = [];
for (const replies of [0, 1, 3]) amplification.push(await udpAmplification("127.0.0.1", udpPort, udpBackend, replies, 1000));
report["udp-amplification"] = amplification;
for (const row of amplification) console.log(row);

await forwarder.stop();
echo.stop(true);
source.stop();
udpBackend.close();
rmSync(directory, { recursive: true, force: true });

mkdirSync(RESULTS, { recursive: true });
const suffix = values.splice === "auto" ? "" : `-splice-${values.splice}`;
writeFileSync(join(RESULTS, `abuse${suffix}.json`), JSON.stringify(report, null, 2));
const zeroResult: ZeroWindowResult = zero.result;
const markdown = [
  `# Abusive clients (bun bench/abuse.ts --clients ${clients} --zero-window ${zeroWindowCount} --seconds ${stallSeconds} --splice ${values.splice})`,
  "",
  `${new Date().toISOString()}; oi with its defaults (peek timeout 5 s, PROXY header wait 5 s); memory is oi's RssAnon (MiB) before, at its peak, 2 s after and 32 s after (once oi's memory trim has run); latency is a well-behaved client's request on the same rule (ms, median / p99), without and with the abuse.`,
  "",
  "| case | connections | closed after (ms, median / last) | still open at 30 s | RssAnon MiB | descriptors | latency alone | latency under abuse |",
  "|---|---|---|---|---|---|---|---|",
  ...lines,
  "",
  "| case | clients | backend | oi's memory |",
  "|---|---|---|---|",
  zeroLine,
  "",
  `Zero-window: ${zeroResult.connected} clients connected through oi to a backend that writes as fast as it can and never read a byte; after ${stallSeconds} s the backend had written ${zeroResult.backendBytes} bytes in all (kernel buffers on both of oi's legs), of which ${zeroResult.backendBytesLastSecond} in the last second.`,
  "",
  "| backend replies per datagram | datagrams sent | bytes the backend sent | bytes the client received |",
  "|---|---|---|---|",
  ...amplification.map((row) => `| ${row.replies} | ${row.sent} | ${row.backendBytes} | ${row.clientBytes} |`),
  "",
].join("\n");
writeFileSync(join(RESULTS, `abuse${suffix}.md`), markdown);
console.log(`written ${join(RESULTS, `abuse${suffix}.md`)}`);
