/**
 * Routing and TLS settings in the three formats: sni=, host=, protocol=,
 * peek-timeout and the TLS options give the same model whichever format
 * wrote them; rules sharing a bind are checked (one default, no name or
 * protocol claimed twice, accept_proxy and peek-timeout alike); certificate
 * and key files are read and checked at load, each problem on the rule's
 * line; `oi check` shows each rule's match and TLS settings.
 */
import { describe, expect, test } from "bun:test";
import { describeRule } from "../src/config/describe.ts";
import { makeTestCa } from "./helpers/certs.ts";
import { linesAndReasons, textLoader } from "./helpers/config.ts";

const loadText = textLoader();
const ca = makeTestCa();
const leaf = ca.issue(["t.test"]);
const other = ca.issue(["o.test"]);

/** The model's routing and TLS fields of each rule, in plain values. */
function routing(result: Awaited<ReturnType<typeof loadText>>) {
  return (result.config?.rules ?? []).map((rule) => ({
    name: rule.name,
    match: rule.match,
    peekTimeout: rule.peekTimeout,
    tls: rule.tls === undefined ? undefined : { certFile: rule.tls.certFile, keyFile: rule.tls.keyFile, alpn: rule.tls.alpn, loaded: rule.tls.certPem !== "" && rule.tls.keyPem !== "" },
    backendTls: rule.backends.map((backend) =>
      backend.tls === undefined ? undefined : { serverName: backend.tls.serverName, caFile: backend.tls.caFile, verify: backend.tls.verify, ca: backend.tls.caPem !== undefined },
    ),
  }));
}

const EXPECTED: Array<Omit<ReturnType<typeof routing>[number], "name">> = [
  {
    match: { sni: ["a.example.test", "*.b.example.test"], host: [], protocol: [] },
    peekTimeout: 3,
    tls: undefined,
    backendTls: [undefined],
  },
  {
    match: { sni: ["t.test"], host: [], protocol: ["tls"] },
    peekTimeout: undefined,
    tls: { certFile: leaf.certFile, keyFile: leaf.keyFile, alpn: ["h2", "http/1.1"], loaded: true },
    backendTls: [undefined],
  },
  { match: { sni: [], host: [], protocol: ["ssh", "silent"] }, peekTimeout: undefined, tls: undefined, backendTls: [undefined] },
  { match: undefined, peekTimeout: undefined, tls: undefined, backendTls: [{ serverName: "api.internal", caFile: ca.certFile, verify: true, ca: true }] },
  { match: { sni: [], host: ["www.example.test"], protocol: [] }, peekTimeout: undefined, tls: undefined, backendTls: [{ serverName: undefined, caFile: undefined, verify: false, ca: false }] },
];

