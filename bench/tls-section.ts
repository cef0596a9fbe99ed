/**
 * @module `--tls`: the TLS section, on loopback, alone. Makes the
 * certificates and the bulk file, starts the TLS nginx and each system's
 * instances (oi: one process per rule group, so a revision that refuses SNI
 * routing or TLS still has its plain rule measured; haproxy: one process),
 * checks through each that the right site answers, then runs the figures of
 * measure/tls.ts in interleaved rounds (oi, haproxy, direct, oi, ...) and
 * writes bench/results/tls-latest.json and tls-latest.md.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { formatNumber, formatRatio, ratio } from "./figures.ts";
import { machineInfo } from "./machine.ts";
import { captureClientHello, measureRouting, measureTermination, measureWaiting, TLS_FIGURE_KEYS, type TlsContext, warmUpBulk } from "./measure/tls.ts";
import { runBounded } from "./procs.ts";
import { RESULTS_DIR } from "./report.ts";
import { median } from "./stats.ts";
import { makeTlsFiles, NotStarted, OTHER_NAME, ROUTED_NAME, startTlsBackend, startTlsSystem, type TlsRoute, type TlsSystem } from "./tls-systems.ts";
import { loopbackTopology } from "./topology.ts";
import type { BenchOptions, TlsFigureKey, TlsReport, TlsSample, TlsSystemName, TlsSystemResult } from "./types.ts";

export interface TlsSectionSetup {
  options: BenchOptions;
  tmpDir: string;
  limitPrefix: string[];
  fdLimit: number;
  oiCli: string;
  oiRevision: string;
  missing: Set<string>;
  tools: Record<string, string>;
  hardwareCounters: boolean;
  started: number;
  log(line: string): void;
}

/** The tools the section runs (bench/tools.ts installs the missing ones as root). */
export const TLS_TOOLS: readonly string[] = ["nginx", "ab", "haproxy", "curl", "openssl", "prlimit"];

const WAITING_CONNECTIONS = 2000;

/** The routes each system serves long-running (the waiting bind gets a fresh instance per round). */
const LONG_ROUTES: readonly TlsRoute[] = ["sni", "plain", "terminate"];

/** What answers each route: the site's body, fetched by curl over https as `name`. */
const EXPECTED: Array<{ route: TlsRoute; name: string; body: string }> = [
  { route: "sni", name: ROUTED_NAME, body: "backend=a\n" },
  { route: "sni", name: OTHER_NAME, body: "backend=b\n" },
  { route: "sni", name: `x.${OTHER_NAME}`, body: "backend=b\n" },
  { route: "plain", name: ROUTED_NAME, body: "backend=a\n" },
  { route: "terminate", name: ROUTED_NAME, body: "backend=plain\n" },
];

/** Per system, the instance serving each route, or why there is none. */
type Routes = Map<TlsRoute, TlsSystem | string>;

async function fetchAs(caFile: string, name: string, port: number): Promise<string> {
  const run = await runBounded(["curl", "-sS", "--max-time", "5", "--resolve", `${name}:${port}:127.0.0.1`, "--cacert", caFile, `https://${name}:${port}/`], 10_000);
  return run.code === 0 ? run.stdout : `curl exit ${run.code}: ${run.stderr.trim().slice(0, 120)}`;
}

