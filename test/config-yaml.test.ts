/**
 * rinetd-uv's YAML format: its example configs (when the reference copies
 * are at hand), a fixture of our own with every part oi reads, the mapping
 * decisions, errors with their lines, and the line locator.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { describeConfig } from "../src/config/describe.ts";
import { loadConfig } from "../src/config/load.ts";
import { BALANCE_DEFAULTS, DEFAULT_KEEPALIVE_SECONDS } from "../src/config/options.ts";
import { indexYamlLines, locateYamlSyntaxError, yamlErrorMessage } from "../src/config/yaml-lines.ts";
import { formatTarget } from "../src/endpoint.ts";
import type { Config, ForwardRule } from "../src/types.ts";
import { DEFAULT_CONNECT_TIMEOUT_SECONDS, DEFAULT_UDP_TIMEOUT_SECONDS, MAX_UDP_PAYLOAD } from "../src/types.ts";
import { linesAndReasons, plainAccess, plainConfig, textLoader } from "./helpers/config.ts";

const FIXTURES = `${import.meta.dir}/fixtures`;
const REFERENCE = "/work/shared/ref";
const loadText = textLoader();

/** The errors of a YAML config that must not load. */
async function errorsOf(text: string): Promise<Array<[number, string]>> {
  const result = await loadText("errors.yaml", text);
  expect(result.config).toBeUndefined();
  return linesAndReasons(result.errors);
}

/** A YAML config that must load; its config. */
async function configOf(text: string, name = "ok.yaml"): Promise<Config> {
  const result = await loadText(name, text);
  expect(result.errors).toEqual([]);
  if (result.config === undefined) throw new Error("config did not load");
  return result.config;
}

/** A rule's shape in a few words: line, name, mode, bind, and its backends as `target*weight(name)[src]`. */
function outline(rule: ForwardRule): [number, string, string, string, string[]] {
  const bind = rule.bind.transport === "unix" ? `unix:${rule.bind.host}` : `${formatTarget(rule.bind)}/${rule.bind.transport}`;
  const backends = rule.backends.map(
    (backend) =>
      `${formatTarget(backend.endpoint)}/${backend.endpoint.transport}*${backend.weight}(${backend.name})${backend.sourceAddress === undefined ? "" : `[${backend.sourceAddress}]`}`,
  );
  return [rule.at.line, rule.name, rule.mode, bind, backends];
}

/** Run `body` only when a reference copy exists (CI has no /work/shared); say so otherwise. */
function withReference(file: string, body: (path: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const path = `${REFERENCE}/${file}`;
    if (!existsSync(path)) {
      console.log(`skipped: ${path} is not here`);
      return;
    }
    await body(path);
  };
}

