/**
 * DNS multi-IP expansion (rinetd-uv's dns-multi-ip-expand and
 * dns-multi-ip-proto): a backend name with several addresses becomes one
 * backend per address, `NAME[0]`, `NAME[1]`..., of the family asked for,
 * kept in step with each refresh. The name's answers come from an injected
 * lookup (no DNS query leaves the machine); the e2e part uses `localhost`.
 * Also `oi check`'s report of names that do not resolve.
 */
import { describe, expect, test } from "bun:test";
import { RuleBackends } from "../../src/backends.ts";
import { findUnresolvedNames } from "../../src/config/check-names.ts";
import { loadConfigText } from "../../src/config/load.ts";
import type { LookupRecord } from "../../src/dns.ts";
import type { ForwardRule } from "../../src/types.ts";
import { backend, cleanUpAfterEachTest, oi } from "../helpers/harness.ts";
import { connectExpectingClose, connectPeer, freePort } from "../helpers/peers.ts";

cleanUpAfterEachTest();

/** A lookup answering from `answers` (changed by the test), counting its calls. */
function fakeDns(answers: Record<string, string[]>) {
  const lookup = (host: string): Promise<readonly LookupRecord[]> => {
    lookup.calls++;
    const addresses = answers[host];
    if (addresses === undefined) return Promise.reject(Object.assign(new Error("not found"), { code: "DNS_ENOTFOUND" }));
    return Promise.resolve(addresses.map((address) => ({ address, ttl: 0 })));
  };
  lookup.calls = 0;
  return lookup;
}

function ruleOf(text: string, file = "dns.conf"): ForwardRule {
  const result = loadConfigText(text, file);
  const rule = result.config?.rules[0];
  if (rule === undefined) throw new Error(JSON.stringify(result.errors));
  return rule;
}

function live(backends: RuleBackends): string[] {
  return backends.statuses.map((status) => status.name);
}

