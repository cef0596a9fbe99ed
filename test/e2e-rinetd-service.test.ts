/**
 * `oi` installed in rinetd's place, as Debian's rinetd service starts it:
 * the compiled binary behind a link named `rinetd`, run without `-f`. The
 * start returns once every rule listens, with the daemon detached in its own
 * session and named in rinetd's default pid file; SIGHUP reloads it and
 * SIGTERM stops it; a config or bind error makes the start itself exit 1.
 * Under its own name the same binary stays in the foreground.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { compiledOi } from "./helpers/binary.ts";
import { backend, cleanUpAfterEachTest, greeter, greeting, onCleanup, until } from "./helpers/harness.ts";
import { readUntilListening, tempDir } from "./helpers/oi-process.ts";
import { freePort, withTimeout } from "./helpers/peers.ts";

cleanUpAfterEachTest();

/** rinetd's default pid file (/var/run is a link to /run on Debian). */
const RINETD_PID_FILE = "/var/run/rinetd.pid";

/** A folder holding `rinetd`, a link to the compiled oi, as a package would install it. */
async function installedAsRinetd(): Promise<{ dir: string; rinetd: string }> {
  const dir = tempDir();
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const rinetd = join(dir, "rinetd");
  symlinkSync(await compiledOi(), rinetd);
  return { dir, rinetd };
}

/**
 * rinetd's place, ready for a test: no other rinetd's pid file in the way,
 * the link, and a config forwarding a fresh port to a backend greeting with `name`.
 */
