/**
 * The command lines of rinetd, rinetd-uv and oxidinetd, as init scripts and
 * users type them, against a real `oi`: `-f -c FILE`, `-d`, `-h`, `-v`/`-V`
 * alone (version), `--config FILE --verbose`, the config format picked by
 * the file's extension, unknown options refused, and a config without rules
 * that waits for a SIGHUP as rinetd does.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { cleanUpAfterEachTest, onCleanup, until } from "../helpers/harness.ts";
import { type OiProcess, runOi, startOi, tempDir, writeTempFile } from "../helpers/oi-process.ts";
import { connectionRefused, freePort } from "../helpers/peers.ts";
import { echoBackend, roundTrip } from "./ops-helpers.ts";

cleanUpAfterEachTest();

async function started(path: string, args: string[]): Promise<OiProcess> {
  const process = await startOi(path, args);
  onCleanup(() => process.stop());
  return process;
}

describe("rinetd's and rinetd-uv's flags", () => {
  test("-v or -V alone prints the version, -h the usage; unknown options and a -c without FILE are refused", async () => {
    for (const flag of ["-v", "-V", "--version"]) {
      const result = await runOi([flag]);
      expect([flag, result.code, result.stdout.trim()]).toEqual([flag, 0, pkg.version]);
    }
    const help = await runOi(["-h"]);
    expect(help.code).toBe(0);
    for (const flag of ["-c", "-f", "-d", "-v", "--config", "--verbose", "--debug"]) expect(help.stdout).toContain(flag);

    const bogus = await runOi(["-f", "-x", "-c", "/nonexistent.conf"]);
    expect([bogus.code, bogus.stderr]).toEqual([1, expect.stringContaining("unknown option '-x'")]);
    const long = await runOi(["--bogus"]);
    expect([long.code, long.stderr]).toEqual([1, expect.stringContaining("unknown option '--bogus'")]);
    const noFile = await runOi(["-c"]);
    expect([noFile.code, noFile.stderr]).toEqual([1, expect.stringContaining("-c needs a FILE")]);
  });

  test("oi -f -c FILE (an init script's rinetd line) forwards; -d adds DNS answers and the failed connect that triggers a new look-up", async () => {
    const echo = echoBackend();
    const [port, deadPort, deadBackend] = [freePort(), freePort(), freePort()];
    const path = writeTempFile("rinetd.conf", `127.0.0.1 ${port} localhost ${echo.port}\n127.0.0.1 ${deadPort} localhost ${deadBackend}\n`);
    const forwarder = await started(path, ["-f", "-d"]);
    expect(await roundTrip({ port }, "ping")).toBe(4);
    await forwarder.stdout.waitFor(/\[DEBUG\] rule \S+: DNS localhost -> [^\n]*127\.0\.0\.1/, 3000);
    // oi resets the client when the backend refuses; the reset may beat the handshake (-1) or not (0 bytes).
    expect(await roundTrip({ port: deadPort }, "ping")).toBeLessThanOrEqual(0);
    await forwarder.stdout.waitFor(`[DEBUG] rule 127.0.0.1:${deadPort}/tcp: connect to localhost:${deadBackend} failed; localhost will be looked up again`, 3000);
    expect(forwarder.stderr.text).toBe("");
  });

  test("a config without rules keeps oi running; a SIGHUP that brings a rule starts it", async () => {
    const path = writeTempFile("empty.conf", "# nothing forwarded yet\n");
    const forwarder = await started(path, []);
    await Bun.sleep(300);
    expect(forwarder.proc.exitCode).toBeNull();
    const echo = echoBackend();
    const port = freePort();
    writeFileSync(path, `127.0.0.1 ${port} 127.0.0.1 ${echo.port}\n`);
    forwarder.signal("SIGHUP");
    await forwarder.stdout.waitFor("reloaded: 1 listener(s) started", 5000);
    expect(await roundTrip({ port }, "ping")).toBe(4);
  });
});

describe("oxidinetd's flags and the config format by extension", () => {
  test("oi --config FILE.toml --verbose: TOML, and a line per connection (no debug lines without -d)", async () => {
    const echo = echoBackend();
    const port = freePort();
    const path = writeTempFile(
      "oxidinetd.toml",
      `[[forwarding_rules]]\nbind_address = "127.0.0.1"\nbind_port = ${port}\nconnect_address = "localhost"\nconnect_port = ${echo.port}\nprotocol = "tcp"\n`,
    );
    const forwarder = await started(path, ["--config", path, "--verbose"]);
    expect(await roundTrip({ port }, "ping")).toBe(4);
    await forwarder.stdout.waitFor(new RegExp(`-> 127\\.0\\.0\\.1:${port}/tcp -> localhost:${echo.port}/tcp done in=4 out=4`), 3000);
    expect(forwarder.stdout.text).not.toContain("[DEBUG]");
  });

  test(".yaml and .yml are rinetd-uv's YAML, with its status section in effect", async () => {
    const echo = echoBackend();
    const oneFile = async (extension: string) => {
      const dir = tempDir();
      const port = freePort();
      const statusPath = join(dir, "status.json");
      const path = join(dir, `rinetd-uv.${extension}`);
      writeFileSync(
        path,
        [
          "global:",
          "  status:",
          "    enabled: true",
          `    file: ${statusPath}`,
          "    interval: 1",
          "    format: json",
          "rules:",
          "  - name: web",
          `    bind: "127.0.0.1:${port}/tcp"`,
          "    connect:",
          `      - dest: "127.0.0.1:${echo.port}"`,
          "",
        ].join("\n"),
      );
      const forwarder = await started(path, ["-f"]);
      expect(await roundTrip({ port }, "ping")).toBe(4);
      // Written one interval after start, counting the connection made before.
      await until(() => existsSync(statusPath), 3000, "the status file");
      const status = JSON.parse(readFileSync(statusPath, "utf8")) as { rules: Array<{ name: string; connections_total: number }> };
      expect(status.rules.map((rule) => [rule.name, rule.connections_total])).toEqual([["web", 1]]);
      expect(await forwarder.stop()).toBe(0);
      expect(await connectionRefused(port)).toBe(true);
    };
    await Promise.all([oneFile("yaml"), oneFile("yml")]);
  });
});