/** Start `name`'s long-running instances; a route whose instance did not start, or answers wrongly, gets the reason instead. */
async function startRoutes(setup: TlsSectionSetup, ctx: TlsContext, name: TlsSystemName): Promise<Routes> {
  const routes: Routes = new Map();
  const launch = { dir: setup.tmpDir, limitPrefix: setup.limitPrefix, fdLimit: setup.fdLimit, oiCli: setup.oiCli, files: ctx.files };
  // oi: one process per route, so a revision without SNI routing or TLS still has its plain rule measured.
  const groups: Array<readonly TlsRoute[]> = name === "oi" ? LONG_ROUTES.map((route) => [route]) : [LONG_ROUTES];
  for (const group of groups) {
    try {
      const system = await startTlsSystem(name, group, { ...launch, tag: `${name}-${group.join("-")}` });
      for (const route of group) routes.set(route, system);
    } catch (error) {
      // A config the revision refuses (an option it does not know) is "not supported"; anything else is a failure.
      const refused = error instanceof NotStarted && /unknown|not supported/i.test(error.reason);
      const reason = error instanceof NotStarted ? `${refused ? "not supported by this revision" : "did not start"} (${error.reason})` : String(error);
      for (const route of group) routes.set(route, reason);
    }
  }
  for (const { route, name: asked, body } of EXPECTED) {
    const system = routes.get(route);
    if (typeof system !== "object") continue;
    const answer = await fetchAs(ctx.files.caFile, asked, system.port(route));
    const expected = name === "direct" ? (asked === ROUTED_NAME ? "backend=a\n" : undefined) : body;
    if (expected !== undefined && answer !== expected) {
      routes.set(route, `asked for ${asked}, got ${JSON.stringify(answer.slice(0, 100))} instead of ${JSON.stringify(expected)}`);
    }
  }
  return routes;
}

function instance(routes: Routes, route: TlsRoute): TlsSystem | undefined {
  const system = routes.get(route);
  return typeof system === "object" ? system : undefined;
}

function notApplicable(name: TlsSystemName): Partial<Record<TlsFigureKey, string>> {
  if (name !== "direct") return {};
  const none = "no forwarder (the client talks to nginx over TLS: nginx's own handshakes)";
  return {
    sniCpuUsPerConn: none, plainCpuUsPerConn: none, handshakeCpuUsPerConn: none, bulkCpuSPerGiB: none,
    waitingKiBPerConn: "no forwarder that peeks",
  };
}

function summarize(name: TlsSystemName, version: string, samples: Array<Partial<TlsSample>>, notes: string[], unsupported: string | undefined): TlsSystemResult {
  const runs = {} as Record<TlsFigureKey, Array<number | null>>;
  const figures = {} as Record<TlsFigureKey, number | null>;
  for (const key of TLS_FIGURE_KEYS) {
    runs[key] = samples.map((sample) => sample[key] ?? null);
    figures[key] = median(runs[key]);
  }
  return { system: name, version, figures, runs, not_applicable: notApplicable(name), notes, ...(unsupported === undefined ? {} : { not_supported: unsupported }) };
}

const COLUMNS: Array<{ key: TlsFigureKey; title: string; higherIsBetter: boolean }> = [
  { key: "sniConnPerS", title: "SNI-routed conn/s", higherIsBetter: true },
  { key: "plainConnPerS", title: "plain rule conn/s", higherIsBetter: true },
  { key: "sniCpuUsPerConn", title: "CPU µs/conn, SNI", higherIsBetter: false },
  { key: "plainCpuUsPerConn", title: "CPU µs/conn, plain", higherIsBetter: false },
  { key: "handshakesPerS", title: "terminating: handshakes/s", higherIsBetter: true },
  { key: "handshakeCpuUsPerConn", title: "CPU µs/handshake", higherIsBetter: false },
  { key: "bulkGbps", title: "bulk over TLS (Gbit/s)", higherIsBetter: true },
  { key: "bulkCpuSPerGiB", title: "CPU s/GiB", higherIsBetter: false },
  { key: "waitingKiBPerConn", title: "waiting half ClientHello (KiB/conn)", higherIsBetter: false },
];

