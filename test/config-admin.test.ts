/**
 * The admin server's directives (`admin`, `admin-token`, `admin-mode`,
 * `admin-read`) in the three formats, and the config errors they can give,
 * each with its file and line.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeConfig } from "../src/config/describe.ts";
import { linesAndReasons, textLoader } from "./helpers/config.ts";

const loadText = textLoader();
const tokenFile = join(tmpdir(), `oi-admin-token-${process.pid}`);
writeFileSync(tokenFile, "s3cret-token-0123456789\n");

describe("admin directives", () => {
  test(".conf, TOML and YAML give the same settings", async () => {
    const conf = await loadText("a.conf", `admin unix:/run/oi/admin.sock\nadmin-token ${tokenFile}\nadmin-mode 0660\nadmin-read open\n`);
    const toml = await loadText("a.toml", `admin = "unix:/run/oi/admin.sock"\nadmin_token = "${tokenFile}"\nadmin_mode = "0660"\nadmin_read = "open"\n`);
    // YAML reads an unquoted 0660 as the number 660: the mode is taken as written.
    const yaml = await loadText("a.yaml", `global:\n  admin: "unix:/run/oi/admin.sock"\n  admin_token: "${tokenFile}"\n  admin_mode: 0660\n  admin_read: open\n`);
    for (const result of [conf, toml, yaml]) {
      expect(result.errors).toEqual([]);
      expect(describeConfig(result.config!)).toContain(`admin: unix:/run/oi/admin.sock (mode 0660), token from ${tokenFile}, reads open`);
      expect(result.config?.admin).toMatchObject({
        address: { transport: "unix", path: "/run/oi/admin.sock" },
        tokenFile,
        token: "s3cret-token-0123456789",
        socketMode: 0o660,
        readOpen: true,
      });
    }
  });

  test("defaults: mode 0600, no token, reads need the token when there is one", async () => {
    const result = await loadText("b.conf", "# comment\nadmin 127.0.0.1:9090\n");
    expect(result.errors).toEqual([]);
    expect(result.config?.admin).toMatchObject({ address: { transport: "tcp", host: "127.0.0.1", port: 9090 }, socketMode: 0o600, readOpen: false, at: { line: 2 } });
    expect((await loadText("c.conf", "admin [::1]:9090\n")).errors).toEqual([]);
  });

  test("bad settings are errors with FILE:LINE", async () => {
    const cases: Array<[text: string, line: number, reason: RegExp]> = [
      ["\nadmin localhost:80\n", 2, /admin address 'localhost:80' must be IP:PORT/],
      ["admin 127.0.0.1:99999\n", 1, /admin port/],
      ["admin unix:\n", 1, /names no socket path/],
      ["admin 127.0.0.1:9090\nadmin-mode 0400\n", 2, /lock the owner/],
      ["admin 127.0.0.1:9090\nadmin-mode rw\n", 2, /octal permissions/],
      ["admin 127.0.0.1:9090\nadmin-read maybe\n", 2, /admin-read must be open or token/],
      ["# c\n# c\nadmin 0.0.0.0:9090\n", 3, /reachable from other hosts: give admin-token FILE/],
      ["admin 10.0.0.1:9090\nadmin-token /nonexistent/oi-token\n", 1, /cannot read admin-token file \/nonexistent\/oi-token: ENOENT/],
      ["admin-token /x\n", 1, /need the admin server's address/],
    ];
    for (const [text, line, reason] of cases) {
      const result = await loadText("bad.conf", text);
      expect(result.config).toBeUndefined();
      const found = linesAndReasons(result.errors);
      expect(found.length).toBe(1);
      expect(found[0]?.[0]).toBe(line);
      expect(found[0]?.[1]).toMatch(reason);
      expect(result.errors[0]?.file).toBe(result.path);
    }
  });

  test("a short token and a non-loopback address in YAML, at their lines", async () => {
    const short = join(tmpdir(), `oi-admin-short-${process.pid}`);
    writeFileSync(short, "abc\n");
    const yaml = await loadText("d.yaml", `global:\n  log_common: true\n  admin: "0.0.0.0:9090"\n  admin_token: "${short}"\n`);
    expect(linesAndReasons(yaml.errors)).toEqual([[3, `admin-token file ${short} must hold one token of at least 16 characters without spaces`]]);
    const toml = await loadText("d.toml", `\nadmin = "192.0.2.1:9090"\n`);
    expect(linesAndReasons(toml.errors)[0]?.[0]).toBe(2);
  });
});
