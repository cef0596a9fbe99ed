/**
 * Limits: per-rule and global maxconn, the TCP idle timeout, and surviving
 * the file-descriptor limit (EMFILE) without spinning or dropping open
 * connections; then the metrics endpoint's figures after known traffic.
 */
import { describe, expect, test } from "bun:test";
import { backend, cleanUpAfterEachTest, oi, onCleanup, until } from "./helpers/harness.ts";
import { startOi, withFileLimit, writeTempFile } from "./helpers/oi-process.ts";
import { connectExpectingClose, connectPeer, freePort, type Peer } from "./helpers/peers.ts";

cleanUpAfterEachTest();

/**
 * Open `count` connections and sort them into those admitted (still open)
 * and those oi closed; a connection reset during its handshake counts as
 * closed too. With `expectOpen`, waits (up to 5 s) until no more than that
 * many are open before a last look a moment later, so a loaded machine's
 * slow closes are not taken for admissions; without it, looks after 300 ms.
 */
async function openMany(port: number, count: number, expectOpen?: number): Promise<{ open: Peer[]; closed: number }> {
  const attempts = await Promise.allSettled(Array.from({ length: count }, () => connectPeer("127.0.0.1", port)));
  const connected = attempts.flatMap((attempt) => (attempt.status === "fulfilled" ? [attempt.value] : []));
  const stillOpen = () => connected.filter((peer) => !peer.closed);
  if (expectOpen !== undefined) {
    const deadline = Date.now() + 5000;
    while (stillOpen().length > expectOpen && Date.now() < deadline) await Bun.sleep(20);
  }
  await Bun.sleep(300);
  const open = stillOpen();
  return { open, closed: count - open.length };
}

describe("maxconn", () => {
  test("[maxconn=N]: past N, new clients are closed at once; freed slots admit again", async () => {
    const server = backend();
    const port = freePort();
    const process = await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port} [maxconn=3]\n`, ["-v"]);
    const first = await openMany(port, 5, 3);
    expect(first.open).toHaveLength(3);
    expect(first.closed).toBe(2);
    await until(() => server.connections.length >= 3, 3000, "the admitted clients at the backend");
    expect(server.connections).toHaveLength(3);
    await process.stdout.waitFor("refused: connection limit", 2000);

    // A reset frees the slot at once (a FIN would leave the backend's half open).
    first.open[0]!.socket?.terminate();
    await until(() => server.connections.filter((peer) => !peer.closed).length === 2, 3000, "a slot to free");
    const again = await openMany(port, 1);
    expect(again.open).toHaveLength(1);
  });

  test("global maxconn counts every rule together", async () => {
    const server = backend();
    const [a, b] = [freePort(), freePort()];
    await oi(`maxconn 2\n127.0.0.1 ${a} 127.0.0.1 ${server.port}\n127.0.0.1 ${b} 127.0.0.1 ${server.port}\n`);
    const onA = await openMany(a, 1, 1);
    const onB = await openMany(b, 2, 1);
    expect(onA.open).toHaveLength(1);
    expect(onB.open).toHaveLength(1);
    expect(onB.closed).toBe(1);
  });
});

describe("idle timeout", () => {
  test("[idle=S] closes a silent connection and spares one that keeps talking", async () => {
    const server = backend((peer) => {
      // Echo, so the chatty client's traffic flows both ways.
      peer.onData = (p, chunk) => void p.socket?.write(chunk);
    });
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port} [idle=0.6]\n`);
    const silent = await connectPeer("127.0.0.1", port);
    const chatty = await connectPeer("127.0.0.1", port);
    const started = Date.now();
    const talking = setInterval(() => chatty.socket?.write("ping"), 150);
    onCleanup(() => clearInterval(talking));
    await silent.waitClosed(5000);
    const silentFor = Date.now() - started;
    expect(silentFor).toBeGreaterThanOrEqual(550);
    expect(silentFor).toBeLessThan(2500);
    await Bun.sleep(1000);
    expect(chatty.closed).toBe(false);
    expect(chatty.received).toBeGreaterThan(0);
  });
});

describe("file descriptors", () => {
  test("at `ulimit -n 64` oi refuses the excess, does not spin, keeps open connections, and admits again later", async () => {
    const server = backend((peer) => {
      peer.onData = (p, chunk) => void p.socket?.write(chunk);
    });
    const port = freePort();
    const configPath = writeTempFile("fd.conf", `127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    const process = await startOi(configPath, [], withFileLimit(64));
    onCleanup(() => process.stop());

    const { open, closed } = await openMany(port, 60);
    expect(open.length).toBeGreaterThan(5);
    expect(closed).toBeGreaterThan(0);

    // Not spinning: well under a tenth of a CPU over one idle second.
    const before = process.cpuTicks();
    await Bun.sleep(1000);
    expect(process.cpuTicks() - before).toBeLessThan(10);

    // Every admitted connection still works, both ways.
    for (const peer of open.slice(0, 5)) {
      peer.keep = [];
      peer.socket?.write("still here");
    }
    await until(() => open.slice(0, 5).every((peer) => peer.received === 10), 3000, "echoes");

    // Free everything: clients are admitted again.
    for (const peer of open) peer.socket?.terminate();
    await Bun.sleep(500);
    const later = await openMany(port, 5);
    expect(later.open).toHaveLength(5);

    await process.stderr.waitFor("file descriptor limit nearly reached", 1000);
    expect(await process.stop()).toBe(0);
  });
});

describe("metrics", () => {
  test("/metrics shows connections, bytes, denials and errors per rule after known traffic", async () => {
    const server = backend((peer) => {
      peer.onEnd = (p) => void p.send("12345", true);
    });
    const [port, dead, metricsPort] = [freePort(), freePort(), freePort()];
    await oi(
      `metrics 127.0.0.1:${metricsPort}\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\ndeny 127.0.0.9\n127.0.0.1 ${dead} 127.0.0.1 ${freePort()}\n`,
    );
    for (let i = 0; i < 3; i++) {
      const client = await connectPeer("127.0.0.1", port);
      await client.send("abc", true);
      await client.waitClosed();
    }
    await connectExpectingClose("127.0.0.1", port, "127.0.0.9");
    await connectExpectingClose("127.0.0.1", dead);
    // One connection still open: its bytes count already, and it is active.
    const open = await connectPeer("127.0.0.1", port);
    await open.send("xy");
    await until(() => server.connections.length === 4 && server.connections[3]!.received === 2, 3000, "bytes in flight");

    const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/plain");
    const text = await response.text();
    const rule = `rule="127.0.0.1:${port}/tcp",mode="tcp"`;
    const deadRule = `rule="127.0.0.1:${dead}/tcp",mode="tcp"`;
    expect(text).toContain(`oi_connections_total{${rule}} 4\n`);
    expect(text).toContain(`oi_connections_active{${rule}} 1\n`);
    expect(text).toContain(`oi_bytes_total{${rule},direction="in"} 11\n`);
    expect(text).toContain(`oi_bytes_total{${rule},direction="out"} 15\n`);
    expect(text).toContain(`oi_denied_total{${rule}} 1\n`);
    expect(text).toContain(`oi_errors_total{${deadRule},reason="refused"} 1\n`);
    expect(text).toMatch(/\nprocess_resident_memory_bytes \d+\n/);
    expect(text).toMatch(/\nprocess_open_fds \d+\n/);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/other`)).status).toBe(404);
  });
});
