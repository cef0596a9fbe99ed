/**
 * @module A flood of UDP clients from distinct source addresses through a
 * rule with per-client limits: does oi's memory stay bounded while the
 * per-client table (client-table-size, default 100,000) keeps only the most
 * recent clients? One datagram from each of N addresses of 127.0.0.0/8, each
 * from its own socket bound to that address, paced by the backend's count so
 * that none is lost. Prints oi's private memory (RssAnon) every `--step`
 * sources, then 1 s and 5 s after the flood, and the datagrams lost. Run
 * it with `--table 10000000` to see what a table without a bound would hold.
 *
 *   bun bench/client-flood.ts [--sources 200000] [--step 20000] [--table 100000]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { floodDistinctSources, rssAnonKiB } from "../test/helpers/udp-flood.ts";

const { values } = parseArgs({
  options: {
    sources: { type: "string", default: "200000" },
    step: { type: "string", default: "20000" },
    table: { type: "string", default: "100000" },
  },
});
const sources = Number(values.sources);
const step = Number(values.step);
const CLI = join(import.meta.dir, "..", "src", "cli.ts");

let received = 0;
const backend = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, socket: { data: () => void received++ } });
const probe = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
const port = probe.port;
probe.close();

const directory = mkdtempSync(join(tmpdir(), "oi-flood-"));
const config = join(directory, "flood.conf");
// Every source is a new client and a new session; sessions past max_sessions are evicted, as in any flood.
writeFileSync(
  config,
  `client-table-size ${values.table}\n127.0.0.1 ${port}/udp 127.0.0.1 ${backend.port}/udp [maxconn-client=2,connrate-client=10/60,max_sessions=5000,timeout=60]\n`,
);
const oi = Bun.spawn([process.execPath, CLI, "-c", config], { stdout: "pipe", stderr: "inherit" });
try {
  const reader = oi.stdout.getReader();
  let text = "";
  while (!text.includes("listening")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`oi stopped: ${text}`);
    text += new TextDecoder().decode(value);
  }
  const idle = rssAnonKiB(oi.pid);
  console.log(`oi RssAnon idle: ${(idle / 1024).toFixed(1)} MiB; table ${values.table} clients; ${sources} sources`);
  const result = await floodDistinctSources({
    port,
    count: sources,
    confirmed: () => received,
    step,
    every: (sent) => console.log(`${String(sent).padStart(8)} sources: RssAnon ${(rssAnonKiB(oi.pid) / 1024).toFixed(1)} MiB`),
    deadlineMs: 600_000,
  });
  console.log(`sent ${result.sent} in ${(result.ms / 1000).toFixed(1)} s (${Math.round(result.sent / (result.ms / 1000))}/s), lost ${result.lost}`);
  // Much of what the flood leaves is garbage (200,000 evicted sessions) that the collector takes in its own time.
  for (const after of [1, 5]) {
    await Bun.sleep(after === 1 ? 1000 : 4000);
    console.log(`after ${after} s: RssAnon ${(rssAnonKiB(oi.pid) / 1024).toFixed(1)} MiB`);
  }
} finally {
  oi.kill("SIGTERM");
  await oi.exited;
  backend.close();
  rmSync(directory, { recursive: true, force: true });
}
