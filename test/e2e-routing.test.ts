/**
 * Several rules on one bind, chosen by what the client sends first: TLS SNI
 * (passed through, never terminated), HTTP Host, the protocol (TLS, HTTP,
 * SSH, silent), the bind's default, and a client no rule takes. Real oi
 * processes, Bun peers on loopback; the real clients and servers (openssl,
 * curl, ssh, nginx, sshd) are in e2e-routing-real.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { makeTestCa } from "./helpers/certs.ts";
import { backend, cleanUpAfterEachTest, greeter, greeting, oi, oiOnFile, until } from "./helpers/harness.ts";
import { writeTempFile } from "./helpers/oi-process.ts";
import { connectPeer, freePort, randomBytes, sha256 } from "./helpers/peers.ts";
import { tlsGreeter, tlsTalk } from "./helpers/tls.ts";

cleanUpAfterEachTest();

const FIXTURES = join(import.meta.dir, "fixtures");
/** A real ClientHello (Chromium's, server name chromium.oi.test) and the same one framed in two records. */
const CHROMIUM_HELLO = new Uint8Array(readFileSync(join(FIXTURES, "client-hello", "chromium.bin")));
const CHROMIUM_HELLO_2_RECORDS = new Uint8Array(readFileSync(join(FIXTURES, "client-hello", "chromium-2-records.bin")));
const CURL_HELLO = new Uint8Array(readFileSync(join(FIXTURES, "client-hello", "curl.bin")));

/** Send `bytes` to 127.0.0.1:`port`, in pieces of `piece` bytes with a pause between, then read what comes back until the far end's FIN (or reset), and close. */
async function sendAndRead(port: number, bytes: Uint8Array, options: { piece?: number; pauseMs?: number; end?: boolean } = {}) {
  const client = await connectPeer("127.0.0.1", port);
  client.keep = [];
  const piece = options.piece ?? bytes.length;
  for (let offset = 0; offset < bytes.length; offset += piece) {
    await client.send(bytes.subarray(offset, offset + piece));
    if (options.pauseMs !== undefined) await Bun.sleep(options.pauseMs);
  }
  if (options.end === true) client.socket?.shutdown();
  await client.waitEnd(15000);
  client.socket?.end();
  return client;
}

