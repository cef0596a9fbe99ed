/**
 * TLS termination and origination through a real oi process, with real
 * clients and servers: curl and openssl s_client see oi's certificate (the
 * one its rule names, chosen by SNI among several on one bind), a plain
 * backend gets the plaintext; ALPN is agreed only when the rule lists it;
 * a reload reads a rotated certificate; oi speaks TLS to nginx, verifying
 * it against a CA and a name, or not when told; termination and
 * origination together re-encrypt.
 */
import { describe, expect, test } from "bun:test";
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { makeTestCa } from "./helpers/certs.ts";
import { backend, cleanUpAfterEachTest, oi, oiOnFile, onCleanup } from "./helpers/harness.ts";
import { tempDir, writeTempFile } from "./helpers/oi-process.ts";
import { freePort, randomBytes, sha256 } from "./helpers/peers.ts";
import { curl, missingTools, siteBody, startNginx, testName, tlsProbe } from "./helpers/servers.ts";
import { tlsTalk } from "./helpers/tls.ts";

cleanUpAfterEachTest();

const withoutTools = missingTools(["nginx", "openssl", "curl"]);

/** A plain HTTP backend answering `backend=NAME` and the request's Host. */
function plainWeb(name: string): { port: number } {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (request) => new Response(`backend=${name} host=${request.headers.get("host")}\n`) });
  onCleanup(() => server.stop(true));
  return { port: server.port ?? 0 };
}

describe("termination", () => {
  test.skipIf(withoutTools !== undefined)(testName("clients see the certificate of the rule their SNI chose; passthrough and termination share the bind", withoutTools), async () => {
    const ours = makeTestCa("oi's CA");
    const t = ours.issue(["t.test"]);
    const u = ours.issue(["u.test", "*.u.test"]);
    const web = plainWeb("plain");
    const nginx = await startNginx({ tls: [{ id: "a", names: ["a.test"] }] });
    const port = freePort();
    await oi(
      [
        `127.0.0.1 ${port} 127.0.0.1 ${web.port} [sni=t.test,tls-cert=${t.certFile},tls-key=${t.keyFile}]`,
        `127.0.0.1 ${port} 127.0.0.1 ${web.port} [sni=*.u.test|u.test,tls-cert=${u.certFile},tls-key=${u.keyFile}]`,
        `127.0.0.1 ${port} 127.0.0.1 ${nginx.ports.a} [sni=a.test]`,
        "",
      ].join("\n"),
    );
    // Terminated: curl verifies oi's certificate for the name, the plain backend answers.
    expect((await curl("t.test", port, { ca: ours.certFile })).body).toBe(`backend=plain host=t.test:${port}\n`);
    expect((await curl("x.u.test", port, { ca: ours.certFile })).body).toBe(`backend=plain host=x.u.test:${port}\n`);
    const probe = await tlsProbe(port, { servername: "u.test", ca: ours.certFile, send: `GET / HTTP/1.1\r\nHost: u.test\r\nConnection: close\r\n\r\n` });
    expect({ cn: probe.subjectCN, verified: probe.verified }).toEqual({ cn: "u.test", verified: true });
    // Passed through on the same port: nginx's own certificate, from nginx's CA.
    expect((await curl("a.test", port, { ca: nginx.ca.certFile })).body).toBe(siteBody("a"));
    expect((await curl("a.test", port, { ca: ours.certFile })).code).toBe(60);
  });

  test.skipIf(withoutTools !== undefined)(testName("bytes intact both ways through a terminated leg; half-close; ALPN only when listed", withoutTools), async () => {
    const ca = makeTestCa();
    const leaf = ca.issue(["t.test"]);
    const down = randomBytes(4 * 1024 * 1024);
    const seen: string[] = [];
    const echo = backend((peer) => {
      peer.onEnd = () => {
        seen.push(peer.digest());
        void peer.send(down, true);
      };
    });
    const [plain, listed] = [freePort(), freePort()];
    await oi(
      [
        `127.0.0.1 ${plain} 127.0.0.1 ${echo.port} [tls-cert=${leaf.certFile},tls-key=${leaf.keyFile}]`,
        `127.0.0.1 ${listed} 127.0.0.1 ${echo.port} [tls-cert=${leaf.certFile},tls-key=${leaf.keyFile},tls-alpn=http/1.1]`,
        "",
      ].join("\n"),
    );
    const up = randomBytes(3 * 1024 * 1024);
    // Bun's TLS client: the bytes go up, its FIN after them (a half-close), and the backend's whole reply still comes down.
    const bytes = await new Promise<Uint8Array>((resolve, reject) => {
      const chunks: Uint8Array[] = [];
      void Bun.connect({
        hostname: "127.0.0.1",
        port: plain,
        tls: { serverName: "t.test", ca: ca.certPem },
        socket: {
          handshake(socket) {
            let offset = 0;
            const pump = () => {
              while (offset < up.length) {
                const written = socket.write(up.subarray(offset, offset + 65536));
                if (written <= 0) return;
                offset += written;
              }
              socket.shutdown();
            };
            (socket as unknown as { pump: () => void }).pump = pump;
            pump();
          },
          drain(socket) {
            (socket as unknown as { pump?: () => void }).pump?.();
          },
          data(_socket, chunk) {
            chunks.push(new Uint8Array(chunk));
          },
          close() {
            resolve(Buffer.concat(chunks));
          },
          error(_socket, error) {
            reject(error);
          },
        },
      });
    });
    expect(seen.at(-1)).toBe(sha256(up));
    expect(sha256(bytes)).toBe(sha256(down));

    const offered = { alpn: ["h2", "http/1.1"], hangUp: true };
    expect((await tlsTalk(plain, "t.test", ca.certPem, offered)).alpn).toBe(false);
    expect((await tlsTalk(listed, "t.test", ca.certPem, offered)).alpn).toBe("http/1.1");
  });

  test.skipIf(withoutTools !== undefined)(testName("a reload reads the certificate again: a rotated one is served without a restart", withoutTools), async () => {
    const ca = makeTestCa();
    const first = ca.issue(["t.test"], { file: "first" });
    const second = ca.issue(["t.test", "rotated.t.test"], { file: "second" });
    const dir = tempDir();
    const [certFile, keyFile] = [join(dir, "t.pem"), join(dir, "t.key")];
    copyFileSync(first.certFile, certFile);
    copyFileSync(first.keyFile, keyFile);
    const web = plainWeb("plain");
    const port = freePort();
    const configPath = writeTempFile("oi.conf", `127.0.0.1 ${port} 127.0.0.1 ${web.port} [tls-cert=${certFile},tls-key=${keyFile}]\n`);
    const process = await oiOnFile(configPath);
    expect((await curl("rotated.t.test", port, { ca: ca.certFile })).code).toBe(60);
    copyFileSync(second.certFile, certFile);
    copyFileSync(second.keyFile, keyFile);
    process.signal("SIGHUP");
    await process.stdout.waitFor("reloaded:", 5000);
    expect((await curl("rotated.t.test", port, { ca: ca.certFile })).body).toBe(`backend=plain host=rotated.t.test:${port}\n`);
    // A key that no longer matches its certificate: the reload is refused with the line, the running certificate stays.
    copyFileSync(first.keyFile, keyFile);
    process.signal("SIGHUP");
    await process.stderr.waitFor(/oi\.conf:1: tls-key .* does not match tls-cert/, 5000);
    expect((await curl("rotated.t.test", port, { ca: ca.certFile })).code).toBe(0);
  });

  test("a client that is not speaking TLS, or fails its handshake, is logged with the reason; the next is served", async () => {
    const ca = makeTestCa();
    const leaf = ca.issue(["t.test"]);
    const web = plainWeb("plain");
    const port = freePort();
    const process = await oi(`127.0.0.1 ${port} 127.0.0.1 ${web.port} [tls-cert=${leaf.certFile},tls-key=${leaf.keyFile}]\n`, ["-v"]);
    const plainHttp = await fetch(`http://127.0.0.1:${port}/`).catch((error: unknown) => error);
    expect(plainHttp).toBeInstanceOf(Error);
    await process.stdout.waitFor(/error: TLS handshake failed/, 3000);
    const other = makeTestCa("another CA");
    await expect(tlsTalk(port, "t.test", other.certPem, { hangUp: true })).rejects.toThrow();
    expect(await tlsTalk(port, "t.test", ca.certPem, { hangUp: true })).toMatchObject({ subject: "t.test" });
  });
});

