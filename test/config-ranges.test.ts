/**
 * Port ranges in the three config formats: the same rule from each, and
 * every mistake (unequal widths, a range that ends before it starts, ports
 * past 65535, port 0, binds that overlap another rule's ports) an error on
 * its line with the same reason, naming the other rule's line. Also the
 * status file's per-port detail of a range rule.
 */
import { describe, expect, test } from "bun:test";
import { describeRule } from "../src/config/describe.ts";
import { linesAndReasons, textLoader } from "./helpers/config.ts";

const loadText = textLoader();

/** One forwarding rule written in each format; `bind` and `connect` as `HOST:PORTS`, `protocol` tcp or udp. */
function inEachFormat(bind: string, connect: string, protocol: "tcp" | "udp" = "tcp"): Array<[name: string, text: string]> {
  const [bindHost, bindPorts] = bind.split(":") as [string, string];
  const [connectHost, connectPorts] = connect.split(":") as [string, string];
  const suffix = protocol === "udp" ? "/udp" : "";
  const tomlPort = (ports: string) => (ports.includes("-") ? `"${ports}"` : ports);
  return [
    ["r.conf", `# ranges\n${bindHost} ${bindPorts}${suffix} ${connectHost} ${connectPorts}${suffix}\n`],
    [
      "r.toml",
      `[[forwarding_rules]]\nbind_address = "${bindHost}"\nbind_port = ${tomlPort(bindPorts)}\nconnect_address = "${connectHost}"\nconnect_port = ${tomlPort(connectPorts)}\nprotocol = "${protocol}"\n`,
    ],
    ["r.yaml", `rules:\n  - name: web\n    bind: "${bind}/${protocol}"\n    connect: "${connect}/${protocol}"\n`],
  ];
}

describe("port ranges in .conf, TOML and YAML", () => {
  test("a 1:1 range: the bind and the backend each carry their range", async () => {
    for (const [name, text] of inEachFormat("0.0.0.0:8000-8099", "10.0.0.1:9000-9099")) {
      const result = await loadText(name, text);
      expect({ name, errors: result.errors }).toEqual({ name, errors: [] });
      const rule = result.config!.rules[0]!;
      expect(rule.bind).toEqual({ host: "0.0.0.0", port: 8000, portEnd: 8099, transport: "tcp" });
      expect(rule.backends[0]!.endpoint).toEqual({ host: "10.0.0.1", port: 9000, portEnd: 9099, transport: "tcp" });
      expect(rule.mode).toBe("tcp");
    }
  });

  test("many to one, over UDP: the backend is one port", async () => {
    for (const [name, text] of inEachFormat("0.0.0.0:8000-8099", "10.0.0.1:9000", "udp")) {
      const result = await loadText(name, text);
      expect({ name, errors: result.errors }).toEqual({ name, errors: [] });
      const rule = result.config!.rules[0]!;
      expect(rule.bind).toEqual({ host: "0.0.0.0", port: 8000, portEnd: 8099, transport: "udp" });
      expect(rule.backends[0]!.endpoint).toEqual({ host: "10.0.0.1", port: 9000, transport: "udp" });
      expect(rule.mode).toBe("udp");
    }
  });

  test("the default name is the range, and oi check shows the rule on one line", async () => {
    const result = await loadText("name.conf", "0.0.0.0 8000-8099 10.0.0.1 9000-9099\n");
    const rule = result.config!.rules[0]!;
    expect(rule.name).toBe("0.0.0.0:8000-8099/tcp");
    expect(describeRule(rule)).toBe(`${result.path}:1  tcp  0.0.0.0:8000-8099 -> 10.0.0.1:9000-9099  connect_timeout=10s`);
  });

  test("several backends: each a range of the same width or one port (.conf list, TOML connect list, YAML list)", async () => {
    const conf = await loadText("list.conf", "0.0.0.0 8000-8009 10.0.0.1:9000-9009,10.0.0.2:7000*2\n");
    const toml = await loadText(
      "list.toml",
      `[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = "8000-8009"\nconnect = [{ address = "10.0.0.1", port = "9000-9009" }, { address = "10.0.0.2", port = 7000, weight = 2 }]\n`,
    );
    const yaml = await loadText(
      "list.yaml",
      `rules:\n  - name: web\n    bind: "0.0.0.0:8000-8009"\n    connect:\n      - "10.0.0.1:9000-9009"\n      - { dest: "10.0.0.2:7000", weight: 2 }\n`,
    );
    for (const result of [conf, toml, yaml]) {
      expect(result.errors).toEqual([]);
      const endpoints = result.config!.rules[0]!.backends.map((backend) => [backend.endpoint.port, backend.endpoint.portEnd, backend.weight]);
      expect(endpoints).toEqual([
        [9000, 9009, 1],
        [7000, undefined, 2],
      ]);
    }
  });

  test("cross-protocol: a TCP range to UDP ports", async () => {
    const result = await loadText("cross.conf", "0.0.0.0 8000-8009/tcp 10.0.0.1 9000-9009/udp\n");
    expect(result.errors).toEqual([]);
    expect(result.config!.rules[0]!.mode).toBe("tcptoudp");
  });
});

