/**
 * The admin HTTP server on a real oi: curl and fetch on TCP (with and without
 * the token) and on a unix socket (its file mode checked), /healthz and
 * /readyz through a shutdown, /metrics, reload through the API, backends
 * drained while a transfer runs, rules put and deleted while another rule
 * carries traffic, and JSON errors for every bad request.
 */
import { describe, expect, test } from "bun:test";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { loadConfigText } from "../src/config/load.ts";
import { backend, cleanUpAfterEachTest, greeter, greeting, oi, oiOnFile, until } from "./helpers/harness.ts";
import { runOi, tempDir, writeTempFile } from "./helpers/oi-process.ts";
import { connectPeer, connectionRefused, freePort, randomBytes, sha256, withTimeout } from "./helpers/peers.ts";
import { missingTools, runTool, testName } from "./helpers/servers.ts";

cleanUpAfterEachTest();

const TOKEN = "test-token-0123456789abcdef";
const noCurl = missingTools(["curl"]);

function tokenFile(): string {
  return writeTempFile("admin.token", `${TOKEN}\n`);
}

/** curl's answer: status and body (JSON parsed when it is JSON). */
async function curl(args: string[]): Promise<{ status: number; body: string }> {
  const run = await runTool(["curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", ...args], { timeoutMs: 8000 });
  const cut = run.stdout.lastIndexOf("\n");
  return { status: Number(run.stdout.slice(cut + 1)), body: run.stdout.slice(0, cut) };
}

async function api(base: string, path: string, init: RequestInit & { unix?: string } = {}): Promise<{ status: number; body: any; text: string }> {
  const response = await fetch(`${base}${path}`, init);
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: response.status, body, text };
}

const withToken = (init: RequestInit = {}): RequestInit => ({ ...init, headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) } });

