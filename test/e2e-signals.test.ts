/**
 * What signals do to a running oi: the pid file's life, SIGHUP reloads (add,
 * remove, keep, bad config), and SIGTERM/SIGINT's graceful shutdown, also as
 * PID 1 of its own PID namespace.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { backend, cleanUpAfterEachTest, greeter, greeting, oi, oiOnFile, onCleanup, until } from "./helpers/harness.ts";
import { readUntilListening, tempDir, writeTempFile } from "./helpers/oi-process.ts";
import { connectionRefused, connectPeer, freePort, type Peer, randomBytes, sha256, watchRefusals, withTimeout } from "./helpers/peers.ts";

cleanUpAfterEachTest();

describe("pid file", () => {
  test("holds the pid while oi runs and is removed at exit", async () => {
    const pidPath = join(tempDir(), "oi.pid");
    const process = await oi(`pidlogfile ${pidPath}\n127.0.0.1 ${freePort()} 127.0.0.1 9\n`);
    expect(readFileSync(pidPath, "utf8").trim()).toBe(String(process.proc.pid));
    expect(await process.stop()).toBe(0);
    expect(existsSync(pidPath)).toBe(false);
  });
});

describe("SIGHUP reload", () => {
  test("adds, removes and keeps rules; open connections carry on; kept ports never close", async () => {
    const [one, two] = [greeter("one"), greeter("two")];
    const held = backend();
    const [keptPort, removedPort, addedPort] = [freePort(), freePort(), freePort()];
    const configPath = writeTempFile("reload.conf", `127.0.0.1 ${keptPort} 127.0.0.1 ${one.port}\n127.0.0.1 ${removedPort} 127.0.0.1 ${held.port}\n`);
    const process = await oiOnFile(configPath);
    {
      expect(await greeting(keptPort)).toBe("one");

      // A connection on the rule about to be removed, open across the reload.
      const survivor = await connectPeer("127.0.0.1", removedPort);
      const survivorFar = await held.nextConnection();

      // Keep connecting to the kept port throughout the reload: none may be refused.
      const refusals = watchRefusals(keptPort);

      writeFileSync(configPath, `127.0.0.1 ${keptPort} 127.0.0.1 ${two.port}\n127.0.0.1 ${addedPort} 127.0.0.1 ${one.port}\n`);
      process.signal("SIGHUP");
      await process.stdout.waitFor("reloaded: 1 listener(s) started, 1 kept, 1 stopped", 5000);
      await Bun.sleep(100);
      expect(await refusals.stop()).toBe(0);

      expect(await greeting(keptPort)).toBe("two");
      expect(await greeting(addedPort)).toBe("one");
      expect(await connectionRefused(removedPort)).toBe(true);

      // The old connection still moves bytes both ways.
      const up = randomBytes(256 * 1024);
      const down = randomBytes(256 * 1024);
      await Promise.all([survivor.send(up, true), survivorFar.send(down, true)]);
      await survivor.waitClosed();
      await survivorFar.waitClosed();
      expect(survivorFar.digest()).toBe(sha256(up));
      expect(survivor.digest()).toBe(sha256(down));
    }
  });

  test("a config that fails to load is reported and the running one stays", async () => {
    const server = greeter("still");
    const port = freePort();
    const configPath = writeTempFile("bad-reload.conf", `127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    const process = await oiOnFile(configPath);
    {
      writeFileSync(configPath, `127.0.0.1 ${port} 127.0.0.1 ${server.port}\nnonsense here\n`);
      process.signal("SIGHUP");
      await process.stderr.waitFor(`${configPath}:2: `, 5000);
      await process.stderr.waitFor("the running configuration stays in force", 5000);
      expect(await greeting(port)).toBe("still");
    }
  });

  test("a reload whose new listener cannot bind changes nothing", async () => {
    const server = greeter("kept");
    const blocker = backend();
    const port = freePort();
    const configPath = writeTempFile("busy-reload.conf", `127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    const process = await oiOnFile(configPath);
    {
      writeFileSync(configPath, `127.0.0.1 ${port} 127.0.0.1 ${blocker.port}\n127.0.0.1 ${blocker.port} 127.0.0.1 9\n`);
      process.signal("SIGHUP");
      await process.stderr.waitFor(`cannot listen on 127.0.0.1:${blocker.port}`, 5000);
      // The kept rule was not switched to the new backend either.
      expect(await greeting(port)).toBe("kept");
    }
  });
});

describe("SIGTERM / SIGINT", () => {
  test("a transfer in flight finishes within the grace period, then oi exits 0", async () => {
    const payload = randomBytes(16 * 1024 * 1024);
    // The backend reads slowly at first, so the transfer is still running when the signal comes.
    const server = backend((peer) => {
      peer.socket?.pause();
      setTimeout(() => peer.socket?.resume(), 500);
    });
    const port = freePort();
    const process = await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, ["--grace", "10"]);
    const client = await connectPeer("127.0.0.1", port);
    const sending = client.send(payload, true);
    const far = await server.nextConnection();
    await Bun.sleep(100);
    process.signal("SIGTERM");
    await process.stdout.waitFor("stopped accepting", 3000);
    expect(await connectionRefused(port)).toBe(true);
    await withTimeout(sending, 10000, "the upload");
    await far.waitEnd(10000);
    expect(far.digest()).toBe(sha256(payload));
    far.socket?.end();
    expect(await withTimeout(process.proc.exited, 5000, "exit")).toBe(0);
  });

  test("after the grace period the busy rest is closed and oi exits 0", async () => {
    const server = trickler();
    const port = freePort();
    const process = await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, ["--grace", "0.5"]);
    const busy: Peer = await connectPeer("127.0.0.1", port);
    await until(() => busy.received > 0, 3000, "the trickle to start");
    const started = Date.now();
    process.signal("SIGINT");
    expect(await withTimeout(process.proc.exited, 5000, "exit")).toBe(0);
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(450);
    expect(took).toBeLessThan(3000);
    await busy.waitClosed(3000);
  });

  test("a second signal cuts a transfer in progress and exits at once", async () => {
    const server = trickler();
    const port = freePort();
    const process = await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, ["--grace", "30"]);
    const busy = await connectPeer("127.0.0.1", port);
    await until(() => busy.received > 0, 3000, "the trickle to start");
    process.signal("SIGTERM");
    await process.stdout.waitFor("waiting up to 30s", 3000);
    // Still moving bytes after the first signal: not quiet, so it is given the grace period.
    const before = busy.received;
    await until(() => busy.received > before, 3000, "more bytes after the first signal");
    const started = Date.now();
    process.signal("SIGTERM");
    expect(await withTimeout(process.proc.exited, 5000, "exit")).toBe(0);
    expect(Date.now() - started).toBeLessThan(2000);
    await busy.waitClosed(2000);
  });

  test("as PID 1 of its own PID namespace (a container's entrypoint), SIGTERM stops it with exit code 0", async () => {
    const probe = Bun.spawnSync(["unshare", "--pid", "--fork", "--mount-proc", "true"]);
    if (probe.exitCode !== 0) {
      console.warn("skipped: unshare --pid is not permitted here (needs root or user namespaces)");
      return;
    }
    const server = greeter("pid one");
    const port = freePort();
    const configPath = writeTempFile("pid1.conf", `127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    const cli = join(import.meta.dir, "..", "src", "cli.ts");
    // `sh -c 'echo $$; exec ...'` prints the pid oi will have inside the namespace: 1.
    const proc = Bun.spawn(
      ["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", `echo "inner pid $$"; exec "$0" "$@"`, process.execPath, cli, "-c", configPath, "--grace", "1"],
      { stdout: "pipe", stderr: "pipe" },
    );
    try {
      const text = await readUntilListening(proc.stdout, 10000, "oi in its PID namespace");
      expect(text).toContain("inner pid 1");
      expect(await greeting(port)).toBe("pid one");
      // Signal oi itself (PID 1 inside; its pid out here is unshare's child). unshare exits with oi's status.
      const children = readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, "utf8").trim().split(/\s+/);
      expect(children).toHaveLength(1);
      globalThis.process.kill(Number(children[0]), "SIGTERM");
      expect(await withTimeout(proc.exited, 5000, "exit")).toBe(0);
    } finally {
      proc.kill("SIGKILL");
    }
  });
});

/** A backend that sends one byte every 50 ms for as long as the connection is open: a connection that is never quiet. */
function trickler() {
  return backend((peer) => {
    const timer = setInterval(() => {
      if (peer.closed) clearInterval(timer);
      else peer.socket?.write("t");
    }, 50);
    onCleanup(() => clearInterval(timer));
  });
}