describe("range mistakes are errors on their line, with the same reason in every format", () => {
  // The line in .conf, TOML and YAML: a field's own line where it has one, else the rule's (TOML's [[forwarding_rules]], YAML's bind).
  const cases: Array<[bind: string, connect: string, lines: [number, number, number], reason: string]> = [
    [
      "0.0.0.0:8000-8099",
      "10.0.0.1:9000-9049",
      [2, 1, 3],
      "ranges of unequal width: connect ports 9000-9049 are 50 ports, bind ports 8000-8099 are 100 (a backend range must be as wide as the bind range, or be one port that takes them all)",
    ],
    ["0.0.0.0:8099-8000", "10.0.0.1:9000", [2, 3, 3], "bind port range '8099-8000' ends before it starts (write the lower port first)"],
    ["0.0.0.0:65000-65600", "10.0.0.1:9000", [2, 3, 3], "bind port range '65000-65600': 65600 is past the last port, 65535"],
    ["0.0.0.0:0-99", "10.0.0.1:9000", [2, 3, 3], "bind port range '0-99': port 0 cannot be part of a range (ports are 1..65535)"],
    ["0.0.0.0:8000-8099", "10.0.0.1:9099-9000", [2, 5, 4], "connect port range '9099-9000' ends before it starts (write the lower port first)"],
    ["0.0.0.0:8000", "10.0.0.1:9000-9099", [2, 1, 3], "connect port range 9000-9099 needs a bind port range of the same width; the bind is one port, 8000"],
  ];
  for (const [bind, connect, lines, reason] of cases) {
    test(`${bind} -> ${connect}`, async () => {
      for (const [index, [name, text]] of inEachFormat(bind, connect).entries()) {
        const result = await loadText(name, text);
        expect(result.config).toBeUndefined();
        const label = name.endsWith(".yaml") ? "rule 'web': " : "";
        expect({ name, errors: linesAndReasons(result.errors) }).toEqual({ name, errors: [[lines[index]!, label + reason]] });
      }
    });
  }
});