describe("the same routing and TLS settings in every format", () => {
  test(".conf", async () => {
    const result = await loadText(
      "routes.conf",
      [
        "0.0.0.0 443 10.0.0.1 443 [sni=A.example.test.|*.b.example.test,peek-timeout=3]",
        `0.0.0.0 443 10.0.0.2 8080 [sni=t.test,protocol=tls,tls-cert=${leaf.certFile},tls-key=${leaf.keyFile},tls-alpn=h2|http/1.1]`,
        "0.0.0.0 443 10.0.0.3 22 [protocol=ssh|silent]",
        `0.0.0.0 443 10.0.0.4 443 [tls-ca=${ca.certFile},tls-servername=api.internal,tls-connect=on]`,
        "0.0.0.0 80 10.0.0.5 443 [host=www.example.test,tls-connect=on,tls-verify=off]",
        "",
      ].join("\n"),
    );
    expect(result.errors).toEqual([]);
    expect(routing(result).map(({ name: _, ...rest }) => rest)).toEqual(EXPECTED);
    // A rule without a name of its own is named after its bind and its match.
    expect(result.config?.rules.map((rule) => rule.name)).toEqual([
      "0.0.0.0:443/tcp [sni=a.example.test|*.b.example.test]",
      "0.0.0.0:443/tcp [sni=t.test,protocol=tls]",
      "0.0.0.0:443/tcp [protocol=ssh|silent]",
      "0.0.0.0:443/tcp",
      "0.0.0.0:80/tcp [host=www.example.test]",
    ]);
  });

  test("YAML", async () => {
    const result = await loadText(
      "routes.yaml",
      [
        "rules:",
        "  - name: a",
        '    bind: "0.0.0.0:443/tcp"',
        '    connect: "10.0.0.1:443"',
        '    match: { sni: [A.example.test., "*.b.example.test"] }',
        "    peek_timeout: 3",
        "  - name: t",
        '    bind: "0.0.0.0:443/tcp"',
        '    connect: "10.0.0.2:8080"',
        "    match:",
        "      sni: t.test",
        "      protocol: [tls]",
        `    tls: { cert: ${leaf.certFile}, key: ${leaf.keyFile}, alpn: [h2, http/1.1] }`,
        "  - name: ssh",
        '    bind: "0.0.0.0:443/tcp"',
        '    connect: "10.0.0.3:22"',
        "    match: { protocol: [ssh, silent] }",
        "  - name: api",
        '    bind: "0.0.0.0:443/tcp"',
        "    connect:",
        '      - dest: "10.0.0.4:443"',
        `        tls: { ca: ${ca.certFile}, servername: api.internal }`,
        "  - name: www",
        '    bind: "0.0.0.0:80/tcp"',
        '    connect: "10.0.0.5:443"',
        "    match: { host: www.example.test }",
        "    tls_connect: { verify: false }",
        "",
      ].join("\n"),
    );
    expect(result.errors).toEqual([]);
    expect(routing(result).map(({ name: _, ...rest }) => rest)).toEqual(EXPECTED);
  });

  test("TOML", async () => {
    const rule = (address: string, port: number, rest: string) =>
      `[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = ${port}\nconnect_address = "${address.split(":")[0]}"\nconnect_port = ${address.split(":")[1]}\n${rest}`;
    const result = await loadText(
      "routes.toml",
      [
        rule("10.0.0.1:443", 443, 'peek_timeout = 3\n[forwarding_rules.match]\nsni = ["A.example.test.", "*.b.example.test"]\n'),
        rule(
          "10.0.0.2:8080",
          443,
          `[forwarding_rules.match]\nsni = "t.test"\nprotocol = ["tls"]\n[forwarding_rules.tls]\ncert = "${leaf.certFile}"\nkey = "${leaf.keyFile}"\nalpn = ["h2", "http/1.1"]\n`,
        ),
        rule("10.0.0.3:22", 443, '[forwarding_rules.match]\nprotocol = ["ssh", "silent"]\n'),
        `[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = 443\nconnect = [{ address = "10.0.0.4", port = 443, tls = { ca = "${ca.certFile}", servername = "api.internal" } }]\n`,
        rule("10.0.0.5:443", 80, 'tls_connect = { verify = false }\n[forwarding_rules.match]\nhost = "www.example.test"\n'),
      ].join("\n"),
    );
    expect(result.errors).toEqual([]);
    expect(routing(result).map(({ name: _, ...rest }) => rest)).toEqual(EXPECTED);
  });

  test("tls_connect = true in TOML and YAML: the bundled CAs, the backend's name", async () => {
    const toml = await loadText("true.toml", '[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = 443\nconnect_address = "api.example.test"\nconnect_port = 443\ntls_connect = true\n');
    expect(toml.errors).toEqual([]);
    expect(toml.config?.rules[0]?.backends[0]?.tls).toEqual({ serverName: undefined, caFile: undefined, caPem: undefined, verify: true });
    const yaml = await loadText("true.yaml", 'rules:\n  - name: a\n    bind: "0.0.0.0:443"\n    connect:\n      - dest: "api.example.test:443"\n        tls: true\n');
    expect(yaml.errors).toEqual([]);
    expect(yaml.config?.rules[0]?.backends[0]?.tls?.verify).toBe(true);
  });
});

