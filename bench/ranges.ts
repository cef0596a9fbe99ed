/**
 * @module Port ranges: start time, reload time and private memory per
 * listening port for ranges of 10, 1,000 and 10,000 ports, on loopback.
 *
 *     bun bench/ranges.ts [--sizes 10,1000,10000] [--rounds 3] [--sockets auto|bun]
 *
 * For each size, each round starts `oi` on a config with the range
 * (127.0.0.1:F-F+N-1 to one backend port) and one other rule, and measures:
 * - start: from spawn to the "listening" line (then the range's first and
 *   last ports are checked to accept a connection);
 * - reload, other rule: SIGHUP after the other rule's backend changed, to the
 *   "reloaded" line;
 * - reload, range: SIGHUP after the range grew by 10 ports at its end, to the
 *   "reloaded" line (the N ports that stay keep their sockets);
 * - memory: RssAnon (private resident memory, /proc/PID/status) once
 *   listening, less that of the same config with a range of one port,
 *   divided by N-1.
 * The medians of the rounds are printed. Every process is stopped by its
 * PID; each step has a time bound. The soft descriptor limit is raised to
 * the hard one for oi (a port is a descriptor).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { freeBlock } from "../test/helpers/port-block.ts";

const CLI = join(import.meta.dir, "..", "src", "cli.ts");
const STEP_TIMEOUT_MS = 30_000;

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index === -1 ? fallback : (process.argv[index + 1] ?? fallback);
}

const sizes = option("sizes", "10,1000,10000").split(",").map(Number);
const rounds = Number(option("rounds", "3"));
const sockets = option("sockets", "auto");
const directory = mkdtempSync(join(tmpdir(), "oi-bench-ranges-"));

function rssAnonKiB(pid: number): number {
  return Number(/RssAnon:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? Number.NaN);
}

class Oi {
  private text = "";
  get output(): string {
    return this.text;
  }
  readonly proc;
  constructor(configPath: string) {
    // Raise the soft descriptor limit to the hard one: each listening port holds a descriptor.
    this.proc = Bun.spawn(["sh", "-c", 'ulimit -n "$(ulimit -Hn)" && exec "$0" "$@"', process.execPath, CLI, "-c", configPath, "--grace", "0.2"], {
      stdout: "pipe",
      stderr: "pipe",
      stdin: "ignore",
    });
    void this.read(this.proc.stdout);
    void this.read(this.proc.stderr);
  }
  private async read(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of stream) this.text += decoder.decode(chunk, { stream: true });
  }
  /** Resolves when `needle` has appeared `count` times in the output. */
  async waitFor(needle: string, count = 1): Promise<void> {
    const deadline = Date.now() + STEP_TIMEOUT_MS;
    while (this.text.split(needle).length - 1 < count) {
      if (this.proc.exitCode !== null) throw new Error(`oi exited:\n${this.text}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for '${needle}':\n${this.text}`);
      await Bun.sleep(1);
    }
  }
  async stop(): Promise<void> {
    if (this.proc.exitCode === null) this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 5000);
    await this.proc.exited;
    clearTimeout(timer);
  }
}

async function accepts(port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), 3000);
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(socket) {
          clearTimeout(timer);
          socket.terminate();
          resolve(true);
        },
        data() {},
        connectError() {
          clearTimeout(timer);
          resolve(false);
        },
      },
    }).catch(() => resolve(false));
  });
}

interface Figures {
  startMs: number;
  reloadOtherMs: number;
  reloadRangeMs: number;
  rssAnonKiB: number;
}