describe("sni=: TLS passed through, chosen by the ClientHello's server name", () => {
  test("each name reaches its backend, which presents its own certificate; the default takes other names", async () => {
    const ca = makeTestCa();
    const a = tlsGreeter("backend=a", ca.issue(["a.test"]));
    const b = tlsGreeter("backend=b", ca.issue(["x.b.test", "deep.x.b.test", "b.test"]));
    const longer = tlsGreeter("backend=longer", ca.issue(["y.x.b.test"]));
    const fallback = tlsGreeter("backend=default", ca.issue(["other.test"]));
    const port = freePort();
    await oi(
      [
        `127.0.0.1 ${port} 127.0.0.1 ${a.port} [sni=a.test]`,
        `127.0.0.1 ${port} 127.0.0.1 ${b.port} [sni=*.b.test|b.test]`,
        `127.0.0.1 ${port} 127.0.0.1 ${longer.port} [sni=*.x.b.test]`,
        `127.0.0.1 ${port} 127.0.0.1 ${fallback.port}`,
        "",
      ].join("\n"),
    );
    const talk = (name: string) => tlsTalk(port, name, ca.certPem);
    expect(await talk("a.test")).toMatchObject({ text: "backend=a", subject: "a.test" });
    // Case does not matter; the exact name beats every wildcard.
    expect(await talk("A.TEST")).toMatchObject({ text: "backend=a" });
    expect(await talk("b.test")).toMatchObject({ text: "backend=b", subject: "x.b.test" });
    expect(await talk("x.b.test")).toMatchObject({ text: "backend=b" });
    // The longer wildcard beats the shorter one, at any depth below it.
    expect(await talk("y.x.b.test")).toMatchObject({ text: "backend=longer", subject: "y.x.b.test" });
    await expect(talk("deep.x.b.test")).rejects.toThrow(); // longer's certificate does not name it: proof it went there
    expect(await talk("other.test")).toMatchObject({ text: "backend=default", subject: "other.test" });
  });

  test("the ClientHello and everything after it reach the backend byte for byte, both ways, whole or in pieces", async () => {
    const reply = randomBytes(3 * 1024 * 1024);
    const seen: string[] = [];
    const server = backend((peer) => {
      peer.onEnd = () => {
        seen.push(peer.digest());
        void peer.send(reply, true);
      };
    });
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port} [sni=chromium.oi.test]\n`);
    const payload = randomBytes(8 * 1024 * 1024);
    for (const [hello, piece] of [
      [CHROMIUM_HELLO, undefined],
      [CHROMIUM_HELLO_2_RECORDS, undefined],
      // Trickled a few bytes at a time: reassembled across reads.
      [CHROMIUM_HELLO, 7],
    ] as const) {
      const sent = Buffer.concat([hello, payload]);
      const client = await connectPeer("127.0.0.1", port);
      const step = piece ?? hello.length;
      for (let offset = 0; offset < hello.length; offset += step) {
        await client.send(hello.subarray(offset, offset + step));
        if (piece !== undefined) await Bun.sleep(1);
      }
      await client.send(payload, true);
      await client.waitClosed(20000);
      expect(seen.at(-1)).toBe(sha256(sent));
      expect(client.digest()).toBe(sha256(reply));
    }
    expect(server.connections).toHaveLength(3);
  });

  test("a client no rule takes is reset, logged and counted; the backends never see it", async () => {
    const a = greeter("backend=a");
    const [port, metricsPort] = [freePort(), freePort()];
    const process = await oi(`metrics 127.0.0.1:${metricsPort}\n127.0.0.1 ${port} 127.0.0.1 ${a.port} [sni=a.test]\n`, ["-v"]);
    const other = await sendAndRead(port, CURL_HELLO);
    expect(other.received).toBe(0);
    const garbage = await sendAndRead(port, new TextEncoder().encode("hello there\n"));
    expect(garbage.received).toBe(0);
    expect(a.connections).toHaveLength(0);
    await process.stdout.waitFor(/error: no match/, 3000);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/oi_errors_total\{[^}]*reason="no match"[^}]*\} 2/);
  });
});

describe("host= and protocol=", () => {
  test("HTTP by Host (absolute-form target first), SSH by its banner, TLS, and the default for the rest", async () => {
    const www = greeter("backend=www");
    const api = greeter("backend=api");
    const ssh = greeter("backend=ssh");
    const tls = greeter("backend=tls");
    const fallback = greeter("backend=default");
    const port = freePort();
    await oi(
      [
        `127.0.0.1 ${port} 127.0.0.1 ${www.port} [host=www.example.test]`,
        `127.0.0.1 ${port} 127.0.0.1 ${api.port} [host=*.api.example.test]`,
        `127.0.0.1 ${port} 127.0.0.1 ${ssh.port} [protocol=ssh]`,
        `127.0.0.1 ${port} 127.0.0.1 ${tls.port} [protocol=tls]`,
        `127.0.0.1 ${port} 127.0.0.1 ${fallback.port}`,
        "",
      ].join("\n"),
    );
    const ask = async (text: string | Uint8Array) => (await sendAndRead(port, typeof text === "string" ? new TextEncoder().encode(text) : text)).text();
    expect(await ask("GET / HTTP/1.1\r\nHost: WWW.example.test:8080\r\nAccept: */*\r\n\r\n")).toBe("backend=www");
    expect(await ask("GET http://v1.api.example.test/x HTTP/1.1\r\nHost: www.example.test\r\n\r\n")).toBe("backend=api");
    expect(await ask("GET / HTTP/1.0\r\nHost: nobody.test\r\n\r\n")).toBe("backend=default");
    expect(await ask("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")).toBe("backend=ssh");
    expect(await ask(CURL_HELLO)).toBe("backend=tls");
    expect(await ask("\x00\x01binary\n")).toBe("backend=default");
  });

  test("silent: a client that sends nothing within the peek timeout goes to the protocol=silent rule; one that stalls half way to the default", async () => {
    const silent = greeter("220 mail.example.test ESMTP\r\n");
    const fallback = greeter("backend=default");
    const ssh = greeter("backend=ssh");
    const port = freePort();
    await oi(
      [
        `127.0.0.1 ${port} 127.0.0.1 ${ssh.port} [protocol=ssh]`,
        `127.0.0.1 ${port} 127.0.0.1 ${silent.port} [protocol=silent,peek-timeout=1]`,
        `127.0.0.1 ${port} 127.0.0.1 ${fallback.port}`,
        "",
      ].join("\n"),
    );
    const started = Date.now();
    expect(await greeting(port)).toBe("220 mail.example.test ESMTP\r\n");
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(900);
    expect(waited).toBeLessThan(4000);
    // Half an SSH banner, then nothing: not silent, not SSH.
    expect((await sendAndRead(port, new TextEncoder().encode("SSH-2"))).text()).toBe("backend=default");
  });

  test("a client that half-closes while being peeked at is still forwarded, its FIN passed on", async () => {
    const got: string[] = [];
    const server = backend((peer) => {
      peer.keep = [];
      peer.onEnd = () => {
        got.push(peer.text());
        void peer.send("bye", true);
      };
    });
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1 ${freePort()} [protocol=ssh]\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    const client = await sendAndRead(port, new TextEncoder().encode("SSH"), { end: true });
    expect(got).toEqual(["SSH"]);
    expect(client.text()).toBe("bye");
  });
});

describe("per-rule options and reloads on a shared bind", () => {
  test("access rules and the PROXY header to the backend act per matched rule; accept_proxy is read before the choice", async () => {
    const headers: string[] = [];
    const proxied = backend((peer) => {
      peer.keep = [];
      peer.onData = () => {
        const text = peer.text();
        if (text.includes("\r\n")) {
          headers.push(text.split("\r\n")[0] ?? "");
          void peer.send("proxied", true);
        }
      };
    });
    const open = greeter("backend=open");
    const port = freePort();
    const process = await oi(
      [
        `127.0.0.1 ${port} 127.0.0.1 ${proxied.port} [host=p.test,proxy=v1,accept_proxy]`,
        `127.0.0.1 ${port} 127.0.0.1 ${open.port} [host=open.test,accept_proxy]`,
        `127.0.0.1 ${port} 127.0.0.1 ${open.port} [host=closed.test,accept_proxy]`,
        "deny 10.9.9.9",
        "",
      ].join("\n"),
      ["-v"],
    );
    const proxyHeader = (address: string) => `PROXY TCP4 ${address} 127.0.0.1 5555 ${port}\r\n`;
    const request = (host: string) => `GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
    const ask = async (text: string) => (await sendAndRead(port, new TextEncoder().encode(text))).text();
    expect(await ask(proxyHeader("10.9.9.9") + request("open.test"))).toBe("backend=open");
    // The deny line belongs to the closed.test rule only.
    expect(await ask(proxyHeader("10.9.9.9") + request("closed.test"))).toBe("");
    await process.stdout.waitFor(/10\.9\.9\.9.*denied/, 3000);
    expect(await ask(proxyHeader("10.1.2.3") + request("p.test"))).toBe("proxied");
    // The header oi sends names the client the PROXY header named.
    expect(headers).toEqual([`PROXY TCP4 10.1.2.3 127.0.0.1 5555 ${port}`]);
  });

  test("maxconn counts the connections of its own rule only", async () => {
    const limited = backend();
    const open = backend();
    const port = freePort();
    const process = await oi(
      [`127.0.0.1 ${port} 127.0.0.1 ${limited.port} [protocol=ssh,maxconn=1]`, `127.0.0.1 ${port} 127.0.0.1 ${open.port}`, ""].join("\n"),
      ["-v"],
    );
    const banner = new TextEncoder().encode("SSH-2.0-test\r\n");
    const first = await connectPeer("127.0.0.1", port);
    await first.send(banner);
    await until(() => limited.connections.length === 1, 3000, "the first SSH client at its backend");
    // A second SSH client is over the rule's maxconn: refused.
    const second = await sendAndRead(port, banner);
    expect(second.received).toBe(0);
    await process.stdout.waitFor("refused: connection limit", 3000);
    // The default rule's clients are not counted against it.
    const others = await Promise.all([1, 2, 3].map(() => connectPeer("127.0.0.1", port)));
    await Promise.all(others.map((client) => client.send("GET / HTTP/1.0\r\n\r\n")));
    await until(() => open.connections.length === 3, 3000, "three clients at the default rule's backend");
    expect(limited.connections).toHaveLength(1);
  });

  test("a reload adds and removes rules on a bind without closing it; open connections carry on", async () => {
    const first = backend();
    const second = greeter("backend=second");
    const port = freePort();
    const configPath = writeTempFile("oi.conf", `127.0.0.1 ${port} 127.0.0.1 ${first.port}\n`);
    const process = await oiOnFile(configPath);
    const long = await connectPeer("127.0.0.1", port);
    await until(() => first.connections.length === 1, 3000, "the first backend's connection");

    Bun.write(configPath, `127.0.0.1 ${port} 127.0.0.1 ${first.port}\n127.0.0.1 ${port} 127.0.0.1 ${second.port} [sni=chromium.oi.test]\n`);
    process.signal("SIGHUP");
    await process.stdout.waitFor(/reloaded:/, 5000);
    const routed = await sendAndRead(port, CHROMIUM_HELLO);
    expect(routed.text()).toBe("backend=second");

    // The connection opened before the reload still moves bytes both ways.
    const payload = randomBytes(256 * 1024);
    await long.send(payload);
    await until(() => first.connections[0]!.received === payload.length, 5000, "the payload at the first backend");
    expect(first.connections[0]!.digest()).toBe(sha256(payload));

    Bun.write(configPath, `127.0.0.1 ${port} 127.0.0.1 ${second.port} [sni=chromium.oi.test]\n`);
    process.signal("SIGHUP");
    await process.stdout.waitFor(/reloaded:[\s\S]*reloaded:/, 5000);
    // The default is gone: a client with another name is refused, the named one still served.
    expect((await sendAndRead(port, CURL_HELLO)).received).toBe(0);
    expect((await sendAndRead(port, CHROMIUM_HELLO)).text()).toBe("backend=second");
    expect(long.closed).toBe(false);
  });
});

describe("bounded peeking", () => {
  test("memory held by 500 clients that each send half a ClientHello stays within the 16 KiB bound per client", async () => {
    const server = backend();
    const port = freePort();
    const process = await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port} [sni=chromium.oi.test]\n`);
    const before = process.rssKiB();
    const clients = await Promise.all(Array.from({ length: 500 }, () => connectPeer("127.0.0.1", port)));
    const half = CHROMIUM_HELLO.subarray(0, CHROMIUM_HELLO.length >> 1);
    await Promise.all(clients.map((client) => client.send(half)));
    await Bun.sleep(500);
    const grown = process.rssKiB() - before;
    expect(grown / clients.length).toBeLessThan(16 + 8);
    expect(clients.every((client) => !client.closed)).toBe(true);
    expect(server.connections).toHaveLength(0);
    for (const client of clients) client.socket?.terminate();
  });
});
