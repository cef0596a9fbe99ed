/**
 * The parts of `oi -c etcd://...` that need no etcd: the address, the key
 * range of a prefix, the watch stream's messages, the config the keys make
 * (refused keys, fallbacks to their last good version, rules taking the
 * global section's defaults) and the cache file.
 */
import { describe, expect, test } from "bun:test";
import { lstatSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseEtcdAddress } from "../src/etcd/address.ts";
import { assemble, keySetOf } from "../src/etcd/assemble.ts";
import { readCache, writeCache } from "../src/etcd/cache.ts";
import { prefixEnd, watchMessage } from "../src/etcd/client.ts";
import { readYamlRule } from "../src/config/yaml-rule.ts";
import { tempDir } from "./helpers/oi-process.ts";

const label = (name: string) => `etcd://e/oi/${name}`;
const rule = (port: number) => `bind: "127.0.0.1:${port}/tcp"\nconnect: "127.0.0.1:9"\n`;

describe("etcd address", () => {
  test("endpoints, TLS, default port, IPv6 and the prefix", () => {
    expect(parseEtcdAddress("etcd://h1:2379,h2/oi/")).toEqual({
      endpoints: ["http://h1:2379", "http://h2:2379"],
      tls: false,
      prefix: "oi",
      origin: "etcd://h1:2379,h2",
    });
    expect(parseEtcdAddress("etcds://[::1]:2380//abs/p")).toMatchObject({ endpoints: ["https://[::1]:2380"], tls: true, prefix: "/abs/p" });
    expect(parseEtcdAddress("etcd://h")).toMatchObject({ prefix: "" });
    expect(parseEtcdAddress("etcd://h:99999/oi")).toMatch(/'h:99999' is not HOST\[:PORT\]/);
    expect(parseEtcdAddress("etcd://h1,,h2/oi")).toMatch(/at least one HOST/);
  });

  test("the range of a prefix ends at the next key", () => {
    const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
    expect(text(prefixEnd("oi/"))).toBe("oi0");
    // By bytes of UTF-8: é is C3 A9, ê is C3 AA.
    expect(text(prefixEnd("café"))).toBe("cafê");
  });
});

describe("watch messages", () => {
  test("created, events (puts and deletes) and a cancel after compaction", () => {
    expect(watchMessage('{"result":{"header":{"revision":"2"},"created":true}}')).toEqual({ kind: "created" });
    const key = Buffer.from("oi/rules/a").toString("base64");
    expect(watchMessage(`{"result":{"header":{"revision":"9"},"events":[{"kv":{"key":"${key}","mod_revision":"2"}},{"type":"DELETE","kv":{"key":"${key}","mod_revision":"3"}}]}}`)).toEqual({
      kind: "events",
      keys: ["oi/rules/a", "oi/rules/a"],
      revision: 3,
    });
    expect(watchMessage('{"result":{"header":{},"canceled":true,"compact_revision":"3"}}')).toEqual({
      kind: "canceled",
      reason: "watch cancelled (revision compacted up to 3)",
    });
    expect(watchMessage('{"error":{"message":"etcdserver: invalid auth token"}}')).toEqual({ kind: "canceled", reason: "etcdserver: invalid auth token" });
  });
});

