/**
 * Unix domain sockets on either side of a rule: TCP to a unix socket backend,
 * a unix socket listener to a TCP backend (with its file mode), a stale socket
 * file left by a crash, and one still in use by another process.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { backend, cleanUpAfterEachTest, oi, onCleanup, unixBackend } from "./helpers/harness.ts";
import { runOi, tempDir, writeTempFile } from "./helpers/oi-process.ts";
import { connectPeer, connectUnix, freePort, randomBytes, sha256, withTimeout } from "./helpers/peers.ts";

cleanUpAfterEachTest();

/** A backend listening on a unix socket that greets each connection and half-closes. */
function unixGreeter(path: string, greeting: string) {
  const listener = Bun.listen<undefined>({
    unix: path,
    socket: {
      open(socket) {
        socket.write(greeting);
        socket.shutdown();
      },
      data() {},
    },
  });
  onCleanup(() => listener.stop(true));
  return listener;
}

describe("half-close through unix sockets", () => {
  test("a client of a unix socket listener half-closes and still gets the backend's answer", async () => {
    const server = backend((peer) => {
      peer.onEnd = (p) => void p.send(`received ${p.received} bytes, sha256 ${p.digest()}`, true);
    });
    const path = join(tempDir(), "half.sock");
    await oi(`unix:${path} 127.0.0.1 ${server.port}\n`);
    const payload = randomBytes(1024 * 1024);
    const client = await connectUnix(path);
    client.keep = [];
    await client.send(payload, true);
    await client.waitClosed();
    expect(client.text()).toBe(`received ${payload.length} bytes, sha256 ${sha256(payload)}`);
    expect(client.closeError).toBeUndefined();
  });

  test("a backend on a unix socket gets the client's FIN and its answer gets back", async () => {
    const path = join(tempDir(), "hasher.sock");
    unixBackend(path, (peer) => {
      peer.onEnd = (p) => void p.send(`received ${p.received} bytes, sha256 ${p.digest()}`, true);
    });
    const port = freePort();
    await oi(`127.0.0.1 ${port} unix:${path}\n`);
    const payload = randomBytes(1024 * 1024);
    const client = await connectPeer("127.0.0.1", port);
    client.keep = [];
    await client.send(payload, true);
    await client.waitClosed();
    expect(client.text()).toBe(`received ${payload.length} bytes, sha256 ${sha256(payload)}`);
    expect(client.closeError).toBeUndefined();
  });

  test("after a unix socket backend's FIN the client can still send, and the backend receives it all", async () => {
    const path = join(tempDir(), "early.sock");
    const server = unixBackend(path, (peer) => void peer.send("early goodbye", true));
    const port = freePort();
    await oi(`127.0.0.1 ${port} unix:${path}\n`);

    const client = await connectPeer("127.0.0.1", port);
    client.keep = [];
    await client.waitEnd();
    expect(client.text()).toBe("early goodbye");
    expect(client.closed).toBe(false);
    const payload = randomBytes(1024 * 1024);
    await client.send(payload, true);
    const far = await server.nextConnection();
    await far.waitClosed();
    expect(far.received).toBe(payload.length);
    expect(far.digest()).toBe(sha256(payload));
  });
});

describe("unix sockets", () => {
  test("TCP clients reach a backend on a unix socket", async () => {
    const path = join(tempDir(), "backend.sock");
    unixGreeter(path, "from the unix side");
    const port = freePort();
    await oi(`127.0.0.1 ${port}/tcp unix:${path}\n`);
    const client = await connectPeer("127.0.0.1", port);
    client.keep = [];
    await client.waitEnd();
    expect(client.text()).toBe("from the unix side");
  });

  test("a unix socket listener forwards to TCP, with the file mode asked for", async () => {
    const server = backend((peer) => void peer.send("from tcp", true));
    const path = join(tempDir(), "oi.sock");
    await oi(`unix:${path} 127.0.0.1 ${server.port} [mode=0600]\n`);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const client = await connectUnix(path);
    client.keep = [];
    await client.waitEnd();
    expect(client.text()).toBe("from tcp");
  });

  test("a stale socket file left by a crashed process is replaced", async () => {
    const server = backend((peer) => void peer.send("fresh", true));
    const path = join(tempDir(), "stale.sock");
    // A process that listens on the path and is killed: its socket file stays behind.
    const crashed = Bun.spawn([process.execPath, "-e", `Bun.listen({ unix: ${JSON.stringify(path)}, socket: { data() {} } }); console.log("up"); setInterval(() => {}, 1000);`], {
      stdout: "pipe",
    });
    const reader = crashed.stdout.getReader();
    await withTimeout(reader.read(), 5000, "the listener");
    crashed.kill("SIGKILL");
    await crashed.exited;
    expect(existsSync(path)).toBe(true);

    await oi(`unix:${path} 127.0.0.1 ${server.port}\n`);
    const client = await connectUnix(path);
    client.keep = [];
    await client.waitEnd();
    expect(client.text()).toBe("fresh");
  });

  test("a socket file another process is listening on is not taken over", async () => {
    const path = join(tempDir(), "busy.sock");
    unixGreeter(path, "mine");
    const result = await runOi(["-c", writeTempFile("busy.conf", `unix:${path} 127.0.0.1 9\n`)]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`another process is listening on ${path}`);
  });
});
