/**
 * Which binds a reload after the privilege drop cannot open: new ports below
 * the kernel's unprivileged start, and only those (kept ports, unix sockets
 * and high ports need nothing).
 */
import { describe, expect, test } from "bun:test";
import { loadConfigText } from "../src/config/load.ts";
import { newPrivilegedBind, privilegedPortMessage } from "../src/privilege.ts";
import type { ForwardRule } from "../src/types.ts";

function rules(text: string): ForwardRule[] {
  const result = loadConfigText(text, "/etc/oi/oi.conf");
  expect(result.errors).toEqual([]);
  return result.config!.rules;
}

describe("newPrivilegedBind", () => {
  const running = rules("0.0.0.0 80 10.0.0.1 80\n0.0.0.0 1000-1030 10.0.0.1 1000-1030\n0.0.0.0 53/udp 10.0.0.1 53/udp\n");

  test("kept ports, high ports and unix sockets need nothing new", () => {
    const next = rules("0.0.0.0 80 10.0.0.2 8080\n0.0.0.0 1010-1040 10.0.0.1 1010-1040\n0.0.0.0 53/udp 10.0.0.9 53/udp\nunix:/run/oi.sock 10.0.0.1 80\n");
    expect(newPrivilegedBind(running, next, 1024)).toBeUndefined();
  });

  test("a new port, another address, another transport or a range reaching lower is found, with its rule", () => {
    const at = (text: string) => {
      const found = newPrivilegedBind(running, rules(text), 1024);
      return found === undefined ? undefined : [found.rule.at.line, found.port];
    };
    expect(at("0.0.0.0 80 10.0.0.1 80\n0.0.0.0 443 10.0.0.1 443\n")).toEqual([2, 443]);
    expect(at("127.0.0.1 80 10.0.0.1 80\n")).toEqual([1, 80]);
    expect(at("0.0.0.0 80/udp 10.0.0.1 80/udp\n")).toEqual([1, 80]);
    expect(at("0.0.0.0 990-1030 10.0.0.1 990-1030\n")).toEqual([1, 990]);
    // A lower threshold (net.ipv4.ip_unprivileged_port_start) lets more through.
    expect(newPrivilegedBind(running, rules("0.0.0.0 443 10.0.0.1 443\n"), 400)).toBeUndefined();
  });

  test("the message names the rule's line, the port, the threshold and the user", () => {
    const found = newPrivilegedBind(running, rules("# new\n0.0.0.0 443 10.0.0.1 443\n"), 1024)!;
    expect(privilegedPortMessage(found.rule, found.port, { uid: 990, gid: 985, user: "oi", group: "oi" }, 1024)).toBe(
      "/etc/oi/oi.conf:2: cannot bind 443 below 1024 after dropping privileges to oi: restart oi",
    );
  });
});
