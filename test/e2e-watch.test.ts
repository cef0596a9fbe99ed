/**
 * `--watch` and the `watch` directive: a change to the config file, to a
 * file it includes, or a Kubernetes ConfigMap symlink swap reloads as a
 * SIGHUP does; a burst of writes makes one reload; a broken file keeps the
 * running rules; without the watch nothing reloads by itself.
 */
import { describe, expect, test } from "bun:test";
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfigText } from "../src/config/load.ts";
import { describeConfig } from "../src/config/describe.ts";
import { cleanUpAfterEachTest, greeter, greeting, oiOnFile } from "./helpers/harness.ts";
import { tempDir } from "./helpers/oi-process.ts";
import { connectionRefused, freePort } from "./helpers/peers.ts";

cleanUpAfterEachTest();

const rule = (port: number, backendPort: number) => `127.0.0.1 ${port} 127.0.0.1 ${backendPort}\n`;
const count = (text: string, needle: string) => text.split(needle).length - 1;

describe("watch setting", () => {
  test("reads as `watch`, `watch on`, TOML `watch = true` and YAML `global: watch: true`, and shows in oi check", () => {
    for (const [text, file] of [
      ["watch\n127.0.0.1 1 127.0.0.1 2\n", "a.conf"],
      ["watch on\n127.0.0.1 1 127.0.0.1 2\n", "a.conf"],
      ['watch = true\n[[forwarding_rules]]\nbind_address = "127.0.0.1"\nbind_port = 1\nconnect_address = "127.0.0.1"\nconnect_port = 2\n', "a.toml"],
      ["global:\n  watch: true\nrules:\n  - name: a\n    bind: 127.0.0.1:1/tcp\n    connect: 127.0.0.1:2/tcp\n", "a.yaml"],
    ] as const) {
      const result = loadConfigText(text, file);
      expect(result.errors).toEqual([]);
      expect(result.config?.watch).toBe(true);
      expect(describeConfig(result.config!)).toContain("watch: on");
    }
    expect(loadConfigText("watch off\n", "a.conf").config?.watch).toBe(false);
    expect(loadConfigText("watch maybe\n", "a.conf").errors).toEqual([{ file: "a.conf", line: 1, reason: "watch must be on or off, got 'maybe'" }]);
  });
});