/** A backend that echoes each chunk and half-closes after the client's FIN. */
function echoer() {
  return backend((peer) => {
    peer.onData = (p, chunk) => void p.socket?.write(chunk);
    peer.onEnd = (p) => void p.socket?.shutdown();
  });
}

for (const { name, directive } of [
  { name: "plain relay", directive: "splice off\n" },
  { name: "splice on", directive: "splice on\n" },
]) {
  describe(`SIGINT with quiet connections (${name})`, () => {
    test("an idle connection is closed with FINs both ways within about a second; oi exits 0 within 2 s, not after its 10 s grace", async () => {
      const server = echoer();
      const port = freePort();
      const process = await oi(`${directive}127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, ["--grace", "10", "-v"]);
      const client = await connectPeer("127.0.0.1", port);
      client.keep = [];
      // A client that sent 10 bytes, got them back, and waits.
      await client.send("0123456789");
      await until(() => client.received === 10, 3000, "the echo");
      const far = await server.nextConnection();
      const started = Date.now();
      process.signal("SIGINT");
      expect(await withTimeout(process.proc.exited, 5000, "exit")).toBe(0);
      expect(Date.now() - started).toBeLessThan(2000);
      // FIN both ways, not resets: each end saw the end of the other's data, and no error.
      await client.waitEnd(2000);
      await far.waitEnd(2000);
      expect(client.sawEnd).toBe(true);
      expect(client.closeError).toBeUndefined();
      expect(far.sawEnd).toBe(true);
      expect(far.closeError).toBeUndefined();
      expect(client.text()).toBe("0123456789");
      expect(process.stdout.text).toMatch(/ done in=10 out=10 /);
    });

    // 16 MiB: oi itself holds what the backend's kernel cannot take; 256 KiB: all of it fits in the kernel's buffers, unsent.
    for (const size of [16 * 1024 * 1024, 256 * 1024]) test(`a quiet connection is closed at once; a stalled transfer of ${size / 1024} KiB (no byte moving, but bytes on their way) is not, and completes within the grace period`, async () => {
      const payload = randomBytes(size);
      // The transfer's backend reads nothing until 2 s after the signal: the relay holds bytes it cannot deliver yet.
      let resumeAt: (() => void) | undefined;
      const slow = backend((peer) => {
        peer.socket?.pause();
        resumeAt = () => peer.socket?.resume();
      });
      const quietServer = echoer();
      const [port, quietPort] = [freePort(), freePort()];
      const process = await oi(`${directive}127.0.0.1 ${port} 127.0.0.1 ${slow.port}\n127.0.0.1 ${quietPort} 127.0.0.1 ${quietServer.port}\n`, ["--grace", "20"]);
      const quiet = await connectPeer("127.0.0.1", quietPort);
      await quiet.send("hello");
      await until(() => quiet.received === 5, 3000, "the echo");
      const uploader = await connectPeer("127.0.0.1", port);
      const sending = uploader.send(payload, true);
      const far = await slow.nextConnection();
      await Bun.sleep(300);
      const started = Date.now();
      process.signal("SIGINT");
      await quiet.waitEnd(3000);
      expect(quiet.closeError).toBeUndefined();
      expect(Date.now() - started).toBeLessThan(2000);
      // Nearly 2 s on, the stalled one is still open, its bytes still on their way: oi waits for it.
      await Bun.sleep(1900 - (Date.now() - started));
      expect(process.proc.exitCode).toBeNull();
      expect(far.received).toBeLessThan(payload.length);
      expect(far.closed).toBe(false);
      resumeAt?.();
      // Once its backend reads, every byte arrives, then oi exits 0.
      await withTimeout(sending, 20000, "the upload");
      await far.waitEnd(20000);
      expect(far.digest()).toBe(sha256(payload));
      far.socket?.end();
      expect(await withTimeout(process.proc.exited, 5000, "exit")).toBe(0);
    });
  });
}