describe("origination", () => {
  test.skipIf(withoutTools !== undefined)(testName("oi verifies nginx's certificate against tls-ca for tls-servername; a wrong name or CA is refused; tls-verify=off is said explicitly", withoutTools), async () => {
    const nginx = await startNginx({ tls: [{ id: "a", names: ["a.test"] }] });
    const other = makeTestCa("another CA");
    const [good, wrongName, wrongCa, unverified] = [freePort(), freePort(), freePort(), freePort()];
    const process = await oi(
      [
        `127.0.0.1 ${good} 127.0.0.1 ${nginx.ports.a} [tls-connect=on,tls-ca=${nginx.ca.certFile},tls-servername=a.test]`,
        `127.0.0.1 ${wrongName} 127.0.0.1 ${nginx.ports.a} [tls-connect=on,tls-ca=${nginx.ca.certFile},tls-servername=b.test]`,
        `127.0.0.1 ${wrongCa} 127.0.0.1 ${nginx.ports.a} [tls-connect=on,tls-ca=${other.certFile},tls-servername=a.test]`,
        `127.0.0.1 ${unverified} 127.0.0.1 ${nginx.ports.a} [tls-connect=on,tls-verify=off]`,
        "",
      ].join("\n"),
      ["-v"],
    );
    // The client speaks plain HTTP to oi; nginx sees HTTPS with the name oi sent.
    expect((await curl("a.test", good, { path: "/info" })).body).toBe(`backend=a sni=a.test host=a.test scheme=https\n`);
    expect((await curl("a.test", wrongName)).status).toBe(0);
    await process.stdout.waitFor(/error: backend TLS ERR_TLS_CERT_ALTNAME_INVALID/, 3000);
    expect((await curl("a.test", wrongCa)).status).toBe(0);
    await process.stdout.waitFor(/error: backend TLS UNABLE_TO_VERIFY_LEAF_SIGNATURE/, 3000);
    expect((await curl("a.test", unverified)).body).toBe(siteBody("a"));
  });

  test.skipIf(withoutTools !== undefined)(testName("termination and origination together re-encrypt, with the client's request intact", withoutTools), async () => {
    const nginx = await startNginx({ tls: [{ id: "a", names: ["a.test"] }] });
    const ours = makeTestCa("oi's CA");
    const front = ours.issue(["front.test"]);
    const body = randomBytes(2 * 1024 * 1024);
    await Bun.write(join(nginx.root("a"), "big.bin"), body);
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1 ${nginx.ports.a} [tls-cert=${front.certFile},tls-key=${front.keyFile},tls-connect=on,tls-ca=${nginx.ca.certFile},tls-servername=a.test]\n`);
    const out = join(tempDir(), "big.out");
    const fetched = await curl("front.test", port, { ca: ours.certFile, path: "/big.bin", args: ["-o", out] });
    expect(fetched.status).toBe(200);
    expect(sha256(new Uint8Array(await Bun.file(out).arrayBuffer()))).toBe(sha256(body));
  });
});
