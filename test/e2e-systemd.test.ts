/**
 * systemd integration: sd_notify messages on NOTIFY_SOCKET (read here from a
 * datagram socket of the test's own), socket activation through
 * systemd-socket-activate, and the shipped unit files checked by
 * systemd-analyze.
 */
import { describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cleanUpAfterEachTest, greeter, greeting, onCleanup, until } from "./helpers/harness.ts";
import { NotifySocket } from "./helpers/notify-socket.ts";
import { startOi, tempDir, writeTempFile } from "./helpers/oi-process.ts";
import { connectPeer, freePort } from "./helpers/peers.ts";
import { missingTools, runTool, testName, toolPath } from "./helpers/servers.ts";
import { freeUdpPort, startUdpBackend, UdpClient } from "./helpers/udp.ts";

cleanUpAfterEachTest();

/** The first line of each message: what it announces. */
function firstLines(messages: string[]): string[] {
  return messages.map((message) => message.split("\n")[0]!);
}

describe("sd_notify", () => {
  test("READY once listening, RELOADING/READY around reloads (also a refused one), STATUS lines, watchdog pings, STOPPING at exit", async () => {
    const notify = new NotifySocket();
    onCleanup(() => notify.close());
    const one = greeter("one");
    const port = freePort();
    const configPath = writeTempFile("notify.conf", `127.0.0.1 ${port} 127.0.0.1 ${one.port}\n`);
    const oi = await startOi(configPath, [], [], { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: "200000" });
    onCleanup(() => oi.stop());
    await until(() => notify.withLine("READY=1").length === 1, 5000, "READY=1");
    expect(await greeting(port)).toBe("one");
    expect(notify.withLine("READY=1")[0]).toContain("STATUS=1 rule listening, ");

    // Watchdog at half of 200 ms: a few pings within half a second.
    await until(() => notify.withLine("WATCHDOG=1").length >= 3, 2000, "three WATCHDOG=1");

    oi.signal("SIGHUP");
    await oi.stdout.waitFor("reloaded:", 5000);
    await until(() => notify.withLine("READY=1").length === 2, 5000, "READY=1 after the reload");
    const reloading = notify.withLine("RELOADING=1");
    expect(reloading).toHaveLength(1);
    const monotonic = /MONOTONIC_USEC=(\d+)/.exec(reloading[0]!);
    expect(monotonic).not.toBeNull();
    // CLOCK_MONOTONIC counts from boot: within this machine's uptime.
    const uptimeUs = Number((await Bun.file("/proc/uptime").text()).split(" ")[0]) * 1e6;
    expect(Math.abs(Number(monotonic![1]) - uptimeUs)).toBeLessThan(60e6);

    // A refused reload still ends with READY=1 (the old config serves).
    writeFileSync(configPath, "this is not a rule\n");
    oi.signal("SIGHUP");
    await oi.stderr.waitFor("reload failed", 5000);
    await until(() => notify.withLine("READY=1").length === 3, 5000, "READY=1 after the refused reload");
    expect(await greeting(port)).toBe("one");

    expect(await oi.stop()).toBe(0);
    await until(() => notify.withLine("STOPPING=1").length === 1, 2000, "STOPPING=1");
    const order = firstLines(notify.messages).filter((line) => line !== "WATCHDOG=1");
    expect(order).toEqual(["READY=1", "RELOADING=1", "READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]);
  });

  test("across an upgrade (SIGUSR2): MAINPID= names the new process, which pings the watchdog; systemd never hears STOPPING=1", async () => {
    const notify = new NotifySocket();
    onCleanup(() => notify.close());
    const one = greeter("one");
    const port = freePort();
    const configPath = writeTempFile("notify.conf", `127.0.0.1 ${port} 127.0.0.1 ${one.port}\n`);
    const oi = await startOi(configPath, [], [], { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: "200000", WATCHDOG_PID: "1" });
    onCleanup(() => oi.stop());
    await until(() => notify.withLine("READY=1").length === 1, 5000, "READY=1");
    // WATCHDOG_PID names another process: this one must not ping.
    await Bun.sleep(300);
    expect(notify.withLine("WATCHDOG=1")).toHaveLength(0);
    oi.signal("SIGUSR2");
    expect(await oi.proc.exited).toBe(0);
    const pid = Number(/pid (\d+) listens/.exec(oi.stdout.text)?.[1]);
    onCleanup(() => process.kill(pid, "SIGTERM"));
    // From the old process and from the new one.
    await until(() => notify.withLine(`MAINPID=${pid}`).length === 2, 5000, `two MAINPID=${pid}`);
    // The new process is the watchdog's now (WATCHDOG_PID is not passed on).
    await until(() => notify.withLine("WATCHDOG=1").length >= 2, 2000, "WATCHDOG=1 from the new process");
    expect(notify.withLine("STOPPING=1")).toHaveLength(0);
    expect(await greeting(port)).toBe("one");
    process.kill(pid, "SIGTERM");
    await until(() => notify.withLine("STOPPING=1").length === 1, 5000, "STOPPING=1 from the new process at its SIGTERM");
  });

  test("an abstract NOTIFY_SOCKET (@name), and --workers 2 (the main thread notifies)", async () => {
    const notify = new NotifySocket(true);
    onCleanup(() => notify.close());
    const one = greeter("one");
    const port = freePort();
    const configPath = writeTempFile("notify.conf", `127.0.0.1 ${port} 127.0.0.1 ${one.port}\n`);
    const oi = await startOi(configPath, ["--workers", "2"], [], { NOTIFY_SOCKET: notify.path });
    onCleanup(() => oi.stop());
    await until(() => notify.withLine("READY=1").length === 1, 5000, "READY=1");
    expect(await greeting(port)).toBe("one");
    oi.signal("SIGHUP");
    await until(() => notify.withLine("READY=1").length === 2, 5000, "READY=1 after the reload");
    expect(await oi.stop()).toBe(0);
    await until(() => notify.withLine("STOPPING=1").length === 1, 2000, "STOPPING=1");
    expect(firstLines(notify.messages)).toEqual(["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]);
  });

  test("an unreachable NOTIFY_SOCKET does not stop oi", async () => {
    const one = greeter("one");
    const port = freePort();
    const configPath = writeTempFile("notify.conf", `127.0.0.1 ${port} 127.0.0.1 ${one.port}\n`);
    const oi = await startOi(configPath, [], [], { NOTIFY_SOCKET: "/nonexistent/notify.sock" });
    onCleanup(() => oi.stop());
    expect(await greeting(port)).toBe("one");
    await until(() => `${oi.stdout.text}${oi.stderr.text}`.includes("cannot notify systemd"), 2000, "the warning");
    expect(await oi.stop()).toBe(0);
  });
});

const noSocketActivate = missingTools(["systemd-socket-activate"]);

/** What a unix socket's server says before its FIN. */
async function unixGreeting(path: string): Promise<string> {
  const chunks: Uint8Array[] = [];
  let done: () => void = () => {};
  const closed = new Promise<void>((resolve) => (done = resolve));
  await Bun.connect({ unix: path, socket: { data: (_socket, chunk) => void chunks.push(chunk), end: (socket) => void socket.end(), close: () => done() } });
  await closed;
  return Buffer.concat(chunks).toString();
}

/**
 * Whether a socket is bound to 127.0.0.1:`port` and waiting for clients
 * (/proc/net: systemd-socket-activate binds before it execs oi): a TCP
 * socket in LISTEN (0A), or an unconnected UDP one (07), not an old
 * connection's entry on that port.
 */
async function bound(port: number, table: "tcp" | "udp"): Promise<boolean> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const state = table === "tcp" ? "0A" : "07";
  return (await Bun.file(`/proc/net/${table}`).text()).includes(` ${local} 00000000:0000 ${state} `);
}

async function untilBound(port: number, table: "tcp" | "udp"): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!(await bound(port, table))) {
    if (Date.now() > deadline) throw new Error(`nothing bound 127.0.0.1:${port}/${table}`);
    await Bun.sleep(20);
  }
}

/**
 * oi under `systemd-socket-activate -l ...`: it execs oi at the first
 * connection, so that connection (made here) is what starts oi, and it must
 * be served by oi on the inherited socket.
 */
async function activated(config: string, listen: string[]): Promise<{ oi: Awaited<ReturnType<typeof startOi>>; first: string }> {
  const tool = toolPath("systemd-socket-activate")!;
  const starting = startOi(writeTempFile("activated.conf", config), ["-v"], [tool, ...listen.flatMap((each) => ["-l", each])]);
  const port = Number(listen[0]!.split(":").pop());
  await untilBound(port, "tcp");
  const first = await greeting(port);
  const oi = await starting;
  onCleanup(() => oi.stop());
  return { oi, first };
}

describe("socket activation", () => {
  for (const sockets of ["direct", "bun"]) {
    test.skipIf(noSocketActivate !== undefined)(testName(`systemd-socket-activate: the rule on the passed port serves on it (sockets ${sockets}); an unmatched socket is named`, noSocketActivate), async () => {
      const one = greeter("one");
      const [port, spare] = [freePort(), freePort()];
      const { oi, first } = await activated(`sockets ${sockets}\n127.0.0.1 ${port} 127.0.0.1 ${one.port}\n`, [`127.0.0.1:${port}`, `127.0.0.1:${spare}`]);
      expect(first).toBe("one");
      expect(await greeting(port)).toBe("one");
      expect(oi.stdout.text + oi.stderr.text).toContain(`inherited socket 127.0.0.1:${spare}/tcp matches no rule's bind: kept open unused`);
      // oi could not have bound the port itself: systemd-socket-activate holds it.
      expect(await oi.stop()).toBe(0);
    });
  }

  test.skipIf(noSocketActivate !== undefined)(testName("systemd-socket-activate on a unix socket path: the unix rule serves on it and leaves systemd's file in place at exit", noSocketActivate), async () => {
    const one = greeter("one");
    const path = join(tempDir(), "activated.sock");
    const tool = toolPath("systemd-socket-activate")!;
    const starting = startOi(writeTempFile("activated.conf", `unix:${path} 127.0.0.1 ${one.port}\n`), [], [tool, "-l", path]);
    await until(() => existsSync(path), 5000, "the socket file");
    const first = await unixGreeting(path);
    const oi = await starting;
    onCleanup(() => oi.stop());
    expect(first).toBe("one");
    expect(await unixGreeting(path)).toBe("one");
    expect(await oi.stop()).toBe(0);
    expect(existsSync(path)).toBe(true);
  });

  test.skipIf(noSocketActivate !== undefined)(testName("inherited sockets with --workers 2: refused at start with the reason", noSocketActivate), async () => {
    const port = freePort();
    const tool = toolPath("systemd-socket-activate")!;
    const starting = startOi(writeTempFile("activated.conf", `127.0.0.1 ${port} 127.0.0.1 9\n`), ["--workers", "2"], [tool, "-l", `127.0.0.1:${port}`]);
    await untilBound(port, "tcp");
    const trigger = await connectPeer("127.0.0.1", port);
    const failure = await starting.then(() => "started", (error: unknown) => String(error));
    trigger.socket?.end();
    expect(failure).toContain("1 listening socket(s) inherited (LISTEN_FDS): socket activation needs workers 1, not 2");
  });

  test.skipIf(noSocketActivate !== undefined)(testName("systemd-socket-activate -d: a UDP rule serves on the passed datagram socket", noSocketActivate), async () => {
    const echo = await startUdpBackend();
    const port = await freeUdpPort();
    const tool = toolPath("systemd-socket-activate")!;
    const starting = startOi(writeTempFile("activated.conf", `127.0.0.1 ${port}/udp 127.0.0.1 ${echo.port}/udp\n`), [], [tool, "-d", "-l", `127.0.0.1:${port}`]);
    // The first datagram starts oi; it waits in the socket until oi reads it.
    await untilBound(port, "udp");
    const client = await UdpClient.open("127.0.0.1", port);
    client.send("first");
    const oi = await starting;
    onCleanup(() => oi.stop());
    await client.waitCount(1);
    client.send("second");
    await client.waitCount(2);
    expect(client.received.map((each) => new TextDecoder().decode(each.data))).toEqual(["first", "second"]);
  });
});

const noAnalyze = missingTools(["systemd-analyze"]);

describe("shipped unit files", () => {
  test.skipIf(noAnalyze !== undefined)(testName("contrib/systemd/oi.service and oi.socket pass systemd-analyze verify with nothing to say", noAnalyze), async () => {
    const dir = tempDir();
    const contrib = join(import.meta.dir, "..", "contrib", "systemd");
    const service = readFileSync(join(contrib, "oi.service"), "utf8");
    expect(service).toContain("Type=notify");
    expect(service).toContain("ExecReload=/bin/kill -HUP $MAINPID");
    expect(service).toContain("AmbientCapabilities=CAP_NET_BIND_SERVICE");
    // verify checks that ExecStart's program exists: point it at one that does (the binary's place is the installer's choice).
    writeFileSync(join(dir, "oi.service"), service.replace("ExecStart=/usr/local/bin/oi", `ExecStart=${process.execPath}`));
    copyFileSync(join(contrib, "oi.socket"), join(dir, "oi.socket"));
    const run = await runTool([toolPath("systemd-analyze")!, "verify", "--man=no", join(dir, "oi.service"), join(dir, "oi.socket")], { timeoutMs: 20_000 });
    expect(`${run.stdout}${run.stderr}`.trim()).toBe("");
    expect(run.code).toBe(0);

    // The check can fail: a misspelt key is reported.
    writeFileSync(join(dir, "oi.service"), service.replace("ExecStart=/usr/local/bin/oi", `ExecStart=${process.execPath}`).replace("\nNotifyAccess=", "\nNotifyAcess="));
    const bad = await runTool([toolPath("systemd-analyze")!, "verify", "--man=no", join(dir, "oi.service")], { timeoutMs: 20_000 });
    expect(`${bad.stdout}${bad.stderr}`).toContain("Unknown key 'NotifyAcess'");
  });
});