describe("rules sharing a bind", () => {
  test("one default at most, no name or protocol claimed twice, accept_proxy and peek-timeout alike; each error names the other rule's line", async () => {
    const result = await loadText(
      "shared.conf",
      [
        "0.0.0.0 443 10.0.0.1 443 [sni=a.test,peek-timeout=3]",
        "0.0.0.0 443 10.0.0.2 443 [sni=*.b.test|A.TEST]",
        "0.0.0.0 443 10.0.0.3 443",
        "0.0.0.0 443 10.0.0.4 443",
        "0.0.0.0 443 10.0.0.5 443 [protocol=ssh,accept_proxy]",
        "0.0.0.0 443 10.0.0.6 443 [protocol=http,peek-timeout=4]",
        "0.0.0.0 443/udp 10.0.0.7 443/udp [sni=a.test]",
        "0.0.0.0 8443 10.0.0.8 443/udp [protocol=tls]",
        "127.0.0.1 443 10.0.0.9 443 [sni=c.test]",
        "",
      ].join("\n"),
    );
    expect(linesAndReasons(result.errors)).toEqual([
      [2, "sni=a.test on 0.0.0.0:443/tcp is matched already by the rule on line 1"],
      [4, "duplicate bind: 0.0.0.0:443/tcp is already bound by the rule on line 3 (rules on one bind are chosen by sni=, host= or protocol=; only one may have none, the default)"],
      [5, "accept_proxy must be the same for every rule on 0.0.0.0:443/tcp (the PROXY header is read before a rule is chosen): it differs from the rule on line 1"],
      [6, "peek-timeout applies to the whole bind 0.0.0.0:443/tcp: 4s here, 3s in the rule on line 1"],
      [7, "sni=, host= and protocol= choose among rules that forward TCP or unix socket streams; this rule is udp"],
      [8, "sni=, host= and protocol= choose among rules that forward TCP or unix socket streams; this rule is tcptoudp"],
      [9, "bind 127.0.0.1:443/tcp overlaps 0.0.0.0:443/tcp (a wildcard address takes the port on every address it covers) of the rule on line 1"],
    ]);
  });

  test("a bind of matched rules alone, without a default, is valid; peek-timeout where nothing is peeked at is a warning", async () => {
    const result = await loadText("alone.conf", "0.0.0.0 443 10.0.0.1 443 [sni=a.test]\n0.0.0.0 444 10.0.0.1 443 [peek-timeout=2]\n");
    expect(result.errors).toEqual([]);
    expect(linesAndReasons(result.warnings)).toEqual([[2, "peek-timeout has no effect: no rule on 0.0.0.0:444/tcp is chosen by what clients send (sni=, host=, protocol=)"]]);
  });
});

