/**
 * rinetd-uv's `include`: a single file, a glob (files in name order), paths
 * relative to the including file, a chain of up to 10 files; a cycle or an 11th
 * file is an error naming the chain; a glob matching nothing is a warning.
 */
import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { backend, cleanUpAfterEachTest, greeting, onCleanup } from "../helpers/harness.ts";
import { runOi, startOi, tempDir } from "../helpers/oi-process.ts";
import { freePort } from "../helpers/peers.ts";
import { issuesIn } from "./config-helpers.ts";

cleanUpAfterEachTest();

async function checkFile(path: string) {
  return { ...(await runOi(["check", "--no-resolve", "-c", path])), path };
}

describe("include", () => {
  test("a file and a glob, relative to the including file, forward as if written in place", async () => {
    const root = tempDir();
    mkdirSync(join(root, "conf.d"));
    const [a, b, c] = ["a", "b", "c"].map((name) => backend((peer) => void peer.send(name, true)));
    const [pa, pb, pc] = [freePort(), freePort(), freePort()];
    writeFileSync(join(root, "single.conf"), `127.0.0.1 ${pa} 127.0.0.1 ${a!.port}\n`);
    // Written out of order: the glob reads them by name.
    writeFileSync(join(root, "conf.d", "20-c.conf"), `127.0.0.1 ${pc} 127.0.0.1 ${c!.port}\n`);
    writeFileSync(join(root, "conf.d", "10-b.conf"), `127.0.0.1 ${pb} 127.0.0.1 ${b!.port}\n`);
    writeFileSync(join(root, "conf.d", "notes.txt"), "not a config\n");
    const main = join(root, "main.conf");
    writeFileSync(main, "include single.conf\ninclude conf.d/*.conf\ninclude nowhere/*.conf\n");

    const checked = await checkFile(main);
    expect(checked.code).toBe(0);
    const ruleFiles = checked.stdout.split("\n").flatMap((line) => (/\s->\s/.test(line) ? [line.split(":")[0]] : []));
    expect(ruleFiles).toEqual([join(root, "single.conf"), join(root, "conf.d", "10-b.conf"), join(root, "conf.d", "20-c.conf")]);
    expect(issuesIn(checked, "WARN")).toEqual([[3, "include nowhere/*.conf matched no files"]]);

    const proc = await startOi(main);
    onCleanup(() => proc.stop());
    expect([await greeting(pa), await greeting(pb), await greeting(pc)]).toEqual(["a", "b", "c"]);
  });

  test("a chain of 10 files (the main file and 9 nested includes) loads; an 11th is refused as rinetd-uv refuses it", async () => {
    const root = tempDir();
    /** level0.conf includes level1.conf, ... up to level`last`.conf, which holds a rule: last + 1 files. */
    const chainOf = (last: number) => {
      const dir = join(root, `last${last}`);
      mkdirSync(dir);
      for (let level = 0; level < last; level++) writeFileSync(join(dir, `level${level}.conf`), `include level${level + 1}.conf\n`);
      writeFileSync(join(dir, `level${last}.conf`), "0.0.0.0 1 10.0.0.1 1\n");
      return dir;
    };
    const ten = await checkFile(join(chainOf(9), "level0.conf"));
    expect(ten.code).toBe(0);
    expect(ten.stdout).toContain("0.0.0.0:1 -> 10.0.0.1:1");
    const elevenDir = chainOf(10);
    const eleven = await checkFile(join(elevenDir, "level0.conf"));
    expect(eleven.code).toBe(1);
    const including = join(elevenDir, "level9.conf");
    const chain = Array.from({ length: 11 }, (_, level) => join(elevenDir, `level${level}.conf`)).join(" -> ");
    expect(issuesIn(eleven, "ERROR", including)).toEqual([[1, `maximum include depth (10) exceeded at ${including}:1: ${chain}`]]);
  });

  test("a circular include is an error naming the chain; a missing file is an error", async () => {
    const root = tempDir();
    writeFileSync(join(root, "a.conf"), "include b.conf\n");
    writeFileSync(join(root, "b.conf"), "include a.conf\ninclude missing.conf\n");
    const result = await checkFile(join(root, "a.conf"));
    expect(result.code).toBe(1);
    expect(issuesIn(result, "ERROR", join(root, "b.conf"))).toEqual([
      [1, `circular include detected: ${join(root, "a.conf")} at ${join(root, "b.conf")}:1 (${join(root, "a.conf")} -> ${join(root, "b.conf")} -> ${join(root, "a.conf")})`],
      [2, "include missing.conf: no such file or directory"],
    ]);
  });
});
