/**
 * `proxy-from` (TOML/YAML `proxy_from`) in the three formats: networks and
 * addresses, IPv6 and IPv4-mapped, and the errors with file and line: a bad
 * network, proxy-from without accept_proxy, on a unix listener, or differing
 * between the rules of one bind.
 */
import { describe, expect, test } from "bun:test";
import { parseClientAddress } from "../src/access.ts";
import { describeConfig } from "../src/config/describe.ts";
import { loadConfigText } from "../src/config/load.ts";
import { configYaml } from "../src/config/yaml-writer.ts";
import { textLoader } from "./helpers/config.ts";

const loadText = textLoader();

function trusts(networks: { matches(address: ReturnType<typeof parseClientAddress> & object): boolean }[] | undefined, address: string): boolean {
  const peer = parseClientAddress(address)!;
  return (networks ?? []).some((network) => network.matches(peer));
}

describe("proxy-from", () => {
  test(".conf, TOML and YAML give the same networks; `oi check`'s YAML loads back to them", async () => {
    const conf = await loadText("a.conf", "0.0.0.0 443 10.0.0.5 443 [accept_proxy,proxy-from=10.0.0.0/8|fd00::/8|192.0.2.1]\n");
    const toml = await loadText(
      "a.toml",
      '[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = 443\nconnect_address = "10.0.0.5"\nconnect_port = 443\naccept_proxy = true\nproxy_from = ["10.0.0.0/8", "fd00::/8", "192.0.2.1"]\n',
    );
    const yaml = await loadText(
      "a.yaml",
      'rules:\n  - name: web\n    bind: "0.0.0.0:443/tcp"\n    connect: "10.0.0.5:443/tcp"\n    accept_proxy: true\n    proxy_from: ["10.0.0.0/8", "fd00::/8", "192.0.2.1"]\n',
    );
    for (const result of [conf, toml, yaml]) {
      expect(result.errors).toEqual([]);
      const rule = result.config!.rules[0]!;
      expect(rule.proxyFrom?.map((network) => network.text)).toEqual(["10.0.0.0/8", "fd00::/8", "192.0.2.1"]);
      expect(describeConfig(result.config!)).toContain("proxy-from=10.0.0.0/8|fd00::/8|192.0.2.1");
      expect(trusts(rule.proxyFrom, "10.200.1.1")).toBe(true);
      expect(trusts(rule.proxyFrom, "::ffff:10.200.1.1")).toBe(true);
      expect(trusts(rule.proxyFrom, "fd12::1")).toBe(true);
      expect(trusts(rule.proxyFrom, "192.0.2.1")).toBe(true);
      expect(trusts(rule.proxyFrom, "192.0.2.2")).toBe(false);
      expect(trusts(rule.proxyFrom, "11.0.0.1")).toBe(false);
      expect(trusts(rule.proxyFrom, "fe80::1")).toBe(false);
    }
    const again = loadConfigText(configYaml(yaml.config!), "again.yaml");
    expect(again.errors).toEqual([]);
    expect(again.config?.rules[0]?.proxyFrom?.map((network) => network.text)).toEqual(["10.0.0.0/8", "fd00::/8", "192.0.2.1"]);
  });

  test("errors with file and line: a bad network, no accept_proxy, a unix listener, rules of one bind that differ", async () => {
    const conf = await loadText(
      "b.conf",
      [
        "0.0.0.0 8001 10.0.0.5 80 [accept_proxy,proxy-from=10.0.0.0/33]", // 1
        "0.0.0.0 8002 10.0.0.5 80 [accept_proxy,proxy-from=10.0.*.*]", // 2
        "0.0.0.0 8003 10.0.0.5 80 [proxy-from=10.0.0.0/8]", // 3
        "unix:/run/oi.sock 10.0.0.5 80 [accept_proxy,proxy-from=10.0.0.0/8]", // 4
        "0.0.0.0 8005 10.0.0.5 443 [sni=a.example,accept_proxy,proxy-from=10.0.0.0/8]", // 5
        "0.0.0.0 8005 10.0.0.6 443 [accept_proxy,proxy-from=10.0.0.0/16]", // 6
        "0.0.0.0 8007 10.0.0.5 80 [accept_proxy,proxy-from=proxy.example]", // 7
      ].join("\n"),
    );
    expect(conf.errors.map((issue) => [issue.line, issue.reason])).toEqual([
      [1, "proxy-from '10.0.0.0/33': bad CIDR prefix length '33' (0..32 for IPv4)"],
      [2, "proxy-from '10.0.*.*': a network (10.0.0.0/8, fd00::/8) or an address"],
      [3, "proxy-from applies to rules with accept_proxy (it says whose PROXY headers to trust): add accept_proxy or remove proxy-from"],
      [4, "proxy-from needs a TCP listener: peers on a unix socket have no address (limit who may connect with mode=)"],
      [6, "proxy-from must be the same for every rule on 0.0.0.0:8005/tcp (the PROXY header is read before a rule is chosen): it differs from the rule on line 5"],
      [7, "proxy-from 'proxy.example': a network (10.0.0.0/8, fd00::/8) or an address"],
    ]);
    const toml = await loadText(
      "b.toml",
      '[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = 443\nconnect_address = "10.0.0.5"\nconnect_port = 443\nproxy_from = "10.0.0.0/8"\n',
    );
    expect(toml.errors.map((issue) => [issue.line, issue.reason.replace(/^rule '[^']*': /, "")])).toEqual([
      [1, "proxy-from applies to rules with accept_proxy (it says whose PROXY headers to trust): add accept_proxy or remove proxy-from"],
    ]);
    const yaml = await loadText("b.yaml", 'rules:\n  - name: web\n    bind: "0.0.0.0:443/tcp"\n    connect: "10.0.0.5:443/tcp"\n    accept_proxy: true\n    proxy_from: ["10.0.0.0/8", "nope/8"]\n');
    expect(yaml.errors.map((issue) => [issue.line, issue.reason])).toEqual([[6, "rule 'web': proxy-from 'nope/8': a network (10.0.0.0/8, fd00::/8) or an address"]]);
  });
});
