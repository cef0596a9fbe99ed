/**
 * `srv:_service._proto.name` connect addresses and the global `dns-servers`
 * in the three config formats, and their mistakes reported at their line.
 */
import { describe, expect, test } from "bun:test";
import type { Endpoint } from "../src/types.ts";
import { linesAndReasons, textLoader } from "./helpers/config.ts";

const loadText = textLoader();

const SRV_ENDPOINT: Endpoint = { host: "_web._tcp.svc.cluster.local", port: 0, transport: "tcp", srv: true };
const SERVERS = [
  { host: "127.0.0.1", port: 5353 },
  { host: "::1", port: 53 },
  { host: "10.0.0.2", port: 53 },
];

describe(".conf", () => {
  test("srv: as the connect address, with no port field; dns-servers reaches every rule", async () => {
    const result = await loadText(
      "srv.conf",
      "dns-servers 127.0.0.1:5353,[::1]:53,10.0.0.2\n0.0.0.0 8080 srv:_web._tcp.svc.cluster.local\n0.0.0.0 53/udp srv:_dns._udp.example.com.\n",
    );
    expect(result.errors).toEqual([]);
    const [web, dns] = result.config?.rules ?? [];
    expect(web?.backends).toEqual([{ name: "srv:_web._tcp.svc.cluster.local", endpoint: SRV_ENDPOINT, weight: 1, sourceAddress: undefined }]);
    expect(web?.mode).toBe("tcp");
    // A `_udp` name gives UDP backends.
    expect([dns?.mode, dns?.backends[0]?.endpoint.host]).toEqual(["udp", "_dns._udp.example.com"]);
    expect(web?.dnsServers).toEqual(SERVERS);
    expect(dns?.dnsServers).toEqual(SERVERS);
    expect(result.config?.dnsServers).toEqual(SERVERS);
  });

  test("mistakes are errors at their line", async () => {
    const result = await loadText(
      "bad-srv.conf",
      [
        "dns-servers 127.0.0.1:99999",
        "dns-servers dns.example.com",
        "dns-servers 127.0.0.1,,10.0.0.1",
        "dns-servers [10.0.0.1]:53",
        "0.0.0.0 80 srv:_web.example.com",
        "0.0.0.0 81 srv:_web._tcp.example.com*2",
        "0.0.0.0 82 srv:_web._tcp.example.com 80",
        "srv:_web._tcp.example.com 83 10.0.0.1 80",
      ].join("\n"),
    );
    expect(linesAndReasons(result.errors)).toEqual([
      [1, "dns server '127.0.0.1:99999': port 99999 is out of range (1..65535)"],
      [2, "dns server 'dns.example.com' is not an IP address (ADDRESS, ADDRESS:PORT, or [IPv6]:PORT)"],
      [3, "dns-servers '127.0.0.1,,10.0.0.1' has an empty entry (stray ',')"],
      [4, "dns server '[10.0.0.1]:53': brackets are only for IPv6 addresses"],
      [5, "connect address 'srv:_web.example.com' is not an SRV name (write srv:_service._proto.name, e.g. srv:_http._tcp.example.com)"],
      [6, "connect address 'srv:_web._tcp.example.com*2': an srv: backend takes its weights from the SRV records; give it no weight"],
      [7, "wrong number of fields: found 4, expected 3 (unix:PATH and srv:NAME take no port field)"],
      [8, "bind address 'srv:_web._tcp.example.com': srv: names backends; oi listens on an IP address or host name"],
    ]);
  });
});