describe("dns-multi-ip-expand", () => {
  test("on: one backend per address of the family asked for (ipv4 by default), in step with each refresh", async () => {
    const answers = { "web.test": ["10.0.0.1", "2001:db8::1", "10.0.0.2"] };
    const backends = new RuleBackends(ruleOf("dns-multi-ip-expand on\n0.0.0.0 80 web.test 8080\n"), { lookup: fakeDns(answers) });
    try {
      await backends.refreshNames();
      expect(live(backends)).toEqual(["web.test:8080[0]", "web.test:8080[1]"]);
      expect([backends.targetOf(0, undefined)?.backend.name, await backends.addressesOf(0), await backends.addressesOf(1)]).toEqual([
        "web.test:8080[0]",
        ["10.0.0.1"],
        ["10.0.0.2"],
      ]);
      // Connections are spread over the addresses (roundrobin).
      const picks = [0, 1, 2, 3].map(() => backends.pool.pick("192.0.2.1"));
      expect(picks.sort()).toEqual([0, 0, 1, 1]);
      for (const index of picks) if (index !== undefined) backends.pool.closed(index, 0, 0);

      // A refresh: 10.0.0.1 vanished (drained: no new connections), 10.0.0.3 appeared.
      const busy = backends.pool.pick("192.0.2.1", 1 << 1);
      expect(busy).toBe(0);
      answers["web.test"] = ["10.0.0.2", "10.0.0.3"];
      await backends.refreshNames();
      expect(live(backends)).toEqual(["web.test:8080[0]", "web.test:8080[1]", "web.test:8080[2]"]);
      expect(backends.pool.isRetired(0)).toBe(true);
      const fresh = Array.from({ length: 4 }, () => backends.pool.pick("192.0.2.2"));
      expect(fresh).not.toContain(0);
      const addresses = await Promise.all(fresh.map((index) => backends.addressesOf(index ?? -1)));
      expect(new Set(addresses.flat())).toEqual(new Set(["10.0.0.2", "10.0.0.3"]));
      // Once its last connection ends, the vanished address is gone from the list.
      backends.pool.closed(0, 0, 0);
      expect(live(backends)).toEqual(["web.test:8080[1]", "web.test:8080[2]"]);
    } finally {
      backends.stop();
    }
  });

  test("dns-multi-ip-proto ipv6 and any; off: the name stays one backend, every address tried in order", async () => {
    const answers = { "web.test": ["10.0.0.1", "2001:db8::1"] };
    for (const [directives, names] of [
      ["dns-multi-ip-expand on\ndns-multi-ip-proto ipv6\n", ["web.test:8080[0]"]],
      ["dns-multi-ip-expand on\ndns-multi-ip-proto any\n", ["web.test:8080[0]", "web.test:8080[1]"]],
      ["", ["web.test:8080"]],
    ] as const) {
      const backends = new RuleBackends(ruleOf(`${directives}0.0.0.0 80 web.test 8080\n`), { lookup: fakeDns(answers) });
      try {
        await backends.refreshNames();
        expect(live(backends)).toEqual([...names]);
        if (directives === "") expect(await backends.addressesOf(0)).toEqual(["10.0.0.1", "2001:db8::1"]);
      } finally {
        backends.stop();
      }
    }
  });

  test("YAML expands by default; dns_refresh re-resolves on its own", async () => {
    const answers = { "web.test": ["10.0.0.1"] };
    const lookup = fakeDns(answers);
    const rule = ruleOf('rules:\n  - name: web\n    bind: "0.0.0.0:80"\n    connect:\n      - dest: "web.test:80"\n        dns_refresh: 1\n', "dns.yaml");
    const backends = new RuleBackends(rule, { lookup });
    try {
      await backends.refreshNames();
      expect(live(backends)).toEqual(["web-backend-1[0]"]);
      answers["web.test"] = ["10.0.0.1", "10.0.0.7"];
      const deadline = Date.now() + 3000;
      while (live(backends).length < 2 && Date.now() < deadline) await Bun.sleep(50);
      expect(live(backends)).toEqual(["web-backend-1[0]", "web-backend-1[1]"]);
      expect(await backends.addressesOf(1)).toEqual(["10.0.0.7"]);
    } finally {
      backends.stop();
    }
  });

  test("e2e: localhost expands to localhost:PORT[0] -> 127.0.0.1; with ipv6 only there is nothing to connect to", async () => {
    const server = backend((peer) => void peer.send("hi", true));
    const [v4, v6] = [freePort(), freePort()];
    const proc = await oi(
      `dns-multi-ip-expand on\n127.0.0.1 ${v4} localhost ${server.port}\n`,
    );
    await proc.stdout.waitFor(`backend localhost:${server.port}[0] -> 127.0.0.1`, 3000);
    const client = await connectPeer("127.0.0.1", v4);
    client.keep = [];
    await client.waitEnd();
    client.socket?.end();
    expect(client.text()).toBe("hi");

    const unresolved = freePort();
    const ipv6Only = await oi(`dns-multi-ip-expand on\ndns-multi-ip-proto ipv6\n127.0.0.1 ${v6} 127.0.0.1 ${server.port}\n127.0.0.1 ${unresolved} localhost ${server.port}\n`);
    // An IP literal is not expanded: that rule still forwards.
    const literal = await connectPeer("127.0.0.1", v6);
    literal.keep = [];
    await literal.waitEnd();
    literal.socket?.end();
    expect(literal.text()).toBe("hi");
    // localhost has no IPv6 address here (or, where it has, reaches nothing on ::1): the client is closed without data.
    expect(await connectExpectingClose("127.0.0.1", unresolved)).toBe(0);
    expect(server.connections.length).toBe(2);
  });
});

describe("oi check and names that do not resolve", () => {
  test("reported as warnings at the rule's line, not errors", async () => {
    const result = loadConfigText("0.0.0.0 80 web.test 80\n0.0.0.0 81 gone.test 80\nbind.test 82 10.0.0.1 80\n", "names.conf");
    if (result.config === undefined) throw new Error("did not load");
    const warnings = await findUnresolvedNames(result.config, fakeDns({ "web.test": ["10.0.0.1"] }));
    expect(warnings.map((issue) => [issue.line, issue.reason])).toEqual([
      [2, "backend host name 'gone.test' does not resolve here (ENOTFOUND): connections to it fail until it does"],
      [3, "bind host name 'bind.test' does not resolve here (ENOTFOUND): oi cannot listen on it here"],
    ]);
  });
});
