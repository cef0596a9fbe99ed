/**
 * Config from etcd (`oi -c etcd://HOST:PORT/PREFIX`), against a real etcd
 * and a real oi process: a rule put into etcd listens within 2 s, a changed
 * backend takes new connections while an open transfer to the old one
 * completes, a deleted rule stops listening, an invalid key is refused with
 * its key name while the other rules keep forwarding, etcd stopped leaves
 * forwarding alone (the loss logged once, the return once), a restart with
 * etcd down starts from the cache, and `oi check` judges what is stored.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, lstatSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { backend, cleanUpAfterEachTest, greeter, greeting, onCleanup } from "./helpers/harness.ts";
import { makeTestCa } from "./helpers/certs.ts";
import { type Etcd, startEtcd } from "./helpers/etcd.ts";
import { type OiProcess, runOi, startOi, tempDir } from "./helpers/oi-process.ts";
import { connectionRefused, connectPeer, freePort, randomBytes, sha256 } from "./helpers/peers.ts";
import { missingTools, testName } from "./helpers/servers.ts";

cleanUpAfterEachTest();

const skip = missingTools(["etcd", "openssl"]);
/** Within this a change in etcd must serve (the task: applied within a second; 2 s for a loaded machine's rule to listen). */
const APPLY_MS = 2000;

let etcd: Etcd | undefined;
beforeAll(async () => {
  if (skip === undefined) etcd = await startEtcd();
});
afterAll(async () => {
  await etcd?.stop();
});

let prefixes = 0;
/** A fresh key prefix per test, so tests sharing one etcd do not see each other's keys. */
function freshPrefix(): string {
  prefixes++;
  return `oi-test-${process.pid}-${prefixes}`;
}

function rule(port: number, backendPort: number): string {
  return `bind: "127.0.0.1:${port}/tcp"\nconnect: "127.0.0.1:${backendPort}"\n`;
}

async function oiOn(url: string, args: string[] = []): Promise<OiProcess> {
  const process = await startOi(url, args);
  onCleanup(() => process.stop());
  return process;
}

const logOf = (oi: OiProcess) => oi.stdout.text + oi.stderr.text;
const count = (text: string, needle: string) => text.split(needle).length - 1;

/** Poll `check` until it gives true, or fail after `ms` saying `what`. */
async function eventually(check: () => Promise<boolean>, ms: number, what: string): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await Bun.sleep(20);
  }
}

async function greets(port: number, name: string): Promise<boolean> {
  try {
    return (await greeting(port)) === name;
  } catch {
    return false;
  }
}

