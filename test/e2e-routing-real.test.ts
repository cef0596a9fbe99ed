/**
 * Routing by first bytes with real clients and servers in front of and
 * behind oi: openssl s_client and curl by SNI to nginx's TLS sites (the
 * certificate the client sees is the backend's: oi terminates nothing),
 * curl by Host to nginx's HTTP sites, and sslh's usual set-up on one port:
 * the ssh client (which speaks first) to a private sshd beside an HTTP
 * backend, with ssh-keyscan (which waits for the server) reaching sshd as
 * the silent rule or as the default.
 */
import { describe, expect, test } from "bun:test";
import { cleanUpAfterEachTest, oi } from "./helpers/harness.ts";
import { freePort } from "./helpers/peers.ts";
import { curl, missingTools, siteBody, sshAttempt, sshKeyscan, startNginx, startSshd, testName, tlsProbe } from "./helpers/servers.ts";

cleanUpAfterEachTest();

const withoutNginx = missingTools(["nginx", "openssl", "curl"]);
const withoutSsh = missingTools(["nginx", "curl", "sshd", "ssh", "ssh-keygen", "ssh-keyscan"]);

describe("SNI routing with openssl s_client and curl to nginx", () => {
  test.skipIf(withoutNginx !== undefined)(testName("each name reaches its own nginx site and its certificate; the default takes the rest", withoutNginx), async () => {
    const nginx = await startNginx({
      tls: [
        { id: "a", names: ["a.test"] },
        { id: "b", names: ["*.b.test", "b.test"] },
        { id: "other", names: ["other.test"] },
      ],
    });
    const port = freePort();
    await oi(
      [
        `127.0.0.1 ${port} 127.0.0.1 ${nginx.ports.a} [sni=a.test]`,
        `127.0.0.1 ${port} 127.0.0.1 ${nginx.ports.b} [sni=*.b.test|b.test]`,
        `127.0.0.1 ${port} 127.0.0.1 ${nginx.ports.other}`,
        "",
      ].join("\n"),
    );
    for (const [name, id, cn] of [
      ["a.test", "a", "a.test"],
      ["www.b.test", "b", "*.b.test"],
      ["b.test", "b", "*.b.test"],
      ["nobody.test", "other", "other.test"],
    ] as const) {
      const probe = await tlsProbe(port, { servername: name });
      expect({ name, connected: probe.connected, cn: probe.subjectCN, protocol: probe.protocol }).toEqual({ name, connected: true, cn, protocol: "TLSv1.3" });
      expect(probe.response).toEndWith(siteBody(id));
    }
    // curl verifies the backend's certificate for the name it asked: oi passed the handshake through untouched.
    for (const [name, id] of [["a.test", "a"], ["x.b.test", "b"]] as const) {
      const answer = await curl(name, port, { ca: nginx.ca.certFile, path: "/info" });
      expect({ code: answer.code, body: answer.body }).toEqual({ code: 0, body: `backend=${id} sni=${name} host=${name} scheme=https\n` });
    }
    // A TLS 1.2 ClientHello is routed the same way.
    const twelve = await curl("a.test", port, { ca: nginx.ca.certFile, args: ["--tlsv1.2", "--tls-max", "1.2"] });
    expect(twelve.body).toBe(siteBody("a"));
  });
});

describe("Host routing with curl to nginx", () => {
  test.skipIf(withoutNginx !== undefined)(testName("each Host reaches its site; a request for another host is refused when there is no default", withoutNginx), async () => {
    const nginx = await startNginx({ http: [{ id: "www", names: ["www.a.test"] }, { id: "api", names: ["api.a.test"] }] });
    const port = freePort();
    const process = await oi(
      [`127.0.0.1 ${port} 127.0.0.1 ${nginx.ports.www} [host=www.a.test]`, `127.0.0.1 ${port} 127.0.0.1 ${nginx.ports.api} [host=*.api.a.test|api.a.test]`, ""].join(
        "\n",
      ),
      ["-v"],
    );
    expect((await curl("www.a.test", port)).body).toBe(siteBody("www"));
    expect((await curl("api.a.test", port, { path: "/info" })).body).toBe("backend=api sni= host=api.a.test scheme=http\n");
    expect((await curl("v2.api.a.test", port)).body).toBe(siteBody("api"));
    const other = await curl("other.test", port);
    expect(other.status).toBe(0);
    await process.stdout.waitFor(/error: no match/, 3000);
  });
});

describe("one port for SSH and HTTP (sslh's job)", () => {
  test.skipIf(withoutSsh !== undefined)(testName("ssh reaches sshd by its banner, curl the web server; ssh-keyscan, which waits, reaches sshd as the silent rule", withoutSsh), async () => {
    const sshd = await startSshd();
    const nginx = await startNginx({ http: [{ id: "web", names: ["web.test"] }] });
    const port = freePort();
    await oi(
      [
        `127.0.0.1 ${port} 127.0.0.1 ${sshd.port} [protocol=ssh|silent,peek-timeout=1]`,
        `127.0.0.1 ${port} 127.0.0.1 ${nginx.ports.web} [protocol=http]`,
        "",
      ].join("\n"),
    );
    const ssh = await sshAttempt(port);
    expect(ssh.permissionDenied).toBe(true);
    expect((await curl("web.test", port)).body).toBe(siteBody("web"));
    const scan = await sshKeyscan(port);
    expect(scan.key).toBe(sshd.hostKey);
  });

  test.skipIf(withoutSsh !== undefined)(testName("sshd as the bind's default: ssh-keyscan reaches it once the peek times out", withoutSsh), async () => {
    const sshd = await startSshd();
    const nginx = await startNginx({ http: [{ id: "web", names: ["web.test"] }] });
    const port = freePort();
    await oi([`127.0.0.1 ${port} 127.0.0.1 ${nginx.ports.web} [protocol=http,peek-timeout=1]`, `127.0.0.1 ${port} 127.0.0.1 ${sshd.port}`, ""].join("\n"));
    const scan = await sshKeyscan(port);
    expect(scan.key).toBe(sshd.hostKey);
    expect((await sshAttempt(port)).permissionDenied).toBe(true);
    expect((await curl("web.test", port)).body).toBe(siteBody("web"));
  });
});
