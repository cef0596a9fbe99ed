/**
 * The README's picture of the admin dashboard: oi with an admin server and
 * two rules (one with two backends, one drained through the API, and one
 * whose backend is down), loopback traffic for `--seconds` so the charts have
 * a history, then a headless Chromium screenshot. Loopback only, bounded.
 *
 *   bun bench/dashboard-screenshot.ts [--seconds 60] [--out contrib/screenshots/dashboard.png]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { tmpdir } from "node:os";
import { parseArgs } from "node:util";
import { browse } from "../test/helpers/browser.ts";
import { freePort } from "./net.ts";
import { waitForOutput } from "./procs.ts";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "60" }, out: { type: "string", default: "contrib/screenshots/dashboard.png" } } });
const seconds = Number(values.seconds);
const out = values.out;

// Two backends that answer every connection with 256 KiB and take what they are sent.
const answer = new Uint8Array(256 * 1024);
const backends = [0, 1].map(() =>
  Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: (socket) => void socket.end(answer) } }),
);
const [web, admin, api, down] = [freePort(), freePort(), freePort(), freePort()];
const config = join(tmpdir(), `oi-dashboard-${process.pid}.yaml`);
writeFileSync(
  config,
  `global:\n  admin: "127.0.0.1:${admin}"\nrules:\n` +
    `  - name: web\n    bind: "127.0.0.1:${web}/tcp"\n    connect: ["127.0.0.1:${backends[0]!.port}", "127.0.0.1:${backends[1]!.port}"]\n` +
    `  - name: api\n    bind: "127.0.0.1:${api}/tcp"\n    connect: "127.0.0.1:${down}"\n`,
);
const oi = Bun.spawn([process.execPath, join(import.meta.dir, "..", "src", "cli.ts"), "-c", config], { stdin: "ignore", stdout: "pipe", stderr: "inherit" });
try {
  await waitForOutput(oi, "listening");
  const base = `http://127.0.0.1:${admin}`;
  await fetch(`${base}/api/v1/rules/web/backends/web-backend-2`, { method: "POST", body: JSON.stringify({ state: "drain" }) });
  const until = Date.now() + seconds * 1000;
  let round = 0;
  while (Date.now() < until) {
    // A varying load, so the chart has a shape: more connections in some rounds than others.
    const count = 2 + (round++ % 7);
    await Promise.all(
      Array.from({ length: count }, () =>
        Bun.connect({ hostname: "127.0.0.1", port: web, socket: { data() {}, open: (socket) => void socket.write("GET / HTTP/1.0\r\n\r\n") } }).catch(() => undefined),
      ),
    );
    if (round % 5 === 0) await Bun.connect({ hostname: "127.0.0.1", port: api, socket: { data() {} } }).catch(() => undefined);
    await Bun.sleep(250);
  }
  mkdirSync(dirname(out), { recursive: true });
  // The charts come from the server's samples (every 2 s since the start): the page draws them at once.
  await browse(`${base}/`, 3000, join(process.cwd(), out));
  console.log(`wrote ${out}`);
} finally {
  oi.kill();
  await oi.exited;
  for (const backend of backends) backend.stop(true);
}