describe("TOML", () => {
  test("connect_address or a connect list entry may be srv:, with no port; dns_servers at the top level", async () => {
    const result = await loadText(
      "srv.toml",
      [
        'dns_servers = "127.0.0.1:5353, [::1]:53, 10.0.0.2"',
        "[[forwarding_rules]]",
        'bind_address = "0.0.0.0"',
        "bind_port = 8080",
        'connect_address = "srv:_web._tcp.svc.cluster.local"',
        "[[forwarding_rules]]",
        'bind_address = "0.0.0.0"',
        "bind_port = 8081",
        'connect = [ { address = "srv:_web._tcp.svc.cluster.local", name = "web" }, { address = "10.0.0.1", port = 80 } ]',
      ].join("\n"),
    );
    expect(result.errors).toEqual([]);
    const [one, two] = result.config?.rules ?? [];
    expect(one?.backends[0]?.endpoint).toEqual(SRV_ENDPOINT);
    expect(two?.backends.map((backend) => backend.name)).toEqual(["web", "10.0.0.1:80"]);
    expect(one?.dnsServers).toEqual(SERVERS);
  });

  test("mistakes are errors at their line", async () => {
    const result = await loadText(
      "bad-srv.toml",
      [
        'dns_servers = "[::1"',
        "[[forwarding_rules]]",
        'bind_address = "0.0.0.0"',
        "bind_port = 8080",
        'connect_address = "srv:_web._tcp.example.com"',
        "connect_port = 80",
        "[[forwarding_rules]]",
        'bind_address = "0.0.0.0"',
        "bind_port = 8081",
        'connect = [ { address = "srv:_web._tcp.example.com", weight = 2 } ]',
        "[[forwarding_rules]]",
        'bind_address = "0.0.0.0"',
        "bind_port = 8082",
        'protocol = "udp"',
        'connect_address = "srv:_web._tcp.example.com"',
      ].join("\n"),
    );
    expect(linesAndReasons(result.errors)).toEqual([
      [1, "dns server '[::1': missing ']' after the IPv6 address"],
      [6, "connect address 'srv:_web._tcp.example.com' takes no port: each SRV record gives its own"],
      [10, "an srv: backend takes its weights from the SRV records; give it no weight"],
      [15, "connect address 'srv:_web._tcp.example.com' names a TCP service but the rule connects over UDP (protocol)"],
    ]);
  });
});

describe("YAML", () => {
  test("connect and dest may be srv:; dns_servers under global", async () => {
    const result = await loadText(
      "srv.yaml",
      [
        "global:",
        '  dns_servers: "127.0.0.1:5353,[::1]:53,10.0.0.2"',
        "rules:",
        "  - name: web",
        '    bind: "0.0.0.0:8080/tcp"',
        '    connect: "srv:_web._tcp.svc.cluster.local"',
        "  - name: api",
        '    bind: "0.0.0.0:8081/tcp"',
        "    connect:",
        '      - dest: "srv:_web._tcp.svc.cluster.local"',
        '        name: "api-pods"',
      ].join("\n"),
    );
    expect(result.errors).toEqual([]);
    const [web, api] = result.config?.rules ?? [];
    expect(web?.backends[0]?.endpoint).toEqual(SRV_ENDPOINT);
    expect(api?.backends[0]?.name).toBe("api-pods");
    expect(api?.dnsServers).toEqual(SERVERS);
  });

  test("mistakes are errors at their line", async () => {
    const result = await loadText(
      "bad-srv.yaml",
      [
        "global:",
        '  dns_servers: "127.0.0.1:domain"',
        "rules:",
        "  - name: web",
        '    bind: "srv:_web._tcp.example.com"',
        '    connect: "srv:_web"',
        "  - name: api",
        '    bind: "0.0.0.0:8081/tcp"',
        "    connect:",
        '      - dest: "srv:_web._tcp.example.com"',
        "        weight: 3",
      ].join("\n"),
    );
    expect(linesAndReasons(result.errors)).toEqual([
      [2, "dns server '127.0.0.1:domain': port 'domain' is not a number"],
      [5, "rule 'web': bind address 'srv:_web._tcp.example.com': srv: names backends; oi listens on an IP address or host name"],
      [6, "rule 'web': connect address 'srv:_web' is not an SRV name (write srv:_service._proto.name, e.g. srv:_http._tcp.example.com)"],
      [11, "rule 'api': an srv: backend takes its weights from the SRV records; give it no weight"],
    ]);
  });
});
