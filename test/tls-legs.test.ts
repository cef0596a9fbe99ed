/**
 * The TLS legs on real sockets over loopback, relayed by the real Relay
 * (src/tcp/relay.ts) in a minimal forwarder (helpers/tls-relay.ts):
 * termination (src/tls/server-leg.ts) on both socket layers, with real
 * clients (openssl s_client, curl, Bun's TLS client), and origination
 * (src/tls/client-leg.ts) to Bun and openssl TLS servers.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket } from "bun";
import type { DialTarget } from "../src/backends.ts";
import { connectStream } from "../src/stream-connect.ts";
import { SocketLayer } from "../src/tcp/socket-layer.ts";
import type { StreamSocket } from "../src/tcp/stream-socket.ts";
import { loadCaBundle, loadServerTls, type ServerTls } from "../src/tls/certificates.ts";
import { isTlsRaw, terminateTls } from "../src/tls/server-leg.ts";
import { TlsLeg } from "../src/tls/tls-leg.ts";
import type { TlsClientOptions } from "../src/types.ts";
import { makeTestCa } from "./helpers/certs.ts";
import { type Backend, connectPeer, freePort, type Peer, randomBytes, sha256, startBackend, withTimeout } from "./helpers/peers.ts";
import { connectTlsPeer, type Layer, startTlsBackend, startTlsRelay, type TlsRelay } from "./helpers/tls-relay.ts";

const ca = makeTestCa();
const leaf = ca.issue(["example.test", "localhost"]);
const backendCert = ca.issue(["backend.test"]);
const otherCa = makeTestCa("another CA");
const stranger = otherCa.issue(["backend.test"]);
const MiB = 1024 * 1024;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function serverTls(alpn: string[] = []): ServerTls {
  const loaded = loadServerTls(leaf.certFile, leaf.keyFile, alpn);
  if (!loaded.ok) throw new Error(loaded.reason);
  return loaded.value;
}

function backend(onConnection: (peer: Peer) => void): Backend {
  const started = startBackend(onConnection);
  cleanups.push(() => started.stop());
  return started;
}

async function relayTo(layer: Layer, backendPort: number, server: ServerTls | undefined, backendTls?: TlsClientOptions): Promise<TlsRelay> {
  const relay = await startTlsRelay({ layer, server, backendPort, ...(backendTls === undefined ? {} : { backendTls }) });
  cleanups.push(() => relay.stop());
  return relay;
}

/** Run a command with `input` on its stdin; its exit code and output (stdout and stderr together). */
async function run(command: string[], input: string, timeoutMs = 15_000): Promise<{ code: number; output: string }> {
  const child = Bun.spawn(command, { stdin: new Blob([input]), stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => child.kill(), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  clearTimeout(timer);
  return { code, output: stdout + stderr };
}

/** openssl s_client to the relay; it quits at the end of its input unless told to wait for the server to close (-ign_eof). */
function sClient(port: number, extra: string[]): string[] {
  return ["openssl", "s_client", "-connect", `127.0.0.1:${port}`, "-CAfile", ca.certFile, ...extra];
}

/** A backend that answers what it got so far with `reply(text)` (when not empty) and half-closes; it closes at the client's FIN. */
function replyingBackend(reply: (text: string) => string): Backend {
  return backend((peer) => {
    peer.keep = [];
    peer.onData = (p) => {
      const answer = reply(p.text());
      if (answer !== "") void p.send(answer, true);
    };
    peer.onEnd = (p) => p.socket?.end();
  });
}

/** The layers termination runs on: Bun's sockets and oi's direct ones (the harness falls back to Bun's when direct ones cannot run). */
const layers: Layer[] = ["bun", "direct"];

for (const layer of layers) {
  describe(`termination on ${layer} sockets`, () => {
    test("openssl s_client: the leg's certificate, verified for the SNI name; the backend's reply comes back", async () => {
      const target = replyingBackend((text) => (text.includes("\n") ? `backend got ${text.trim()}\n` : ""));
      const relay = await relayTo(layer, target.port, serverTls());
      const { code, output } = await run(sClient(relay.port, ["-servername", "example.test", "-ign_eof"]), "ping\n");
      expect(code).toBe(0);
      expect(output).toContain("subject=CN = example.test");
      expect(output).toContain("issuer=CN = oi test CA");
      expect(output).toContain("Verify return code: 0 (ok)");
      expect(output).toContain("backend got ping");
      const ended = await relay.nextEnded();
      expect(ended).toMatchObject({ result: "done", servername: "example.test", bytesIn: 5, bytesOut: 17 });
    });

    test("curl --cacert --resolve: an HTTPS request answered by a plain HTTP backend", async () => {
      const target = replyingBackend((text) => (text.includes("\r\n\r\n") ? "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n" : ""));
      const relay = await relayTo(layer, target.port, serverTls(["http/1.1"]));
      const url = `https://example.test:${relay.port}/`;
      const { code, output } = await run(["curl", "-sS", "--cacert", ca.certFile, "--resolve", `example.test:${relay.port}:127.0.0.1`, "-m", "10", url], "");
      expect(output).toBe("hello\n");
      expect(code).toBe(0);
      expect(await relay.nextEnded()).toMatchObject({ result: "done", servername: "example.test", alpnProtocol: "http/1.1" });
    });

    test("ALPN: none agreed by default (the client offers h2 and http/1.1), http/1.1 when listed", async () => {
      const target = replyingBackend(() => "");
      const plain = await relayTo(layer, target.port, serverTls());
      const offered = ["-servername", "example.test", "-alpn", "h2,http/1.1"];
      expect((await run(sClient(plain.port, offered), "")).output).toContain("No ALPN negotiated");
      expect((await plain.nextEnded()).alpnProtocol).toBeUndefined();
      const listed = await relayTo(layer, target.port, serverTls(["http/1.1"]));
      expect((await run(sClient(listed.port, offered), "")).output).toContain("ALPN protocol: http/1.1");
      expect((await listed.nextEnded()).alpnProtocol).toBe("http/1.1");
    });

    test("16 MiB each way at once, hashed on both ends (Bun's TLS client)", async () => {
      const up = randomBytes(16 * MiB);
      const down = randomBytes(16 * MiB);
      const target = backend((peer) => void peer.send(down, true));
      const relay = await relayTo(layer, target.port, serverTls());
      const client = await connectTlsPeer(relay.port, { serverName: "example.test", ca: ca.certPem });
      // Read while open: Bun's TLS socket has no local port once the server has closed it.
      const clientPort = client.socket!.localPort;
      await client.send(up, true);
      const far = await target.nextConnection();
      await far.waitEnd(30_000);
      await client.waitEnd(30_000);
      expect(far.received).toBe(up.length);
      expect(far.digest()).toBe(sha256(up));
      expect(client.received).toBe(down.length);
      expect(client.digest()).toBe(sha256(down));
      client.socket?.end();
      expect(await relay.nextEnded()).toMatchObject({ result: "done", bytesIn: up.length, bytesOut: down.length, clientAddress: "127.0.0.1", clientPort });
    });

    test("half-close: the client shuts its side after its request and still gets the whole reply", async () => {
      const reply = randomBytes(2 * MiB);
      const target = backend((peer) => {
        peer.onEnd = (p) => void p.send(reply, true);
      });
      const relay = await relayTo(layer, target.port, serverTls());
      const client = await connectTlsPeer(relay.port, { serverName: "example.test", ca: ca.certPem });
      await client.send("the whole request", true);
      const far = await target.nextConnection();
      await far.waitEnd();
      await client.waitEnd(30_000);
      expect(client.sawEnd).toBe(true);
      expect(client.received).toBe(reply.length);
      expect(client.digest()).toBe(sha256(reply));
      expect(far.received).toBe("the whole request".length);
      client.socket?.end();
      expect((await relay.nextEnded()).result).toBe("done");
    });

    test("the backend speaks first: its greeting waits for the handshake", async () => {
      const target = backend((peer) => {
        void peer.send("220 greetings\r\n");
        peer.onEnd = (p) => p.socket?.end();
      });
      const relay = await relayTo(layer, target.port, serverTls());
      const client = await connectTlsPeer(relay.port, { serverName: "example.test", ca: ca.certPem });
      client.keep = [];
      await withTimeout(
        (async () => {
          while (client.received < 15) await Bun.sleep(5);
        })(),
        5000,
        "the greeting",
      );
      expect(client.text()).toBe("220 greetings\r\n");
      client.socket?.end();
      await relay.nextEnded();
    });

    test("a ClientHello that arrives in pieces", async () => {
      const target = replyingBackend((text) => (text === "ping" ? "pong" : ""));
      const relay = await relayTo(layer, target.port, serverTls());
      // A splitter in front: the client's first bytes go on 3 at a time, 20 ms apart.
      const splitter = Bun.listen<{ upstream: Promise<Socket<unknown>>; sent: number }>({
        hostname: "127.0.0.1",
        port: 0,
        socket: {
          open(socket) {
            socket.data = {
              sent: 0,
              upstream: Bun.connect({
                hostname: "127.0.0.1",
                port: relay.port,
                socket: {
                  data: (_s, chunk) => void socket.write(chunk),
                  close: () => {
                    socket.end();
                  },
                },
              }),
            };
          },
          async data(socket, chunk) {
            const upstream = await socket.data.upstream;
            if (socket.data.sent > 0) {
              upstream.write(chunk);
              return;
            }
            for (let at = 0; at < chunk.length; at += 3) {
              upstream.write(chunk.subarray(at, Math.min(chunk.length, at + 3)));
              if (at < 9) await Bun.sleep(20);
            }
            socket.data.sent += chunk.length;
          },
          close(socket) {
            void socket.data.upstream.then((upstream) => upstream.end());
          },
        },
      });
      cleanups.push(() => splitter.stop(true));
      const client = await connectTlsPeer(splitter.port, { serverName: "example.test", ca: ca.certPem });
      client.keep = [];
      await client.send("ping");
      await client.waitEnd();
      expect(client.text()).toBe("pong");
      client.socket?.end();
      expect((await relay.nextEnded()).servername).toBe("example.test");
    });

    test("plain text to the TLS leg: an error, the relay ends, the next client is served", async () => {
      const target = replyingBackend((text) => (text === "ping" ? "pong" : ""));
      const relay = await relayTo(layer, target.port, serverTls());
      const plain = await connectPeer("127.0.0.1", relay.port);
      // Five bytes that look like a TLS record header, then text.
      await plain.send("\x16\x03\x01\x00\x20GET / HTTP/1.1\r\nHost: example.test\r\n\r\n");
      await plain.waitClosed();
      const failed = await relay.nextEnded();
      expect(failed.result).toStartWith("error:");
      expect(failed.bytesIn).toBe(0);
      const client = await connectTlsPeer(relay.port, { serverName: "example.test", ca: ca.certPem });
      client.keep = [];
      await client.send("ping");
      await client.waitEnd();
      expect(client.text()).toBe("pong");
      client.socket?.end();
      expect((await relay.nextEnded()).result).toBe("done");
    });

    test("a client that rejects the certificate: the relay ends with an error", async () => {
      const target = replyingBackend(() => "");
      const relay = await relayTo(layer, target.port, serverTls());
      // The client trusts another CA: it aborts the handshake with an alert.
      await expect(connectTlsPeer(relay.port, { serverName: "example.test", ca: otherCa.certPem })).rejects.toThrow();
      expect((await relay.nextEnded()).result).toStartWith("error:");
    });
  });
}

describe("termination under backpressure", () => {
  for (const layer of layers) {
    test(`${layer} sockets: a client that does not read holds the relay; the forwarder's memory stays flat; nothing is lost`, async () => {
      const total = 64 * MiB;
      const down = randomBytes(total);
      let far: Peer | undefined;
      const target = backend((peer) => {
        far = peer;
        void peer.send(down, true);
      });
      const child = Bun.spawn(["bun", `${import.meta.dir}/helpers/tls-relay-main.ts`, layer, String(target.port), leaf.certFile, leaf.keyFile], {
        stdout: "pipe",
        stderr: "inherit",
        env: { ...process.env, PATH: `${import.meta.dir}/../node_modules/.bin:${process.env.PATH}` },
      });
      cleanups.push(() => child.kill());
      const reader = child.stdout.getReader();
      const first = new TextDecoder().decode((await reader.read()).value);
      const { port } = JSON.parse(first.split("\n")[0]!) as { port: number };
      const rssKiB = () => Number(/^VmRSS:\s+(\d+)/m.exec(require("node:fs").readFileSync(`/proc/${child.pid}/status`, "utf8"))?.[1]);
      const client = await connectTlsPeer(port, { serverName: "example.test", ca: ca.certPem });
      client.socket!.pause();
      const before = rssKiB();
      // Wait until the backend stalls: what it got rid of stops growing.
      let sent = -1;
      for (let i = 0; i < 100; i++) {
        await Bun.sleep(100);
        const now = far?.sent ?? 0;
        if (now === sent && now > 0) break;
        sent = now;
      }
      const during = rssKiB();
      expect(sent).toBeGreaterThan(0);
      // The kernel buffers on the way hold a few MiB each; the forwarder holds a bounded amount.
      expect(sent).toBeLessThan(total / 2);
      expect(during - before).toBeLessThan(24 * 1024);
      client.socket!.resume();
      await client.waitEnd(60_000);
      expect(client.received).toBe(total);
      expect(client.digest()).toBe(sha256(down));
      client.socket?.end();
    }, 90_000);
  }
});

describe("origination", () => {
  function tlsTo(overrides: Partial<TlsClientOptions> = {}): TlsClientOptions {
    return { serverName: "backend.test", ca: ca.certPem, verify: true, ...overrides };
  }

  function tlsBackend(onConnection: (peer: Peer) => void, certificate = backendCert): Backend & { handshakes: number } {
    const started = startTlsBackend(certificate, onConnection);
    cleanups.push(() => started.stop());
    return started;
  }

  const echo = (peer: Peer) => {
    peer.keep = [];
    peer.onData = (p, chunk) => void p.socket?.write(chunk);
    peer.onEnd = (p) => p.socket?.shutdown();
  };

  async function exchange(relay: TlsRelay, text: string): Promise<string> {
    const client = await connectPeer("127.0.0.1", relay.port);
    client.keep = [];
    await client.send(text, true);
    await client.waitEnd();
    client.socket?.end();
    return client.text();
  }

  for (const layer of layers) {
    test(`${layer} client side: verified with the test CA, data flows both ways`, async () => {
      const target = tlsBackend(echo);
      const relay = await relayTo(layer, target.port, undefined, tlsTo());
      expect(await exchange(relay, "hello over TLS")).toBe("hello over TLS");
      expect((await relay.nextEnded()).result).toBe("done");
    });
  }

  test("a serverName the certificate does not carry: connectError, the backend gets nothing", async () => {
    const target = tlsBackend(echo);
    const relay = await relayTo("bun", target.port, undefined, tlsTo({ serverName: "wrong.test" }));
    expect(await exchange(relay, "secret")).toBe("");
    expect((await relay.nextEnded()).result).toBe("refused");
    expect(target.connections.every((peer) => peer.received === 0)).toBe(true);
  });

  test("a certificate from a CA not trusted (Bun's bundled CAs, or another CA): connectError", async () => {
    const target = tlsBackend(echo, stranger);
    const system = await relayTo("bun", target.port, undefined, tlsTo({ ca: undefined }));
    expect(await exchange(system, "secret")).toBe("");
    expect((await system.nextEnded()).result).toBe("refused");
    const wrongCa = await relayTo("bun", target.port, undefined, tlsTo());
    expect(await exchange(wrongCa, "secret")).toBe("");
    expect((await wrongCa.nextEnded()).result).toBe("refused");
    expect(target.handshakes).toBe(0);
  });

  test("verify off: an untrusted certificate with another name still carries data", async () => {
    const target = tlsBackend(echo, stranger);
    const relay = await relayTo("bun", target.port, undefined, { serverName: "wrong.test", ca: undefined, verify: false });
    expect(await exchange(relay, "anything goes")).toBe("anything goes");
    expect((await relay.nextEnded()).result).toBe("done");
  });

  test("a backend that is not a TLS server, and one that hangs up: connectError", async () => {
    const plain = startBackend((peer) => void peer.send("HTTP/1.1 400 Bad Request\r\n\r\n"));
    const hangup = startBackend((peer) => {
      peer.onData = (p) => p.socket?.end();
    });
    cleanups.push(() => plain.stop(), () => hangup.stop());
    for (const target of [plain, hangup]) {
      const relay = await relayTo("bun", target.port, undefined, tlsTo({ verify: false }));
      expect(await exchange(relay, "secret")).toBe("");
      expect((await relay.nextEnded()).result).toBe("refused");
    }
  });

  test("16 MiB each way, hashed, and the backend's half-close passes (the client still sends after it)", async () => {
    const up = randomBytes(16 * MiB);
    const down = randomBytes(16 * MiB);
    const target = tlsBackend((peer) => void peer.send(down, true));
    const relay = await relayTo("direct", target.port, undefined, tlsTo());
    const client = await connectPeer("127.0.0.1", relay.port);
    const sending = client.send(up);
    const far = await target.nextConnection();
    // The backend's FIN (after all it sent) reaches the client while the client is still sending.
    await client.waitEnd(30_000);
    expect(client.sawEnd).toBe(true);
    expect(client.received).toBe(down.length);
    expect(client.digest()).toBe(sha256(down));
    await sending;
    await client.send("and a little more", true);
    await far.waitEnd(30_000);
    expect(far.received).toBe(up.length + "and a little more".length);
    const expected = new Uint8Array(far.received);
    expected.set(up, 0);
    expected.set(new TextEncoder().encode("and a little more"), up.length);
    expect(far.digest()).toBe(sha256(expected));
    expect(await relay.nextEnded()).toMatchObject({ result: "done", bytesIn: far.received, bytesOut: down.length });
  });

  test("openssl s_server as the backend (-rev answers each line reversed)", async () => {
    const port = freePort();
    const server = Bun.spawn(["openssl", "s_server", "-accept", `127.0.0.1:${port}`, "-cert", backendCert.certFile, "-key", backendCert.keyFile, "-rev", "-naccept", "1", "-quiet"], {
      stdout: "ignore",
      stderr: "ignore",
    });
    cleanups.push(() => server.kill());
    const relay = await relayTo("bun", port, undefined, tlsTo());
    let client: Peer | undefined;
    // s_server needs a moment to listen: until it does, the relay's connect to it is refused and the
    // client closed with nothing, so try again (a refused connect does not use up s_server's one accept).
    for (let i = 0; i < 100 && !(client?.text().includes("\n") ?? false); i++) {
      await Bun.sleep(50);
      client = await connectPeer("127.0.0.1", relay.port).catch(() => undefined);
      if (client === undefined) continue;
      client.keep = [];
      await client.send("hello\n");
      await withTimeout(
        (async () => {
          while (!client!.text().includes("\n") && !client!.closed) await Bun.sleep(10);
        })(),
        10_000,
        "the reversed line or a close",
      );
    }
    expect(client!.text()).toBe("olleh\n");
    client!.socket?.end();
  });

  test("a handshake given up on (the connect timeout): the TLS leg is reset, no late open", async () => {
    // Accepts TCP, never answers the ClientHello.
    let accepted = 0;
    let closed = 0;
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: () => void accepted++, data() {}, close: () => void closed++ } });
    cleanups.push(() => silent.stop(true));
    const layer = new SocketLayer();
    const events: string[] = [];
    const handlers = {
      open: () => void events.push("open"),
      connectError: () => void events.push("connectError"),
      data() {},
      drain() {},
      end() {},
      error() {},
      close: () => void events.push("close"),
    };
    const target: DialTarget = { backend: { name: "silent" } as DialTarget["backend"], address: "127.0.0.1", port: silent.port, unix: undefined, localAddress: undefined, tls: tlsTo() };
    const connecting = layer.connect(target, {}, handlers);
    expect(connecting).toBeInstanceOf(TlsLeg);
    // No descriptor: the relay can never hand a TLS leg to the splice worker.
    expect((connecting as { fd?: unknown }).fd).toBeUndefined();
    await Bun.sleep(200);
    expect(accepted).toBe(1);
    (connecting as StreamSocket<object>).terminate();
    await withTimeout(
      (async () => {
        while (closed === 0) await Bun.sleep(10);
      })(),
      5000,
      "the silent server to see the reset",
    );
    await Bun.sleep(100);
    expect(events).toEqual(["close"]);
  });

  test("connectStream (the UDP-to-TCP dial) opens a TLS target after its handshake", async () => {
    const target = tlsBackend(echo);
    const events: string[] = [];
    const opened = new Promise<StreamSocket<string>>((resolve, reject) => {
      const dial: DialTarget = { backend: { name: "tls" } as DialTarget["backend"], address: "127.0.0.1", port: target.port, unix: undefined, localAddress: undefined, tls: tlsTo() };
      const handlers = {
        open: (socket: StreamSocket<string>) => resolve(socket),
        connectError: (_socket: StreamSocket<string>, error: Error) => reject(error),
        data: (_socket: StreamSocket<string>, chunk: Uint8Array) => void events.push(new TextDecoder().decode(chunk)),
        drain() {},
        end: () => void events.push("end"),
        error() {},
        close: () => void events.push("close"),
      };
      expect(connectStream(dial, "session", handlers as unknown as Parameters<typeof connectStream<string>>[2], false)).toBe(true);
    });
    const socket = await opened;
    expect(socket.data).toBe("session");
    expect(socket.write(new TextEncoder().encode("datagram"))).toBe(8);
    await withTimeout(
      (async () => {
        while (events.length === 0) await Bun.sleep(5);
      })(),
      5000,
      "the echo",
    );
    expect(events).toEqual(["datagram"]);
    socket.end();
    expect(events).toEqual(["datagram", "close"]);
  });

  test("cleartext first (a PROXY header read before TLS), then the handshake on the same connection", async () => {
    const backendTls = loadServerTls(backendCert.certFile, backendCert.keyFile);
    if (!backendTls.ok) throw new Error(backendTls.reason);
    const headers: string[] = [];
    // The backend reads a line in clear, then terminates TLS on what follows (oi's own terminateTls) and echoes.
    const echoLeg = {
      data: (leg: StreamSocket<unknown>, chunk: Uint8Array) => void leg.write(chunk),
      drain() {},
      end: (leg: StreamSocket<unknown>) => leg.shutdown(),
      error() {},
      close() {},
    };
    const server = Bun.listen<unknown>({
      hostname: "127.0.0.1",
      port: 0,
      allowHalfOpen: true,
      socket: {
        binaryType: "uint8array",
        data(socket, chunk) {
          if (isTlsRaw(socket as StreamSocket<unknown>)) return;
          const newline = chunk.indexOf(0x0a);
          headers.push(new TextDecoder().decode(chunk.subarray(0, newline + 1)));
          const leg = terminateTls(socket as StreamSocket<unknown>, chunk.subarray(newline + 1), backendTls.value, echoLeg, undefined);
          if (typeof leg === "string") throw new Error(leg);
        },
        drain() {},
        end() {},
        error() {},
        close() {},
      },
    });
    cleanups.push(() => server.stop(true));
    const header = new TextEncoder().encode("PROXY TCP4 192.0.2.1 127.0.0.1 40000 443\r\n");
    const dial = (tls: TlsClientOptions, handlers: object) =>
      new SocketLayer().connect(
        { backend: { name: "proxied" } as DialTarget["backend"], address: "127.0.0.1", port: server.port, unix: undefined, localAddress: undefined, tls },
        "data",
        handlers as never,
        header,
      );
    const events: string[] = [];
    const opened = new Promise<StreamSocket<string>>((resolve, reject) => {
      dial(tlsTo(), {
        open: resolve,
        connectError: (_socket: unknown, error: Error) => reject(error),
        data: (_socket: unknown, chunk: Uint8Array) => void events.push(new TextDecoder().decode(chunk)),
        drain() {},
        end: () => void events.push("end"),
        error() {},
        close() {},
      });
    });
    const socket = await opened;
    socket.write(new TextEncoder().encode("inside TLS"));
    socket.shutdown();
    await withTimeout(
      (async () => {
        while (!events.includes("end")) await Bun.sleep(5);
      })(),
      5000,
      "the echo",
    );
    expect(headers).toEqual(["PROXY TCP4 192.0.2.1 127.0.0.1 40000 443\r\n"]);
    expect(events).toEqual(["inside TLS", "end"]);
    socket.end();
    // Verification still decides: a wrong name after the header is a connectError.
    const refused = await new Promise<string>((resolve) => {
      dial(tlsTo({ serverName: "wrong.test" }), {
        open: () => resolve("open"),
        connectError: (_socket: unknown, error: Error & { code?: string }) => resolve(`connectError ${error.code}`),
        data() {},
        drain() {},
        end() {},
        error() {},
        close() {},
      });
    });
    expect(refused).toBe("connectError ERR_TLS_CERT_ALTNAME_INVALID");
  });

  test("a CA bundle file loaded for tls-ca verifies like the PEM text", async () => {
    const bundle = loadCaBundle(ca.certFile);
    if (!bundle.ok) throw new Error(bundle.reason);
    const target = tlsBackend(echo);
    const relay = await relayTo("bun", target.port, undefined, tlsTo({ ca: bundle.value }));
    expect(await exchange(relay, "bundled")).toBe("bundled");
  });
});