describe("rinetd-uv's example configs", () => {
  test(
    "rinetd-uv.yaml loads: its rules, backends, balancing and access lists",
    withReference("rinetd-uv.yaml", async (path) => {
      const result = await loadConfig(path);
      expect(result.errors).toEqual([]);
      // Tuning knobs without effect in oi (the buffer pool's) are warned about, on their lines; listen_backlog (25) is taken.
      expect(result.warnings.map((warning) => warning.line)).toEqual([15, 16, 17]);
      expect(result.config?.listenBacklog).toBe(Number(/listen_backlog:\s*(\d+)/.exec(readFileSync(path, "utf8"))?.[1]));
      const config = result.config;
      if (config === undefined) throw new Error("did not load");
      expect(config.format).toBe("yaml");
      expect(config.logFile).toBe("/var/log/rinetd-uv.log");
      expect(config.pidFile).toBe("/var/run/rinetd-uv.pid");
      expect(config.status).toEqual({ path: "/var/log/rinetd-uv_status.json", interval: 30, format: "json" });
      expect(config.statsLogInterval).toBe(60);
      expect(plainAccess(config.globalAccess)).toEqual({
        allow: [
          ["10.*", 39],
          ["192.168.*", 40],
        ],
        deny: [["192.168.1.100", 42]],
      });
      expect(config.rules.map(outline)).toEqual([
        [47, "simple-forward", "tcp", "0.0.0.0:80/tcp", ["192.168.1.10:8080/tcp*1(simple-forward-backend-1)"]],
        ...[53, 54].map((line, index): ReturnType<typeof outline> => [
          line,
          "web-cluster",
          "tcp",
          index === 0 ? "0.0.0.0:443/tcp" : "[::]:443/tcp",
          ["web1.internal:8443/tcp*3(web-cluster-backend-1)", "web2.internal:8443/tcp*2(web-cluster-backend-2)", "web3.internal:8443/tcp*1(web-cluster-backend-3)"],
        ]),
        [72, "dns-lb", "udp", "0.0.0.0:53/udp", ["8.8.8.8:53/udp*1(dns-lb-backend-1)", "8.8.4.4:53/udp*1(dns-lb-backend-2)", "1.1.1.1:53/udp*1(dns-lb-backend-3)"]],
        [83, "app-cluster", "tcp", "0.0.0.0:8080/tcp", ["app1.internal:3000/tcp*1(app-cluster-backend-1)", "app2.internal:3000/tcp*1(app-cluster-backend-2)"]],
        [97, "docker-proxy", "tcp", "0.0.0.0:2375/tcp", ["unix:/var/run/docker.sock/unix*1(docker-proxy-backend-1)"]],
      ]);
      const [simple, web, web6, dns, app, docker] = config.rules;
      // The two binds of web-cluster share one set of backends and options.
      expect(web6?.backends).toBe(web?.backends ?? []);
      expect(web?.balance).toEqual({ ...BALANCE_DEFAULTS, algorithm: "roundrobin", healthThreshold: 3, recoveryTimeout: 30 });
      expect(plainAccess(web?.access ?? { allow: [], deny: [] })).toEqual({
        allow: [
          ["10.*", 67],
          ["192.168.*", 67],
        ],
        deny: [["*", 68]],
      });
      expect(dns?.balance.algorithm).toBe("leastconn");
      expect(dns?.timeout).toBe(10);
      expect(dns?.keepalive).toBeUndefined();
      expect(app?.balance).toEqual({ ...BALANCE_DEFAULTS, algorithm: "iphash", affinityTtl: 3600, affinityMaxEntries: 50_000 });
      expect(app?.dnsRefresh).toBe(60);
      expect(app?.keepalive).toBe(DEFAULT_KEEPALIVE_SECONDS);
      expect(simple?.dnsRefresh).toBe(600);
      expect(simple?.dnsSpread).toBe(true);
      expect(simple?.dnsFamily).toBe("ipv4");
      expect(plainAccess(docker?.access ?? { allow: [], deny: [] })).toEqual({ allow: [["10.0.0.*", 100]], deny: [["*", 101]] });
    }),
  );

  test(
    "rinetd-uv.conf loads through the .conf parser; its include of a missing directory is a warning",
    withReference("rinetd-uv.conf", async (path) => {
      const result = await loadConfig(path);
      expect(result.errors).toEqual([]);
      // The buffer pool's knobs (14-16) have no effect; listen-backlog (26) is taken.
      expect(linesAndReasons(result.warnings).map(([line]) => line)).toEqual([14, 15, 16, 44]);
      expect(result.warnings.at(-1)?.reason).toBe("include /etc/rinetd-uv.d/*.conf matched no files");
      const config = result.config;
      if (config === undefined) throw new Error("did not load");
      expect(config.pidFile).toBe("/var/run/rinetd-uv.pid");
      expect(config.status).toEqual({ path: "/var/log/rinetd-uv_status.json", interval: 30, format: "json" });
      expect(config.rules.map((rule) => [rule.at.line, rule.mode, formatTarget(rule.bind), rule.backends.map((backend) => formatTarget(backend.endpoint))])).toEqual([
        [50, "tcp", "0.0.0.0:80", ["192.168.1.10:8080"]],
        [51, "tcp", "192.168.0.1:443", ["server.example.com:8443"]],
        [52, "tcp", "0.0.0.0:444", ["api.example.com:444"]],
        [53, "tcp", "[::]:80", ["ipv6.google.com:80"]],
        [56, "udp", "0.0.0.0:53", ["8.8.8.8:53"]],
        [59, "tcp", "0.0.0.0:2375", ["unix:/var/run/docker.sock"]],
        [60, "tcp", "unix:/var/run/myapp.sock", ["192.168.1.100:8080"]],
        [63, "tcp", "0.0.0.0:22", ["192.168.1.20:22"]],
      ]);
      expect(config.rules[1]?.sourceAddress).toBe("192.168.1.1");
      expect(config.rules[2]?.dnsRefresh).toBe(60);
      expect(config.rules[4]?.timeout).toBe(30);
      expect(config.rules[6]?.socketMode).toBe(0o660);
      expect(plainAccess(config.rules[7]?.access ?? { allow: [], deny: [] })).toEqual({ allow: [["10.0.0.*", 64]], deny: [] });
    }),
  );
});

