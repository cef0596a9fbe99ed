/**
 * The zero-downtime upgrade (SIGUSR2): ab through oi to nginx with one
 * upgrade in the middle (no request fails), a long transfer started before it
 * completes intact through the old process while it drains, the old process
 * exits, the pid file names the new one, which serves TCP, UDP and unix
 * rules on the sockets it was handed; and an upgrade whose config no longer
 * loads, or whose program cannot start, leaves the old process serving.
 */
import { describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { backend, cleanUpAfterEachTest, greeter, greeting, oiOnFile, onCleanup, until } from "./helpers/harness.ts";
import { startOi, tempDir, writeTempFile } from "./helpers/oi-process.ts";
import { connectionRefused, connectPeer, freePort, randomBytes, sha256 } from "./helpers/peers.ts";
import { missingTools, startNginx, testName, toolPath } from "./helpers/servers.ts";
import { freeUdpPort, startUdpBackend, UdpClient } from "./helpers/udp.ts";

cleanUpAfterEachTest();

const missing = missingTools(["ab", "nginx"]);

/** The pid in `path` once it is no longer `old`. */
async function newPid(path: string, old: number): Promise<number> {
  let pid = old;
  await until(() => {
    pid = Number(readFileSync(path, "utf8").trim());
    return pid !== old && pid > 0;
  }, 15_000, "the pid file to name the new process");
  return pid;
}

/** Stop the process an upgrade started (the harness stops only the one it started). */
function stopAfterTest(pid: number): void {
  onCleanup(async () => {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      return;
    }
    for (let waited = 0; waited < 5000; waited += 50) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await Bun.sleep(50);
    }
    process.kill(pid, "SIGKILL");
  });
}

