/**
 * `include` in the .conf format: files, directories, patterns, nesting,
 * cycles, and errors that name the included file and its line.
 */
import { describe, expect, test } from "bun:test";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfig } from "../src/config/load.ts";
import { tempDir } from "./helpers/oi-process.ts";

/** Write `files` (relative path → text) under a fresh directory; return it. */
function tree(files: Record<string, string>): string {
  const root = tempDir();
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

function ports(rules: { bind: { port: number } }[] | undefined): number[] {
  return (rules ?? []).map((rule) => rule.bind.port);
}

describe("include", () => {
  test("a file, relative to the including file, read in place", async () => {
    const root = tree({
      "main.conf": "0.0.0.0 1001 10.0.0.1 80\ninclude more/extra.conf\n0.0.0.0 1003 10.0.0.1 80\n",
      "more/extra.conf": "0.0.0.0 1002 10.0.0.1 80\n",
    });
    const result = await loadConfig(join(root, "main.conf"));
    expect(result.errors).toEqual([]);
    expect(ports(result.config?.rules)).toEqual([1001, 1002, 1003]);
    expect(result.config?.rules[1]?.at).toEqual({ file: join(root, "more/extra.conf"), line: 1 });
  });

  test("a directory: its *.conf files in name order, other files ignored", async () => {
    const root = tree({
      "main.conf": "include conf.d\n",
      "conf.d/20-b.conf": "0.0.0.0 2002 10.0.0.1 80\n",
      "conf.d/10-a.conf": "0.0.0.0 2001 10.0.0.1 80\n",
      "conf.d/README": "not a config\n",
      "conf.d/30-c.conf.disabled": "garbage\n",
    });
    const result = await loadConfig(join(root, "main.conf"));
    expect(result.errors).toEqual([]);
    expect(ports(result.config?.rules)).toEqual([2001, 2002]);
  });

  test("a pattern, in name order; one that matches nothing is a warning", async () => {
    const root = tree({
      "main.conf": "include conf.d/web-*.conf\ninclude conf.d/none-*.conf\n",
      "conf.d/web-2.conf": "0.0.0.0 3002 10.0.0.1 80\n",
      "conf.d/web-1.conf": "0.0.0.0 3001 10.0.0.1 80\n",
      "conf.d/db-1.conf": "0.0.0.0 3999 10.0.0.1 80\n",
    });
    const result = await loadConfig(join(root, "main.conf"));
    expect(result.errors).toEqual([]);
    expect(ports(result.config?.rules)).toEqual([3001, 3002]);
    expect(result.warnings).toEqual([{ file: join(root, "main.conf"), line: 2, reason: "include conf.d/none-*.conf matched no files" }]);
  });

  test("a pattern in a directory that does not exist matches nothing: a warning, as with glob(3)", async () => {
    const root = tree({ "main.conf": "include missing.d/*.conf\n0.0.0.0 3101 10.0.0.1 80\n" });
    const result = await loadConfig(join(root, "main.conf"));
    expect(result.errors).toEqual([]);
    expect(ports(result.config?.rules)).toEqual([3101]);
    expect(result.warnings).toEqual([{ file: join(root, "main.conf"), line: 1, reason: "include missing.d/*.conf matched no files" }]);
  });

  test("allow/deny keep their meaning across files: global before the first rule, else the rule's", async () => {
    const root = tree({
      "main.conf": "include access.conf\ninclude rule.conf\nallow 10.9.9.*\n",
      "access.conf": "deny 192.0.2.1\n",
      "rule.conf": "0.0.0.0 4001 10.0.0.1 80\n",
    });
    const config = (await loadConfig(join(root, "main.conf"))).config;
    expect(config?.globalAccess.deny.map((rule) => rule.pattern.text)).toEqual(["192.0.2.1"]);
    expect(config?.rules[0]?.access.allow.map((rule) => rule.pattern.text)).toEqual(["10.9.9.*"]);
  });

  test("nested includes work; a cycle is an error naming the chain", async () => {
    const root = tree({
      "a.conf": "include b.conf\n",
      "b.conf": "0.0.0.0 5001 10.0.0.1 80\ninclude c.conf\n",
      "c.conf": "# back to the start\ninclude a.conf\n",
    });
    const result = await loadConfig(join(root, "a.conf"));
    expect(result.config).toBeUndefined();
    expect(result.errors).toEqual([
      {
        file: join(root, "c.conf"),
        line: 2,
        reason: `circular include detected: ${join(root, "a.conf")} at ${join(root, "c.conf")}:2 (${join(root, "a.conf")} -> ${join(root, "b.conf")} -> ${join(root, "c.conf")} -> ${join(root, "a.conf")})`,
      },
    ]);
  });

  test("a file including itself through a symlink is a cycle too", async () => {
    const root = tree({ "a.conf": "include link.conf\n" });
    symlinkSync(join(root, "a.conf"), join(root, "link.conf"));
    const result = await loadConfig(join(root, "a.conf"));
    expect(result.errors.map((issue) => issue.reason)[0]).toStartWith(`circular include detected: ${join(root, "a.conf")} at ${join(root, "a.conf")}:1`);
  });

  test("errors in an included file name that file and its line, in reading order", async () => {
    const root = tree({
      "main.conf": "0.0.0.0 6001 10.0.0.1\ninclude bad.conf\nbogus\n",
      "bad.conf": "# fine\n0.0.0.0 99999 10.0.0.1 80\n",
    });
    const result = await loadConfig(join(root, "main.conf"));
    expect(result.errors.map((issue) => [issue.file, issue.line])).toEqual([
      [join(root, "main.conf"), 1],
      [join(root, "main.conf"), 3],
      [join(root, "bad.conf"), 2],
    ]);
    expect(result.errors[2]?.reason).toBe("bind port 99999 is out of range (1..65535)");
  });

  test("a missing included file is an error on the include line; a duplicate bind across files names both", async () => {
    const root = tree({
      "main.conf": "include missing.conf\n0.0.0.0 7001 10.0.0.1 80\ninclude dup.conf\n",
      "dup.conf": "0.0.0.0 7001 10.0.0.2 80\n",
    });
    const result = await loadConfig(join(root, "main.conf"));
    expect(result.errors).toEqual([
      { file: join(root, "main.conf"), line: 1, reason: "include missing.conf: no such file or directory" },
      {
        file: join(root, "dup.conf"),
        line: 1,
        reason: `duplicate bind: 0.0.0.0:7001/tcp is already bound by the rule at ${join(root, "main.conf")}:2 (rules on one bind are chosen by sni=, host= or protocol=; only one may have none, the default)`,
      },
    ]);
  });
});
