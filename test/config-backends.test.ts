/**
 * oi's and rinetd-uv's additions to the .conf and TOML grammars: several
 * backends with weights, unix sockets, balancing and PROXY options, and
 * rinetd-uv's global directives (with the ones that mean nothing in oi warned).
 */
import { describe, expect, test } from "bun:test";
import { linesAndReasons, textLoader } from "./helpers/config.ts";

const loadText = textLoader();

describe(".conf: several backends", () => {
  test("ADDRESS[:PORT][*WEIGHT] entries; the connect port is the default port", async () => {
    const result = await loadText("lb.conf", "0.0.0.0 80 web1.lan,web2.lan*2,[2001:db8::5]:8081,10.0.0.9:81*3 8080 [lb=leastconn,health_threshold=5,recovery_timeout=10,affinity_ttl=60,probe=2]\n");
    expect(result.errors).toEqual([]);
    const rule = result.config?.rules[0];
    expect(rule?.backends.map((backend) => [backend.name, backend.endpoint.host, backend.endpoint.port, backend.weight])).toEqual([
      ["web1.lan:8080", "web1.lan", 8080, 1],
      ["web2.lan:8080", "web2.lan", 8080, 2],
      ["[2001:db8::5]:8081", "2001:db8::5", 8081, 1],
      ["10.0.0.9:81", "10.0.0.9", 81, 3],
    ]);
    expect(rule?.balance).toEqual({
      algorithm: "leastconn",
      healthThreshold: 5,
      recoveryTimeout: 10,
      affinityTtl: 60,
      affinityMaxEntries: 10000,
      probeInterval: 2,
      probeTimeout: 2,
    });
  });

  test("when every entry has its port, the connect port field may be left out", async () => {
    const result = await loadText("ports.conf", "0.0.0.0 80 10.0.0.1:8080,10.0.0.2:8081 [proxy=v2]\n");
    expect(result.errors).toEqual([]);
    expect(result.config?.rules[0]?.backends.map((backend) => backend.endpoint.port)).toEqual([8080, 8081]);
    expect(result.config?.rules[0]?.proxyProtocol).toBe("v2");
  });

  test("unix sockets on either side, with no port field after them", async () => {
    const result = await loadText(
      "unix.conf",
      "0.0.0.0 2375/tcp unix:/var/run/docker.sock\nunix:/run/app.sock 192.168.1.100 8080/tcp [mode=0660]\nunix:@abstract unix:/run/b.sock\n",
    );
    expect(result.errors).toEqual([]);
    const [docker, app, both] = result.config?.rules ?? [];
    expect(docker?.backends[0]?.endpoint).toEqual({ host: "/var/run/docker.sock", port: 0, transport: "unix" });
    expect(app?.bind).toEqual({ host: "/run/app.sock", port: 0, transport: "unix" });
    expect(app?.socketMode).toBe(0o660);
    expect([both?.mode, both?.bind.host, both?.backends[0]?.endpoint.host]).toEqual(["tcp", "@abstract", "/run/b.sock"]);
  });

  test("mistakes in the backend list are errors with their line", async () => {
    const result = await loadText(
      "bad-lb.conf",
      [
        "0.0.0.0 80 a,,b 80",
        "0.0.0.0 81 a*0 80",
        "0.0.0.0 82 a:80,b 83",
        "0.0.0.0 83 a:80,b",
        "0.0.0.0 84 a 80 [lb=fastest]",
        "0.0.0.0 85/udp 10.0.0.1 53/udp [proxy=v1]",
        "0.0.0.0 86 unix:relative.sock",
        "0.0.0.0 87 10.0.0.1 80 [mode=0660]",
        `0.0.0.0 88 ${Array.from({ length: 33 }, (_, i) => `10.0.0.${i + 1}`).join(",")} 80`,
        "0.0.0.0 89 b.lan:80,b.lan 80",
      ].join("\n"),
    );
    expect(linesAndReasons(result.errors)).toEqual([
      [1, "empty entry in the connect address list (stray ',')"],
      [2, "connect address 'a*0': weight 0 is out of range (1..100)"],
      [4, "wrong number of fields: found 3, expected 4 (bindaddress bindport connectaddress connectport [options])"],
      [5, "lb must be one of roundrobin, leastconn, random, iphash, got 'fastest'"],
      [6, "proxy=v1 applies to TCP backends only; use proxy=v2 for UDP"],
      [7, "connect address 'unix:relative.sock' must be an absolute path (unix:/run/app.sock) or an abstract name (unix:@name)"],
      [8, "mode applies to rules listening on a unix socket only"],
      [9, "a rule has at most 32 backends, this one lists 33"],
      // One name per backend, as in YAML (names label metrics; the YAML export of such a rule was refused).
      [10, "two backends of this rule are named 'b.lan:80'"],
    ]);
  });
});