describe("a rinetd-uv style YAML config of our own", () => {
  test("every part is mapped onto the model", async () => {
    const result = await loadConfig(`${FIXTURES}/rinetd-uv-style.yaml`);
    expect(result.errors).toEqual([]);
    expect(linesAndReasons(result.warnings)).toEqual([
      [8, "pool_max_free has no effect in oi: oi keeps no pool of buffers: each chunk Bun reads is forwarded and then left to the garbage collector"],
    ]);
    const config = result.config;
    if (config === undefined) throw new Error("did not load");
    expect(plainConfig(config)).toMatchObject({
      format: "yaml",
      globalAccess: {
        allow: [
          ["172.16.*", 21],
          ["10.20.0.0/16", 22],
        ],
        deny: [["172.16.9.9", 23]],
      },
      logFile: "/tmp/oi-yaml/forward.log",
      pidFile: "/tmp/oi-yaml/oi.pid",
      logFormat: "common",
    });
    expect(config.status).toEqual({ path: "/tmp/oi-yaml/status.txt", interval: 15, format: "text" });
    expect(config.statsLogInterval).toBe(0);

    expect(config.rules.map(outline)).toEqual([
      [27, "plain", "tcp", "127.0.0.1:8001/tcp", ["10.9.0.1:80/tcp*1(plain-backend-1)"]],
      ...[32, 33].map((line, index): ReturnType<typeof outline> => [
        line,
        "shop",
        "tcp",
        index === 0 ? "0.0.0.0:8443/tcp" : "[::1]:8443/tcp",
        ["shop-a.example.net:443/tcp*5(shop-a)", "shop-b.example.net:443/tcp*1(shop-backend-2)[10.9.0.254]", "10.9.0.3:443/tcp*2(shop-backend-3)"],
      ]),
      [56, "resolver", "udp", "0.0.0.0:5353/udp", ["9.9.9.9:53/udp*1(resolver-backend-1)", "149.112.112.112:53/udp*1(resolver-backend-2)"]],
      [63, "local-api", "tcp", "unix:/tmp/oi-yaml/api.sock", ["api.internal:9000/tcp*1(local-api-backend-1)", "unix:@api-fallback/unix*1(local-api-backend-2)"]],
      [73, "logs-out", "tcptoudp", "127.0.0.1:5140/tcp", ["10.9.0.7:514/udp*1(logs-out-backend-1)"]],
    ]);

    const [plain, shop, shop6, resolver, api, logs] = config.rules;
    const common = {
      connectTimeout: 4,
      maxSessions: 2000,
      dnsRefresh: 300,
      dnsFamily: "any",
      dnsSpread: true,
      timeout: 10, // rinetd-uv's UDP default in YAML (72 is rinetd's, for .conf)
      maxDatagram: MAX_UDP_PAYLOAD,
      framing: "none",
      proxyProtocol: undefined,
      acceptProxy: false,
      idleTimeout: undefined,
    };
    expect(plain).toMatchObject({ ...common, index: 0, keepalive: DEFAULT_KEEPALIVE_SECONDS, maxConnections: undefined, socketMode: undefined, balance: BALANCE_DEFAULTS });
    expect(shop).toMatchObject({
      ...common,
      index: 1,
      keepalive: undefined,
      maxConnections: 300,
      balance: { algorithm: "random", healthThreshold: 2, recoveryTimeout: 45, affinityTtl: 120, affinityMaxEntries: 500, probeInterval: 5, probeTimeout: 2 },
    });
    expect(plainAccess(shop?.access ?? { allow: [], deny: [] })).toEqual({ allow: [["10.*", 51]], deny: [["10.0.0.1", 53]] });
    expect(shop6).toMatchObject({ index: 2, name: "shop", backends: shop?.backends, balance: shop?.balance, access: shop?.access });
    expect(resolver).toMatchObject({ ...common, index: 3, timeout: 20, keepalive: undefined });
    expect(api).toMatchObject({ ...common, index: 4, connectTimeout: 2, socketMode: 0o600, dnsRefresh: 30, keepalive: DEFAULT_KEEPALIVE_SECONDS });
    expect(logs).toMatchObject({ ...common, index: 5, sourceAddress: "10.9.0.254", keepalive: undefined });
  });

  test("oi check describes it as rinetd-uv YAML", async () => {
    const result = await loadConfig(`${FIXTURES}/rinetd-uv-style.yaml`);
    const text = describeConfig(result.config ?? (await configOf("")));
    expect(text.split("\n")[0]).toBe(`${FIXTURES}/rinetd-uv-style.yaml: rinetd-uv YAML format, 6 forwarding rules`);
    expect(text).toContain("status file: /tmp/oi-yaml/status.txt (text, every 15s)");
    expect(text).toContain(
      `${FIXTURES}/rinetd-uv-style.yaml:33  tcp  [::1]:8443 -> shop-a.example.net:443*5(shop-a),shop-b.example.net:443(shop-backend-2)[src=10.9.0.254],10.9.0.3:443*2(shop-backend-3)  name=shop`,
    );
  });
});

