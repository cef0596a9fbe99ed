/**
 * Loading certificates, keys and CA bundles for TLS (src/tls/certificates.ts):
 * each kind of bad file gives a reason a config error can carry, a good pair
 * gives one SecureContext, and one config load reads each file once.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkAlpn, loadCaBundle, loadServerTls, readServerFiles, serverTlsOf, TlsFiles } from "../src/tls/certificates.ts";
import { makeTestCa } from "./helpers/certs.ts";
import { tempDir } from "./helpers/oi-process.ts";

const ca = makeTestCa();
const leaf = ca.issue(["example.test", "www.example.test"]);
const other = ca.issue(["other.test"], { keyType: "rsa" });

function openssl(args: string[]): void {
  const result = Bun.spawnSync(["openssl", ...args], { stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(result.stderr.toString());
}

function reasonOf<T>(checked: { ok: true; value: T } | { ok: false; reason: string }): string {
  if (checked.ok) throw new Error("expected a failure");
  return checked.reason;
}

describe("loadServerTls", () => {
  test("a matching pair loads: subject, names, validity, a context, no ALPN by default", () => {
    const loaded = loadServerTls(leaf.certFile, leaf.keyFile);
    if (!loaded.ok) throw new Error(loaded.reason);
    expect(loaded.value.subject).toBe("CN=example.test");
    expect(loaded.value.dnsNames).toEqual(["example.test", "www.example.test"]);
    expect(loaded.value.validTo.getTime()).toBeGreaterThan(Date.now());
    expect(loaded.value.alpn).toEqual([]);
    expect(loaded.value.upgradeOptions.ALPNProtocols).toBeUndefined();
    expect(loaded.value.upgradeOptions.secureContext).toBeDefined();
  });

  test("a chain file (leaf then CA) loads, the leaf checked against the key", () => {
    const chainFile = join(tempDir(), "chain.pem");
    writeFileSync(chainFile, leaf.certPem + ca.certPem);
    const loaded = loadServerTls(chainFile, leaf.keyFile, ["h2", "http/1.1"]);
    if (!loaded.ok) throw new Error(loaded.reason);
    expect(loaded.value.subject).toBe("CN=example.test");
    // Wire format: each name after its length.
    expect([...loaded.value.upgradeOptions.ALPNProtocols!]).toEqual([2, ...Buffer.from("h2"), 8, ...Buffer.from("http/1.1")]);
  });

  test("a missing certificate or key file", () => {
    const missing = join(tempDir(), "nope.pem");
    expect(reasonOf(loadServerTls(missing, leaf.keyFile))).toBe(`tls-cert ${missing}: cannot read (no such file)`);
    expect(reasonOf(loadServerTls(leaf.certFile, missing))).toBe(`tls-key ${missing}: cannot read (no such file)`);
  });

  test("a directory given as a file", () => {
    const dir = tempDir();
    expect(reasonOf(loadServerTls(dir, leaf.keyFile))).toStartWith(`tls-cert ${dir}: cannot read (`);
  });

  test("files that are not PEM", () => {
    const junk = join(tempDir(), "junk.pem");
    writeFileSync(junk, "hello, I am not a certificate\n");
    expect(reasonOf(loadServerTls(junk, leaf.keyFile))).toBe(`tls-cert ${junk}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`);
    expect(reasonOf(loadServerTls(leaf.certFile, junk))).toBe(`tls-key ${junk}: no PEM private key in it (expected -----BEGIN PRIVATE KEY-----)`);
    // A key where the certificate should be, and the other way round.
    expect(reasonOf(loadServerTls(leaf.keyFile, leaf.keyFile))).toContain("no PEM certificate");
    expect(reasonOf(loadServerTls(leaf.certFile, leaf.certFile))).toContain("no PEM private key");
  });

  test("a PEM block whose content is broken", () => {
    const broken = join(tempDir(), "broken.pem");
    writeFileSync(broken, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    expect(reasonOf(loadServerTls(broken, leaf.keyFile))).toStartWith(`tls-cert ${broken}: certificate 1 is not valid (`);
  });

  test("a key that is not the certificate's", () => {
    expect(reasonOf(loadServerTls(leaf.certFile, other.keyFile))).toBe(`tls-key ${other.keyFile} does not match tls-cert ${leaf.certFile} (CN=example.test)`);
    expect(reasonOf(loadServerTls(other.certFile, leaf.keyFile))).toBe(`tls-key ${leaf.keyFile} does not match tls-cert ${other.certFile} (CN=other.test)`);
  });

  test("an encrypted key, PKCS#8 or traditional", () => {
    const dir = tempDir();
    const pkcs8 = join(dir, "pkcs8.key");
    const traditional = join(dir, "traditional.key");
    openssl(["pkey", "-in", leaf.keyFile, "-aes256", "-passout", "pass:secret", "-out", pkcs8]);
    openssl(["rsa", "-in", other.keyFile, "-aes256", "-traditional", "-passout", "pass:secret", "-out", traditional]);
    expect(reasonOf(loadServerTls(leaf.certFile, pkcs8))).toBe(`tls-key ${pkcs8}: the private key is encrypted; oi needs it unencrypted (openssl pkey -in ${pkcs8} -out NEW)`);
    expect(reasonOf(loadServerTls(other.certFile, traditional))).toContain("the private key is encrypted");
  });

  test("ALPN lists that cannot be offered", () => {
    expect(checkAlpn(["h2", "http/1.1"])).toBeUndefined();
    expect(checkAlpn([""])).toBe("an ALPN protocol name is empty");
    expect(checkAlpn(["x".repeat(256)])).toContain("longer than 255 bytes");
    expect(checkAlpn(["h2", "h2"])).toBe("ALPN protocol 'h2' is listed twice");
    expect(reasonOf(loadServerTls(leaf.certFile, leaf.keyFile, [""]))).toBe("an ALPN protocol name is empty");
  });
});

describe("loadCaBundle", () => {
  test("a bundle of several certificates gives their PEM text", () => {
    const bundle = join(tempDir(), "bundle.pem");
    writeFileSync(bundle, `# comment lines are fine\n${ca.certPem}\n${other.certPem}`);
    const loaded = loadCaBundle(bundle);
    if (!loaded.ok) throw new Error(loaded.reason);
    expect(loaded.value.match(/BEGIN CERTIFICATE/g)?.length).toBe(2);
    expect(loaded.value).not.toContain("# comment");
  });

  test("missing, not PEM, broken", () => {
    const dir = tempDir();
    const missing = join(dir, "missing.pem");
    const junk = join(dir, "junk.pem");
    const broken = join(dir, "broken.pem");
    writeFileSync(junk, "not a bundle");
    writeFileSync(broken, `${ca.certPem}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n`);
    expect(reasonOf(loadCaBundle(missing))).toBe(`tls-ca ${missing}: cannot read (no such file)`);
    expect(reasonOf(loadCaBundle(junk))).toBe(`tls-ca ${junk}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`);
    expect(reasonOf(loadCaBundle(broken))).toStartWith(`tls-ca ${broken}: certificate 2 is not valid (`);
  });
});

describe("TlsFiles", () => {
  test("one load reads each pair and bundle once; a new load reads again", () => {
    const files = new TlsFiles();
    const first = files.server(leaf.certFile, leaf.keyFile);
    expect(files.server(leaf.certFile, leaf.keyFile)).toBe(first);
    expect(files.caBundle(ca.certFile)).toBe(files.caBundle(ca.certFile));
    const failed = files.server(leaf.certFile, other.keyFile);
    expect(failed.ok).toBe(false);
    expect(files.server(leaf.certFile, other.keyFile)).toBe(failed);
    expect(new TlsFiles().server(leaf.certFile, leaf.keyFile)).not.toBe(first);
  });
});

describe("serverTlsOf", () => {
  test("one context per loaded settings object: the same settings share it, the settings of a new load get their own", () => {
    const files = readServerFiles(leaf.certFile, leaf.keyFile);
    if (!files.ok) throw new Error(files.reason);
    const settings = { certFile: leaf.certFile, keyFile: leaf.keyFile, certPem: files.value.cert, keyPem: files.value.key, alpn: ["http/1.1"] };
    const made = serverTlsOf(settings);
    if (!made.ok) throw new Error(made.reason);
    expect(made.value.alpn).toEqual(["http/1.1"]);
    expect(serverTlsOf(settings)).toBe(made);
    expect(serverTlsOf({ ...settings })).not.toBe(made);
  });
});