describe("the config of the keys", () => {
  test("keys are sorted into global, rules and ignored", () => {
    expect(keySetOf([{ name: "global", value: "g" }, { name: "rules/web", value: "w" }, { name: "rules/", value: "x" }, { name: "other", value: "o" }])).toEqual({
      keys: { global: "g", rules: { web: "w" } },
      ignored: ["rules/", "other"],
    });
  });

  test("rules take the global key's defaults; a rule's problem names its key and its own line", () => {
    const built = assemble({ global: "connect_timeout: 3\n", rules: { web: rule(8001), bad: `${rule(8002)}idle_timeout: -1\n` } }, { rules: {} }, label, "etcd://e/oi");
    expect(built.config.rules.map((each) => [each.name, each.connectTimeout, each.at])).toEqual([["web", 3, { file: label("rules/web"), line: 1 }]]);
    expect(built.errors).toEqual([
      { file: label("rules/bad"), line: 3, reason: "rule 'bad': idle must be a positive number of seconds, got '-1'" },
      { file: label("rules/bad"), line: 0, reason: "refused: left out" },
    ]);
    expect(built.used).toEqual({ global: "connect_timeout: 3\n", rules: { web: rule(8001) } });
  });

  test("a refused key keeps its last good version; a deleted one is gone; a broken global keeps its last good one", () => {
    const before = { global: "connect_timeout: 3\n", rules: { web: rule(8001), gone: rule(8003) } };
    const built = assemble({ global: "connect_timeout: never\n", rules: { web: "bind: [\n" } }, before, label, "etcd://e/oi");
    expect(built.config.rules.map((each) => [each.name, each.bind.port, each.connectTimeout])).toEqual([["web", 8001, 3]]);
    expect(built.errors.filter((issue) => issue.line === 0).map((issue) => `${issue.file}: ${issue.reason}`)).toContain(`${label("global")}: refused: its last good version stays in force`);
    expect(built.errors.map((issue) => `${issue.file}: ${issue.reason}`)).toContain(`${label("rules/web")}: refused: its last good version stays in force`);
    expect(built.used).toEqual({ global: before.global, rules: { web: before.rules.web } });
  });

  test("of two keys binding one address the one that ran before stays, whatever their names' order", () => {
    const built = assemble({ rules: { zeta: rule(8001), alpha: rule(8001) } }, { rules: { zeta: rule(8001) } }, label, "etcd://e/oi");
    expect(built.config.rules.map((each) => each.name)).toEqual(["zeta"]);
    expect(built.errors[0]?.file).toBe(label("rules/alpha"));
  });

  test("a changed key that clashes falls back to its last good version; of two new keys that clash, the first by name stays", () => {
    const previous = { rules: { web: rule(8001), api: rule(8002) } };
    const built = assemble({ rules: { web: rule(8001), api: rule(8001) } }, previous, label, "etcd://e/oi");
    expect(built.config.rules.map((each) => [each.name, each.bind.port])).toEqual([["api", 8002], ["web", 8001]]);
    expect(built.errors.map((issue) => issue.file)).toEqual([label("rules/api"), label("rules/api")]);
    expect(built.errors[1]?.reason).toBe("refused: its last good version stays in force");

    const fresh = assemble({ rules: { b: rule(8001), a: rule(8001) } }, { rules: {} }, label, "etcd://e/oi");
    expect(fresh.config.rules.map((each) => each.name)).toEqual(["a"]);
    expect(fresh.errors.at(-1)).toEqual({ file: label("rules/b"), line: 0, reason: "refused: left out" });
  });

  test("a rule read on its own with a global section counts lines in its own text", () => {
    const read = readYamlRule("web", 'bind: "127.0.0.1:1/tcp"\nconnect: "127.0.0.1:x"\n', "k", { text: "dns_refresh: 30\nconnect_timeout: 2\n", file: "g" });
    expect(read.ok === false && read.errors).toEqual([{ file: "k", line: 2, reason: "rule 'web': connect port in '127.0.0.1:x' is neither a port number nor a known tcp service name" }]);
  });
});

describe("cache file", () => {
  test("written with mode 0600 by rename, read back; a symbolic link is neither followed on write nor read", () => {
    const dir = tempDir();
    const path = join(dir, "cache.json");
    const contents = { source: "etcd://e/oi", revision: 7, written: "2026-12-07T00:00:00.000Z", keys: { global: "g", rules: { web: "w" } } };
    writeCache(path, contents);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readCache(path)).toEqual(contents);

    const target = join(dir, "target");
    writeFileSync(target, "keep\n");
    const link = join(dir, "link.json");
    symlinkSync(target, link);
    expect(readCache(link)).toBe(`cache file ${link} is a symbolic link: refused`);
    writeCache(link, contents);
    expect(readFileSync(target, "utf8")).toBe("keep\n");
    expect(lstatSync(link).isSymbolicLink()).toBe(false);

    writeFileSync(path, "{}");
    expect(readCache(path)).toMatch(/is unusable: not an oi etcd cache/);
    expect(readCache(join(dir, "none"))).toMatch(/^no cache file /);
  });
});