describe("mapping decisions", () => {
  test("a connect without /proto takes the bind's protocol; an explicit one may differ", async () => {
    const config = await configOf(
      [
        "rules:",
        "  - name: u",
        '    bind: "0.0.0.0:53/udp"',
        '    connect: "10.0.0.1:53"',
        "  - name: t",
        '    bind: "0.0.0.0:54"',
        '    connect: "10.0.0.1:53"',
        "  - name: u2t",
        '    bind: "0.0.0.0:55/udp"',
        '    connect: "10.0.0.1:53/tcp"',
        "",
      ].join("\n"),
    );
    expect(config.rules.map((rule) => [rule.mode, rule.bind.transport, rule.backends[0]?.endpoint.transport])).toEqual([
      ["udp", "udp", "udp"],
      ["tcp", "tcp", "tcp"],
      ["udptotcp", "udp", "tcp"],
    ]);
  });

  test("rinetd-uv's YAML defaults: keepalive 60 s on TCP rules, several addresses of a name spread over", async () => {
    const text = (global: string, rule: string) =>
      `${global}rules:\n  - name: a\n    bind: "0.0.0.0:80"\n    connect: "h.example:80"\n${rule}  - name: b\n    bind: "0.0.0.0:53/udp"\n    connect: "h.example:53"\n`;
    const defaults = await configOf(text("", ""));
    expect(defaults.rules.map((rule) => [rule.keepalive, rule.dnsSpread, rule.connectTimeout])).toEqual([
      [DEFAULT_KEEPALIVE_SECONDS, true, DEFAULT_CONNECT_TIMEOUT_SECONDS],
      [undefined, true, DEFAULT_CONNECT_TIMEOUT_SECONDS],
    ]);
    const changed = await configOf(text("global:\n  dns_multi_ip_expand: false\n", "    keepalive: false\n"));
    expect(changed.rules.map((rule) => [rule.keepalive, rule.dnsSpread])).toEqual([
      [undefined, false],
      [undefined, false],
    ]);
    const seconds = await configOf(text("", "    keepalive: 15\n"));
    expect(seconds.rules[0]?.keepalive).toBe(15);
  });

  test("backends' dns_refresh: the rule takes the smallest, with a warning when they differ", async () => {
    const result = await loadText(
      "dns.yaml",
      'rules:\n  - name: a\n    bind: "0.0.0.0:80"\n    connect:\n      - dest: "a.example:80"\n        dns_refresh: 120\n      - dest: "b.example:80"\n        dns_refresh: 30\n',
    );
    expect(result.errors).toEqual([]);
    expect(result.config?.rules[0]?.dnsRefresh).toBe(30);
    expect(linesAndReasons(result.warnings)).toEqual([
      [4, "rule 'a': oi has one DNS refresh interval per rule: its dns_refresh values differ, so every backend of this rule uses the smallest, 30s"],
    ]);
  });

  test("status needs enabled: true, as in rinetd-uv", async () => {
    const result = await loadText("status.yaml", "global:\n  status:\n    file: /tmp/s.json\n");
    expect(result.errors).toEqual([]);
    expect(result.config?.status).toBeUndefined();
    expect(linesAndReasons(result.warnings)).toEqual([[2, "global.status has no 'enabled: true': no status file is written (rinetd-uv's default)"]]);
    const off = await loadText("off.yaml", "global:\n  status:\n    enabled: false\n    file: /tmp/s.json\n    interval: 5\n");
    expect([off.errors, off.warnings, off.config?.status]).toEqual([[], [], undefined]);
  });

  test("socket mode: quoted, unquoted (read as written, not as decimal 660) or 0o-prefixed", async () => {
    for (const written of ['"0660"', "0660", "660", "0o660"]) {
      const config = await configOf(`rules:\n  - name: s\n    bind: "unix:/tmp/oi.sock"\n    connect: "10.0.0.1:80"\n    mode: ${written}\n`);
      expect(config.rules[0]?.socketMode).toBe(0o660);
    }
  });

  test(".yml is YAML too; an empty file or only comments is a config without rules", async () => {
    const config = await configOf('rules:\n  - name: a\n    bind: "127.0.0.1:1"\n    connect: "127.0.0.1:2"\n', "short.yml");
    expect(config.format).toBe("yaml");
    expect((await configOf("")).rules).toEqual([]);
    expect((await configOf("# nothing yet\nglobal:\nrules:\n")).rules).toEqual([]);
  });

  test("compact sequences, flow mappings and anchors read the same", async () => {
    const anchored = await configOf(
      [
        "rules:",
        "- name: a",
        '  bind: ["127.0.0.1:1", "127.0.0.1:2"]',
        "  connect:",
        '  - { dest: "10.0.0.1:80", weight: 2 }',
        '  - "10.0.0.2:80"',
        "  load_balancing: &lb { algorithm: leastconn }",
        "- name: b",
        '  bind: "127.0.0.1:3"',
        '  connect: ["10.0.0.3:80", "10.0.0.4:80"]',
        "  load_balancing: *lb",
        "",
      ].join("\n"),
    );
    expect(anchored.rules.map(outline)).toEqual([
      [3, "a", "tcp", "127.0.0.1:1/tcp", ["10.0.0.1:80/tcp*2(a-backend-1)", "10.0.0.2:80/tcp*1(a-backend-2)"]],
      [3, "a", "tcp", "127.0.0.1:2/tcp", ["10.0.0.1:80/tcp*2(a-backend-1)", "10.0.0.2:80/tcp*1(a-backend-2)"]],
      [9, "b", "tcp", "127.0.0.1:3/tcp", ["10.0.0.3:80/tcp*1(b-backend-1)", "10.0.0.4:80/tcp*1(b-backend-2)"]],
    ]);
    expect(anchored.rules.map((rule) => rule.balance.algorithm)).toEqual(["leastconn", "leastconn", "leastconn"]);
  });
});

