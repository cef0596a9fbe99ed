/**
 * `--workers 2`: a real oi forwarding in two worker threads must behave as
 * with one. Connections reach both workers with their bytes intact; a reload
 * applies to both (and a reload one of them cannot take changes neither);
 * shutdown drains both; one log file, one metrics endpoint and one status
 * file hold the sums; the global and per-rule maxconn hold across them.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { backend, cleanUpAfterEachTest, greeter, greeting, oi, oiOnFile, onCleanup, until } from "./helpers/harness.ts";
import { runOi, tempDir, writeTempFile } from "./helpers/oi-process.ts";
import { connectionRefused, connectPeer, freePort, type Peer, randomBytes, sha256, watchRefusals, withTimeout } from "./helpers/peers.ts";
import { freeUdpPort, startUdpBackend, UdpClient } from "./helpers/udp.ts";

cleanUpAfterEachTest();

const WORKERS = ["--workers", "2"];

/** A backend that reads a whole upload, then sends it back reversed and half-closes. */
function reverser() {
  return backend((peer) => {
    peer.keep = [];
    peer.onEnd = (p) => void p.send(Buffer.concat(p.keep ?? []).reverse(), true);
  });
}

/** Upload `size` random bytes through `port`; resolves true when the reply is the upload reversed, byte for byte. */
async function roundTrip(port: number, size: number): Promise<boolean> {
  const up = randomBytes(size);
  const client = await connectPeer("127.0.0.1", port);
  await client.send(up, true);
  await client.waitClosed(10000);
  return client.digest() === sha256(Buffer.from(up).reverse());
}

/** Run `count` round trips, `parallel` at a time; how many came back intact. */
async function roundTrips(port: number, count: number, parallel: number, size = 64 * 1024): Promise<number> {
  let intact = 0;
  for (let done = 0; done < count; done += parallel) {
    const batch = Array.from({ length: Math.min(parallel, count - done) }, () => roundTrip(port, size));
    intact += (await Promise.all(batch)).filter(Boolean).length;
  }
  return intact;
}

/** Per-worker connection counts from the metrics text. */
function perWorker(metrics: string): number[] {
  return [...metrics.matchAll(/^oi_worker_connections_total\{worker="(\d+)"\} (\d+)$/gm)].map((match) => Number(match[2]));
}

function sample(metrics: string, name: string, labels: string): number | undefined {
  const line = metrics.split("\n").find((each) => each.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.split(" ").pop());
}

async function scrape(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}


async function greetings(port: number, count: number): Promise<string[]> {
  return Promise.all(Array.from({ length: count }, () => greeting(port)));
}