describe("admin server: access", () => {
  test(testName("TCP with a token: 401 without it, 403 when wrong, 200 with it (curl and fetch); probes and /metrics stay open", noCurl), async () => {
    if (noCurl !== undefined) return;
    const server = backend();
    const port = freePort();
    const adminPort = freePort();
    const metricsPort = freePort();
    await oi(`admin 127.0.0.1:${adminPort}\nadmin-token ${tokenFile()}\nmetrics 127.0.0.1:${metricsPort}\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    const base = `http://127.0.0.1:${adminPort}`;

    const none = await curl([`${base}/api/v1/status`]);
    expect(none.status).toBe(401);
    expect(JSON.parse(none.body).error).toMatch(/Authorization: Bearer/);
    const wrong = await curl(["-H", "Authorization: Bearer not-the-token", `${base}/api/v1/status`]);
    expect(wrong.status).toBe(403);
    expect(JSON.parse(wrong.body)).toEqual({ error: "wrong token" });
    const right = await curl(["-H", `Authorization: Bearer ${TOKEN}`, `${base}/api/v1/status`]);
    expect(right.status).toBe(200);
    expect(JSON.parse(right.body)).toMatchObject({ version: expect.any(String), rules: [{ name: `127.0.0.1:${port}/tcp` }] });

    expect((await api(base, "/api/v1/rules")).status).toBe(401);
    expect((await api(base, "/api/v1/reload", { method: "POST", headers: { authorization: "Bearer nope" } })).status).toBe(403);
    const rules = await api(base, "/api/v1/rules", withToken());
    expect(rules.status).toBe(200);
    expect(rules.body.rules[0].backends[0]).toMatchObject({ address: `127.0.0.1:${server.port}`, state: "ready", health: "up" });

    expect((await curl([`${base}/healthz`])).status).toBe(200);
    expect((await curl([`${base}/readyz`])).status).toBe(200);
    // The same text as the metrics endpoint (process figures aside, which move between two reads).
    const stable = (text: string) => text.split("\n").filter((line) => !line.startsWith("process_")).join("\n");
    const adminMetrics = (await curl([`${base}/metrics`])).body;
    const endpointMetrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(adminMetrics).toContain("oi_connections_total");
    expect(stable(adminMetrics).trimEnd()).toBe(stable(endpointMetrics).trimEnd());
  });

  test("admin-read open: GETs need no token, changes still do", async () => {
    const server = backend();
    const port = freePort();
    const adminPort = freePort();
    await oi(`admin 127.0.0.1:${adminPort}\nadmin-token ${tokenFile()}\nadmin-read open\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    const base = `http://127.0.0.1:${adminPort}`;
    expect((await api(base, "/api/v1/rules")).status).toBe(200);
    expect((await api(base, "/api/v1/config?format=yaml")).status).toBe(200);
    expect((await api(base, "/api/v1/reload", { method: "POST" })).status).toBe(401);
    expect((await api(base, "/api/v1/reload", withToken({ method: "POST" }))).status).toBe(200);
  });

  test(testName("unix socket: created 0600 (or as admin-mode says), served to curl --unix-socket and fetch", noCurl), async () => {
    if (noCurl !== undefined) return;
    const server = backend();
    const port = freePort();
    const directory = tempDir();
    const socket = join(directory, "admin.sock");
    await oi(`admin unix:${socket}\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    expect(statSync(socket).isSocket()).toBe(true);
    expect(statSync(socket).mode & 0o777).toBe(0o600);
    const answer = await curl(["--unix-socket", socket, "http://oi/api/v1/rules"]);
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body).rules).toHaveLength(1);
    const fetched = await fetch("http://oi/readyz", { unix: socket } as RequestInit);
    expect(fetched.status).toBe(200);

    const shared = join(directory, "shared.sock");
    await oi(`admin unix:${shared}\nadmin-mode 0660\n127.0.0.1 ${freePort()} 127.0.0.1 ${server.port}\n`);
    expect(statSync(shared).mode & 0o777).toBe(0o660);

    // A token applies on the unix socket too.
    const guarded = join(directory, "guarded.sock");
    await oi(`admin unix:${guarded}\nadmin-token ${tokenFile()}\n127.0.0.1 ${freePort()} 127.0.0.1 ${server.port}\n`);
    expect((await fetch("http://oi/api/v1/rules", { unix: guarded } as RequestInit)).status).toBe(401);
    expect((await fetch("http://oi/api/v1/rules", { unix: guarded, headers: { authorization: `Bearer ${TOKEN}` } } as RequestInit)).status).toBe(200);
  });
});

describe("admin server: lifecycle", () => {
  test("/readyz turns 503 at SIGTERM while connections drain; /healthz stays 200", async () => {
    const server = backend();
    const port = freePort();
    const adminPort = freePort();
    const process = await oi(`admin 127.0.0.1:${adminPort}\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, ["--grace", "5"]);
    const base = `http://127.0.0.1:${adminPort}`;
    expect((await api(base, "/readyz")).status).toBe(200);
    // A busy connection keeps the shutdown in its grace period.
    const client = await connectPeer("127.0.0.1", port);
    const upstream = await server.nextConnection();
    const busy = setInterval(() => void client.send("x"), 50);
    try {
      process.signal("SIGTERM");
      await process.stdout.waitFor("SIGTERM: stopped accepting", 3000);
      const ready = await api(base, "/readyz");
      expect(ready.status).toBe(503);
      expect((await api(base, "/healthz")).status).toBe(200);
    } finally {
      clearInterval(busy);
    }
    client.socket?.end();
    upstream.socket?.end();
    expect(await process.proc.exited).toBe(0);
  });

  test("--drain-delay: at SIGTERM /readyz turns 503 while new connections are still forwarded for the delay; refused after it; exit 0", async () => {
    const server = greeter("still here");
    const port = freePort();
    const adminPort = freePort();
    const process = await oi(`admin 127.0.0.1:${adminPort}\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, ["--drain-delay", "2", "--grace", "5"]);
    const base = `http://127.0.0.1:${adminPort}`;
    expect((await api(base, "/readyz")).status).toBe(200);
    const signalled = Date.now();
    process.signal("SIGTERM");
    await process.stdout.waitFor("SIGTERM: not ready (/readyz 503); still accepting for 2s (--drain-delay)", 3000);
    expect((await api(base, "/readyz")).status).toBe(503);
    expect((await api(base, "/healthz")).status).toBe(200);
    // A client sent here by an endpoint list not updated yet is still served, bytes and all.
    expect(await greeting(port)).toBe("still here");
    expect(process.stdout.text).not.toContain("stopped accepting");
    await process.stdout.waitFor("SIGTERM: stopped accepting", 5000);
    expect(Date.now() - signalled).toBeGreaterThanOrEqual(1900);
    expect(await connectionRefused(port)).toBe(true);
    expect(await withTimeout(process.proc.exited, 5000, "exit")).toBe(0);
  });

  test("--drain-delay that is no number of seconds: exit 1 with the reason", async () => {
    const run = await runOi(["-c", writeTempFile("oi.conf", `127.0.0.1 ${freePort()} 127.0.0.1 9\n`), "--drain-delay", "soon"]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("--drain-delay must be a number of seconds (0 or more), got 'soon'");
  });

  test("POST /api/v1/reload applies the file; a bad file answers 422 with file, line and reason, and the running config stays", async () => {
    const a = backend();
    const port = freePort();
    const port2 = freePort();
    const adminPort = freePort();
    const path = writeTempFile("reload.conf", `admin 127.0.0.1:${adminPort}\n127.0.0.1 ${port} 127.0.0.1 ${a.port}\n`);
    await oiOnFile(path);
    const base = `http://127.0.0.1:${adminPort}`;
    writeFileSync(path, `admin 127.0.0.1:${adminPort}\n127.0.0.1 ${port} 127.0.0.1 ${a.port}\n127.0.0.1 ${port2} 127.0.0.1 ${a.port}\n`);
    const ok = await api(base, "/api/v1/reload", { method: "POST" });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ reloaded: true, listeners: { started: 1, kept: 1, stopped: 0 } });
    expect((await api(base, "/api/v1/rules")).body.rules).toHaveLength(2);

    writeFileSync(path, `admin 127.0.0.1:${adminPort}\n127.0.0.1 ${port} 127.0.0.1 ${a.port}\n127.0.0.1 99999 127.0.0.1 1\n`);
    const bad = await api(base, "/api/v1/reload", { method: "POST" });
    expect(bad.status).toBe(422);
    expect(bad.body.error).toMatch(/running configuration stays/);
    expect(bad.body.errors[0]).toMatchObject({ file: path, line: 3, reason: expect.stringMatching(/port/) });
    expect((await api(base, "/api/v1/rules")).body.rules).toHaveLength(2);
  });

  test("an admin address that cannot be had stops oi at start, naming FILE:LINE", async () => {
    const holder = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const path = writeTempFile("taken.conf", `# admin on a port in use\nadmin 127.0.0.1:${holder.port}\n127.0.0.1 ${freePort()} 127.0.0.1 1\n`);
      const run = await runOi(["-c", path]);
      expect(run.code).toBe(1);
      expect(run.stdout + run.stderr).toContain(`${path}:2: cannot serve the admin API on http://127.0.0.1:${holder.port}`);
    } finally {
      holder.stop(true);
    }
  });

  test("a reload that moves the admin address moves the server", async () => {
    const a = backend();
    const port = freePort();
    const first = freePort();
    const second = freePort();
    const path = writeTempFile("move.conf", `admin 127.0.0.1:${first}\n127.0.0.1 ${port} 127.0.0.1 ${a.port}\n`);
    await oiOnFile(path);
    writeFileSync(path, `admin 127.0.0.1:${second}\n127.0.0.1 ${port} 127.0.0.1 ${a.port}\n`);
    expect((await api(`http://127.0.0.1:${first}`, "/api/v1/reload", { method: "POST" })).status).toBe(200);
    expect((await api(`http://127.0.0.1:${second}`, "/healthz")).status).toBe(200);
    expect(await connectionRefused(first)).toBe(true);
  });
});

/** A YAML config with rule `web` balancing over backends a and b, and the admin server. */
function twoBackends(adminPort: number, port: number, a: number, b: number, extra = ""): string {
  return `global:\n  admin: "127.0.0.1:${adminPort}"\nrules:\n  - name: web\n    bind: "127.0.0.1:${port}/tcp"\n    connect:\n      - { dest: "127.0.0.1:${a}", name: a }\n      - { dest: "127.0.0.1:${b}", name: b${extra} }\n`;
}

describe("admin API: backends", () => {
  test("drain during a transfer: it completes intact, the next 50 connections avoid the backend; ready brings it back", async () => {
    const a = backend();
    const b = backend();
    const port = freePort();
    const adminPort = freePort();
    await oi(twoBackends(adminPort, port, a.port, b.port), [], "drain.yaml");
    const base = `http://127.0.0.1:${adminPort}`;

    // Round robin starts with a: the long transfer goes there.
    const client = await connectPeer("127.0.0.1", port);
    const upstream = await a.nextConnection();
    const payload = randomBytes(8 * 1024 * 1024);
    const half = payload.length / 2;
    await client.send(payload.subarray(0, half));
    await until(() => upstream.received >= half, 5000, "the first half at backend a");

    const drained = await api(base, "/api/v1/rules/web/backends/a", { method: "POST", body: JSON.stringify({ state: "drain" }) });
    expect(drained.status).toBe(200);
    expect(drained.body.backends[0]).toMatchObject({ name: "a", state: "drain", connections: { active: 1 } });

    await client.send(payload.subarray(half), true);
    await upstream.waitEnd(10000);
    expect(upstream.received).toBe(payload.length);
    expect(upstream.digest()).toBe(sha256(payload));

    for (let i = 0; i < 50; i++) {
      const peer = await connectPeer("127.0.0.1", port);
      await b.nextConnection();
      peer.socket?.end();
    }
    expect(a.connections).toHaveLength(1);
    expect(b.connections).toHaveLength(50);

    expect((await api(base, "/api/v1/rules/web/backends/a", { method: "POST", body: '{"state":"ready"}' })).status).toBe(200);
    const seen = a.connections.length;
    for (let i = 0; i < 4; i++) (await connectPeer("127.0.0.1", port)).socket?.end();
    await until(() => a.connections.length === seen + 2, 3000, "a to take connections again");
    client.socket?.end();
  });

  test("maint stops the health probes; a weight is set; both survive a reload that keeps the backend", async () => {
    const a = backend();
    const b = backend();
    const port = freePort();
    const adminPort = freePort();
    const base = `http://127.0.0.1:${adminPort}`;
    const probed = (text: string) => text.replace("    connect:", "    load_balancing: { probe_interval: 0.2 }\n    connect:");
    const path = writeTempFile("maint.yaml", probed(twoBackends(adminPort, port, a.port, b.port)));
    await oiOnFile(path);
    // Probes are connections: a gets them every 0.2 s while in service.
    await until(() => a.connections.length >= 2, 3000, "probes of a");
    const maint = await api(base, "/api/v1/rules/web/backends/a", { method: "POST", body: '{"state":"maint"}' });
    expect(maint.body.backends[0].state).toBe("maint");
    await Bun.sleep(300);
    const probes = a.connections.length;
    await Bun.sleep(1000);
    expect(a.connections.length).toBe(probes);

    const weighted = await api(base, "/api/v1/rules/web/backends/b", { method: "POST", body: '{"weight": 7}' });
    expect(weighted.status).toBe(200);
    expect(weighted.body.backends[0]).toMatchObject({ name: "b", weight: 7 });

    // A reload that changes the rule (another backend name) builds its backends afresh: a is still in maintenance, b still weighs 7.
    const c = backend();
    writeFileSync(path, probed(twoBackends(adminPort, port, a.port, b.port)).replace("name: b }", `name: b }\n      - { dest: "127.0.0.1:${c.port}", name: c }`));
    expect((await api(base, "/api/v1/reload", { method: "POST" })).status).toBe(200);
    const rule = (await api(base, "/api/v1/rules/web")).body;
    expect(rule.backends.map((each: { name: string; state: string; weight: number }) => [each.name, each.state, each.weight])).toEqual([
      ["a", "maint", 1],
      ["b", "ready", 7],
      ["c", "ready", 1],
    ]);
    await Bun.sleep(600);
    expect(a.connections.length).toBe(probes);
  });

  test("a weight set through the API changes the share of new connections at once", async () => {
    const a = backend();
    const b = backend();
    const port = freePort();
    const adminPort = freePort();
    await oi(twoBackends(adminPort, port, a.port, b.port), [], "weight.yaml");
    const weighted = await api(`http://127.0.0.1:${adminPort}`, "/api/v1/rules/web/backends/b", { method: "POST", body: '{"weight": 3}' });
    expect(weighted.status).toBe(200);
    // Smooth weighted round robin: exactly 3 of every 4 new connections go to b.
    for (let i = 0; i < 8; i++) (await connectPeer("127.0.0.1", port)).socket?.end();
    await until(() => a.connections.length + b.connections.length === 8, 3000, "8 connections at the backends");
    expect([a.connections.length, b.connections.length]).toEqual([2, 6]);
  });

  test("unknown rule or backend: 404; a bad state or weight: 400; all JSON", async () => {
    const a = backend();
    const b = backend();
    const port = freePort();
    const adminPort = freePort();
    await oi(twoBackends(adminPort, port, a.port, b.port), [], "bad.yaml");
    const base = `http://127.0.0.1:${adminPort}`;
    const post = (path: string, body: string) => api(base, path, { method: "POST", body });
    expect(await post("/api/v1/rules/web/backends/zzz", '{"state":"drain"}')).toMatchObject({ status: 404, body: { error: "rule 'web' has no backend named 'zzz'" } });
    expect(await post("/api/v1/rules/nope/backends/a", '{"state":"drain"}')).toMatchObject({ status: 404, body: { error: "no rule named 'nope'" } });
    expect((await post("/api/v1/rules/web/backends/a", '{"state":"sleep"}')).body.error).toMatch(/state must be one of ready, drain, maint/);
    expect((await post("/api/v1/rules/web/backends/a", '{"weight":0}')).status).toBe(400);
    expect((await post("/api/v1/rules/web/backends/a", '{"weight":101}')).status).toBe(400);
    expect((await post("/api/v1/rules/web/backends/a", "{not json")).body.error).toMatch(/malformed JSON body/);
    expect((await post("/api/v1/rules/web/backends/a", '{"colour":"red"}')).status).toBe(400);
  });
});

describe("admin API: rules", () => {
  test("PUT adds and replaces a rule, DELETE removes it, while another rule carries a transfer; the export loads back", async () => {
    const a = backend();
    const port = freePort();
    const extraPort = freePort();
    const adminPort = freePort();
    const base = `http://127.0.0.1:${adminPort}`;
    await oi(`admin 127.0.0.1:${adminPort}\n127.0.0.1 ${port} 127.0.0.1 ${a.port}\n`);

    const client = await connectPeer("127.0.0.1", port);
    const upstream = await a.nextConnection();
    const payload = randomBytes(4 * 1024 * 1024);
    await client.send(payload.subarray(0, payload.length / 2));

    // Added as YAML.
    const one = backend((peer) => void peer.send("one", true));
    const yaml = `name: extra\nbind: "127.0.0.1:${extraPort}/tcp"\nconnect: "127.0.0.1:${one.port}"\nmax_connections: 5\n`;
    const added = await api(base, "/api/v1/rules/extra", { method: "PUT", body: yaml, headers: { "content-type": "application/yaml" } });
    expect(added.status).toBe(201);
    expect(added.body.rule).toMatchObject({ name: "extra", source: "api", binds: [`127.0.0.1:${extraPort}/tcp`], options: { max_connections: 5 } });
    expect(await greeting(extraPort)).toBe("one");

    // Replaced as JSON (the name comes from the URL): a new backend.
    const two = backend((peer) => void peer.send("two", true));
    const replaced = await api(base, "/api/v1/rules/extra", { method: "PUT", body: JSON.stringify({ bind: `127.0.0.1:${extraPort}/tcp`, connect: `127.0.0.1:${two.port}` }) });
    expect(replaced.status).toBe(200);
    expect(replaced.body).toMatchObject({ replaced: "extra", listeners: { kept: 2 } });
    expect(await greeting(extraPort)).toBe("two");

    const exported = await api(base, "/api/v1/config?format=yaml");
    expect(exported.status).toBe(200);
    const reloaded = loadConfigText(exported.text, "exported.yaml");
    expect(reloaded.errors).toEqual([]);
    expect(reloaded.config?.rules.map((rule) => rule.name)).toEqual([`127.0.0.1:${port}/tcp`, "extra"]);
    expect(reloaded.config?.rules[1]?.backends[0]?.endpoint.port).toBe(two.port);

    const deleted = await api(base, "/api/v1/rules/extra", { method: "DELETE" });
    expect(deleted).toMatchObject({ status: 200, body: { deleted: "extra", listeners: { stopped: 1 } } });
    expect(await connectionRefused(extraPort)).toBe(true);
    expect((await api(base, "/api/v1/rules/extra")).status).toBe(404);

    // The other rule's transfer went on through all of it.
    await client.send(payload.subarray(payload.length / 2), true);
    await upstream.waitEnd(10000);
    expect(upstream.digest()).toBe(sha256(payload));
  });

  test("a rule replaced through the API keeps its open connections; a reload from the file wins over API rules", async () => {
    const a = backend();
    const b = backend((peer) => void peer.send("b", true));
    const port = freePort();
    const adminPort = freePort();
    const base = `http://127.0.0.1:${adminPort}`;
    const path = writeTempFile("wins.yaml", `global:\n  admin: "127.0.0.1:${adminPort}"\nrules:\n  - name: web\n    bind: "127.0.0.1:${port}/tcp"\n    connect: "127.0.0.1:${a.port}"\n`);
    await oiOnFile(path);
    const client = await connectPeer("127.0.0.1", port);
    const upstream = await a.nextConnection();
    const put = await api(base, "/api/v1/rules/web", { method: "PUT", body: `{"name": "web", "bind": "127.0.0.1:${port}/tcp", "connect": "127.0.0.1:${b.port}"}` });
    expect(put.status).toBe(200);
    expect(await greeting(port)).toBe("b");
    const payload = randomBytes(1024 * 1024);
    await client.send(payload, true);
    await upstream.waitEnd(10000);
    expect(upstream.digest()).toBe(sha256(payload));

    expect((await api(base, "/api/v1/reload", { method: "POST" })).status).toBe(200);
    const rule = (await api(base, "/api/v1/rules/web")).body;
    expect(rule).toMatchObject({ source: "file", backends: [{ address: `127.0.0.1:${a.port}` }] });
  });

  test("bad bodies and bad rules: JSON errors with the right status, and oi keeps serving", async () => {
    const a = backend();
    const port = freePort();
    const adminPort = freePort();
    const base = `http://127.0.0.1:${adminPort}`;
    await oi(`admin 127.0.0.1:${adminPort}\n127.0.0.1 ${port} 127.0.0.1 ${a.port}\n`);
    const put = (name: string, body: string) => api(base, `/api/v1/rules/${name}`, { method: "PUT", body });

    expect(await put("x", "")).toMatchObject({ status: 400, body: { error: expect.stringMatching(/empty body/) } });
    expect(await put("x", "{bind: [")).toMatchObject({ status: 400, body: { error: expect.stringMatching(/malformed body/) } });
    expect((await put("x", "[1, 2]")).status).toBe(400);
    expect((await put("x", '{"name": "y", "bind": "127.0.0.1:1/tcp", "connect": "127.0.0.1:2"}')).body.error).toMatch(/names rule 'y' but the URL names 'x'/);
    // A bad rule: the YAML reader's own reasons, with lines in the body.
    const badRule = await put("x", `bind: "127.0.0.1:${freePort()}/tcp"\nconnect: "127.0.0.1:2"\nmax_connections: 0\n`);
    expect(badRule.status).toBe(422);
    expect(badRule.body.errors[0]).toMatchObject({ line: expect.any(Number), reason: expect.stringMatching(/maxconn must be a whole number/) });
    const noConnect = await put("x", `name: x\nbind: "127.0.0.1:${freePort()}/tcp"\n`);
    expect(noConnect.status).toBe(422);
    expect(noConnect.body.errors[0]).toMatchObject({ line: 1, reason: expect.stringMatching(/connect/) });
    // Two rules on one port: refused by the same check a config file gets.
    const clash = await put("x", `bind: "127.0.0.1:${port}/tcp"\nconnect: "127.0.0.1:2"\n`);
    expect(clash.status).toBe(422);
    expect(clash.body.errors[0].reason).toMatch(/127\.0\.0\.1:/);
    // A port held by another process: the bind fails, nothing changes.
    const holder = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const busy = await put("x", `bind: "127.0.0.1:${holder.port}/tcp"\nconnect: "127.0.0.1:2"\n`);
    holder.stop(true);
    expect(busy.status).toBe(409);
    expect(busy.body.error).toMatch(/cannot listen/);

    expect((await api(base, "/api/v1/rules/nope", { method: "DELETE" })).status).toBe(404);
    expect(await api(base, "/api/v1/nothing")).toMatchObject({ status: 404, body: { error: "no such endpoint: /api/v1/nothing" } });
    expect(await api(base, "/api/v1/rules", { method: "POST", body: "{}" })).toMatchObject({ status: 405, body: { error: expect.stringMatching(/POST is not allowed/) } });
    expect((await api(base, "/api/v1/config?format=xml")).status).toBe(400);
    const huge = await put("x", "#".repeat(2 * 1024 * 1024));
    expect(huge.status).toBe(413);
    expect(huge.body.error).toMatch(/over the limit/);

    // Whatever arrives, the answer is JSON with an error and a 4xx status, never a crash.
    const paths = ["/api/v1/rules/x", "/api/v1/rules/x/backends/y", `/api/v1/rules/${encodeURIComponent(`127.0.0.1:${port}/tcp`)}/backends/z`, "/api/v1/reload", "/api/v1/rules/%E0%A4%A"];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...paths), fc.constantFrom("PUT", "POST", "DELETE", "PATCH"), fc.oneof(fc.string(), fc.json(), fc.uint8Array({ maxLength: 64 })), async (path, method, body) => {
        const answer = await api(base, path, { method, body: typeof body === "string" ? body : Buffer.from(body) });
        if (path === "/api/v1/reload" && method === "POST") return answer.status === 200;
        return answer.status >= 400 && answer.status < 500 && typeof answer.body?.error === "string";
      }),
      { numRuns: 150 },
    );
    const client = await connectPeer("127.0.0.1", port);
    await a.nextConnection();
    client.socket?.end();
    expect((await api(base, "/healthz")).status).toBe(200);
  });
});