describe("bad values and files, each on its line", () => {
  test(".conf option values", async () => {
    const result = await loadText(
      "bad.conf",
      [
        "0.0.0.0 1 10.0.0.1 1 [sni=a*.test]",
        "0.0.0.0 2 10.0.0.1 1 [sni=]",
        "0.0.0.0 3 10.0.0.1 1 [host=a.test|a.test]",
        "0.0.0.0 4 10.0.0.1 1 [protocol=ftp]",
        "0.0.0.0 5 10.0.0.1 1 [peek-timeout=0]",
        "0.0.0.0 6 10.0.0.1 1 [tls-ca=/etc/ssl/ca.pem]",
        "0.0.0.0 7 10.0.0.1 1 [tls-connect=maybe]",
        "0.0.0.0 8 10.0.0.1 1 [tls-connect=on,tls-servername=bad_name!]",
        "0.0.0.0 9 10.0.0.1 1 [tls-alpn=h2]",
        `0.0.0.0 10 10.0.0.1 1 [tls-cert=${leaf.certFile}]`,
        `0.0.0.0 11 10.0.0.1 1 [tls-cert=${leaf.certFile},tls-key=${leaf.keyFile},host=x.test]`,
        `0.0.0.0 12 10.0.0.1 1 [tls-cert=${leaf.certFile},tls-key=${leaf.keyFile},protocol=ssh]`,
        `0.0.0.0 13/udp 10.0.0.1 1/udp [tls-cert=${leaf.certFile},tls-key=${leaf.keyFile}]`,
        "0.0.0.0 14 unix:/run/app.sock [tls-connect=on]",
        "",
      ].join("\n"),
    );
    expect(linesAndReasons(result.errors)).toEqual([
      [1, "sni 'a*.test': a wildcard is written *.example.com (a leading '*.' only)"],
      [2, "option 'sni' needs a value (sni=...)"],
      [3, "host lists 'a.test' twice"],
      [4, "protocol must be one of tls, http, ssh, silent, got 'ftp'"],
      [5, "peek-timeout must be a number of seconds above 0 and at most 300, got '0'"],
      [6, "tls-ca applies to a rule with tls-connect=on (oi speaks TLS to its backends)"],
      [7, "tls-connect must be on or off, got 'maybe'"],
      [8, "tls-servername 'bad_name!' is not a valid IP address or host name"],
      [9, "tls-alpn applies to a rule that terminates TLS (give tls-cert= and tls-key=)"],
      [10, "tls-cert needs tls-key (the certificate's private key)"],
      [11, "host= matches plain HTTP requests: a rule that terminates TLS is chosen by sni= or protocol=tls (or is the default)"],
      [12, "protocol=ssh: a rule that terminates TLS is for clients that speak TLS (protocol=tls)"],
      [13, "TLS termination (tls-cert=, tls-key=) applies to rules that forward TCP or unix socket streams; this rule is udp"],
      [14, "tls-connect applies to TCP backends only (not to UDP or unix socket backends)"],
    ]);
  });

  test("certificate and key files: missing, not PEM, not matching; each on the line of the rule naming it", async () => {
    const result = await loadText(
      "files.conf",
      [
        `0.0.0.0 1 10.0.0.1 1 [tls-cert=/nonexistent/t.pem,tls-key=${leaf.keyFile}]`,
        `0.0.0.0 2 10.0.0.1 1 [tls-cert=${leaf.keyFile},tls-key=${leaf.keyFile}]`,
        `0.0.0.0 3 10.0.0.1 1 [tls-cert=${leaf.certFile},tls-key=${other.keyFile}]`,
        "0.0.0.0 4 10.0.0.1 1 [tls-connect=on,tls-ca=/nonexistent/ca.pem]",
        "",
      ].join("\n"),
    );
    expect(linesAndReasons(result.errors)).toEqual([
      [1, "tls-cert /nonexistent/t.pem: cannot read (no such file)"],
      [2, `tls-cert ${leaf.keyFile}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`],
      [3, `tls-key ${other.keyFile} does not match tls-cert ${leaf.certFile} (CN=t.test)`],
      [4, "tls-ca /nonexistent/ca.pem: cannot read (no such file)"],
    ]);
  });

  test("YAML and TOML: wrong types and unknown keys in match, tls and tls_connect", async () => {
    const yaml = await loadText(
      "bad.yaml",
      [
        "rules:",
        "  - name: a",
        '    bind: "0.0.0.0:1"',
        '    connect: "10.0.0.1:1"',
        "    match: { sni: 5, colour: red }",
        "    tls_connect: maybe",
        "",
      ].join("\n"),
    );
    expect(linesAndReasons(yaml.errors)).toEqual([
      [5, "rule 'a': unknown key 'colour' in rules[0].match (known: sni, host, protocol)"],
      [5, "rule 'a': rules[0].match.sni must be a string or an array of strings, got an integer"],
      [6, "rule 'a': rules[0].tls_connect must be true, false or a mapping of ca, servername, verify; got a string"],
    ]);
    const toml = await loadText(
      "bad.toml",
      '[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = 1\nconnect_address = "10.0.0.1"\nconnect_port = 1\n[forwarding_rules.tls]\ncert = 5\nchain = "x"\n',
    );
    expect(linesAndReasons(toml.errors)).toEqual([
      [7, "forwarding_rules[0].tls.cert must be a string, got an integer"],
      [8, "unknown key 'chain' in forwarding_rules[0].tls (known: cert, key, alpn)"],
    ]);
  });
});

describe("oi check", () => {
  test("each rule's match, peek timeout and TLS settings, on both sides", async () => {
    const result = await loadText(
      "check.conf",
      [
        `0.0.0.0 443 10.0.0.2 8080 [sni=t.test,peek-timeout=2,tls-cert=${leaf.certFile},tls-key=${leaf.keyFile},tls-alpn=http/1.1]`,
        `0.0.0.0 443 10.0.0.4 443 [tls-connect=on,tls-ca=${ca.certFile},tls-servername=api.internal]`,
        "0.0.0.0 80 10.0.0.5 443 [host=www.example.test,tls-connect=on,tls-verify=off]",
        "",
      ].join("\n"),
    );
    expect(result.errors).toEqual([]);
    const lines = (result.config?.rules ?? []).map((rule) => describeRule(rule).replace(`${result.path}:`, "L"));
    expect(lines).toEqual([
      `L1  tcp  0.0.0.0:443 -> 10.0.0.2:8080  match sni=t.test  peek-timeout=2s  tls-cert=${leaf.certFile}  tls-key=${leaf.keyFile}  tls-alpn=http/1.1  connect_timeout=10s`,
      `L2  tcp  0.0.0.0:443 -> 10.0.0.4:443[tls servername=api.internal ca=${ca.certFile}]  connect_timeout=10s`,
      "L3  tcp  0.0.0.0:80 -> 10.0.0.5:443[tls ca=system verify=off]  match host=www.example.test  connect_timeout=10s",
    ]);
  });
});
