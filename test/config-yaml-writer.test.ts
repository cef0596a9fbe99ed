/**
 * The running config written as rinetd-uv YAML (GET /api/v1/config) loads
 * back to the same rules, whatever format it was read from.
 */
import { describe, expect, test } from "bun:test";
import { loadConfigText } from "../src/config/load.ts";
import { configYaml } from "../src/config/yaml-writer.ts";
import type { Config, ForwardRule } from "../src/types.ts";
import { plainAccess, textLoader } from "./helpers/config.ts";

const loadText = textLoader();

/** What must survive the trip: everything but where the rule was written. */
function essence(rule: ForwardRule) {
  const { at, access, index, ...rest } = rule;
  const plain = plainAccess(access);
  return { ...rest, access: { allow: plain.allow.map(([text]) => text), deny: plain.deny.map(([text]) => text) } };
}

function roundTrip(config: Config): Config {
  const text = configYaml(config);
  const again = loadConfigText(text, "exported.yaml");
  expect(again.errors).toEqual([]);
  return again.config!;
}

describe("config export as YAML", () => {
  test("a .conf with options, balancing and access loads back to the same rules and globals", async () => {
    const conf = await loadText(
      "full.conf",
      [
        "logfile /tmp/oi-x.log",
        "logcommon",
        "maxconn 500",
        "allow 127.0.0.*",
        "deny 10.0.0.1",
        "127.0.0.1 8080 127.0.0.1:9000,127.0.0.1:9001*3 9000 [lb=leastconn,connect_timeout=2.5,maxconn=10,idle=30,keepalive=20,probe=5,rate=1mbit,maxconn-client=4,connrate-client=5/10]",
        "allow 127.0.0.1",
        "0.0.0.0 5353/udp 127.0.0.1 53/udp [timeout=30,max_sessions=100]",
        "127.0.0.1 7000 127.0.0.1 7001/udp [frame=len16,max_datagram=1400]",
        "127.0.0.1 8000-8009 127.0.0.1 9000-9009",
        "",
      ].join("\n"),
    );
    expect(conf.errors).toEqual([]);
    const again = roundTrip(conf.config!);
    expect(again.rules.map(essence)).toEqual(conf.config!.rules.map(essence));
    expect(again).toMatchObject({ logFile: "/tmp/oi-x.log", logFormat: "common", maxConnections: 500 });
    expect(plainAccess(again.globalAccess).allow.map(([text]) => text)).toEqual(["127.0.0.*"]);
  });

  test("srv: backends and dns-servers survive the trip", async () => {
    const conf = await loadText("srv.conf", "dns-servers 127.0.0.1:5353,[::1]:53\n127.0.0.1 8080 srv:_web._tcp.example.com\n127.0.0.1 5300/udp srv:_dns._udp.example.com\n");
    expect(conf.errors).toEqual([]);
    const again = roundTrip(conf.config!);
    expect(again.rules.map(essence)).toEqual(conf.config!.rules.map(essence));
    expect(again.dnsServers).toEqual([
      { host: "127.0.0.1", port: 5353 },
      { host: "::1", port: 53 },
    ]);
  });

  test("a YAML rule with several binds and named weighted backends stays one rule", async () => {
    const yaml = await loadText(
      "multi.yaml",
      `rules:\n  - name: web\n    bind: ["unix:/tmp/oi-web2.sock", "unix:/tmp/oi-web.sock"]\n    connect:\n      - { dest: "127.0.0.1:9000", name: a, weight: 5 }\n      - { dest: "127.0.0.1:9001", name: b }\n    mode: "0660"\n    load_balancing: { algorithm: iphash, affinity_ttl: 60 }\n`,
    );
    expect(yaml.errors).toEqual([]);
    const text = configYaml(yaml.config!);
    expect(text.match(/- name: "web"/g)).toHaveLength(1);
    expect(roundTrip(yaml.config!).rules.map(essence)).toEqual(yaml.config!.rules.map(essence));
  });
});