describe("binds that overlap another rule's ports", () => {
  test(".conf: the same address, a wildcard, a range over a single port; each names the earlier rule's line", async () => {
    const result = await loadText(
      "overlap.conf",
      [
        "0.0.0.0 8000-8099 10.0.0.1 9000",
        "0.0.0.0 8050-8149 10.0.0.1 9000",
        "127.0.0.1 8099 10.0.0.1 9000",
        "127.0.0.1 7000 10.0.0.1 9000",
        "127.0.0.1 6990-7010 10.0.0.1 9000",
        "0.0.0.0 8000-8099/udp 10.0.0.1 9000/udp",
      ].join("\n"),
    );
    expect(linesAndReasons(result.errors)).toEqual([
      [2, "bind 0.0.0.0:8050-8149/tcp overlaps 0.0.0.0:8000-8099/tcp of the rule on line 1: port 8050 is in both"],
      [
        3,
        "bind 127.0.0.1:8099/tcp overlaps 0.0.0.0:8000-8099/tcp (a wildcard address takes the port on every address it covers) of the rule on line 1: port 8099 is in both",
      ],
      [5, "bind 127.0.0.1:6990-7010/tcp overlaps 127.0.0.1:7000/tcp of the rule on line 4: port 7000 is in both"],
    ]);
  });

  test("TOML and YAML name the other rule's line too", async () => {
    const toml = await loadText(
      "overlap.toml",
      `[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = "8000-8099"\nconnect_address = "10.0.0.1"\nconnect_port = 9000\n\n` +
        `[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = 8042\nconnect_address = "10.0.0.1"\nconnect_port = 9000\n`,
    );
    expect(linesAndReasons(toml.errors)).toEqual([[7, "bind 0.0.0.0:8042/tcp overlaps 0.0.0.0:8000-8099/tcp of the rule on line 1: port 8042 is in both"]]);
    const yaml = await loadText(
      "overlap.yaml",
      `rules:\n  - name: a\n    bind: "0.0.0.0:8000-8099/tcp"\n    connect: "10.0.0.1:9000"\n  - name: b\n    bind: "[::]:8090-8109/tcp"\n    connect: "10.0.0.1:9000"\n`,
    );
    expect(linesAndReasons(yaml.errors)).toEqual([
      [
        6,
        "rule 'b': bind [::]:8090-8109/tcp overlaps 0.0.0.0:8000-8099/tcp (a wildcard address takes the port on every address it covers) of the rule on line 3: port 8090 is in both",
      ],
    ]);
  });

  test("0.0.0.0 and :: on the same range both load (:: for IPv6 only); rules chosen by first bytes may share a range exactly", async () => {
    const result = await loadText(
      "share.conf",
      ["0.0.0.0 8000-8099 10.0.0.1 9000", ":: 8000-8099 10.0.0.1 9000", "0.0.0.0 7000-7009 10.0.0.1 9000-9009 [protocol=http]", "0.0.0.0 7000-7009 10.0.0.2 9000"].join("\n"),
    );
    expect(result.errors).toEqual([]);
    expect(result.config!.rules[1]!.bindIpv6Only).toBe(true);
  });

  test("rules chosen by first bytes cannot share ranges that only intersect", async () => {
    const result = await loadText("partial.conf", ["0.0.0.0 7000-7009 10.0.0.1 9000 [protocol=http]", "0.0.0.0 7005-7014 10.0.0.2 9000"].join("\n"));
    expect(linesAndReasons(result.errors)).toEqual([[2, "bind 0.0.0.0:7005-7014/tcp overlaps 0.0.0.0:7000-7009/tcp of the rule on line 1: port 7005 is in both"]]);
  });
});

describe("the status file's per-port detail", () => {
  test("a range rule lists its ports in JSON and text; a rule of one port has no ports", async () => {
    const { statusJson, statusText } = await import("../src/status.ts");
    const rule = (name: string, ports?: Array<{ port: number; active: number; total: number }>) => ({
      name,
      mode: "tcp" as const,
      transport: "tcp" as const,
      algorithm: undefined,
      active: 1,
      total: 3,
      denied: 0,
      untrustedProxy: 0,
      limited: 0,
      limitedBy: { rule: 0, global: 0, client: 0 },
      bytesIn: 0,
      bytesOut: 0,
      errors: new Map<string, number>(),
      backends: [],
      ...(ports === undefined ? {} : { ports }),
    });
    const snapshot = {
      version: "test",
      startedAt: 0,
      now: 1000,
      reloads: 0,
      servers: 2,
      rules: [rule("0.0.0.0:8000-8099/tcp", [{ port: 8000, active: 0, total: 2 }, { port: 8042, active: 1, total: 1 }]), rule("0.0.0.0:80/tcp")],
      logDrops: { stdout: 0, stderr: 0, logfile: 0 },
    };
    const json = JSON.parse(statusJson(snapshot));
    expect(json.rules[0].ports).toEqual([
      { port: 8000, connections_active: 0, connections_total: 2 },
      { port: 8042, connections_active: 1, connections_total: 1 },
    ]);
    expect(json.rules[1].ports).toBeUndefined();
    expect(statusText(snapshot)).toContain("  0.0.0.0:8000-8099/tcp:\n    Active: 1, Total: 3, Traffic: 0/0\n    Ports:\n      8000: active=0, total=2\n      8042: active=1, total=1\n  0.0.0.0:80/tcp:");
  });
});