describe("--workers 2: forwarding", () => {
  test("both workers accept connections; bytes arrive intact both ways; one log, one -v console, one metrics endpoint with the sums", async () => {
    const server = reverser();
    const [port, metricsPort] = [freePort(), freePort()];
    const logPath = join(tempDir(), "oi.log");
    const process = await oi(`logfile ${logPath}\nlogjson\nmetrics 127.0.0.1:${metricsPort}\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, [...WORKERS, "-v"]);
    expect(process.stdout.text).toContain("listening in 2 workers");

    const count = 64;
    expect(await roundTrips(port, count, 16)).toBe(count);

    const metrics = await scrape(metricsPort);
    const workers = perWorker(metrics);
    expect(workers).toHaveLength(2);
    // Both served some: the kernel spreads connections over the two listeners.
    expect(Math.min(...workers)).toBeGreaterThan(0);
    expect(workers[0]! + workers[1]!).toBe(count);
    const labels = `rule="127.0.0.1:${port}/tcp",mode="tcp"`;
    expect(sample(metrics, "oi_connections_total", labels)).toBe(count);
    expect(sample(metrics, "oi_bytes_total", `${labels},direction="in"`)).toBe(count * 64 * 1024);
    expect(sample(metrics, "oi_bytes_total", `${labels},direction="out"`)).toBe(count * 64 * 1024);
    expect(sample(metrics, "oi_backend_connections_total", `rule="127.0.0.1:${port}/tcp",backend="127.0.0.1:${server.port}"`)).toBe(count);

    // One log file with a whole JSON line per connection, whichever worker carried it.
    await until(() => existsSync(logPath) && readFileSync(logPath, "utf8").split("\n").filter(Boolean).length === count, 5000, "the log lines");
    const lines = readFileSync(logPath, "utf8").split("\n").filter(Boolean);
    const records = lines.map((line) => JSON.parse(line) as { bind_port: number; bytes_in: number; result: string });
    expect(records.every((record) => record.bind_port === port && record.bytes_in === 64 * 1024 && record.result === "done")).toBe(true);
    // -v: a console line per connection from both workers.
    await until(() => (process.stdout.text.match(/ done in=65536 out=65536 /g) ?? []).length === count, 5000, "the console lines");
  });

  test("a UDP rule beside TCP rules is served (by one worker) and counted", async () => {
    const echo = await startUdpBackend();
    const udpPort = await freeUdpPort();
    const server = reverser();
    const tcpPort = freePort();
    await oi(`127.0.0.1 ${udpPort}/udp 127.0.0.1 ${echo.port}/udp\n127.0.0.1 ${tcpPort} 127.0.0.1 ${server.port}\n`, WORKERS);
    const client = await UdpClient.open("127.0.0.1", udpPort);
    for (let i = 0; i < 5; i++) client.send(`datagram ${i}`);
    await client.waitCount(5);
    expect(client.received.map((item) => Buffer.from(item.data).toString()).sort()).toEqual([0, 1, 2, 3, 4].map((i) => `datagram ${i}`));
    expect(await roundTrips(tcpPort, 8, 8, 1024)).toBe(8);
  });
});

describe("--workers 2: start", () => {
  test("a port in use stops the start with the rule's file and line and exit code 1, as with one worker", async () => {
    const blocker = backend();
    const path = writeTempFile("busy.conf", `127.0.0.1 ${freePort()} 127.0.0.1 9\n127.0.0.1 ${blocker.port} 127.0.0.1 9\n`);
    const result = await runOi(["-c", path, ...WORKERS]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${path}:2: cannot listen on 127.0.0.1:${blocker.port}`);
  });
});

