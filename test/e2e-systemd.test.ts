/**
 * systemd integration: sd_notify messages on NOTIFY_SOCKET (read here from a
 * datagram socket of the test's own), socket activation through
 * systemd-socket-activate, and the shipped unit files checked by
 * systemd-analyze.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { cleanUpAfterEachTest, greeter, greeting, onCleanup, until } from "./helpers/harness.ts";
import { NotifySocket } from "./helpers/notify-socket.ts";
import { startOi, writeTempFile } from "./helpers/oi-process.ts";
import { freePort } from "./helpers/peers.ts";

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
