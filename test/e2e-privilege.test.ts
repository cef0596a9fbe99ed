/**
 * The privilege drop (`user`, `group`), as root: oi binds a port below 1024
 * on loopback, then runs as `nobody` in every thread, forwards, reloads, and
 * refuses a reload that needs a new privileged port with a clear reason. And
 * files oi creates are not written through a symbolic link planted at their
 * path (as any user).
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { backend, cleanUpAfterEachTest, greeter, greeting, oiOnFile, onCleanup, until } from "./helpers/harness.ts";
import { runOi, startOi, tempDir, writeTempFile } from "./helpers/oi-process.ts";
import { connectionRefused, connectPeer, freePort, randomBytes, sha256 } from "./helpers/peers.ts";
import { startUdpBackend, UdpClient } from "./helpers/udp.ts";

cleanUpAfterEachTest();

const NOBODY = 65534;
const NOGROUP = 65534;

/** Why this file's root tests cannot run (not root); under CI they must run, so there is no reason. */
function notRoot(): string | undefined {
  if (process.getuid?.() === 0) return undefined;
  const underCi = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false";
  if (underCi) return undefined;
  const reason = "skipped: the privilege drop tests need root (binding below 1024, setuid)";
  console.warn(reason);
  return reason;
}
const skip = notRoot();
const named = (name: string) => (skip === undefined ? name : `${name} [${skip}]`);

/** Ports below 1024 free on 127.0.0.1 (TCP and UDP) right now, from a small range few services use. */
async function privilegedPorts(count: number): Promise<number[]> {
  const found: number[] = [];
  for (let port = 700 + Math.floor(Math.random() * 200); found.length < count && port < 1000; port++) {
    try {
      Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } }).stop(true);
      (await Bun.udpSocket({ hostname: "127.0.0.1", port })).close();
      found.push(port);
    } catch {
      // taken
    }
  }
  if (found.length < count) throw new Error("no free ports between 700 and 999 on 127.0.0.1");
  return found;
}

/** The Uid and Gid lines of every thread of `pid` (real, effective, saved, filesystem ids). */
function threadIds(pid: number): Array<{ task: string; name: string; uid: number[]; gid: number[]; groups: string }> {
  return readdirSync(`/proc/${pid}/task`).map((task) => {
    const status = readFileSync(`/proc/${pid}/task/${task}/status`, "utf8");
    const ids = (line: string) => (new RegExp(`^${line}:\\s+(.*)$`, "m").exec(status)?.[1] ?? "").trim().split(/\s+/).map(Number);
    return { task, name: (/^Name:\s*(.*)$/m.exec(status)?.[1] ?? "").trim(), uid: ids("Uid"), gid: ids("Gid"), groups: (/^Groups:\s*(.*)$/m.exec(status)?.[1] ?? "").trim() };
  });
}

/** Checks every thread of `pid`; the number of Bun Worker threads (splice, --workers) among them. */
function expectAllNobody(pid: number): number {
  const threads = threadIds(pid);
  for (const thread of threads) {
    expect({ task: thread.task, uid: thread.uid, gid: thread.gid, groups: thread.groups }).toEqual({
      task: thread.task,
      uid: [NOBODY, NOBODY, NOBODY, NOBODY],
      gid: [NOGROUP, NOGROUP, NOGROUP, NOGROUP],
      groups: String(NOGROUP),
    });
  }
  return threads.filter((thread) => thread.name === "Worker").length;
}

/** A directory nobody can read (the config is re-read at SIGHUP, as nobody) and, with `owned`, write. */
function sharedDir(owned = false): string {
  const dir = tempDir();
  chmodSync(dir, 0o755);
  if (owned) chownSync(dir, NOBODY, NOGROUP);
  return dir;
}