export function tlsMarkdownTable(report: TlsReport): string {
  const header = `| system | ${COLUMNS.map((column) => column.title).join(" | ")} |\n|---|${COLUMNS.map(() => "---:").join("|")}|`;
  const rows = report.results.map((result) => {
    const cells = COLUMNS.map(({ key }) => (result.not_applicable[key] !== undefined ? "n/a" : formatNumber(result.figures[key])));
    return `| ${result.system} | ${cells.join(" | ")} |`;
  });
  const byName = new Map(report.results.map((result) => [result.system, result]));
  const oi = byName.get("oi");
  const ratios: string[] = [];
  for (const reference of ["haproxy", "direct"] as const) {
    const other = byName.get(reference);
    if (oi === undefined || other === undefined) continue;
    const cells = COLUMNS.map(({ key }) => formatRatio(ratio(oi.figures[key], other.figures[key])));
    ratios.push(`| oi ÷ ${reference} | ${cells.join(" | ")} |`);
  }
  for (const result of report.results) {
    const sni = ratio(result.figures.sniConnPerS, result.figures.plainConnPerS);
    if (result.system !== "direct" && sni !== null) ratios.push(`| ${result.system}: SNI ÷ plain conn/s | ${formatRatio(sni)} |${" |".repeat(COLUMNS.length - 1)}`);
  }
  return [header, ...rows, ...ratios].join("\n");
}

function renderTlsMarkdown(report: TlsReport): string {
  const m = report.machine;
  const notes = [
    ...Object.entries(report.skipped).map(([system, why]) => `- ${system}: not measured: ${why}`),
    ...report.results.flatMap((result) => [
      ...(result.not_supported === undefined ? [] : [`- ${result.system}: ${result.not_supported}`]),
      ...result.notes.map((note) => `- ${result.system}: ${note}`),
    ]),
  ];
  const methods = Object.entries(report.methods).map(([key, text]) => `- \`${key}\`: ${text}`);
  return `# oi bench: TLS section, ${report.mode} run

\`${report.command}\` on ${m.date} (${report.wall_seconds.toFixed(0)} s wall time)
${m.cpu_model}, ${m.cores} cores, ${m.memory_mib} MiB, ${m.os}, Linux ${m.kernel}, Bun ${m.bun};
${Object.entries(m.tools).map(([tool, version]) => `${tool} ${version}`).join(", ")}.
Systems: ${report.results.map((result) => `${result.system} ${result.version}`).join(", ")}.
Medians of ${report.settings.runs} interleaved runs per figure; ratios are oi's figure divided by the reference's
(above 1 is better for conn/s, handshakes/s and Gbit/s; below 1 for CPU and memory). ab: ${report.settings.abClients} clients,
at most ${report.settings.abRequests} requests or ${report.settings.abSeconds} s per run; bulk: ${report.settings.bulkDownloads} downloads of ${report.settings.bulkMiB} MiB;
waiting: ${report.settings.waitingConnections} clients, each sending the first ${report.client_hello.sent} bytes of openssl's
${report.client_hello.bytes}-byte ClientHello (the SNI name is at byte ${report.client_hello.sni_offset}).

${tlsMarkdownTable(report)}

${notes.length === 0 ? "No notes." : `Notes:\n${notes.join("\n")}`}

How each figure was taken:
${methods.join("\n")}
`;
}

const METHODS: Record<string, string> = {
  backend: "one nginx (one process, no session cache, no tickets, TLS 1.2 and 1.3) serving a.test and b.test (*.b.test) over TLS with ECDSA P-256 certificates of the bench's own CA, and the same files over plain HTTP",
  sni_conn_per_s: "ab -c 50 over https (a full handshake per request: ab never resumes; -H 'Host: a.test' is also its SNI name) through the SNI-routed bind: oi `[sni=a.test]` and `[sni=*.b.test|b.test]` on one bind; haproxy mode tcp, tcp-request inspect-delay 5s, accept if req_ssl_hello_type 1, use_backend by req.ssl_sni; direct: to nginx's a.test site",
  plain_conn_per_s: "the same through a plain rule to the same site (TLS passed through untouched); direct: the same run as sni_conn_per_s",
  cpu_us_per_conn: "the forwarder's user + system CPU time (/proc, its process tree) during that ab run, per completed request",
  handshakes_per_s: "ab -c 50 over https to the terminating rule (oi: [tls-cert=,tls-key=]; haproxy: bind ... ssl crt with the same certificate and key), plain HTTP to nginx behind it; direct: nginx terminating itself",
  bulk_gbps: "curl (verifying against the CA) downloading a file of random bytes through the terminating rule, several times: bytes over summed transfer time; cpu_s_per_gib: the forwarder's CPU time over those downloads per GiB",
  waiting_kib_per_conn: "a fresh instance with one SNI-routed bind (oi: peek-timeout=30; haproxy: inspect-delay 30s), warmed with 20 connections; then 2,000 clients each send the first half of openssl s_client's ClientHello and hold: growth of Pss_Anon (/proc/PID/smaps_rollup, its process tree) one second after all are open, per connection; not taken if the forwarder closed any of them",
};