async function rinetdInPlace(name: string): Promise<{ rinetd: string; config: string; port: number }> {
  if (existsSync(RINETD_PID_FILE)) throw new Error(`${RINETD_PID_FILE} exists: a rinetd may be running here; stop it before this test`);
  const { dir, rinetd } = await installedAsRinetd();
  const server = greeter(name);
  const port = freePort();
  const config = join(dir, "rinetd.conf");
  writeFileSync(config, `127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
  return { rinetd, config, port };
}

function alive(pid: number): boolean {
  return existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z");
}

/** After a test: whatever daemon a test started (it is named in the pid file, if it got that far) is stopped, by its pid. */
function stopDaemonOfPidFile(): void {
  const pid = existsSync(RINETD_PID_FILE) ? Number(readFileSync(RINETD_PID_FILE, "utf8")) : 0;
  if (pid > 0 && alive(pid)) process.kill(pid, "SIGKILL");
  rmSync(RINETD_PID_FILE, { force: true });
}

/** Session id of a process, from /proc/PID/stat. */
function sessionOf(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ")[3]);
}

describe("started as rinetd (a link), without -f", () => {
  test("returns 0 once it listens; the detached daemon is in rinetd's pid file, reloads on SIGHUP and stops on SIGTERM", async () => {
    const { rinetd, config, port } = await rinetdInPlace("one");
    const two = greeter("two");

    const start = Bun.spawn([rinetd, "-c", config], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    onCleanup(() => {
      start.kill("SIGKILL");
      stopDaemonOfPidFile();
    });
    const output = new Response(start.stdout).text();
    expect(await withTimeout(start.exited, 10000, "the start to return")).toBe(0);
    // As daemon(3): once listening, the daemon holds nothing of the streams it was started with, so they end.
    expect(await withTimeout(output, 5000, "the start's stdout to end")).toContain("1 rule listening");

    // Listening already when the start returned, and named in the pid file by then.
    expect(await greeting(port)).toBe("one");
    const daemon = Number(readFileSync(RINETD_PID_FILE, "utf8").trim());
    expect(daemon).toBeGreaterThan(0);
    expect(daemon).not.toBe(start.pid);
    expect(alive(daemon)).toBe(true);
    // Detached: a session of its own, not the test's.
    expect(sessionOf(daemon)).toBe(daemon);
    expect(readFileSync(`/proc/${daemon}/cmdline`, "utf8").split("\0")[0]).toBe(rinetd);
    for (const stream of [0, 1, 2]) expect(readlinkSync(`/proc/${daemon}/fd/${stream}`)).toBe("/dev/null");

    writeFileSync(config, `127.0.0.1 ${port} 127.0.0.1 ${two.port}\n`);
    process.kill(daemon, "SIGHUP");
    const deadline = Date.now() + 5000;
    while ((await greeting(port)) !== "two") {
      if (Date.now() > deadline) throw new Error("timed out waiting for the reload to switch backends");
      await Bun.sleep(50);
    }

    process.kill(daemon, "SIGTERM");
    await until(() => !alive(daemon), 5000, "the daemon to stop");
    expect(existsSync(RINETD_PID_FILE)).toBe(false);
  });

  test("a config error or a port in use: the start exits 1 with the message, and nothing is left running", async () => {
    const { dir, rinetd } = await installedAsRinetd();
    const bad = join(dir, "bad.conf");
    writeFileSync(bad, "127.0.0.1 nonsense\n");
    const refused = Bun.spawnSync([rinetd, "-c", bad], { stdout: "pipe", stderr: "pipe" });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr.toString()).toContain(`${bad}:1: `);

    const blocker = backend();
    const busy = join(dir, "busy.conf");
    writeFileSync(busy, `127.0.0.1 ${blocker.port} 127.0.0.1 9\n`);
    const unbound = Bun.spawnSync([rinetd, "-c", busy], { stdout: "pipe", stderr: "pipe" });
    expect(unbound.exitCode).toBe(1);
    expect(unbound.stderr.toString()).toContain(`${busy}:1: cannot listen on 127.0.0.1:${blocker.port}`);
    expect(existsSync(RINETD_PID_FILE)).toBe(false);
  });

  test("with -f it stays in the foreground, as rinetd -f does, still writing rinetd's pid file", async () => {
    const { rinetd, config, port } = await rinetdInPlace("fg");
    const proc = Bun.spawn([rinetd, "-f", "-c", config], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    onCleanup(() => {
      proc.kill("SIGKILL");
      stopDaemonOfPidFile();
    });
    // The pid file is written before the rules listen: wait for the line that says they do.
    await readUntilListening(proc.stdout, 10000, "rinetd -f");
    expect(readFileSync(RINETD_PID_FILE, "utf8").trim()).toBe(String(proc.pid));
    expect(await greeting(port)).toBe("fg");
    proc.kill("SIGTERM");
    expect(await withTimeout(proc.exited, 5000, "exit")).toBe(0);
    expect(existsSync(RINETD_PID_FILE)).toBe(false);
  });
});

describe("as Debian's init script starts and stops rinetd", () => {
  test("start-stop-daemon --start --exec returns once it listens; --stop --pidfile stops it and the pid file goes", async () => {
    if (Bun.which("start-stop-daemon") === null) throw new Error("start-stop-daemon (Debian's dpkg) is needed for this test and is not installed");
    const { rinetd, config, port } = await rinetdInPlace("init script");
    onCleanup(stopDaemonOfPidFile);
    const started = Bun.spawnSync(["start-stop-daemon", "--start", "--quiet", "--oknodo", "--exec", rinetd, "--", "-c", config], { stdout: "pipe", stderr: "pipe" });
    expect(started.exitCode).toBe(0);
    expect(await greeting(port)).toBe("init script");
    const daemon = Number(readFileSync(RINETD_PID_FILE, "utf8").trim());
    expect(alive(daemon)).toBe(true);
    const stopped = Bun.spawnSync(["start-stop-daemon", "--stop", "--quiet", "--retry", "5", "--pidfile", RINETD_PID_FILE], { stdout: "pipe", stderr: "pipe" });
    expect(stopped.exitCode).toBe(0);
    await until(() => !alive(daemon), 5000, "the daemon to stop");
    expect(existsSync(RINETD_PID_FILE)).toBe(false);
  });
});

describe("started as oi", () => {
  test("the same binary stays in the foreground without -f and writes no pid file of rinetd's", async () => {
    const dir = tempDir();
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    const oi = join(dir, "oi");
    symlinkSync(await compiledOi(), oi);
    const server = greeter("as oi");
    const port = freePort();
    writeFileSync(join(dir, "oi.conf"), `127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    const proc = Bun.spawn([oi, "-c", join(dir, "oi.conf")], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    onCleanup(() => proc.kill("SIGKILL"));
    const text = await readUntilListening(proc.stdout, 10000, "oi");
    expect(text).toContain(`pid ${proc.pid}`);
    expect(proc.exitCode).toBeNull();
    expect(await greeting(port)).toBe("as oi");
    expect(existsSync(RINETD_PID_FILE)).toBe(false);
    proc.kill("SIGTERM");
    expect(await withTimeout(proc.exited, 5000, "exit")).toBe(0);
  });
});