describe("privilege drop (user, group)", () => {
  test.skipIf(skip !== undefined)(
    named("binds ports below 1024 (TCP, UDP, metrics), runs as nobody in every thread (splice worker too), forwards, reloads; a new privileged port is refused clearly"),
    async () => {
      const [low, lower, metricsPort] = (await privilegedPorts(3)) as [number, number, number];
      const dir = sharedDir();
      const run = join(dir, "run");
      mkdirSync(run);
      chownSync(run, NOBODY, NOGROUP);
      const pidPath = join(dir, "oi.pid");
      const statusPath = join(run, "status.json");
      const logPath = join(dir, "oi.log");
      const sink = backend();
      const other = greeter("two");
      const echo = await startUdpBackend();
      const globals =
        `user nobody\ngroup nogroup\npidlogfile ${pidPath}\nlogfile ${logPath}\nstatusfile ${statusPath}\nstatusinterval 1\nsplice on\n` +
        `metrics 127.0.0.1:${metricsPort}\n127.0.0.1 ${low}/udp 127.0.0.1 ${echo.port}/udp\n`;
      const configPath = join(dir, "oi.conf");
      writeFileSync(configPath, `${globals}127.0.0.1 ${low} 127.0.0.1 ${sink.port}\n`);
      chmodSync(configPath, 0o644);
      const oi = await oiOnFile(configPath);
      const pid = oi.proc.pid;
      await oi.stdout.waitFor(`dropped privileges: running as user nobody (${NOBODY}), group nogroup (${NOGROUP})`, 5000);

      // Forwards through the privileged port: 4 MiB, hashed (spliced: splice on).
      const data = randomBytes(4 << 20);
      const client = await connectPeer("127.0.0.1", low);
      const far = await sink.nextConnection();
      await client.send(data, true);
      await far.waitEnd(20000);
      expect(far.received).toBe(data.length);
      expect(far.digest()).toBe(sha256(data));
      client.socket?.end();

      // UDP through the privileged port, and the metrics endpoint on one, after the drop.
      const udpClient = await UdpClient.open("127.0.0.1", low);
      udpClient.send("ping");
      await udpClient.waitCount(1);
      expect(Buffer.from(udpClient.received[0]!.data).toString()).toBe("ping");
      expect(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()).toContain(`oi_connections_total{rule="127.0.0.1:${low}/tcp",mode="tcp"} 1\n`);

      // Every thread, the splice worker's included, has nobody's ids, and only nogroup.
      expect(expectAllNobody(pid)).toBe(1);

      // Files written before the drop (pid, log) and after it, as nobody (status).
      expect(readFileSync(pidPath, "utf8").trim()).toBe(String(pid));
      expect(statSync(pidPath).mode & 0o777).toBe(0o644);
      expect(statSync(logPath).mode & 0o777).toBe(0o640);
      // The log file is root's: a reopen at SIGHUP, as nobody, would fail; oi says so at start.
      expect(oi.stdout.text + oi.stderr.text).toContain(`log file ${logPath}: nobody cannot open it again`);
      await until(() => existsSync(statusPath), 5000, "the status file");
      expect(JSON.parse(readFileSync(statusPath, "utf8")).connections.total).toBeGreaterThanOrEqual(1);

      // A reload (the config re-read as nobody) with another backend on the same privileged port.
      writeFileSync(configPath, `${globals}127.0.0.1 ${low} 127.0.0.1 ${other.port}\n`);
      oi.signal("SIGHUP");
      await oi.stdout.waitFor("reloaded: 0 listener(s) started, 2 kept, 0 stopped", 5000);
      expect(await greeting(low)).toBe("two");

      // A reload that needs a new port below 1024: refused with the reason, the running rules stay.
      writeFileSync(configPath, `${globals}127.0.0.1 ${low} 127.0.0.1 ${sink.port}\n127.0.0.1 ${lower} 127.0.0.1 ${sink.port}\n`);
      oi.signal("SIGHUP");
      await oi.stderr.waitFor(`${configPath}:11: cannot bind ${lower} below 1024 after dropping privileges to nobody: restart oi`, 5000);
      await oi.stderr.waitFor("reload failed: the running configuration stays in force", 5000);
      expect(await greeting(low)).toBe("two");
      expect(await connectionRefused(lower)).toBe(true);
      expectAllNobody(pid);
      expect(await oi.stop()).toBe(0);
    },
    60000,
  );

  test.skipIf(skip !== undefined)(named("log rotation after the drop: a new file created for nobody (logrotate's create) is reopened at SIGHUP"), async () => {
    const [low] = (await privilegedPorts(1)) as [number];
    const dir = sharedDir(true);
    const logPath = join(dir, "oi.log");
    const target = greeter("one");
    const configPath = join(dir, "oi.conf");
    writeFileSync(configPath, `user nobody\nlogfile ${logPath}\n127.0.0.1 ${low} 127.0.0.1 ${target.port}\n`);
    const oi = await oiOnFile(configPath);
    await oi.stdout.waitFor("dropped privileges", 5000);
    expect(await greeting(low)).toBe("one");
    await until(() => readFileSync(logPath, "utf8").includes("done"), 5000, "the first line in the log");
    // logrotate: move the file away, create the new one for the user, then SIGHUP.
    renameSync(logPath, `${logPath}.1`);
    writeFileSync(logPath, "");
    chownSync(logPath, NOBODY, NOGROUP);
    oi.signal("SIGHUP");
    await oi.stdout.waitFor("reloaded", 5000);
    expect(await greeting(low)).toBe("one");
    await until(() => readFileSync(logPath, "utf8").includes("done"), 5000, "a line in the new log file");
    expect(oi.stderr.text).not.toContain("cannot reopen log file");
    expect(readFileSync(`${logPath}.1`, "utf8").split("\n").filter((line) => line.includes("done")).length).toBe(1);
  }, 30000);

  test.skipIf(skip !== undefined)(named("with --workers 2 every worker thread runs as nobody too, and both forward"), async () => {
    const [low] = (await privilegedPorts(1)) as [number];
    const dir = sharedDir();
    const target = greeter("one");
    const configPath = join(dir, "oi.conf");
    writeFileSync(configPath, `user ${NOBODY}\n127.0.0.1 ${low} 127.0.0.1 ${target.port}\n`);
    const oi = await startOi(configPath, ["--workers", "2"]);
    onCleanup(() => oi.stop());
    await oi.stdout.waitFor("dropped privileges: running as user nobody", 5000);
    for (let i = 0; i < 6; i++) expect(await greeting(low)).toBe("one");
    // Two forwarding workers, each with its splice worker (splice auto): at least the two.
    expect(expectAllNobody(oi.proc.pid)).toBeGreaterThanOrEqual(2);
  }, 30000);

  test.skipIf(skip !== undefined)(
    named("SIGUSR2 after the drop: the new program runs as nobody on the inherited privileged port and takes over the pid file in a directory nobody owns"),
    async () => {
      const [low] = (await privilegedPorts(1)) as [number];
      const dir = sharedDir();
      const run = join(dir, "run");
      mkdirSync(run);
      chownSync(run, NOBODY, NOGROUP);
      const pidPath = join(run, "oi.pid");
      const first = greeter("one");
      const configPath = join(dir, "oi.conf");
      writeFileSync(configPath, `user nobody\npidlogfile ${pidPath}\n127.0.0.1 ${low} 127.0.0.1 ${first.port}\n`);
      const old = await oiOnFile(configPath);
      await old.stdout.waitFor("dropped privileges", 5000);
      old.signal("SIGUSR2");
      await old.stdout.waitFor("stops accepting and drains", 15_000);
      let pid = old.proc.pid;
      await until(() => (pid = Number(readFileSync(pidPath, "utf8").trim())) !== old.proc.pid, 15_000, "the pid file to name the new process");
      onCleanup(() => {
        try {
          process.kill(pid, "SIGTERM");
        } catch {
          // gone
        }
      });
      expect(await old.proc.exited).toBe(0);
      expect(await greeting(low)).toBe("one");
      expectAllNobody(pid);
      process.kill(pid, "SIGTERM");
      await until(() => !existsSync(`/proc/${pid}`), 10_000, "the new process to exit");
      // It could remove its pid file: the directory is nobody's.
      expect(existsSync(pidPath)).toBe(false);
    },
    60000,
  );

  test.skipIf(skip !== undefined)(named("a user oi cannot become is a start failure: exit 1 with the reason, nothing left listening"), async () => {
    // Already nobody: the drop to another user is impossible (setgroups is refused without root).
    const port = freePort();
    const configPath = writeTempFile("oi.conf", `user daemon\n127.0.0.1 ${port} 127.0.0.1 9\n`);
    chmodSync(join(configPath, ".."), 0o755);
    const proc = Bun.spawn(["setpriv", `--reuid=${NOBODY}`, `--regid=${NOGROUP}`, "--clear-groups", process.execPath, join(import.meta.dir, "..", "src", "cli.ts"), "-c", configPath], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(1);
    expect(stdout + stderr).toContain("cannot drop privileges to user daemon (1) and group daemon (1): oi runs as uid 65534, not root");
    expect(await connectionRefused(port)).toBe(true);
  }, 30000);
});

describe("files oi creates", () => {
  test("a symbolic link planted at the pid or status file's path is replaced, never written through", async () => {
    const dir = tempDir();
    const victim = join(dir, "victim");
    writeFileSync(victim, "precious\n");
    const pidPath = join(dir, "oi.pid");
    const statusPath = join(dir, "status.json");
    symlinkSync(victim, pidPath);
    symlinkSync(victim, statusPath);
    // The status file's temporary name too.
    const oi = await oiOnFile(writeTempFile("oi.conf", `pidlogfile ${pidPath}\nstatusfile ${statusPath}\nstatusinterval 1\n127.0.0.1 ${freePort()} 127.0.0.1 9\n`));
    expect(lstatSync(pidPath).isFile()).toBe(true);
    expect(readFileSync(pidPath, "utf8")).toBe(`${oi.proc.pid}\n`);
    expect(statSync(pidPath).mode & 0o777).toBe(0o644);
    await until(() => lstatSync(statusPath).isFile(), 5000, "the status file to replace the link");
    expect(statSync(statusPath).mode & 0o777).toBe(0o644);
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
    expect(await oi.stop()).toBe(0);
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
  });

  test("a symbolic link planted at the log file's path is refused", async () => {
    const dir = tempDir();
    const victim = join(dir, "victim");
    writeFileSync(victim, "precious\n");
    symlinkSync(victim, join(dir, "oi.log"));
    const configPath = writeTempFile("oi.conf", `logfile ${join(dir, "oi.log")}\n127.0.0.1 ${freePort()} 127.0.0.1 9\n`);
    const run = await runOi(["-c", configPath]);
    expect(run.code).toBe(1);
    expect(run.stdout + run.stderr).toContain(`cannot open log file ${join(dir, "oi.log")}`);
    expect(readFileSync(victim, "utf8")).toBe("precious\n");
  });
});