describe("--workers 2: SIGHUP", () => {
  test("added, removed and changed rules apply in every worker; a kept port never refuses", async () => {
    const [one, two] = [greeter("one"), greeter("two")];
    const [keptPort, removedPort, addedPort] = [freePort(), freePort(), freePort()];
    const configPath = writeTempFile("reload.conf", `127.0.0.1 ${keptPort} 127.0.0.1 ${one.port}\n127.0.0.1 ${removedPort} 127.0.0.1 ${one.port}\n`);
    const process = await oiOnFile(configPath, WORKERS);
    expect(new Set(await greetings(keptPort, 16))).toEqual(new Set(["one"]));

    const refusals = watchRefusals(keptPort);
    writeFileSync(configPath, `127.0.0.1 ${keptPort} 127.0.0.1 ${two.port}\n127.0.0.1 ${addedPort} 127.0.0.1 ${one.port}\n`);
    process.signal("SIGHUP");
    await process.stdout.waitFor("reloaded: 1 listener(s) started, 1 kept, 1 stopped", 5000);
    await Bun.sleep(100);
    expect(await refusals.stop()).toBe(0);

    // Many connections, so both workers' listeners are asked: every one follows the new config.
    expect(await greetings(keptPort, 24)).toEqual(Array(24).fill("two"));
    expect(await greetings(addedPort, 24)).toEqual(Array(24).fill("one"));
    for (let i = 0; i < 8; i++) expect(await connectionRefused(removedPort)).toBe(true);
  });

  test("a config with errors leaves both workers on the running one", async () => {
    const server = greeter("still");
    const port = freePort();
    const configPath = writeTempFile("bad.conf", `127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    const process = await oiOnFile(configPath, WORKERS);
    writeFileSync(configPath, `127.0.0.1 ${port} 127.0.0.1 9\nnonsense here\n`);
    process.signal("SIGHUP");
    await process.stderr.waitFor(`${configPath}:2: `, 5000);
    await process.stderr.waitFor("the running configuration stays in force", 5000);
    expect(await greetings(port, 24)).toEqual(Array(24).fill("still"));
  });

  test("a reload only one worker can bind is undone in the other: both keep the running config", async () => {
    const [kept, changed] = [greeter("kept"), greeter("changed")];
    const port = freePort();
    // A UDP port in use: only worker 0 binds UDP rules, so worker 1 takes this config and must go back.
    const busy = await startUdpBackend();
    const configPath = writeTempFile("half.conf", `127.0.0.1 ${port} 127.0.0.1 ${kept.port}\n`);
    const process = await oiOnFile(configPath, WORKERS);
    writeFileSync(configPath, `127.0.0.1 ${port} 127.0.0.1 ${changed.port}\n127.0.0.1 ${busy.port}/udp 127.0.0.1 9/udp\n`);
    process.signal("SIGHUP");
    await process.stderr.waitFor(`cannot listen on 127.0.0.1:${busy.port}`, 5000);
    await process.stderr.waitFor("the running configuration stays in force", 5000);
    expect(await greetings(port, 32)).toEqual(Array(32).fill("kept"));
  });

  test("the log file is reopened: after logrotate moves it, lines from both workers go to a new file", async () => {
    const server = reverser();
    const port = freePort();
    const dir = tempDir();
    const logPath = join(dir, "oi.log");
    const configPath = writeTempFile("log.conf", `logfile ${logPath}\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    const process = await oiOnFile(configPath, [...WORKERS, "-v"]);
    expect(await roundTrips(port, 8, 8, 100)).toBe(8);
    await until(() => existsSync(logPath) && readFileSync(logPath, "utf8").split("\n").filter(Boolean).length === 8, 5000, "8 lines");
    renameSync(logPath, join(dir, "oi.log.1"));
    process.signal("SIGHUP");
    await process.stdout.waitFor("reloaded", 5000);
    expect(await roundTrips(port, 32, 16, 100)).toBe(32);
    await until(() => existsSync(logPath) && readFileSync(logPath, "utf8").split("\n").filter(Boolean).length === 32, 5000, "32 lines in the new file");
    // rinetd's format: nine tab-separated fields, the result last.
    for (const line of readFileSync(logPath, "utf8").split("\n").filter(Boolean)) {
      const fields = line.split("\t");
      expect(fields).toHaveLength(9);
      expect(fields[8]).toBe("done");
    }
    expect(readFileSync(join(dir, "oi.log.1"), "utf8").split("\n").filter(Boolean)).toHaveLength(8);
  });
});

describe("--workers 2: SIGTERM / SIGINT", () => {
  test("transfers on both workers finish within the grace period; new clients are refused; exit 0, no thread left", async () => {
    const payload = randomBytes(4 * 1024 * 1024);
    const server = backend((peer) => {
      peer.socket?.pause();
      setTimeout(() => peer.socket?.resume(), 500);
    });
    const [port, metricsPort] = [freePort(), freePort()];
    const process = await oi(`metrics 127.0.0.1:${metricsPort}\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, [...WORKERS, "--grace", "10"]);
    const clients: Peer[] = [];
    for (let i = 0; i < 8; i++) clients.push(await connectPeer("127.0.0.1", port));
    const sending = clients.map((client) => client.send(payload, true));
    await until(() => server.connections.length === 8, 5000, "8 backend connections");
    // Workers report their connections in batches (up to 10 ms late): wait until all 8 are counted.
    let workers: number[] = [];
    for (const deadline = Date.now() + 3000; Date.now() < deadline; await Bun.sleep(20)) {
      workers = perWorker(await scrape(metricsPort));
      if (workers.reduce((sum, each) => sum + each, 0) === 8) break;
    }
    expect(workers.reduce((sum, each) => sum + each, 0)).toBe(8);
    // The kernel spreads the 8 over both workers but for about 1 run in 128, when the test says nothing of the drain on both.
    if (Math.min(...workers) === 0) console.warn(`all 8 connections went to one worker (${workers.join(", ")}): this run checks one worker's drain`);
    process.signal("SIGTERM");
    await process.stdout.waitFor("stopped accepting; 8 connection(s) open, closing quiet ones now, waiting up to 10s for the others", 3000);
    expect(await connectionRefused(port)).toBe(true);
    await withTimeout(Promise.all(sending), 10000, "the uploads");
    for (const far of server.connections) {
      await far.waitEnd(10000);
      expect(far.digest()).toBe(sha256(payload));
      far.socket?.end();
    }
    expect(await withTimeout(process.proc.exited, 5000, "exit")).toBe(0);
    expect(existsSync(`/proc/${process.proc.pid}`)).toBe(false);
  });

  test("after the grace period the rest is closed on both workers and oi exits 0", async () => {
    const server = backend();
    const port = freePort();
    const process = await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, [...WORKERS, "--grace", "0.5"]);
    const idle: Peer[] = [];
    for (let i = 0; i < 8; i++) idle.push(await connectPeer("127.0.0.1", port));
    await until(() => server.connections.length === 8, 5000, "8 backend connections");
    const started = Date.now();
    process.signal("SIGINT");
    expect(await withTimeout(process.proc.exited, 5000, "exit")).toBe(0);
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(450);
    expect(took).toBeLessThan(3000);
    for (const peer of idle) await peer.waitClosed(3000);
  });

  test("idle connections on both workers are closed with FINs within about a second; oi exits 0 within 2 s despite a 30 s grace", async () => {
    const server = backend((peer) => void peer.send("hello"));
    const port = freePort();
    const process = await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, [...WORKERS, "--grace", "30"]);
    const idle: Peer[] = [];
    for (let i = 0; i < 8; i++) idle.push(await connectPeer("127.0.0.1", port));
    await until(() => idle.every((peer) => peer.received === 5), 5000, "8 greetings");
    const started = Date.now();
    process.signal("SIGINT");
    expect(await withTimeout(process.proc.exited, 5000, "exit")).toBe(0);
    expect(Date.now() - started).toBeLessThan(2000);
    for (const peer of idle) {
      await peer.waitEnd(2000);
      expect(peer.closeError).toBeUndefined();
    }
  });

  test("a second signal exits at once", async () => {
    const server = backend();
    const port = freePort();
    const process = await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, [...WORKERS, "--grace", "30"]);
    await connectPeer("127.0.0.1", port);
    await server.nextConnection();
    process.signal("SIGTERM");
    await process.stdout.waitFor("waiting up to 30s", 3000);
    const started = Date.now();
    process.signal("SIGTERM");
    expect(await withTimeout(process.proc.exited, 5000, "exit")).toBe(0);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

/** Open `count` connections at once; those still open after a moment were admitted. */
async function openMany(port: number, count: number): Promise<{ open: Peer[]; closed: number }> {
  const attempts = await Promise.allSettled(Array.from({ length: count }, () => connectPeer("127.0.0.1", port)));
  await Bun.sleep(400);
  const open = attempts.flatMap((attempt) => (attempt.status === "fulfilled" && !attempt.value.closed ? [attempt.value] : []));
  return { open, closed: count - open.length };
}

describe("--workers 2: limits hold across workers", () => {
  test("global maxconn: exactly N admitted however the kernel spreads them", async () => {
    const server = backend();
    const [port, metricsPort] = [freePort(), freePort()];
    await oi(`maxconn 5\nmetrics 127.0.0.1:${metricsPort}\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, WORKERS);
    const first = await openMany(port, 20);
    expect(first.open).toHaveLength(5);
    expect(server.connections).toHaveLength(5);
    const metrics = await scrape(metricsPort);
    expect(sample(metrics, "oi_limited_total", `rule="127.0.0.1:${port}/tcp",mode="tcp",reason="global"`)).toBe(15);
    expect(sample(metrics, "oi_limited_total", `rule="127.0.0.1:${port}/tcp",mode="tcp",reason="client"`)).toBe(0);
    // A freed slot admits again, on whichever worker the next client lands.
    first.open[0]!.socket?.terminate();
    await until(() => server.connections.filter((peer) => !peer.closed).length === 4, 3000, "a slot to free");
    const again = await openMany(port, 4);
    expect(again.open).toHaveLength(1);
  });

  test("a rule's [maxconn=N] counts its connections on every worker together", async () => {
    const server = backend();
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port} [maxconn=3]\n`, WORKERS);
    const first = await openMany(port, 16);
    expect(first.open).toHaveLength(3);
    expect(server.connections).toHaveLength(3);
  });
});

describe("--workers 2: status file", () => {
  test("the status file holds the sums over both workers", async () => {
    const server = reverser();
    const port = freePort();
    const statusPath = join(tempDir(), "status.json");
    await oi(`statusfile ${statusPath}\nstatusinterval 1\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, WORKERS);
    expect(await roundTrips(port, 24, 12, 1000)).toBe(24);
    const read = () => (existsSync(statusPath) ? (JSON.parse(readFileSync(statusPath, "utf8")) as { connections: { total: number }; traffic: { bytes_in: number } }) : undefined);
    await until(() => read()?.connections.total === 24, 5000, "the status file to count 24");
    expect(read()?.traffic.bytes_in).toBe(24 * 1000);
  });
});

describe("workers setting", () => {
  test("`workers N` in .conf, TOML and YAML; oi check shows it; out of range is FILE:LINE", async () => {
    const port = freePort();
    const conf = writeTempFile("w.conf", `workers 2\n127.0.0.1 ${port} 127.0.0.1 9\n`);
    const toml = writeTempFile("w.toml", `workers = 3\n[[forwarding_rules]]\nbind_address = "127.0.0.1"\nbind_port = ${port}\nconnect_address = "127.0.0.1"\nconnect_port = 9\n`);
    const yaml = writeTempFile("w.yaml", `global:\n  workers: 4\nrules:\n  - name: web\n    bind: "127.0.0.1:${port}"\n    connect: "127.0.0.1:9"\n`);
    for (const [path, count] of [
      [conf, 2],
      [toml, 3],
      [yaml, 4],
    ] as const) {
      const checked = await runOi(["check", "-c", path]);
      expect(checked.stderr).toBe("");
      expect(checked.stdout).toContain(`workers: ${count}`);
    }
    const bad = writeTempFile("bad.conf", `127.0.0.1 ${port} 127.0.0.1 9\nworkers 0\n`);
    const failed = await runOi(["check", "-c", bad]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain(`${bad}:2: workers must be a whole number from 1 to`);
  });

  test("the config's workers starts that many; --workers on the command line overrides it", async () => {
    const server = greeter("hi");
    const port = freePort();
    const fromConfig = await oi(`workers 2\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    expect(fromConfig.stdout.text).toContain("listening in 2 workers");
    expect(await fromConfig.stop()).toBe(0);
    const overridden = await oi(`workers 2\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, ["--workers", "1"]);
    expect(overridden.stdout.text).toContain("1 rule listening (");
    expect(await greeting(port)).toBe("hi");
    const refused = await runOi(["-c", writeTempFile("x.conf", `127.0.0.1 ${port} 127.0.0.1 9\n`), "--workers", "0"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("--workers must be a whole number from 1 to");
  });
});
