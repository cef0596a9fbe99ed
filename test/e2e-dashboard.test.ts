/**
 * The admin dashboard in a real browser: headless Chromium loads the page
 * from a running oi's admin server, under the Content-Security-Policy the
 * server sends, and the DOM it ends with shows the rules, their backends
 * (one drained through the API) and the recent errors.
 */
import { describe, expect, test } from "bun:test";
import { backend, cleanUpAfterEachTest, oi, until } from "./helpers/harness.ts";
import { browse } from "./helpers/browser.ts";
import { writeTempFile } from "./helpers/oi-process.ts";
import { connectExpectingClose, connectPeer, freePort } from "./helpers/peers.ts";
import { missingTools, testName } from "./helpers/servers.ts";

cleanUpAfterEachTest();

const noChromium = missingTools(["chromium"]);

/** The text of the cells of `row`'s `<td>`s, from a dumped DOM. */
function cells(row: string): string[] {
  return [...row.matchAll(/<td[^>]*>(.*?)<\/td>/g)].map((match) => match[1]!.replace(/<[^>]+>/g, "").trim());
}

describe("admin dashboard", () => {
  test(testName("Chromium shows every rule, its backends with a drained one's state, and the recent errors, under the page's strict CSP", noChromium), async () => {
    if (noChromium !== undefined) return;
    const [first, second] = [backend(), backend()];
    const [port, refusing, closedPort, adminPort] = [freePort(), freePort(), freePort(), freePort()];
    await oi(
      `admin 127.0.0.1:${adminPort}\n` +
        `127.0.0.1 ${port} 127.0.0.1:${first.port},127.0.0.1:${second.port}\n` +
        // Nothing listens there: each client of this rule ends as `refused`, a recent error.
        `127.0.0.1 ${refusing} 127.0.0.1 ${closedPort}\n`,
    );
    const base = `http://127.0.0.1:${adminPort}`;
    for (let i = 1; i <= 4; i++) {
      const client = await connectPeer("127.0.0.1", port);
      await client.send("hello");
      await until(() => first.connections.length + second.connections.length === i, 3000, "the backend connection");
      client.socket?.end();
    }
    // oi may reset this client before its connect is reported done: either way it was refused.
    expect(await connectExpectingClose("127.0.0.1", refusing)).toBe(0);

    const page = await fetch(`${base}/`);
    expect(page.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(await page.text()).not.toMatch(/<script>|style=|https?:\/\//);
    const backendName = `127.0.0.1:${second.port}`;
    const drained = await fetch(`${base}/api/v1/rules/${encodeURIComponent(`127.0.0.1:${port}/tcp`)}/backends/${encodeURIComponent(backendName)}`, {
      method: "POST",
      body: JSON.stringify({ state: "drain" }),
    });
    expect(drained.status).toBe(200);

    // The charts' samples: one every 2 s since the admin server started, with the rule's bytes so far.
    // (The first is taken as the admin server starts, before the rules listen.)
    type History = { interval_seconds: number; samples: Array<{ rules: Record<string, number[]> }> };
    let history: History = { interval_seconds: 0, samples: [] };
    for (const deadline = Date.now() + 5000; Date.now() < deadline; await Bun.sleep(100)) {
      history = (await (await fetch(`${base}/api/v1/history`)).json()) as History;
      if (history.samples.at(-1)?.rules[`127.0.0.1:${port}/tcp`] !== undefined) break;
    }
    expect(history.interval_seconds).toBe(2);
    const last = history.samples.at(-1)!.rules[`127.0.0.1:${port}/tcp`]!;
    // [bytes from clients, bytes to clients, connections open]: the four clients' "hello"s.
    expect(last[0]).toBe(20);

    const { dom, log } = await browse(`${base}/`, 5000);
    // The script ran (it fills the summary) and nothing was refused by the CSP.
    expect(dom).toMatch(/<p id="summary">[^<]*2 rule\(s\)/);
    expect(log).not.toMatch(/Refused to (load|execute|apply|connect)/);
    expect(dom).toContain(`data-rule="127.0.0.1:${port}/tcp"`);
    expect(dom).toContain(`data-rule="127.0.0.1:${refusing}/tcp"`);
    const row = (name: string) => dom.match(new RegExp(`<tr data-backend="${name.replace(/[.]/g, "\\.")}">.*?</tr>`))?.[0] ?? "";
    const drainedRow = cells(row(backendName));
    const readyRow = cells(row(`127.0.0.1:${first.port}`));
    expect(drainedRow.slice(0, 5)).toEqual([backendName, backendName, "1", "drain", "healthy"]);
    expect(readyRow.slice(0, 5)).toEqual([`127.0.0.1:${first.port}`, `127.0.0.1:${first.port}`, "1", "ready", "healthy"]);
    // A drained backend is offered "ready" (and "maint"), not "drain".
    expect(row(backendName)).toContain('data-state="ready"');
    expect(row(backendName)).not.toContain('data-state="drain"');
    // The refused client is among the recent errors.
    expect(dom).toMatch(new RegExp(`<td class="mono">127\\.0\\.0\\.1:${refusing}/tcp</td><td class="mono">127\\.0\\.0\\.1:\\d+</td><td>refused</td>`));
  }, 60_000);

  test(testName("with admin-token, the page asks for the token instead of showing data", noChromium), async () => {
    if (noChromium !== undefined) return;
    const server = backend();
    const [port, adminPort] = [freePort(), freePort()];
    const token = writeTempFile("admin.token", "dashboard-token-0123456789\n");
    await oi(`admin 127.0.0.1:${adminPort}\nadmin-token ${token}\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    const { dom } = await browse(`http://127.0.0.1:${adminPort}/`, 3000);
    expect(dom).toMatch(/<form id="token-form">/);
    expect(dom).toMatch(/<p id="problem" role="alert">cannot reach oi: the admin API needs a token<\/p>/);
    expect(dom).not.toContain("data-rule=");
  }, 60_000);
});