test("TOML: the same backend twice is an error, as in .conf and YAML", async () => {
  const result = await loadText(
    "dup.toml",
    '[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = 80\nconnect = [{ address = "10.0.0.1", port = 80 }, { address = "10.0.0.1", port = 80, weight = 2 }]\n',
  );
  expect(linesAndReasons(result.errors)).toEqual([[4, "two backends of this rule are named '10.0.0.1:80'"]]);
});

test("active probes are TCP connects: an error on a rule with UDP backends", async () => {
  const result = await loadText("probe.conf", "0.0.0.0 53/udp 10.0.0.1,10.0.0.2 53/udp [probe=5]\n");
  expect(linesAndReasons(result.errors)).toEqual([[1, "probe is a TCP connect: it applies to TCP and unix socket backends only"]]);
});

describe(".conf: rinetd-uv's global directives", () => {
  test("defaults that rules inherit unless they set their own; tuning knobs warned about", async () => {
    const result = await loadText(
      "uv.conf",
      [
        "pidfile /run/oi.pid",
        "buffersize 4096",
        "connect-timeout 3",
        "max-udp-connections 100",
        "dns-refresh 30",
        "dns-multi-ip-expand on",
        "dns-multi-ip-proto ipv6",
        "statusfile /tmp/oi-status.json",
        "statusinterval 5",
        "statusformat text",
        "statsloginterval 60",
        "0.0.0.0 53/udp 10.0.0.1 53/udp",
        "0.0.0.0 80 backend.lan 80 [connect-timeout=7,dns-refresh=0,keepalive=on]",
      ].join("\n"),
    );
    expect(result.errors).toEqual([]);
    expect(result.warnings).toEqual([]);
    const config = result.config;
    expect(config?.pidFile).toBe("/run/oi.pid");
    expect(config?.status).toEqual({ path: "/tmp/oi-status.json", interval: 5, format: "text" });
    expect(config?.statsLogInterval).toBe(60);
    const [dns, web] = config?.rules ?? [];
    expect([dns?.maxSessions, dns?.connectTimeout, dns?.dnsRefresh, dns?.dnsFamily, dns?.dnsSpread, dns?.bufferSize]).toEqual([100, 3, 30, "ipv6", true, 4096]);
    expect([web?.connectTimeout, web?.dnsRefresh, web?.keepalive]).toEqual([7, 0, 60]);
  });

  test("status settings without a status file are an error", async () => {
    const result = await loadText("status.conf", "statusinterval 5\n");
    expect(result.errors.map((issue) => issue.reason)).toEqual(["status file settings are given but no status file path (statusfile PATH)"]);
  });
});

describe("TOML: several backends", () => {
  test("connect = [...] with weights, names and src; load_balancing table", async () => {
    const result = await loadText(
      "lb.toml",
      [
        "[[forwarding_rules]]",
        'name = "web"',
        'bind_address = "0.0.0.0"',
        "bind_port = 80",
        'connect = [ { address = "10.0.0.1", port = 8080, weight = 3, name = "one" }, { address = "10.0.0.2", port = 8080, source_address = "10.0.0.254" }, { address = "unix:/run/x.sock" } ]',
        'proxy_protocol = "v1"',
        "[forwarding_rules.load_balancing]",
        'algorithm = "iphash"',
        "affinity_ttl = 300",
      ].join("\n"),
    );
    expect(result.errors).toEqual([]);
    const rule = result.config?.rules[0];
    expect(rule?.name).toBe("web");
    expect(rule?.backends).toEqual([
      { name: "one", endpoint: { host: "10.0.0.1", port: 8080, transport: "tcp" }, weight: 3, sourceAddress: undefined },
      { name: "10.0.0.2:8080", endpoint: { host: "10.0.0.2", port: 8080, transport: "tcp" }, weight: 1, sourceAddress: "10.0.0.254" },
      { name: "unix:/run/x.sock", endpoint: { host: "/run/x.sock", port: 0, transport: "unix" }, weight: 1, sourceAddress: undefined },
    ]);
    expect([rule?.balance.algorithm, rule?.balance.affinityTtl, rule?.proxyProtocol]).toEqual(["iphash", 300, "v1"]);
  });

  test("connect list mistakes are errors on their line", async () => {
    const result = await loadText(
      "bad-lb.toml",
      ["[[forwarding_rules]]", 'bind_address = "0.0.0.0"', "bind_port = 80", 'connect_address = "10.0.0.1"', "connect = []", "[forwarding_rules.load_balancing]", "speed = 1"].join("\n"),
    );
    expect(linesAndReasons(result.errors)).toEqual([
      [5, "give either connect_address/connect_port or a connect list, not both"],
      [7, "unknown key 'speed' in forwarding_rules[0].load_balancing (known: algorithm, health_threshold, recovery_timeout, affinity_ttl, affinity_max_entries, probe_interval, probe_timeout)"],
    ]);
  });
});
