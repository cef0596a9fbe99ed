/**
 * @module Users and groups by name, for `user` and `group`: read from
 * /etc/passwd and /etc/group as getpwnam and getgrnam read them on a system
 * without NSS modules (no LDAP or systemd-userdb lookups, which an FFI call
 * into glibc's NSS would load into a Bun process). The ids are resolved when
 * the config loads, so a name that does not exist is a config error with its
 * file and line, not a failure after the listeners are bound.
 */
import { readFileSync } from "node:fs";
import type { Config, ConfigIssue, PrivilegeTarget } from "../types.ts";

export const PASSWD_FILE = "/etc/passwd";
export const GROUP_FILE = "/etc/group";

interface Account {
  name: string;
  id: number;
  /** For a user: the primary group id. */
  gid: number;
}

/** Entries of a passwd(5) or group(5) file: name, id (third field), and for passwd the group (fourth). */
function readAccounts(path: string): Account[] | string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    return `cannot read ${path}: ${error instanceof Error ? error.message : String(error)}`;
  }
  const accounts: Account[] = [];
  for (const line of text.split("\n")) {
    const [name, , id, gid] = line.split(":");
    // Comments and NIS compat lines (+name, -name) name no local account.
    if (name === undefined || name === "" || name.startsWith("#") || name.startsWith("+") || name.startsWith("-")) continue;
    const number = Number(id);
    if (!/^\d+$/.test(id ?? "")) continue;
    accounts.push({ name, id: number, gid: /^\d+$/.test(gid ?? "") ? Number(gid) : Number.NaN });
  }
  return accounts;
}

const MAX_ID = 0xfffffffe;

/** An account named `text`, or the number `text` (with its name when the file has one). */
function lookUp(accounts: Account[], text: string): Account | undefined {
  if (/^\d+$/.test(text)) {
    const id = Number(text);
    if (id > MAX_ID) return undefined;
    return accounts.find((account) => account.id === id) ?? { id, name: text, gid: Number.NaN };
  }
  return accounts.find((account) => account.name === text);
}

/**
 * Resolve `user` and `group` into `config.privilege`; the errors name the
 * directive's file and line. `group` defaults to the user's primary group.
 */
export function resolvePrivilege(config: Config, files: { passwd: string; group: string } = { passwd: PASSWD_FILE, group: GROUP_FILE }): ConfigIssue[] {
  const { user, group } = config;
  if (user === undefined && group === undefined) return [];
  if (user === undefined) {
    return [{ ...group!.at, reason: `group ${group!.name} needs user: oi drops to a user and a group together (user NAME)` }];
  }
  const users = readAccounts(files.passwd);
  if (typeof users === "string") return [{ ...user.at, reason: users }];
  const found = lookUp(users, user.name);
  if (found === undefined) return [{ ...user.at, reason: `user ${user.name}: no such user in ${files.passwd}` }];
  let gid = found.gid;
  let groupName = "";
  if (group !== undefined) {
    const groups = readAccounts(files.group);
    if (typeof groups === "string") return [{ ...group.at, reason: groups }];
    const foundGroup = lookUp(groups, group.name);
    if (foundGroup === undefined) return [{ ...group.at, reason: `group ${group.name}: no such group in ${files.group}` }];
    gid = foundGroup.id;
    groupName = foundGroup.name;
  } else if (Number.isNaN(gid)) {
    return [{ ...user.at, reason: `user ${user.name} is not in ${files.passwd}, so it has no primary group: give one (group NAME|ID)` }];
  } else {
    const groups = readAccounts(files.group);
    groupName = (typeof groups === "string" ? undefined : groups.find((each) => each.id === gid)?.name) ?? String(gid);
  }
  if (found.id === 0) return [{ ...user.at, reason: `user ${user.name} is root: nothing to drop (leave user out to run as root)` }];
  const privilege: PrivilegeTarget = { uid: found.id, gid, user: found.name, group: groupName };
  config.privilege = privilege;
  return [];
}