/** One round for a range of `width` ports (plus 10 for the widening reload). */
async function round(width: number, first: number, backendPort: number, otherPort: number): Promise<Figures> {
  const configPath = join(directory, `range-${width}.conf`);
  const config = (rangeEnd: number, otherBackend: number) =>
    `sockets ${sockets}\n127.0.0.1 ${first}-${rangeEnd} 127.0.0.1 ${backendPort}\n127.0.0.1 ${otherPort} 127.0.0.1 ${otherBackend}\n`;
  const last = first + width - 1;
  writeFileSync(configPath, width === 1 ? config(first, backendPort).replace(`${first}-${first}`, `${first}`) : config(last, backendPort));
  const started = performance.now();
  const oi = new Oi(configPath);
  try {
    await oi.waitFor("listening");
    const startMs = performance.now() - started;
    if (!(await accepts(first)) || !(await accepts(last))) throw new Error(`range ${first}-${last} is not listening at both ends`);
    await Bun.sleep(300);
    const memory = rssAnonKiB(oi.proc.pid);

    writeFileSync(configPath, config(last, backendPort + 1));
    let mark = performance.now();
    oi.proc.kill("SIGHUP");
    await oi.waitFor("reloaded:", 1);
    const reloadOtherMs = performance.now() - mark;

    writeFileSync(configPath, config(last + 10, backendPort + 1));
    mark = performance.now();
    oi.proc.kill("SIGHUP");
    await oi.waitFor("reloaded:", 2);
    const reloadRangeMs = performance.now() - mark;
    if (!(await accepts(last + 10))) {
      const ss = await new Response(Bun.spawn(["sh", "-c", `ss -ltnp | grep ':${last + 10} '; ss -tanp | grep ':${last + 10} '`]).stdout).text();
      throw new Error(`the widened range does not listen on ${last + 10}:\n${oi.output}\n${readFileSync(configPath, "utf8")}\n${ss}`);
    }
    return { startMs, reloadOtherMs, reloadRangeMs, rssAnonKiB: memory };
  } finally {
    await oi.stop();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

const hardLimit = Number((await new Response(Bun.spawn(["sh", "-c", "ulimit -Hn"]).stdout).text()).trim());
console.log(`oi port ranges: ${rounds} round(s) per size, sockets ${sockets}, descriptor hard limit ${hardLimit}, ${process.execPath} ${Bun.version}`);
const widest = Math.max(...sizes);
if (Number.isFinite(hardLimit) && widest + 10 + 100 > hardLimit) throw new Error(`a range of ${widest} ports needs about ${widest + 110} descriptors; the hard limit is ${hardLimit}`);
let first = await freeBlock(widest + 10);
// The backend ports (the other rule's moves to the next one) and the other rule's port lie outside the range.
const backendPort = await freeBlock(2, [[first, widest + 10]]);
const other = await freeBlock(1, [[first, widest + 10], [backendPort, 2]]);
// Backends that accept, so oi does not reset the probe connections (a reset can beat the client's own handshake report).
const backends = [0, 1].map((offset) => Bun.listen({ hostname: "127.0.0.1", port: backendPort + offset, socket: { data() {} } }));

const baseline: number[] = [];
/** A round; when another process took one of the block's ports meanwhile, once more on another block. */
async function measured(width: number): Promise<Figures> {
  try {
    return await round(width, first, backendPort, other);
  } catch (error) {
    if (!String(error).includes("EADDRINUSE")) throw error;
    first = await freeBlock(widest + 10, [[backendPort, 2], [other, 1]]);
    return await round(width, first, backendPort, other);
  }
}

for (let i = 0; i < rounds; i++) baseline.push((await measured(1)).rssAnonKiB);
const baseKiB = median(baseline);
console.log(`baseline (a range of 1 port): RssAnon ${baseKiB} KiB`);
console.log("ports   start ms   reload other ms   reload range (+10) ms   RssAnon KiB   KiB per port");
for (const width of sizes) {
  const results: Figures[] = [];
  for (let i = 0; i < rounds; i++) results.push(await measured(width));
  const rss = median(results.map((each) => each.rssAnonKiB));
  const perPort = width > 1 ? (rss - baseKiB) / (width - 1) : 0;
  console.log(
    [
      String(width).padStart(5),
      median(results.map((each) => each.startMs)).toFixed(0).padStart(10),
      median(results.map((each) => each.reloadOtherMs)).toFixed(1).padStart(17),
      median(results.map((each) => each.reloadRangeMs)).toFixed(1).padStart(23),
      String(rss).padStart(13),
      perPort.toFixed(2).padStart(14),
    ].join(" "),
  );
}
for (const listener of backends) listener.stop(true);