function versionOf(name: TlsSystemName, setup: TlsSectionSetup): string {
  if (name === "oi") return setup.oiRevision;
  if (name === "direct") return "-";
  return setup.tools[name] ?? "unknown";
}

export async function runTlsSection(setup: TlsSectionSetup): Promise<number> {
  const { options, log } = setup;
  for (const tool of ["nginx", "ab", "curl", "openssl"]) {
    if (setup.missing.has(tool)) {
      log(`--tls needs ${tool}`);
      return 1;
    }
  }
  const bulkMiB = options.quick ? 64 : 256;
  const abSeconds = options.quick ? 3 : 10;
  const abRequests = options.quick ? 5000 : 20000;
  const files = makeTlsFiles(setup.tmpDir, bulkMiB);
  await startTlsBackend(setup.tmpDir, files, setup.limitPrefix);
  const hello = await captureClientHello(ROUTED_NAME);
  const sent = Math.floor(hello.length / 2);
  const sniOffset = Buffer.from(hello).indexOf(ROUTED_NAME);
  log(`ClientHello of openssl s_client for ${ROUTED_NAME}: ${hello.length} bytes, the name at byte ${sniOffset}; waiting clients send the first ${sent}`);
  const waitingConnections = Math.min(WAITING_CONNECTIONS, Math.floor((setup.fdLimit - 200) / 2));
  const ctx: TlsContext = {
    topology: loopbackTopology(), limitPrefix: setup.limitPrefix, fdLimit: setup.fdLimit, oiCli: setup.oiCli, tmpDir: setup.tmpDir, files,
    abRequests, abSeconds, abClients: 50, bulkDownloads: options.quick ? 2 : 3, waitingConnections,
    halfHelloHex: Buffer.from(hello.subarray(0, sent)).toString("hex"), log,
  };
  if (waitingConnections < WAITING_CONNECTIONS) log(`descriptor limit ${setup.fdLimit}: ${waitingConnections} waiting connections instead of ${WAITING_CONNECTIONS}`);

  const names = options.systems.filter((name): name is TlsSystemName => name === "oi" || name === "haproxy" || name === "direct");
  const skipped: Record<string, string> = {};
  const running = new Map<TlsSystemName, Routes>();
  const samples = new Map<TlsSystemName, Array<Partial<TlsSample>>>();
  const notes = new Map<TlsSystemName, string[]>();
  const unsupported = new Map<TlsSystemName, string>();
  for (const name of names) {
    if (name === "haproxy" && setup.missing.has("haproxy")) {
      skipped[name] = "haproxy is not installed";
      continue;
    }
    const routes = await startRoutes(setup, ctx, name);
    running.set(name, routes);
    samples.set(name, []);
    notes.set(name, []);
    const failed = [...routes].filter(([, system]) => typeof system === "string") as Array<[TlsRoute, string]>;
    const refused = failed.find(([, reason]) => reason.startsWith("not supported by this revision"));
    if (refused !== undefined) unsupported.set(name, `${refused[1]}: ${failed.map(([route]) => route).join(", ")} not measured`);
    for (const [route, reason] of failed) if (!reason.startsWith("not supported")) notes.get(name)!.push(`${route}: ${reason}`);
    const terminate = instance(routes, "terminate");
    if (terminate !== undefined) await warmUpBulk(ctx, terminate);
    log(`${name}: ${[...routes].map(([route, system]) => `${route} ${typeof system === "object" ? `on ${system.port(route)}` : "unavailable"}`).join(", ")}`);
    if (refused !== undefined) log(`${name}: ${refused[1]}`);
  }

  for (let round = 1; round <= options.runs; round++) {
    for (const [name, routes] of running) {
      log(`round ${round}/${options.runs}: ${name}`);
      const own = notes.get(name)!;
      const sample: Partial<TlsSample> = {};
      Object.assign(sample, await measureRouting(ctx, instance(routes, "sni"), instance(routes, "plain"), own));
      const terminate = instance(routes, "terminate");
      if (terminate !== undefined) Object.assign(sample, await measureTermination(ctx, terminate, own));
      // The waiting figure needs SNI routing: not tried where the SNI route was refused.
      if (name !== "direct" && instance(routes, "sni") !== undefined) {
        const launch = { dir: setup.tmpDir, limitPrefix: setup.limitPrefix, fdLimit: setup.fdLimit, oiCli: setup.oiCli, files, tag: `${name}-waiting-${round}` };
        Object.assign(sample, await measureWaiting(ctx, name, launch, own));
      }
      samples.get(name)!.push(sample);
      const f = (value: number | null | undefined, digits: number) => (value === undefined || value === null ? "—" : value.toFixed(digits));
      log(
        `  SNI ${f(sample.sniConnPerS, 0)} conn/s (${f(sample.sniCpuUsPerConn, 0)} µs CPU), plain ${f(sample.plainConnPerS, 0)} conn/s (${f(sample.plainCpuUsPerConn, 0)} µs), ` +
          `terminating ${f(sample.handshakesPerS, 0)} handshakes/s (${f(sample.handshakeCpuUsPerConn, 0)} µs), bulk ${f(sample.bulkGbps, 2)} Gbit/s (${f(sample.bulkCpuSPerGiB, 3)} CPU s/GiB), ` +
          `waiting ${f(sample.waitingKiBPerConn, 2)} KiB/conn`,
      );
    }
  }

  const report: TlsReport = {
    machine: machineInfo(setup.tools, setup.hardwareCounters),
    mode: options.quick ? "quick" : "full",
    command: `npm run bench -- ${process.argv.slice(2).join(" ")}`,
    settings: {
      runs: options.runs, abRequests, abSeconds, abClients: ctx.abClients, bulkMiB, bulkDownloads: ctx.bulkDownloads, waitingConnections,
      ...(options.oiRev === undefined ? {} : { oiRev: options.oiRev }),
    },
    client_hello: { bytes: hello.length, sent, sni_offset: sniOffset },
    wall_seconds: (Date.now() - setup.started) / 1000,
    results: [...running.keys()].map((name) => summarize(name, versionOf(name, setup), samples.get(name)!, notes.get(name)!, unsupported.get(name))),
    skipped,
    methods: METHODS,
  };
  const json = join(RESULTS_DIR, "tls-latest.json");
  const markdown = join(RESULTS_DIR, "tls-latest.md");
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(markdown, renderTlsMarkdown(report));
  console.log(`\n${tlsMarkdownTable(report)}\n`);
  for (const result of report.results) if (result.not_supported !== undefined) log(`${result.system}: ${result.not_supported}`);
  log(`wrote ${json}, ${markdown}`);
  // Every figure of haproxy and direct must be there; oi's only where its revision supports the rules.
  let failed = false;
  for (const result of report.results) {
    const absent = TLS_FIGURE_KEYS.filter((key) => result.figures[key] === null && result.not_applicable[key] === undefined);
    const expectedAbsent = result.not_supported !== undefined;
    if (absent.length > 0 && !expectedAbsent) {
      log(`FAIL: ${result.system} has no ${absent.join(", ")}`);
      failed = true;
    }
  }
  log(`${failed ? "failed" : "passed"} in ${report.wall_seconds.toFixed(0)} s`);
  return failed ? 1 : 0;
}
