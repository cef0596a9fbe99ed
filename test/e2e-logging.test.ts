/**
 * The log file in its three formats, its writing while oi runs, and reopening on SIGHUP
 * (logrotate), with a real oi process and real connections.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, renameSync } from "node:fs";
import { join } from "node:path";
import { backend, cleanUpAfterEachTest, oi, until } from "./helpers/harness.ts";
import { tempDir } from "./helpers/oi-process.ts";
import { connectExpectingClose, connectPeer, freePort } from "./helpers/peers.ts";

cleanUpAfterEachTest();

function lines(path: string): string[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8").split("\n").filter((line) => line !== "");
}

/** One finished connection (3 bytes in, 5 out), one denied client, one refused backend. */
async function makeTraffic(goodPort: number, deadPort: number): Promise<void> {
  const good = await connectPeer("127.0.0.1", goodPort);
  await good.send("abc", true);
  await good.waitClosed();
  await connectExpectingClose("127.0.0.1", goodPort, "127.0.0.9");
  await connectExpectingClose("127.0.0.1", deadPort);
}

async function setUp(format: "" | "logcommon\n" | "logjson\n") {
  const dir = tempDir();
  const logPath = join(dir, "oi.log");
  const server = backend((peer) => {
    peer.onEnd = (p) => void p.send("12345", true);
  });
  const [goodPort, deadPort, nothing] = [freePort(), freePort(), freePort()];
  const process = await oi(
    `logfile ${logPath}\n${format}127.0.0.1 ${goodPort} 127.0.0.1 ${server.port}\ndeny 127.0.0.9\n127.0.0.1 ${deadPort} 127.0.0.1 ${nothing}\n`,
  );
  await makeTraffic(goodPort, deadPort);
  return { process, logPath, server, goodPort, deadPort, nothing };
}

describe("log formats", () => {
  test("rinetd: tab-separated date, client, bind, connect, bytes in/out, result", async () => {
    const { logPath, server, goodPort, deadPort, nothing } = await setUp("");
    await until(() => lines(logPath).length === 3, 3000, "three log lines");
    const rows = lines(logPath).map((line) => line.split("\t"));
    for (const row of rows) {
      expect(row).toHaveLength(9);
      expect(row[0]).toMatch(/^\d\d\/[A-Z][a-z]{2}\/\d{4}:\d\d:\d\d:\d\d$/);
    }
    const byResult = new Map(rows.map((row) => [row[8], row.slice(1, 8)]));
    expect(byResult.get("done")).toEqual(["127.0.0.1", "127.0.0.1", String(goodPort), "127.0.0.1", String(server.port), "3", "5"]);
    expect(byResult.get("denied")).toEqual(["127.0.0.9", "127.0.0.1", String(goodPort), "127.0.0.1", String(server.port), "0", "0"]);
    expect(byResult.get("refused")).toEqual(["127.0.0.1", "127.0.0.1", String(deadPort), "127.0.0.1", String(nothing), "0", "0"]);
  });

  test("logcommon: the web server common log format", async () => {
    const { logPath, server, goodPort } = await setUp("logcommon\n");
    await until(() => lines(logPath).length === 3, 3000, "three log lines");
    const done = lines(logPath).find((line) => line.includes("/done "));
    expect(done).toMatch(
      new RegExp(
        `^127\\.0\\.0\\.1 - - \\[\\d\\d/[A-Z][a-z]{2}/\\d{4}:\\d\\d:\\d\\d:\\d\\d [+-]\\d{4}\\] "GET /rinetd-services/127\\.0\\.0\\.1/${goodPort}/127\\.0\\.0\\.1/${server.port}/done HTTP/1\\.0" 200 5 - - - 3$`,
      ),
    );
    expect(lines(logPath).some((line) => line.startsWith("127.0.0.9 - - ") && line.includes("/denied "))).toBe(true);
  });

  test("logjson: JSON lines with the same fields and the duration", async () => {
    const { logPath, server, goodPort } = await setUp("logjson\n");
    await until(() => lines(logPath).length === 3, 3000, "three log lines");
    const records = lines(logPath).map((line) => JSON.parse(line) as Record<string, unknown>);
    const done = records.find((record) => record.result === "done");
    expect(done).toMatchObject({
      client: "127.0.0.1",
      protocol: "tcp",
      bind_address: "127.0.0.1",
      bind_port: goodPort,
      connect_address: "127.0.0.1",
      connect_port: server.port,
      bytes_in: 3,
      bytes_out: 5,
    });
    expect(typeof done?.duration_ms).toBe("number");
    expect(typeof done?.client_port).toBe("number");
    expect(Date.parse(String(done?.time))).toBeGreaterThan(Date.now() - 60_000);
    expect(records.map((record) => record.result).sort()).toEqual(["denied", "done", "refused"]);
  });
});

describe("log file life cycle", () => {
  test("lines reach the file within about a second, without waiting for exit", async () => {
    const { logPath, process } = await setUp("");
    const started = Date.now();
    await until(() => lines(logPath).length === 3, 2500, "flushed lines");
    expect(Date.now() - started).toBeLessThan(2500);
    expect(process.proc.exitCode).toBeNull();
  });

  test("SIGHUP reopens the file, so a rotated log keeps its lines and a new file starts", async () => {
    const { logPath, process, goodPort, deadPort } = await setUp("");
    await until(() => lines(logPath).length === 3, 3000, "first lines");
    const rotated = `${logPath}.1`;
    renameSync(logPath, rotated);
    process.signal("SIGHUP");
    await process.stdout.waitFor("reloaded", 3000);
    await makeTraffic(goodPort, deadPort);
    await until(() => lines(logPath).length === 3, 3000, "lines in the new file");
    expect(lines(rotated)).toHaveLength(3);
  });

  test("every line is in the file once oi has exited", async () => {
    const { logPath, process } = await setUp("");
    expect(await process.stop()).toBe(0);
    expect(lines(logPath)).toHaveLength(3);
  });
});