describe("admin API with --workers", () => {
  test("read endpoints, reload, backend state and rule changes reach every worker", async () => {
    const a = backend((peer) => void peer.send("a", true));
    const b = backend((peer) => void peer.send("b", true));
    const port = freePort();
    const port2 = freePort();
    const adminPort = freePort();
    const base = `http://127.0.0.1:${adminPort}`;
    await oi(twoBackends(adminPort, port, a.port, b.port), ["--workers", "2"], "workers.yaml");
    const answers = new Set<string>();
    for (let i = 0; i < 4; i++) answers.add(await greeting(port));
    const rule = await api(base, "/api/v1/rules/web");
    expect(rule.status).toBe(200);
    expect(rule.body.connections.total).toBe(4);
    expect((await api(base, "/api/v1/status")).body.connections.total).toBe(4);
    expect((await api(base, "/api/v1/reload", { method: "POST" })).status).toBe(200);

    // Each worker balances on its own: all of them are told, and the connections they take (spread by the kernel) avoid a.
    const drained = await api(base, "/api/v1/rules/web/backends/a", { method: "POST", body: '{"state":"drain"}' });
    expect(drained.status).toBe(200);
    expect(drained.body.backends[0].state).toBe("drain");
    const before = a.connections.length;
    for (let i = 0; i < 20; i++) expect(await greeting(port)).toBe("b");
    expect(a.connections.length).toBe(before);
    expect((await api(base, "/api/v1/rules/web/backends/zz", { method: "POST", body: '{"state":"drain"}' })).status).toBe(404);

    const put = await api(base, "/api/v1/rules/more", { method: "PUT", body: `{"bind": "127.0.0.1:${port2}/tcp", "connect": "127.0.0.1:${a.port}"}` });
    expect(put.status).toBe(201);
    expect(await greeting(port2)).toBe("a");
  });
});