describe("YAML errors, each with its line", () => {
  const RULE = (port: number | string, extra = "") => `  - name: r${port}\n    bind: "0.0.0.0:${port}"\n    connect: "10.0.0.1:80"\n${extra}`;

  test("syntax errors are found on their line, also inside a flow list over several lines", async () => {
    expect(await errorsOf('global:\n  log_file: /x\n rules: 1\nrules: []\n')).toEqual([[3, "YAML syntax error: Unexpected token"]]);
    expect(await errorsOf('global:\n  access:\n    allow: [\n      "10.*"\n      "11.*"\n    ]\n')).toEqual([[3, "YAML syntax error: Unexpected token"]]);
    expect(await errorsOf("rules:\n  - name: x\n    bind: *nowhere\n")).toEqual([[3, "YAML syntax error: Unresolved alias"]]);
  });

  test("a key given twice (the parser would keep the last silently)", async () => {
    expect(await errorsOf(`rules:\n${RULE(80, '    connect: "10.0.0.2:80"\n    access: { allow: "1.*", allow: "2.*" }\n')}`)).toEqual([
      [5, "duplicate key 'connect' in rules[0] (first on line 4)"],
      [6, "duplicate key 'allow' in rules[0].access (first on line 6)"],
    ]);
  });

  test("unknown keys at every level, and include", async () => {
    const text = [
      "include: /etc/oi.d/*.yaml", // 1
      "globals: {}", // 2
      "global:", // 3
      "  logfile: /x", // 4
      "  status:", // 5
      "    path: /x", // 6
      "  access:", // 7
      "    permit: []", // 8
      "rules:", // 9
      "  - name: a", // 10
      '    bind: "0.0.0.0:1"', // 11
      "    connect:", // 12
      '      - dest: "10.0.0.1:80"', // 13
      "        port: 80", // 14
      "    load_balancing:", // 15
      "      method: random", // 16
      "    socket_mode: '0660'", // 17
      "    protocol: tcp", // 18
      "",
    ].join("\n");
    expect(await errorsOf(text)).toEqual([
      [1, "include is a directive of rinetd-uv's .conf format only: a YAML config cannot include other files"],
      [2, "unknown key 'globals' at the top level (known: global, rules)"],
      [
        4,
        "unknown key 'logfile' in global (known: log_file, pid_file, log_common, log_json, max_connections, max_connections_per_client, connection_rate_per_client, client_table_size, metrics, admin, admin_token, admin_mode, admin_read, connect_timeout, max_udp_connections, dns_refresh, dns_servers, dns_multi_ip_expand, dns_multi_ip_proto, status, stats_log_interval, workers, splice, sockets, buffer_size, pool_min_free, pool_max_free, pool_trim_delay, listen_backlog, watch, user, group, access)",
      ],
      [6, "unknown key 'path' in global.status (known: file, interval, format, enabled)"],
      [8, "unknown key 'permit' in global.access (known: allow, deny)"],
      [14, "rule 'a': unknown key 'port' in rules[0].connect[0] (known: dest, name, weight, src, dns_refresh, tls)"],
      [16, "rule 'a': unknown key 'method' in rules[0].load_balancing (known: algorithm, health_threshold, recovery_timeout, affinity_ttl, affinity_max_entries, probe_interval, probe_timeout)"],
      [
        17,
        "rule 'a': unknown key 'socket_mode' in rules[0] (known: name, bind, connect, timeout, connect_timeout, max_connections, max_connections_per_client, connection_rate_per_client, idle_timeout, max_sessions, framing, max_datagram, proxy_protocol, accept_proxy, proxy_from, keepalive, dns_refresh, peek_timeout, tls_connect, rate, rate_rule, rate_client, mode, src, load_balancing, match, tls, access)",
      ],
      [
        18,
        "rule 'a': unknown key 'protocol' in rules[0] (known: name, bind, connect, timeout, connect_timeout, max_connections, max_connections_per_client, connection_rate_per_client, idle_timeout, max_sessions, framing, max_datagram, proxy_protocol, accept_proxy, proxy_from, keepalive, dns_refresh, peek_timeout, tls_connect, rate, rate_rule, rate_client, mode, src, load_balancing, match, tls, access)",
      ],
    ]);
    expect(await errorsOf("global:\n  include: x.yaml\n")).toEqual([
      [2, "include is a directive of rinetd-uv's .conf format only: a YAML config cannot include other files"],
    ]);
  });

  test("wrong types", async () => {
    const text = [
      "global:", // 1
      "  log_file: 3", // 2
      "  log_common: yes", // 3
      "  dns_refresh: '600'", // 4
      "  status: on", // 5
      "  access:", // 6
      "    allow: [10]", // 7
      "    deny: { a: 1 }", // 8
      "rules:", // 9
      "  - name: 7", // 10
      "    bind: { host: x }", // 11
      "    connect: 5", // 12
      "  - name: b", // 13
      "    bind: [1]", // 14
      "    connect:", // 15
      "      - [1]", // 16
      "      - dest: 5", // 17
      "        weight: two", // 18
      "    timeout: 1.5", // 19
      "    keepalive:", // 20
      "    mode: true", // 21
      "    load_balancing: roundrobin", // 22
      "  - just a string", // 23
      "",
    ].join("\n");
    expect(await errorsOf(text)).toEqual([
      [2, "global.log_file must be a string, got an integer"],
      [3, "global.log_common must be true or false, got a string"],
      [4, "global.dns_refresh must be an integer, got a string"],
      [5, "global.status must be a mapping, got a string"],
      [7, "global.access.allow[0] must be a string, got an integer"],
      [8, "global.access.deny must be a string or a list of patterns, got a table"],
      [10, "rules[0].name must be a string, got an integer"],
      [11, "rules[0].bind must be a string or a list of addresses (HOST:PORT/PROTO, unix:PATH), got a table"],
      [12, "rules[0].connect must be an address (HOST:PORT/PROTO, unix:PATH) or a list of backends, got an integer"],
      [14, "rule 'b': rules[1].bind[0] must be a string, got an integer"],
      [16, "rule 'b': rules[1].connect[0] must be an address or a mapping (dest, weight, name, src, dns_refresh, tls), got an array"],
      [17, "rule 'b': rules[1].connect[1].dest must be a string, got an integer"],
      [18, "rule 'b': rules[1].connect[1].weight must be an integer, got a string"],
      [19, "rule 'b': rules[1].timeout must be an integer, got a float"],
      [20, "rule 'b': rules[1].keepalive must be an integer, got an empty value"],
      [21, "rule 'b': " + 'rules[1].mode must be octal permissions such as "0660", got a boolean'],
      [22, "rule 'b': rules[1].load_balancing must be a mapping, got a string"],
      [23, "rules[2] must be a mapping (name, bind, connect, ...), got a string"],
    ]);
    expect(await errorsOf("- name: a\n")).toEqual([[1, "a rinetd-uv YAML config is a mapping with 'global' and 'rules', got a list (or several '---' documents)"]]);
    expect(await errorsOf("rules: {}\n")).toEqual([[1, "rules must be a list of rules (- name: ...), got a table"]]);
  });

  test("addresses and ports get the same reasons as in .conf", async () => {
    const text = [
      "rules:", // 1
      "  - name: a", // 2
      "    bind:", // 3
      '      - "0.0.0.0:70000/tcp"', // 4
      '      - "1.2.3:80"', // 5
      '      - "0.0.0.0:80/sctp"', // 6
      '      - "0.0.0.0"', // 7
      '      - "::1:80"', // 8
      '      - "0.0.0.0:no-such-service"', // 9
      '      - "unix:run/x.sock"', // 10
      '    connect: "fe80::1%eth0:80"', // 11
      "  - name: b", // 12
      '    bind: "[::1]:81"', // 13
      "    connect:", // 14
      '      - dest: "10.0.0.1:0"', // 15
      '        src: "example.com"', // 16
      '      - "[10.0.0.1]:80"', // 17
      "",
    ].join("\n");
    expect(await errorsOf(text)).toEqual([
      [4, "rule 'a': bind port 70000 is out of range (1..65535)"],
      [5, "rule 'a': bind address '1.2.3' is not a valid IPv4 address"],
      [6, "rule 'a': bind address '0.0.0.0:80/sctp': unknown protocol 'sctp' (write /tcp or /udp)"],
      [7, "rule 'a': bind address '0.0.0.0' has no port (write HOST:PORT/PROTO)"],
      [8, "rule 'a': bind address '::1:80': write an IPv6 address in brackets, [ADDRESS]:PORT/PROTO"],
      [9, "rule 'a': bind port in '0.0.0.0:no-such-service' is neither a port number nor a known tcp service name"],
      [10, "rule 'a': bind address 'unix:run/x.sock' must be an absolute path (unix:/run/app.sock) or an abstract name (unix:@name)"],
      [11, "rule 'a': connect address 'fe80::1%eth0:80': write an IPv6 address in brackets, [ADDRESS]:PORT/PROTO"],
      [15, "rule 'b': connect port 0 is out of range (1..65535)"],
      [16, "rule 'b': source address 'example.com' must be an IP address"],
      [17, "rule 'b': connect address '[10.0.0.1]': brackets are only for IPv6 addresses"],
    ]);
  });

  test("bad access patterns, each on its line", async () => {
    const text = `global:\n  access:\n    allow: ["example.com"]\nrules:\n${RULE(80, '    access:\n      deny:\n        - "10.0.0.0/40"\n')}`;
    expect(await errorsOf(text)).toEqual([
      [3, "bad allow pattern 'example.com': host names are not permitted in allow/deny rules (rinetd)"],
      [10, "rule 'r80': bad deny pattern '10.0.0.0/40': bad CIDR prefix length '40' (0..32 for IPv4)"],
    ]);
  });

  test("names: required, not empty, unique", async () => {
    const text = [
      "rules:", // 1
      '  - bind: "0.0.0.0:1"', // 2
      '    connect: "10.0.0.1:80"', // 3
      "  - name: ''", // 4
      '    bind: "0.0.0.0:2"', // 5
      '    connect: "10.0.0.1:80"', // 6
      "  - name: web", // 7
      '    bind: "0.0.0.0:3"', // 8
      '    connect: "10.0.0.1:80"', // 9
      "  - name: web", // 10
      '    bind: "0.0.0.0:4"', // 11
      '    connect: "10.0.0.1:80"', // 12
      "",
    ].join("\n");
    expect(await errorsOf(text)).toEqual([
      [2, "rules[0] is missing name"],
      [4, "rules[1].name is empty"],
      [10, "rule 'web': duplicate rule name 'web': the rule on line 7 has it already"],
    ]);
    expect(await errorsOf("rules:\n  - name: a\n")).toEqual([
      [2, "rule 'a': rules[0] is missing bind"],
      [2, "rule 'a': rules[0] is missing connect"],
    ]);
  });

  test("duplicate binds, across rules and within one", async () => {
    const text = `rules:\n${RULE(80)}${RULE("80/tcp", '  - name: twice\n    bind: ["[::]:90", "[0::0]:90/tcp"]\n    connect: "10.0.0.1:80"\n').replace("name: r80/tcp", "name: again")}`;
    expect(await errorsOf(text)).toEqual([
      [6, "rule 'again': duplicate bind: 0.0.0.0:80/tcp is already bound by the rule on line 3 (rules on one bind are chosen by sni=, host= or protocol=; only one may have none, the default)"],
      [9, "rule 'twice': duplicate bind: [0::0]:90/tcp is already bound by the rule on line 9 (rules on one bind are chosen by sni=, host= or protocol=; only one may have none, the default)"],
    ]);
  });

  test("backends: at most 32, weights from 1 to 100, names unique, a list that is not empty", async () => {
    const many = Array.from({ length: 33 }, (_, index) => `"10.0.0.${index + 1}:80"`).join(", ");
    const text = [
      "rules:", // 1
      "  - name: many", // 2
      '    bind: "0.0.0.0:1"', // 3
      `    connect: [${many}]`, // 4
      "  - name: weights", // 5
      '    bind: "0.0.0.0:2"', // 6
      "    connect:", // 7
      '      - { dest: "10.0.0.1:80", weight: 0 }', // 8
      '      - { dest: "10.0.0.2:80", weight: 101 }', // 9
      "  - name: names", // 10
      '    bind: "0.0.0.0:3"', // 11
      "    connect:", // 12
      '      - { dest: "10.0.0.1:80", name: x }', // 13
      '      - { dest: "10.0.0.2:80", name: x }', // 14
      "  - name: empty", // 15
      '    bind: "0.0.0.0:4"', // 16
      "    connect: []", // 17
      "",
    ].join("\n");
    expect(await errorsOf(text)).toEqual([
      [4, "rule 'many': a rule has at most 32 backends, this one lists 33"],
      [8, "rule 'weights': weight must be a whole number from 1 to 100, got 0"],
      [9, "rule 'weights': weight must be a whole number from 1 to 100, got 101"],
      [12, "rule 'names': two backends of this rule are named 'x'"],
      [17, "rule 'empty': rules[3].connect lists no backend"],
    ]);
  });

  test("option values, with the shared reasons", async () => {
    const text = `rules:\n${RULE(80, "    timeout: 0\n    mode: '0999'\n    load_balancing:\n      algorithm: fastest\n      affinity_max_entries: 5\n")}${RULE(81, "    mode: '0660'\n")}`;
    expect(await errorsOf(text)).toEqual([
      [5, "rule 'r80': timeout must be a positive whole number of seconds, got '0'"],
      [6, "rule 'r80': mode must be octal permissions like 0660, got '0999'"],
      [8, "rule 'r80': lb must be one of roundrobin, leastconn, random, iphash, got 'fastest'"],
      [9, "rule 'r80': affinity_max_entries must be a whole number from 100 to 10000000, got '5'"],
      // A rule is placed on its bind's line.
      [11, "rule 'r81': mode applies to rules listening on a unix socket only"],
    ]);
  });

  test("global values, and status enabled without a file", async () => {
    const text = "global:\n  max_udp_connections: 0\n  dns_multi_ip_proto: ipv5\n  metrics: localhost:9000\n  status:\n    enabled: true\n    format: xml\n";
    expect(await errorsOf(text)).toEqual([
      [2, "max-udp-connections must be a whole number from 1 to 1000000, got '0'"],
      [3, "dns-multi-ip-proto must be one of ipv4, ipv6, any, got 'ipv5'"],
      [4, "metrics address 'localhost:9000' must be IP:PORT (IPv6 as [ADDRESS]:PORT)"],
      [5, "global.status is enabled but gives no file (status.file: PATH)"],
      [7, "statusformat must be json or text, got 'xml'"],
    ]);
  });

  test("the binds of one rule are all UDP or all streams", async () => {
    expect(await errorsOf('rules:\n  - name: dns\n    bind: ["0.0.0.0:53/udp", "0.0.0.0:53/tcp"]\n    connect: "10.0.0.1:53"\n')).toEqual([
      [3, "rule 'dns': the binds of one rule must all be UDP, or all TCP or unix sockets: write a rule per protocol"],
    ]);
  });

  test("a file with several errors reports all of them, in line order", async () => {
    const text = `global:\n  pid_file: [x]\nrules:\n${RULE(0, "    surprise: true\n")}${RULE(99999)}`;
    expect(await errorsOf(text)).toEqual([
      [2, "global.pid_file must be a string, got an array"],
      [5, "rule 'r0': bind port 0 is out of range (1..65535)"],
      [
        7,
        "rule 'r0': unknown key 'surprise' in rules[0] (known: name, bind, connect, timeout, connect_timeout, max_connections, max_connections_per_client, connection_rate_per_client, idle_timeout, max_sessions, framing, max_datagram, proxy_protocol, accept_proxy, proxy_from, keepalive, dns_refresh, peek_timeout, tls_connect, rate, rate_rule, rate_client, mode, src, load_balancing, match, tls, access)",
      ],
      [9, "rule 'r99999': bind port 99999 is out of range (1..65535)"],
    ]);
  });
});