describe("SIGUSR2 upgrade", () => {
  for (const { sockets, requests } of [
    { sockets: "direct", requests: 20_000 },
    { sockets: "bun", requests: 5_000 },
  ]) {
    test.skipIf(missing !== undefined)(
      testName(`under ab -n ${requests} -c 20 through oi to nginx (sockets ${sockets}): 0 failed requests, a long transfer intact, the old process gone, the new one serving TCP, UDP and unix`, missing),
      async () => {
        const nginx = await startNginx({ http: [{ id: "web", names: ["web.test"] }] });
        const long = backend();
        const echo = await startUdpBackend();
        const dir = tempDir();
        const pidPath = join(dir, "oi.pid");
        const unixPath = join(dir, "web.sock");
        const [port, longPort, udpPort] = [freePort(), freePort(), await freeUdpPort()];
        const configPath = writeTempFile(
          "upgrade.conf",
          [
            `sockets ${sockets}`,
            `pidlogfile ${pidPath}`,
            `127.0.0.1 ${port} 127.0.0.1 ${nginx.ports.web}`,
            `127.0.0.1 ${longPort} 127.0.0.1 ${long.port}`,
            `127.0.0.1 ${udpPort}/udp 127.0.0.1 ${echo.port}/udp`,
            `unix:${unixPath} 127.0.0.1 ${nginx.ports.web}`,
            "",
          ].join("\n"),
        );
        const old = await oiOnFile(configPath, ["--grace", "15"]);
        const oldPid = old.proc.pid;

        // A long transfer: 64 KiB every 20 ms upward from before the upgrade until after the old process drains.
        const client = await connectPeer("127.0.0.1", longPort);
        const far = await long.nextConnection();
        const upward = new Bun.CryptoHasher("sha256");
        let sending = true;
        const sender = (async () => {
          while (sending) {
            const chunk = randomBytes(64 * 1024);
            upward.update(chunk);
            await client.send(chunk);
            await Bun.sleep(20);
          }
        })();

        // A UDP client with a session in the old process, sending all through the upgrade.
        const chatty = await UdpClient.open("127.0.0.1", udpPort);
        const chatter = setInterval(() => chatty.send("still here"), 20);
        onCleanup(() => clearInterval(chatter));
        await chatty.waitCount(3);

        const ab = Bun.spawn([toolPath("ab")!, "-q", "-n", String(requests), "-c", "20", `http://127.0.0.1:${port}/`], { stdout: "pipe", stderr: "pipe" });
        onCleanup(() => ab.kill());
        await Bun.sleep(300);
        expect(ab.exitCode).toBeNull();
        old.signal("SIGUSR2");
        await old.stdout.waitFor("stops accepting and drains", 15_000);
        const pid = await newPid(pidPath, oldPid);
        stopAfterTest(pid);
        const handedOverWhileAbRan = ab.exitCode === null;

        // While the old process drains, new UDP clients are all answered: the old one reads the shared socket no more.
        const newcomers = await Promise.all(Array.from({ length: 50 }, () => UdpClient.open("127.0.0.1", udpPort)));
        for (const each of newcomers) each.send("new client");
        await Promise.all(newcomers.map((each) => each.waitCount(1, 5000)));
        // The client whose session was in the old process goes on in the new one.
        const heard = chatty.received.length;
        await chatty.waitCount(heard + 5, 5000);
        clearInterval(chatter);

        const abCode = await ab.exited;
        const abOut = await new Response(ab.stdout).text();
        expect(abOut).toMatch(new RegExp(`Complete requests:\\s+${requests}\\b`));
        expect(abOut).toMatch(/Failed requests:\s+0\b/);
        expect(abOut).not.toContain("Non-2xx");
        expect(abCode).toBe(0);
        expect(handedOverWhileAbRan).toBe(true);

        // The old process still carries the long transfer while it drains; finish it both ways.
        await Bun.sleep(300);
        sending = false;
        await sender;
        expect(existsSync(`/proc/${oldPid}`) && old.proc.exitCode === null).toBe(true);
        await client.send(new Uint8Array(0), true);
        await far.waitEnd();
        const downward = randomBytes(4 * 1024 * 1024);
        await far.send(downward, true);
        await client.waitClosed();
        await far.waitClosed();
        expect(far.digest()).toBe(upward.digest("hex"));
        expect(client.digest()).toBe(sha256(downward));

        // Drained: the old process exits 0 and leaves the pid file and the socket file to the new one.
        expect(await old.proc.exited).toBe(0);
        expect(old.stdout.text).toContain(`upgrade: took over the listening sockets of pid ${oldPid}`);
        expect(readFileSync(pidPath, "utf8").trim()).toBe(String(pid));
        expect(existsSync(unixPath)).toBe(true);

        // The new process serves every rule on the sockets it was handed.
        const response = await fetch(`http://127.0.0.1:${port}/`);
        expect(response.status).toBe(200);
        const viaUnix = await fetch("http://web.test/", { unix: unixPath });
        expect(viaUnix.status).toBe(200);
        const udp = await UdpClient.open("127.0.0.1", udpPort);
        udp.send("after the upgrade");
        await udp.waitCount(1);
        expect(new TextDecoder().decode(udp.received[0]!.data)).toBe("after the upgrade");
      },
      60_000,
    );
  }

  test("an upgrade whose config no longer loads leaves the old process serving (its admin server too); a later one with a good config goes through, closing the port of the rule it dropped", async () => {
    const one = greeter("one");
    const [port, dropped, adminPort] = [freePort(), freePort(), freePort()];
    const pidPath = join(tempDir(), "oi.pid");
    const good = `pidlogfile ${pidPath}\nadmin 127.0.0.1:${adminPort}\n127.0.0.1 ${port} 127.0.0.1 ${one.port}\n`;
    const rulesOnAdmin = async () => ((await (await fetch(`http://127.0.0.1:${adminPort}/api/v1/rules`)).json()) as { rules: Array<{ name: string }> }).rules.map((rule) => rule.name);
    const configPath = writeTempFile("upgrade.conf", `${good}127.0.0.1 ${dropped} 127.0.0.1 ${one.port}\n`);
    const old = await oiOnFile(configPath);
    writeFileSync(configPath, `${good}this line is not a rule\n`);
    old.signal("SIGUSR2");
    await old.stderr.waitFor(new RegExp(`upgrade failed: pid \\d+ exited with 1 before listening; pid ${old.proc.pid} keeps serving`), 15_000);
    expect(old.stderr.text).toContain("upgrade.conf:4");
    expect(await greeting(dropped)).toBe("one");
    expect(await greeting(port)).toBe("one");
    expect(readFileSync(pidPath, "utf8").trim()).toBe(String(old.proc.pid));
    expect(old.proc.exitCode).toBeNull();
    // The admin server, freed for the new process, is back in the old one.
    expect(await rulesOnAdmin()).toEqual([`127.0.0.1:${port}/tcp`, `127.0.0.1:${dropped}/tcp`]);

    writeFileSync(configPath, good);
    old.signal("SIGUSR2");
    expect(await old.proc.exited).toBe(0);
    const pid = await newPid(pidPath, old.proc.pid);
    stopAfterTest(pid);
    expect(await greeting(port)).toBe("one");
    // The new config has no rule on `dropped`: the socket handed over for it is closed, as a reload would close it.
    expect(old.stdout.text).toContain(`inherited socket 127.0.0.1:${dropped}/tcp: no rule of this config listens there any more; closed`);
    expect(await connectionRefused(dropped)).toBe(true);
    // The new process serves the admin API on the same address, with its config.
    expect(await rulesOnAdmin()).toEqual([`127.0.0.1:${port}/tcp`]);
  });

  test("an upgrade to a program that cannot start (a broken build in place of the one running) leaves the old process serving", async () => {
    const one = greeter("one");
    const port = freePort();
    // A copy of the program, under node_modules so its imports still resolve, to break while it runs.
    const copy = mkdtempSync(join(import.meta.dir, "..", "node_modules", ".oi-upgrade-test-"));
    onCleanup(() => rmSync(copy, { recursive: true, force: true }));
    cpSync(join(import.meta.dir, "..", "src"), join(copy, "src"), { recursive: true });
    cpSync(join(import.meta.dir, "..", "package.json"), join(copy, "package.json"));
    const old = await startOi(writeTempFile("upgrade.conf", `127.0.0.1 ${port} 127.0.0.1 ${one.port}\n`), [], [], undefined, join(copy, "src", "cli.ts"));
    onCleanup(() => old.stop());
    writeFileSync(join(copy, "src", "cli.ts"), "this is not ( a program\n");
    old.signal("SIGUSR2");
    await old.stderr.waitFor(new RegExp(`upgrade failed: pid \\d+ exited with \\d+ before listening; pid ${old.proc.pid} keeps serving`), 15_000);
    expect(await greeting(port)).toBe("one");
    expect(old.proc.exitCode).toBeNull();
  });
});
