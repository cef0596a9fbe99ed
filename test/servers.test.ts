/**
 * The real servers and clients of test/helpers/servers.ts, checked against
 * each other with no oi in between: nginx answers each TLS name with its own
 * certificate and body (curl and openssl s_client), each plain-HTTP Host with
 * its own body; sshd gives ssh-keyscan its host key and an ssh client a
 * "Permission denied". The routing tests build on these helpers, so a
 * failure here says the tools, not oi, broke.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { makeTestCa } from "./helpers/certs.ts";
import { cleanUpAfterEachTest } from "./helpers/harness.ts";
import { randomBytes, sha256 } from "./helpers/peers.ts";
import { curl, missingTools, siteBody, sshAttempt, sshKeyscan, startNginx, startSshd, testName, tlsProbe } from "./helpers/servers.ts";

cleanUpAfterEachTest();

const withoutNginx = missingTools(["nginx", "openssl", "curl"]);
const withoutSshd = missingTools(["sshd", "ssh", "ssh-keygen", "ssh-keyscan"]);

const SITES = [
  { id: "a", names: ["a.test"] },
  { id: "b", names: ["*.b.test", "c.test"] },
];

describe("nginx", () => {
  test.skipIf(withoutNginx !== undefined)(testName("answers each TLS name with its own certificate and body (curl)", withoutNginx), async () => {
    const nginx = await startNginx({ tls: SITES });
    for (const [name, id] of [["a.test", "a"], ["x.b.test", "b"], ["c.test", "b"]] as const) {
      const answer = await curl(name, nginx.tlsPort, { ca: nginx.ca.certFile });
      expect({ name, code: answer.code, status: answer.status, body: answer.body }).toEqual({ name, code: 0, status: 200, body: siteBody(id) });
      const info = await curl(name, nginx.tlsPort, { ca: nginx.ca.certFile, path: "/info" });
      expect(info.body).toBe(`backend=${id} sni=${name} host=${name} scheme=https\n`);
    }
    // A name no block serves is refused in the handshake, not answered by a default site.
    const unknown = await curl("d.test", nginx.tlsPort, { ca: nginx.ca.certFile });
    expect(unknown.code).not.toBe(0);
    expect(unknown.status).toBe(0);
    // A client trusting another authority refuses these certificates (curl: 60, peer certificate not verified).
    const untrusted = await curl("a.test", nginx.tlsPort, { ca: makeTestCa("another CA").certFile });
    expect(untrusted.code).toBe(60);
  });

  test.skipIf(withoutNginx !== undefined)(testName("presents each name's certificate to openssl s_client and answers over it", withoutNginx), async () => {
    const nginx = await startNginx({ tls: SITES });
    for (const [name, cn, id] of [["a.test", "a.test", "a"], ["c.test", "*.b.test", "b"]] as const) {
      const probe = await tlsProbe(nginx.tlsPort, { servername: name, ca: nginx.ca.certFile });
      expect({ name, connected: probe.connected, cn: probe.subjectCN, verified: probe.verified, protocol: probe.protocol }).toEqual({
        name, connected: true, cn, verified: true, protocol: "TLSv1.3",
      });
      expect(probe.response).toStartWith("HTTP/1.1 200 OK\r\n");
      expect(probe.response).toEndWith(`\r\n\r\n${siteBody(id)}`);
    }
    const noName = await tlsProbe(nginx.tlsPort, { servername: null });
    expect(noName.connected).toBe(false);
  });

  test.skipIf(withoutNginx !== undefined)(testName("serves each TLS site alone on its own port, whatever the name asked", withoutNginx), async () => {
    const nginx = await startNginx({ tls: SITES });
    // What a router in front sees: port B answers as b (and with b's certificate) even when asked for a.test.
    const probe = await tlsProbe(nginx.ports.b!, { servername: "a.test" });
    expect(probe.subjectCN).toBe("*.b.test");
    expect(probe.response).toEndWith(siteBody("b"));
    const answer = await curl("a.test", nginx.ports.a!, { ca: nginx.ca.certFile });
    expect(answer.body).toBe(siteBody("a"));
    // Other paths come from the site's directory.
    const file = randomBytes(3 << 20);
    writeFileSync(join(nginx.root("a"), "big.bin"), file);
    const big = await curl("a.test", nginx.ports.a!, { ca: nginx.ca.certFile, path: "/big.bin", args: ["-o", join(nginx.dir, "big.out")] });
    expect(big.status).toBe(200);
    expect(sha256(new Uint8Array(await Bun.file(join(nginx.dir, "big.out")).arrayBuffer()))).toBe(sha256(file));
  });

  test.skipIf(withoutNginx !== undefined)(testName("routes plain HTTP by Host", withoutNginx), async () => {
    const nginx = await startNginx({ http: [{ id: "www", names: ["www.a.test"] }, { id: "api", names: ["api.a.test"] }] });
    expect((await curl("www.a.test", nginx.httpPort)).body).toBe(siteBody("www"));
    const api = await curl("api.a.test", nginx.httpPort, { path: "/info" });
    expect(api.body).toBe("backend=api sni= host=api.a.test scheme=http\n");
    const other = await curl("other.test", nginx.httpPort);
    expect({ status: other.status, body: other.body }).toEqual({ status: 404, body: "backend=none\n" });
    expect((await curl("other.test", nginx.ports.api!)).body).toBe(siteBody("api"));
  });
});

describe("sshd", () => {
  test.skipIf(withoutSshd !== undefined)(testName("gives ssh-keyscan its own host key", withoutSshd), async () => {
    const sshd = await startSshd();
    expect(sshd.hostKey).toMatch(/^ssh-ed25519 AAAA\S+$/);
    const scan = await sshKeyscan(sshd.port);
    expect(scan.key).toBe(sshd.hostKey);
    expect(scan.run.stderr).toContain("SSH-2.0-OpenSSH");
    // Two servers, two keys: the comparison can tell them apart.
    const other = await startSshd();
    expect((await sshKeyscan(other.port)).key).not.toBe(sshd.hostKey);
  });

  test.skipIf(withoutSshd !== undefined)(testName("turns an ssh client away with Permission denied after the key exchange", withoutSshd), async () => {
    const sshd = await startSshd();
    const attempt = await sshAttempt(sshd.port);
    expect({ denied: attempt.permissionDenied, timedOut: attempt.timedOut, code: attempt.code }).toEqual({ denied: true, timedOut: false, code: 255 });
    expect(attempt.remoteVersion).toStartWith("OpenSSH_");
    // Nothing listening: no banner, no denial.
    await sshd.stop();
    const refused = await sshAttempt(sshd.port);
    expect({ denied: refused.permissionDenied, version: refused.remoteVersion }).toEqual({ denied: false, version: undefined });
  });
});
