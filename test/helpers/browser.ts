/**
 * A real browser for tests of the admin dashboard: headless Chromium
 * (Debian's `chromium`), run once per page with a fresh profile, bounded in
 * time. `--virtual-time-budget` lets the page's own timers and fetches run
 * (the dashboard polls the API) before the DOM is dumped or the screenshot
 * taken.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runTool, toolPath } from "./servers.ts";

function chromiumArgs(profile: string, budgetMs: number): string[] {
  return [
    toolPath("chromium") ?? "chromium",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-extensions",
    "--disable-background-networking",
    `--user-data-dir=${profile}`,
    "--window-size=1200,900",
    `--virtual-time-budget=${budgetMs}`,
  ];
}

/** Load `url` and run the page's scripts for `budgetMs` of virtual time; what the browser printed, and the DOM it then held. */
export async function browse(url: string, budgetMs = 5000, screenshot?: string): Promise<{ dom: string; log: string }> {
  const profile = mkdtempSync(join(tmpdir(), "oi-chromium-"));
  try {
    const extra = screenshot === undefined ? ["--dump-dom"] : [`--screenshot=${screenshot}`];
    const run = await runTool([...chromiumArgs(profile, budgetMs), "--enable-logging=stderr", "--v=0", ...extra, url], { timeoutMs: 60_000 });
    if (run.timedOut) throw new Error(`chromium did not finish within 60 s: ${run.stderr.slice(-2000)}`);
    return { dom: run.stdout, log: run.stderr };
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}
