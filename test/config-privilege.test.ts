/**
 * `user` and `group` in the three formats: names and numbers resolved
 * against /etc/passwd and /etc/group when the config loads, and the errors
 * (unknown names, a group without a user) with their file and line.
 */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { resolvePrivilege } from "../src/config/accounts.ts";
import { describeConfig } from "../src/config/describe.ts";
import { emptyConfig } from "../src/config/model.ts";
import { configYaml } from "../src/config/yaml-writer.ts";
import { loadConfigText } from "../src/config/load.ts";
import { textLoader } from "./helpers/config.ts";
import { tempDir } from "./helpers/oi-process.ts";

const loadText = textLoader();

/** A passwd and a group file of our own, so the test does not depend on the machine's accounts. */
function accountFiles(): { passwd: string; group: string } {
  const dir = tempDir();
  const passwd = join(dir, "passwd");
  const group = join(dir, "group");
  writeFileSync(passwd, "root:x:0:0:root:/root:/bin/bash\n# a comment\nproxy:x:13:13:proxy:/bin:/usr/sbin/nologin\noi:x:990:985::/nonexistent:/usr/sbin/nologin\n+nis\n");
  writeFileSync(group, "root:x:0:\nproxy:x:13:\noi:x:985:\nnet:x:600:oi\n");
  return { passwd, group };
}

function withAccounts(user: string | undefined, group: string | undefined) {
  const config = emptyConfig("/etc/oi/oi.conf", "conf");
  if (user !== undefined) config.user = { name: user, at: { file: "/etc/oi/oi.conf", line: 3 } };
  if (group !== undefined) config.group = { name: group, at: { file: "/etc/oi/oi.conf", line: 4 } };
  return { config, errors: resolvePrivilege(config, accountFiles()) };
}

describe("user and group", () => {
  test(".conf, TOML and YAML give the same settings (the machine's nobody and nogroup)", async () => {
    const conf = await loadText("a.conf", "user nobody\ngroup nogroup\n127.0.0.1 8000 127.0.0.1 80\n");
    const toml = await loadText("a.toml", 'user = "nobody"\ngroup = "nogroup"\n[[forwarding_rules]]\nbind_address = "127.0.0.1"\nbind_port = 8000\nconnect_address = "127.0.0.1"\nconnect_port = 80\n');
    // Numbers are ids, unquoted in YAML too.
    const yaml = await loadText("a.yaml", 'global:\n  user: 65534\n  group: nogroup\nrules:\n  - name: web\n    bind: "127.0.0.1:8000/tcp"\n    connect: "127.0.0.1:80/tcp"\n');
    for (const result of [conf, toml, yaml]) {
      expect(result.errors).toEqual([]);
      expect(result.config?.privilege).toEqual({ uid: 65534, gid: 65534, user: "nobody", group: "nogroup" });
      expect(describeConfig(result.config!)).toContain("runs as: user nobody (65534), group nogroup (65534) once its listeners are bound");
    }
    // What `oi check` prints as YAML loads again to the same ids.
    const again = loadConfigText(configYaml(toml.config!), "again.yaml");
    expect(again.errors).toEqual([]);
    expect(again.config?.privilege).toEqual(toml.config?.privilege);
  });

  test("the group defaults to the user's primary group; numbers may stand for either", () => {
    expect(withAccounts("oi", undefined)).toMatchObject({ errors: [], config: { privilege: { uid: 990, gid: 985, user: "oi", group: "oi" } } });
    expect(withAccounts("990", "600")).toMatchObject({ errors: [], config: { privilege: { uid: 990, gid: 600, user: "oi", group: "net" } } });
    // An id with no entry: taken as given, but then its group must be named.
    expect(withAccounts("4321", "13")).toMatchObject({ errors: [], config: { privilege: { uid: 4321, gid: 13, user: "4321", group: "proxy" } } });
    expect(withAccounts("4321", undefined).errors).toEqual([
      { file: "/etc/oi/oi.conf", line: 3, reason: expect.stringMatching(/^user 4321 is not in \/.*passwd, so it has no primary group: give one \(group NAME\|ID\)$/) },
    ]);
  });

  test("unknown names, root, a group alone and a malformed name are errors with file and line", async () => {
    expect(withAccounts("nosuch", undefined).errors).toEqual([{ file: "/etc/oi/oi.conf", line: 3, reason: expect.stringMatching(/^user nosuch: no such user in \/.*passwd$/) }]);
    expect(withAccounts("oi", "nosuch").errors).toEqual([{ file: "/etc/oi/oi.conf", line: 4, reason: expect.stringMatching(/^group nosuch: no such group in \/.*group$/) }]);
    expect(withAccounts("root", undefined).errors).toEqual([{ file: "/etc/oi/oi.conf", line: 3, reason: "user root is root: nothing to drop (leave user out to run as root)" }]);
    expect(withAccounts(undefined, "oi").errors).toEqual([{ file: "/etc/oi/oi.conf", line: 4, reason: "group oi needs user: oi drops to a user and a group together (user NAME)" }]);

    const conf = await loadText("b.conf", "# accounts\nuser no-such-user-here\n127.0.0.1 8000 127.0.0.1 80\ngroup nobody nogroup\n");
    expect(conf.errors.map((issue) => [issue.line, issue.reason])).toEqual([
      [2, "user no-such-user-here: no such user in /etc/passwd"],
      [4, "group takes one value (group VALUE), found 2 arguments"],
    ]);
    const toml = await loadText("b.toml", 'user = "nobody"\ngroup = "no-such-group-here"\n');
    expect(toml.errors.map((issue) => [issue.line, issue.reason])).toEqual([[2, "group no-such-group-here: no such group in /etc/group"]]);
    const yaml = await loadText("b.yaml", 'global:\n  log_file: /tmp/x.log\n  user: "bad name"\n  group: [1]\n');
    expect(yaml.errors.map((issue) => [issue.line, issue.reason])).toEqual([
      [3, "user must be a user name or number, got 'bad name'"],
      [4, expect.stringContaining("group")],
    ]);
  });
});