describe("--watch", () => {
  test("an edited config reloads: the new rule serves", async () => {
    const [one, two] = [greeter("one"), greeter("two")];
    const [first, second] = [freePort(), freePort()];
    const path = join(tempDir(), "oi.conf");
    writeFileSync(path, rule(first, one.port));
    const oi = await oiOnFile(path, ["--watch"]);
    writeFileSync(path, rule(first, one.port) + rule(second, two.port));
    await oi.stdout.waitFor(`watch: oi.conf changed: reloading ${path}`, 5000);
    await oi.stdout.waitFor("reloaded: 1 listener(s) started, 1 kept, 0 stopped", 5000);
    expect(await greeting(second)).toBe("two");
    expect(await greeting(first)).toBe("one");
  });

  test("the `watch` directive alone watches, and an included file's change reloads", async () => {
    const [one, two] = [greeter("one"), greeter("two")];
    const [first, second] = [freePort(), freePort()];
    const directory = tempDir();
    const included = join(tempDir(), "rules.conf");
    writeFileSync(included, rule(first, one.port));
    const path = join(directory, "oi.conf");
    writeFileSync(path, `watch\ninclude ${included}\n`);
    const oi = await oiOnFile(path);
    writeFileSync(included, rule(second, two.port));
    await oi.stdout.waitFor("watch: rules.conf changed: reloading", 5000);
    await oi.stdout.waitFor("reloaded: 1 listener(s) started, 0 kept, 1 stopped", 5000);
    expect(await greeting(second)).toBe("two");
    expect(await connectionRefused(first)).toBe(true);
  });

  test("a Kubernetes ConfigMap update (the ..data symlink swapped by rename) reloads", async () => {
    const [one, two] = [greeter("one"), greeter("two")];
    const [first, second] = [freePort(), freePort()];
    // As the kubelet lays out a ConfigMap volume: oi.conf -> ..data/oi.conf, ..data -> ..REVISION.
    const volume = tempDir();
    const revision = (name: string, text: string) => {
      mkdirSync(join(volume, name));
      writeFileSync(join(volume, name, "oi.conf"), text);
    };
    revision("..2026_12_07_old", rule(first, one.port));
    symlinkSync("..2026_12_07_old", join(volume, "..data"));
    symlinkSync("..data/oi.conf", join(volume, "oi.conf"));
    const oi = await oiOnFile(join(volume, "oi.conf"), ["--watch"]);

    revision("..2026_12_07_new", rule(first, one.port) + rule(second, two.port));
    symlinkSync("..2026_12_07_new", join(volume, "..data_tmp"));
    renameSync(join(volume, "..data_tmp"), join(volume, "..data"));
    rmSync(join(volume, "..2026_12_07_old"), { recursive: true });

    await oi.stdout.waitFor("watch: oi.conf changed: reloading", 5000);
    await oi.stdout.waitFor("reloaded: 1 listener(s) started, 1 kept, 0 stopped", 5000);
    expect(await greeting(second)).toBe("two");

    // And the next update, now that the first revision's directory is gone.
    revision("..2026_12_07_third", rule(second, two.port));
    symlinkSync("..2026_12_07_third", join(volume, "..data_tmp"));
    renameSync(join(volume, "..data_tmp"), join(volume, "..data"));
    await oi.stdout.waitFor("reloaded: 0 listener(s) started, 1 kept, 1 stopped", 5000);
    expect(await connectionRefused(first)).toBe(true);
  });

  test("20 writes within 100 ms make exactly one reload", async () => {
    const [one, two] = [greeter("one"), greeter("two")];
    const [first, second] = [freePort(), freePort()];
    const path = join(tempDir(), "oi.conf");
    writeFileSync(path, rule(first, one.port));
    const oi = await oiOnFile(path, ["--watch"]);
    let last = Date.now();
    let widestGap = 0;
    for (let write = 1; write <= 20; write++) {
      // Every write a different file; the last one adds the second rule.
      writeFileSync(path, rule(first, one.port) + `# write ${write}\n` + (write === 20 ? rule(second, two.port) : ""));
      // A few ms apart, so a watcher without a quiet period would reload more than once.
      await Bun.sleep(2);
      widestGap = Math.max(widestGap, Date.now() - last);
      last = Date.now();
    }
    // The premise: no pause between two writes as long as the quiet period (200 ms), even on a loaded machine.
    expect(widestGap).toBeLessThan(150);
    await oi.stdout.waitFor("reloaded:", 5000);
    // Well past the quiet period: a second reload would have shown by now.
    await Bun.sleep(1000);
    expect(count(oi.stdout.text, "reloaded:")).toBe(1);
    expect(count(oi.stdout.text, "watch: oi.conf changed: reloading")).toBe(1);
    expect(await greeting(second)).toBe("two");
  });

  test("a broken file logs its error and keeps the running rules; its fix reloads", async () => {
    const [one, two] = [greeter("one"), greeter("two")];
    const [first, second] = [freePort(), freePort()];
    const path = join(tempDir(), "oi.conf");
    writeFileSync(path, rule(first, one.port));
    const oi = await oiOnFile(path, ["--watch"]);
    writeFileSync(path, `${rule(first, one.port)}127.0.0.1 ${second} 127.0.0.1\n`);
    await oi.stdout.waitFor("watch: oi.conf changed: reloading", 5000);
    const output = () => oi.stdout.text + oi.stderr.text;
    const deadline = Date.now() + 5000;
    while (!output().includes("reload failed: the running configuration stays in force") && Date.now() < deadline) await Bun.sleep(20);
    expect(output()).toContain(`${path}:2: wrong number of fields`);
    expect(output()).toContain("reload failed: the running configuration stays in force");
    expect(await greeting(first)).toBe("one");
    expect(await connectionRefused(second)).toBe(true);

    writeFileSync(path, rule(first, one.port) + rule(second, two.port));
    await oi.stdout.waitFor("reloaded: 1 listener(s) started, 1 kept, 0 stopped", 5000);
    expect(await greeting(second)).toBe("two");
  });

  test("without --watch or `watch`, an edit does nothing until a SIGHUP", async () => {
    const [one, two] = [greeter("one"), greeter("two")];
    const [first, second] = [freePort(), freePort()];
    const path = join(tempDir(), "oi.conf");
    writeFileSync(path, rule(first, one.port));
    const oi = await oiOnFile(path);
    writeFileSync(path, rule(first, one.port) + rule(second, two.port));
    await Bun.sleep(1000);
    expect(oi.stdout.text).not.toContain("reloading");
    expect(await connectionRefused(second)).toBe(true);
    oi.signal("SIGHUP");
    await oi.stdout.waitFor("reloaded: 1 listener(s) started", 5000);
    expect(await greeting(second)).toBe("two");
  });
});