describe.skipIf(skip !== undefined)(testName("oi -c etcd://", skip), () => {
  test("a rule put into etcd listens within 2 s; a deleted rule stops listening; SIGHUP reads the keys again", async () => {
    const prefix = freshPrefix();
    const url = `etcd://127.0.0.1:${etcd!.port}/${prefix}`;
    const oi = await oiOn(url);
    expect(oi.stdout.text).toContain(`0 rules listening (${url})`);
    const port = freePort();
    await etcd!.put(`${prefix}/rules/web`, rule(port, greeter("web").port));
    const took = await eventually(() => greets(port, "web"), APPLY_MS, "the rule put into etcd serves");
    expect(took).toBeLessThan(APPLY_MS);
    expect(oi.stdout.text).toContain(`etcd: ${prefix}/rules/web changed: reloading ${url}`);

    await etcd!.del(`${prefix}/rules/web`);
    await eventually(() => connectionRefused(port), APPLY_MS, "the deleted rule stops listening");

    // SIGHUP reads etcd again, through the same reload.
    const reloads = count(oi.stdout.text, "reloaded:");
    oi.signal("SIGHUP");
    await oi.stdout.waitFor(`SIGHUP: reloading ${url}`, 5000);
    await eventually(async () => count(oi.stdout.text, "reloaded:") > reloads, 5000, "the SIGHUP reload ends");
  });

  test("a changed backend takes new connections while an open transfer to the old one completes", async () => {
    const prefix = freshPrefix();
    const url = `etcd://127.0.0.1:${etcd!.port}/${prefix}`;
    const port = freePort();
    const old = backend();
    await etcd!.put(`${prefix}/rules/web`, rule(port, old.port));
    const oi = await oiOn(url);
    expect(oi.stdout.text).toContain("1 rule listening");

    const data = randomBytes(4 << 20);
    const half = data.length / 2;
    const client = await connectPeer("127.0.0.1", port);
    await client.send(data.subarray(0, half));
    const first = await old.nextConnection(5000);
    await eventually(async () => first.received === half, 5000, "the first half reaches the old backend");

    // Probing before the reload would reach the old backend, which never answers: wait for the reload first.
    const reloads = count(oi.stdout.text, "reloaded:");
    await etcd!.put(`${prefix}/rules/web`, rule(port, greeter("new").port));
    await eventually(async () => count(oi.stdout.text, "reloaded:") > reloads, APPLY_MS, "the changed backend is applied");
    expect(await greeting(port)).toBe("new");
    expect(oi.stdout.text).toMatch(/reloaded: 0 listener\(s\) started, 1 kept, 0 stopped; 1 connection\(s\) open/);

    await client.send(data.subarray(half), true);
    await first.waitEnd(10_000);
    expect(first.received).toBe(data.length);
    expect(first.digest()).toBe(sha256(data));
    expect(old.connections.length).toBe(1);
  });

  test("an invalid key is refused with its key name and reason; the other rules keep forwarding; a broken edit keeps the last good version", async () => {
    const prefix = freshPrefix();
    const url = `etcd://127.0.0.1:${etcd!.port}/${prefix}`;
    const [webPort, apiPort, badPort] = [freePort(), freePort(), freePort()];
    await etcd!.put(`${prefix}/global`, "dns_refresh: 30\n");
    await etcd!.put(`${prefix}/rules/web`, rule(webPort, greeter("web").port));
    await etcd!.put(`${prefix}/rules/bad`, `bind: "127.0.0.1:${badPort}/tcp"\nconnect: "127.0.0.1:99999"\n`);
    const oi = await oiOn(url);
    expect(oi.stdout.text).toContain("1 rule listening");
    expect(oi.stderr.text).toContain(`${url}/rules/bad:2: rule 'bad': connect port 99999 is out of range (1..65535)`);
    expect(oi.stderr.text).toContain(`${url}/rules/bad: refused: left out`);
    expect(await greeting(webPort)).toBe("web");
    expect(await connectionRefused(badPort)).toBe(true);

    // A new key that is not YAML at all, and another rule put beside: the good one applies.
    await etcd!.put(`${prefix}/rules/broken`, "bind: [\n");
    await etcd!.put(`${prefix}/rules/api`, rule(apiPort, greeter("api").port));
    await eventually(() => greets(apiPort, "api"), APPLY_MS, "the good key put with a broken one applies");
    await oi.stderr.waitFor(`${url}/rules/broken: malformed (neither YAML nor JSON)`, APPLY_MS);
    expect(await greeting(webPort)).toBe("web");

    // A good rule edited into a broken one keeps its last good version.
    const reloads = count(oi.stdout.text, "reloaded:");
    await etcd!.put(`${prefix}/rules/web`, `bind: "127.0.0.1:${webPort}/tcp"\nconnect: "127.0.0.1:${greeter("other").port}"\nidle_timeout: -1\n`);
    await oi.stderr.waitFor(`${url}/rules/web:3: rule 'web': idle must be a positive number of seconds, got '-1'`, APPLY_MS);
    await oi.stderr.waitFor(`${url}/rules/web: refused: its last good version stays in force`, APPLY_MS);
    await eventually(async () => count(oi.stdout.text, "reloaded:") > reloads, APPLY_MS, "the reload ends");
    expect(await greeting(webPort)).toBe("web");
    expect(await greeting(apiPort)).toBe("api");
    expect(await connectionRefused(badPort)).toBe(true);
  });

  test("two keys binding one address: the new one is refused, the running one stays", async () => {
    const prefix = freshPrefix();
    const url = `etcd://127.0.0.1:${etcd!.port}/${prefix}`;
    const port = freePort();
    // `zeta` sorts after `alpha`; the running rule must win even so.
    await etcd!.put(`${prefix}/rules/zeta`, rule(port, greeter("zeta").port));
    const oi = await oiOn(url);
    await etcd!.put(`${prefix}/rules/alpha`, rule(port, greeter("alpha").port));
    await oi.stderr.waitFor(`${url}/rules/alpha: refused: left out`, APPLY_MS);
    expect(oi.stderr.text).toContain(`${url}/rules/alpha:1: rule 'alpha': `);
    expect(await greeting(port)).toBe("zeta");
  });

  test("several members: one that does not answer is passed over, for the read and for the watch", async () => {
    const prefix = freshPrefix();
    const url = `etcd://127.0.0.1:${freePort()},127.0.0.1:${etcd!.port}/${prefix}`;
    const port = freePort();
    await etcd!.put(`${prefix}/rules/web`, rule(port, greeter("web").port));
    const oi = await oiOn(url);
    expect(oi.stdout.text).toContain(`1 rule listening (${url})`);
    expect(await greeting(port)).toBe("web");
    const later = freePort();
    await etcd!.put(`${prefix}/rules/later`, rule(later, greeter("later").port));
    await eventually(() => greets(later, "later"), APPLY_MS, "a change seen through the second member applies");
  });

  test("oi check -c etcd://... exits 0 on good keys and 1 with each bad key's name and reason", async () => {
    const prefix = freshPrefix();
    const url = `etcd://127.0.0.1:${etcd!.port}/${prefix}`;
    await etcd!.put(`${prefix}/global`, "connect_timeout: 3\n");
    await etcd!.put(`${prefix}/rules/web`, rule(freePort(), freePort()));
    const good = await runOi(["check", "--no-resolve", "-c", url]);
    expect(good.stderr).toBe("");
    expect(good.code).toBe(0);
    expect(good.stdout).toContain(`${url}/rules/web`);

    await etcd!.put(`${prefix}/rules/bad`, `bind: "127.0.0.1:${freePort()}/tcp"\nconnect: "127.0.0.1:99999"\n`);
    await etcd!.put(`${prefix}/global`, "connect_timeout: soon\n");
    const bad = await runOi(["check", "--no-resolve", "-c", url]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`${url}/rules/bad:2: rule 'bad': connect port 99999 is out of range (1..65535)`);
    expect(bad.stderr).toMatch(new RegExp(`${url}/global:1: .*connect_timeout`));
    expect(bad.stderr).toContain(`${url}: invalid`);

    const unreachable = await runOi(["check", "-c", `etcd://127.0.0.1:${freePort()}/${prefix}`]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain("etcd unreachable: http://127.0.0.1:");
  });
});

describe.skipIf(skip !== undefined)(testName("etcd unreachable", skip), () => {
  test("etcd stopped: forwarding goes on, the loss and the return are logged once; oi restarted with etcd down starts from the cache", async () => {
    const own = await startEtcd();
    onCleanup(() => own.stop());
    const prefix = "oi";
    const url = `etcd://127.0.0.1:${own.port}/${prefix}`;
    const dir = tempDir();
    const cache = join(dir, "cache.json");
    const [port, later] = [freePort(), freePort()];
    await own.put(`${prefix}/rules/web`, rule(port, greeter("web").port));
    const first = await oiOn(url, ["--cache", cache]);
    expect(await greeting(port)).toBe("web");
    expect(statSync(cache).mode & 0o777).toBe(0o600);

    await own.stop();
    await first.stderr.waitFor(`${url}: lost etcd`, 5000);
    expect(await greeting(port)).toBe("web");
    // Several reconnection attempts (250 ms, 500 ms, 1 s, ...) go by: still one line.
    await Bun.sleep(2500);
    expect(count(first.stderr.text, "lost etcd")).toBe(1);
    expect(await greeting(port)).toBe("web");

    await own.restart();
    await first.stdout.waitFor(`${url}: etcd reachable again`, 10_000);
    await own.put(`${prefix}/rules/later`, rule(later, greeter("later").port));
    await eventually(() => greets(later, "later"), APPLY_MS, "a rule put after etcd came back serves");
    expect(count(first.stdout.text, "reachable again")).toBe(1);
    expect(count(first.stderr.text, "lost etcd")).toBe(1);

    await own.stop();
    expect(await first.stop()).toBe(0);
    const cached = JSON.parse(readFileSync(cache, "utf8")) as { keys: { rules: Record<string, string> } };
    expect(Object.keys(cached.keys.rules).sort()).toEqual(["later", "web"]);

    const second = await oiOn(url, ["--cache", cache]);
    expect(second.stderr.text).toContain(`${url}: etcd unreachable: http://127.0.0.1:${own.port}: connection refused; starting from the cache ${cache}`);
    expect(second.stdout.text).toContain("2 rules listening");
    expect(await greeting(port)).toBe("web");
    expect(await greeting(later)).toBe("later");
    expect(await second.stop()).toBe(0);

    const without = await runOi(["-c", url]);
    expect(without.code).toBe(1);
    expect(without.stderr).toContain(`${url}: etcd unreachable: http://127.0.0.1:${own.port}: connection refused (and no --cache FILE to start from)`);
    const missing = await runOi(["-c", url, "--cache", join(dir, "none.json")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`no cache file ${join(dir, "none.json")}`);
  });

  test("a watch that goes quiet until fetch's idle timeout ends it is opened again without a word, and changes still apply", async () => {
    const own = await startEtcd();
    onCleanup(() => own.stop());
    const url = `etcd://127.0.0.1:${own.port}/oi`;
    const port = freePort();
    await own.put("oi/rules/web", rule(port, greeter("web").port));
    // The idle timeout in seconds (5 minutes by default); Bun checks it every few seconds.
    const oi = await startOi(url, ["-d"], [], { BUN_CONFIG_HTTP_IDLE_TIMEOUT: "1" });
    onCleanup(() => oi.stop());
    await oi.stdout.waitFor(`${url}: the watch ended after`, 30_000);
    expect(oi.stdout.text).toContain("watching again");
    const later = freePort();
    await own.put("oi/rules/later", rule(later, greeter("later").port));
    await eventually(() => greets(later, "later"), APPLY_MS, "a change after the watch was opened again applies");
    expect(oi.stderr.text).not.toContain("lost etcd");
  });

  test("the cache is replaced by rename, never written through a symbolic link", async () => {
    const own = await startEtcd();
    onCleanup(() => own.stop());
    const url = `etcd://127.0.0.1:${own.port}/oi`;
    const dir = tempDir();
    const target = join(dir, "elsewhere");
    writeFileSync(target, "precious\n");
    const cache = join(dir, "cache.json");
    symlinkSync(target, cache);
    const port = freePort();
    await own.put("oi/rules/web", rule(port, greeter("web").port));
    const oi = await oiOn(url, ["--cache", cache]);
    expect(await greeting(port)).toBe("web");
    expect(readFileSync(target, "utf8")).toBe("precious\n");
    expect(lstatSync(cache).isSymbolicLink()).toBe(false);
    expect(existsSync(`${cache}.${oi.proc.pid}.tmp`)).toBe(false);
  });
});

describe.skipIf(skip !== undefined)(testName("etcd with TLS and authentication", skip), () => {
  test("etcds:// with --etcd-ca, --etcd-cert and --etcd-key; without the client certificate etcd is unreachable", async () => {
    const ca = makeTestCa();
    const server = ca.issue(["localhost"], { ips: ["127.0.0.1"], clientAuth: true });
    const client = ca.issue(["oi-client"], { clientAuth: true });
    const own = await startEtcd({ certFile: server.certFile, keyFile: server.keyFile, caFile: ca.certFile, clientCertFile: client.certFile, clientKeyFile: client.keyFile });
    onCleanup(() => own.stop());
    const port = freePort();
    await own.put("oi/rules/web", rule(port, greeter("web").port));
    const url = `etcds://127.0.0.1:${own.port}/oi`;
    const tlsArgs = ["--etcd-ca", ca.certFile, "--etcd-cert", client.certFile, "--etcd-key", client.keyFile];
    await oiOn(url, tlsArgs);
    expect(await greeting(port)).toBe("web");
    const changed = freePort();
    await own.put("oi/rules/web", rule(changed, greeter("changed").port));
    await eventually(() => greets(changed, "changed"), APPLY_MS, "a change over TLS applies");

    const halfPair = await runOi(["check", "-c", url, "--etcd-cert", client.certFile]);
    expect(halfPair.code).toBe(1);
    expect(halfPair.stderr).toContain(`${url}: --etcd-cert and --etcd-key go together`);
    const plain = await runOi(["check", "-c", url.replace("etcds:", "etcd:"), ...tlsArgs]);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toContain("--etcd-ca, --etcd-cert and --etcd-key are for etcds:// addresses (TLS)");

    const anonymous = await runOi(["check", "--no-resolve", "-c", url, "--etcd-ca", ca.certFile]);
    expect(anonymous.code).toBe(1);
    expect(anonymous.stderr).toContain(`${url}: etcd unreachable: https://127.0.0.1:${own.port}: EPROTO: The TLS handshake failed`);
  });

  test("--etcd-user-file logs in with USER:PASSWORD, and again once the token expired; a wrong password is refused with the reason", async () => {
    // Tokens live 1 s: the reload after the change below finds its token expired.
    const own = await startEtcd(undefined, ["--auth-token-ttl", "1"]);
    onCleanup(() => own.stop());
    await own.enableAuth("s3cret:with-colon");
    const port = freePort();
    await own.put("oi/rules/web", rule(port, greeter("web").port));
    const dir = tempDir();
    const userFile = join(dir, "etcd-user");
    writeFileSync(userFile, "root:s3cret:with-colon\n", { mode: 0o600 });
    const url = `etcd://127.0.0.1:${own.port}/oi`;
    const oi = await oiOn(url, ["--etcd-user-file", userFile]);
    expect(await greeting(port)).toBe("web");
    await Bun.sleep(2500);
    const changed = freePort();
    await own.put("oi/rules/web", rule(changed, greeter("changed").port));
    await eventually(() => greets(changed, "changed"), APPLY_MS, "a change applies through an authenticated watch, read with a new token");
    expect(oi.stderr.text).toBe("");

    const wrong = join(dir, "wrong");
    writeFileSync(wrong, "root:nope\n");
    const refused = await runOi(["check", "--no-resolve", "-c", url, "--etcd-user-file", wrong]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("login as 'root' refused: etcdserver: authentication failed, invalid user ID or password");
    const anonymous = await runOi(["check", "--no-resolve", "-c", url]);
    expect(anonymous.code).toBe(1);
    expect(anonymous.stderr).toContain(`${url}: etcd refused the read: /v3/kv/range: HTTP 400: etcdserver: user name is empty\n`);
  });
});