describe("YAML line locator", () => {
  const text = [
    "# comment", // 1
    "global:", // 2
    "  status:", // 3
    "    file: /x # trailing comment", // 4
    "  access:", // 5
    '    allow: ["10.*", "11.*",', // 6
    "      '12.*']", // 7
    "rules:", // 8
    "- name: a", // 9
    "  bind:", // 10
    "    - x", // 11
    "    - y", // 12
    "  description: |", // 13
    "    name: not a key", // 14
    "    - not an item", // 15
    "  connect:", // 16
    "    - dest: d", // 17
    "      weight: 2", // 18
    "    - { dest: e, name: f }", // 19
    '  "quoted key": 1', // 20
    "  mode: 0660", // 21
    "- name: b", // 22
    "  bind: &b 'z'", // 23
    "  bind: 'w'", // 24
  ].join("\n");
  const lines = indexYamlLines(text);

  test("maps keys, items and flow entries to their lines", () => {
    expect(lines.lineOf("global")).toBe(2);
    expect(lines.lineOf("global.status.file")).toBe(4);
    expect(lines.lineOf("global.access.allow[1]")).toBe(6);
    expect(lines.lineOf("global.access.allow[2]")).toBe(7);
    expect(lines.lineOf("rules[0]")).toBe(9);
    expect(lines.lineOf("rules[0].name")).toBe(9);
    expect(lines.lineOf("rules[0].bind[1]")).toBe(12);
    expect(lines.lineOf("rules[0].connect[0].weight")).toBe(18);
    expect(lines.lineOf("rules[0].connect[1].name")).toBe(19);
    expect(lines.lineOf("rules[0].quoted key")).toBe(20);
    expect(lines.lineOf("rules[1].name")).toBe(22);
  });

  test("block scalars hide what looks like keys and items", () => {
    expect(lines.lineOf("rules[0].description.name")).toBe(13);
    expect(lines.lineOf("rules[0].connect")).toBe(16);
  });

  test("falls back to the nearest enclosing key or item, then to line 1", () => {
    expect(lines.lineOf("rules[0].connect[0].src")).toBe(17);
    expect(lines.lineOf("rules[5].name")).toBe(8);
    expect(lines.lineOf("nowhere")).toBe(1);
  });

  test("plain scalars as written, and keys given twice", () => {
    expect(lines.scalarOf("rules[0].mode")).toBe("0660");
    expect(lines.scalarOf("global.status.file")).toBe("/x");
    expect(lines.duplicates).toEqual([{ mapping: "rules[1]", key: "bind", line: 24, firstLine: 23 }]);
  });

  test("syntax errors: the first prefix that fails the same way, never cut inside a flow collection", () => {
    const broken = "a: 1\nb: [1,\n  2]\nc: d: e\n";
    const message = yamlErrorMessage(broken) ?? "";
    expect(message).toContain("Unexpected token");
    expect(locateYamlSyntaxError(broken, message)).toBe(4);
    const unterminated = 'a: 1\nb: "never closed\nc: 2\n';
    expect(locateYamlSyntaxError(unterminated, yamlErrorMessage(unterminated) ?? "")).toBe(2);
  });
});
