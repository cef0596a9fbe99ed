import { concat } from "./helpers/bytes.ts";
import { describe, expect, test } from "bun:test";
import {
  encodeProxyV1,
  encodeProxyV2,
  encodeProxyV2Local,
  PROXY_V1_MAX_LENGTH,
  type ProxyAddress,
  type ProxyHeader,
  type ProxyTransport,
  parseProxyHeader,
  proxiedClient,
} from "../src/proxy-protocol.ts";

const SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

function ascii(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function text(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}


function endpoint(address: string, port: number): ProxyAddress {
  return { address, port };
}

function expectOk(result: ProxyHeader): Extract<ProxyHeader, { status: "ok" }> {
  if (result.status !== "ok") throw new Error(`expected ok, got ${JSON.stringify(result)}`);
  return result;
}

function reasonOf(data: Uint8Array): string {
  const result = parseProxyHeader(data);
  if (result.status !== "invalid") throw new Error(`expected invalid, got ${JSON.stringify(result)}`);
  return result.reason;
}

/** Every proper prefix of a valid header must leave the parser waiting, and the whole must parse. */
function expectPrefixesIncomplete(header: Uint8Array): void {
  for (let length = 0; length < header.length; length++) {
    const result = parseProxyHeader(header.subarray(0, length));
    if (result.status !== "incomplete") {
      throw new Error(`prefix of ${length}/${header.length} bytes: ${JSON.stringify(result)}`);
    }
  }
  expect(expectOk(parseProxyHeader(header)).headerLength).toBe(header.length);
}

describe("encodeProxyV1: byte-exact", () => {
  test("the spec's TCP4 example", () => {
    const header = encodeProxyV1(endpoint("192.168.0.1", 56324), endpoint("192.168.0.11", 443));
    expect(text(header)).toBe("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
  });

  test("TCP6, addresses in canonical form", () => {
    const header = encodeProxyV1(endpoint("2001:DB8:0:0::1", 1234), endpoint("0::1", 80));
    expect(text(header)).toBe("PROXY TCP6 2001:db8::1 ::1 1234 80\r\n");
  });

  test("IPv4-mapped endpoints (a dual-stack listener) are written as TCP4", () => {
    const header = encodeProxyV1(endpoint("::ffff:10.0.0.1", 1000), endpoint("::ffff:10.0.0.2", 2000));
    expect(text(header)).toBe("PROXY TCP4 10.0.0.1 10.0.0.2 1000 2000\r\n");
  });

  test("a mixed pair is written as TCP6 with the IPv4 address mapped, not lost", () => {
    const header = encodeProxyV1(endpoint("10.0.0.1", 1000), endpoint("2001:db8::2", 2000));
    expect(text(header)).toBe("PROXY TCP6 ::ffff:10.0.0.1 2001:db8::2 1000 2000\r\n");
  });

  test("UNKNOWN when an address is not an IP address; zone ids are dropped", () => {
    expect(text(encodeProxyV1(endpoint("backend.lan", 1), endpoint("10.0.0.1", 2)))).toBe("PROXY UNKNOWN\r\n");
    expect(text(encodeProxyV1(endpoint("fe80::1%eth0", 1), endpoint("fe80::2", 2)))).toBe("PROXY TCP6 fe80::1 fe80::2 1 2\r\n");
  });

  test("ports out of range are a programming error", () => {
    expect(() => encodeProxyV1(endpoint("1.2.3.4", 65536), endpoint("1.2.3.4", 1))).toThrow(RangeError);
    expect(() => encodeProxyV2(endpoint("1.2.3.4", 1), endpoint("1.2.3.4", -1), "tcp")).toThrow(RangeError);
  });
});

describe("encodeProxyV2: byte-exact", () => {
  test("TCP over IPv4 (as HAProxy sends it)", () => {
    // 172.19.0.1:42578 -> 172.19.0.3:80; 42578 = 0xa652.
    const header = encodeProxyV2(endpoint("172.19.0.1", 42578), endpoint("172.19.0.3", 80), "tcp");
    expect([...header]).toEqual([
      ...SIGNATURE,
      0x21, // version 2, command PROXY
      0x11, // AF_INET, STREAM
      0x00, 0x0c, // 12 bytes follow
      0xac, 0x13, 0x00, 0x01,
      0xac, 0x13, 0x00, 0x03,
      0xa6, 0x52,
      0x00, 0x50,
    ]);
  });

  test("UDP over IPv6", () => {
    // [2001:db8::1]:53 -> [2001:db8::2]:5353; 5353 = 0x14e9.
    const header = encodeProxyV2(endpoint("2001:db8::1", 53), endpoint("2001:db8::2", 5353), "udp");
    expect([...header]).toEqual([
      ...SIGNATURE,
      0x21,
      0x22, // AF_INET6, DGRAM
      0x00, 0x24, // 36 bytes follow
      0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
      0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
      0x00, 0x35,
      0x14, 0xe9,
    ]);
  });

  test("IPv4-mapped endpoints are sent as AF_INET", () => {
    const header = encodeProxyV2(endpoint("::ffff:10.0.0.1", 1000), endpoint("::ffff:10.0.0.2", 2000), "tcp");
    expect([...header]).toEqual([...SIGNATURE, 0x21, 0x11, 0x00, 0x0c, 10, 0, 0, 1, 10, 0, 0, 2, 0x03, 0xe8, 0x07, 0xd0]);
  });

  test("UNSPEC without addresses when an address is not an IP address; LOCAL", () => {
    expect([...encodeProxyV2(endpoint("backend.lan", 1), endpoint("10.0.0.1", 2), "tcp")]).toEqual([...SIGNATURE, 0x21, 0x00, 0x00, 0x00]);
    expect([...encodeProxyV2Local()]).toEqual([...SIGNATURE, 0x20, 0x00, 0x00, 0x00]);
  });
});

describe("round trips", () => {
  const pairs: Array<[string, ProxyAddress, ProxyAddress]> = [
    ["IPv4", endpoint("192.0.2.7", 51000), endpoint("198.51.100.1", 443)],
    ["IPv6", endpoint("2001:db8::7", 0), endpoint("2001:db8:1::ff", 65535)],
  ];
  const payload = ascii("GET / HTTP/1.1\r\n\r\n");

  for (const [family, source, destination] of pairs) {
    test(`v1 ${family} TCP`, () => {
      const header = encodeProxyV1(source, destination);
      const parsed = expectOk(parseProxyHeader(concat(header, payload)));
      expect(parsed).toEqual({ status: "ok", version: 1, headerLength: header.length, local: false, transport: "tcp", source, destination });
    });

    for (const transport of ["tcp", "udp"] as ProxyTransport[]) {
      test(`v2 ${family} ${transport}`, () => {
        const header = encodeProxyV2(source, destination, transport);
        const parsed = expectOk(parseProxyHeader(concat(header, payload)));
        expect(parsed).toEqual({ status: "ok", version: 2, headerLength: header.length, local: false, transport, source, destination });
      });
    }
  }

  test("v2 LOCAL and UNSPEC carry no addresses", () => {
    expect(parseProxyHeader(encodeProxyV2Local())).toEqual({ status: "ok", version: 2, headerLength: 16, local: true });
    const unspec = encodeProxyV2(endpoint("name", 1), endpoint("name", 2), "tcp");
    expect(parseProxyHeader(unspec)).toEqual({ status: "ok", version: 2, headerLength: 16, local: false });
    expect(parseProxyHeader(encodeProxyV1(endpoint("name", 1), endpoint("name", 2)))).toEqual({
      status: "ok",
      version: 1,
      headerLength: 15,
      local: false,
    });
  });

  test("proxiedClient shows an IPv4-mapped source as IPv4", () => {
    const mapped = concat(ascii("PROXY TCP6 ::ffff:192.0.2.9 ::1 4000 80\r\n"));
    expect(proxiedClient(parseProxyHeader(mapped))).toEqual({ address: "192.0.2.9", port: 4000 });
    expect(proxiedClient(parseProxyHeader(encodeProxyV2Local()))).toBeUndefined();
  });
});

describe("parseProxyHeader: v1 details", () => {
  test("UNKNOWN ignores whatever precedes the CRLF, up to the 107-byte worst case", () => {
    const full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    const worst = ascii(`PROXY UNKNOWN ${full} ${full} 65535 65535\r\n`);
    expect(worst.length).toBe(PROXY_V1_MAX_LENGTH);
    expect(parseProxyHeader(worst)).toEqual({ status: "ok", version: 1, headerLength: 107, local: false });
    expect(expectOk(parseProxyHeader(ascii("PROXY UNKNOWN whatever !@#\r\nrest"))).headerLength).toBe(28);
    const tcp6 = expectOk(parseProxyHeader(ascii(`PROXY TCP6 ${full} ${full} 65535 65535\r\n`)));
    expect(tcp6.source).toEqual({ address: full, port: 65535 });
  });

  test("port 0 and an IPv6 address with an IPv4 tail are accepted", () => {
    const parsed = expectOk(parseProxyHeader(ascii("PROXY TCP6 ::ffff:1.2.3.4 2001:db8::1 0 1\r\n")));
    expect(parsed.source).toEqual({ address: "::ffff:1.2.3.4", port: 0 });
  });
});

describe("parseProxyHeader: v2 TLVs are skipped by length", () => {
  function withTlvs(header: Uint8Array, tlvs: number[]): Uint8Array {
    const out = concat(header, tlvs);
    const length = out.length - 16;
    out[14] = length >> 8;
    out[15] = length & 0xff;
    return out;
  }
  const base = encodeProxyV2(endpoint("10.1.2.3", 4444), endpoint("10.9.9.9", 443), "tcp");
  const tlvs = [
    0x01, 0x00, 0x02, 0x68, 0x32, // ALPN "h2"
    0x04, 0x00, 0x00, // NOOP, empty
    0x02, 0x00, 0x0b, ...ascii("example.com"), // AUTHORITY
  ];

  test("addresses read, header length covers the TLVs, payload untouched", () => {
    const header = withTlvs(base, tlvs);
    const parsed = expectOk(parseProxyHeader(concat(header, ascii("payload"))));
    expect(parsed.headerLength).toBe(header.length);
    expect(parsed.source).toEqual({ address: "10.1.2.3", port: 4444 });
    expect(parsed.destination).toEqual({ address: "10.9.9.9", port: 443 });
    expectPrefixesIncomplete(header);
  });

  test("a truncated or overrunning TLV is invalid", () => {
    expect(reasonOf(withTlvs(base, [0x01, 0x00]))).toContain("truncated v2 TLV");
    expect(reasonOf(withTlvs(base, [0x01, 0x00, 0x05, 0x68, 0x32]))).toContain("overruns");
  });

  test("UNIX addresses are reported as ok without addresses, LOCAL ignores its block", () => {
    const unix = concat(SIGNATURE, [0x21, 0x31, 0x00, 216], new Uint8Array(216));
    expect(parseProxyHeader(unix)).toEqual({ status: "ok", version: 2, headerLength: 232, local: false, transport: "tcp" });
    const local = concat(SIGNATURE, [0x20, 0x11, 0x00, 0x03], [1, 2, 3]);
    expect(parseProxyHeader(local)).toEqual({ status: "ok", version: 2, headerLength: 19, local: true });
    // A LOCAL header's family byte is not checked ("discard the protocol block including the family").
    expect(expectOk(parseProxyHeader(concat(SIGNATURE, [0x20, 0xff, 0x00, 0x00]))).local).toBe(true);
  });
});

describe("parseProxyHeader: incomplete while more bytes could make it valid", () => {
  const headers: Array<[string, Uint8Array]> = [
    ["v1 TCP4", encodeProxyV1(endpoint("192.168.0.1", 56324), endpoint("192.168.0.11", 443))],
    ["v1 TCP6", encodeProxyV1(endpoint("2001:db8::1", 1234), endpoint("::ffff:10.0.0.1", 80))],
    ["v1 UNKNOWN", ascii("PROXY UNKNOWN\r\n")],
    ["v1 UNKNOWN long", ascii("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n")],
    ["v2 TCP4", encodeProxyV2(endpoint("127.0.0.1", 1), endpoint("127.0.0.2", 2), "tcp")],
    ["v2 UDP6", encodeProxyV2(endpoint("::1", 1), endpoint("::2", 2), "udp")],
    ["v2 LOCAL", encodeProxyV2Local()],
  ];
  for (const [name, header] of headers) {
    test(name, () => expectPrefixesIncomplete(header));
  }
});

describe("parseProxyHeader: invalid input, with a reason", () => {
  const notAHeader = "not a PROXY protocol header";
  const v2 = (tail: number[]): Uint8Array => concat(SIGNATURE, tail);

  test("anything else is refused from its first distinguishing byte", () => {
    expect(reasonOf(ascii("GET / HTTP/1.1\r\n"))).toBe(notAHeader);
    expect(reasonOf(ascii("\x16\x03\x01"))).toBe(notAHeader); // a TLS ClientHello
    expect(reasonOf(ascii("PO"))).toBe(notAHeader); // POST
    expect(reasonOf(ascii("PROXZ"))).toBe(notAHeader);
    expect(reasonOf(ascii("PROXY\t"))).toBe(notAHeader);
    expect(reasonOf(Uint8Array.of(0x0d, 0x0a, 0x0d, 0x0a, 0x01))).toContain("bad v2 signature");
    expect(reasonOf(ascii("\r\n\r\n\0\r\nQUIX"))).toContain("bad v2 signature");
    expect(parseProxyHeader(ascii("P")).status).toBe("incomplete");
  });

  test("v2: version, command, family and transport", () => {
    expect(reasonOf(v2([0x11]))).toBe("unsupported PROXY protocol version 1");
    expect(reasonOf(v2([0x31, 0x11, 0, 12]))).toBe("unsupported PROXY protocol version 3");
    expect(reasonOf(v2([0x22]))).toBe("unknown v2 command 2");
    expect(reasonOf(v2([0x21, 0x41]))).toContain("0x41"); // family 4
    expect(reasonOf(v2([0x21, 0x13]))).toContain("0x13"); // transport 3
    expect(reasonOf(v2([0x21, 0x10]))).toContain("0x10"); // AF_INET with UNSPEC transport
    expect(reasonOf(v2([0x21, 0x01]))).toContain("0x01"); // UNSPEC family with a transport
  });

  test("v2: an address block too short for its family is refused before waiting for it", () => {
    expect(reasonOf(v2([0x21, 0x11, 0x00, 11]))).toContain("too short");
    expect(reasonOf(v2([0x21, 0x21, 0x00, 35]))).toContain("too short");
    expect(reasonOf(v2([0x21, 0x32, 0x00, 215]))).toContain("too short");
  });

  test("v1: line endings and length", () => {
    const line = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443";
    expect(reasonOf(ascii(`${line}\n`))).toBe("v1 header: LF without CR");
    expect(reasonOf(ascii(`${line}\rX`))).toBe("v1 header: CR without LF");
    expect(reasonOf(ascii("PROXY UNKNOWN\n"))).toBe("v1 header: LF without CR");
    expect(reasonOf(ascii(`PROXY UNKNOWN ${"x".repeat(93)}`))).toContain("no CRLF in the first 107 bytes");
    // 106 bytes and then CRLF: one byte too long.
    expect(reasonOf(ascii(`PROXY UNKNOWN ${"x".repeat(92)}\r\n`))).toContain("no CRLF in the first 107 bytes");
  });

  test("v1: protocol and field count", () => {
    expect(reasonOf(ascii("PROXY TCP5"))).toContain('unknown protocol "TCP5"');
    expect(reasonOf(ascii("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"))).toContain('unknown protocol "UDP4"');
    expect(reasonOf(ascii("PROXY UNKNOWNX\r\n"))).toContain("unknown protocol");
    expect(reasonOf(ascii("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"))).toContain("unknown protocol");
    expect(reasonOf(ascii("PROXY TCP4\r\n"))).toContain("2 fields, 6 expected");
    expect(reasonOf(ascii("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"))).toContain("5 fields, 6 expected");
    expect(reasonOf(ascii("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"))).toContain("more than 6 fields");
    expect(reasonOf(ascii("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 "))).toContain("more than 6 fields");
    expect(reasonOf(ascii("PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n"))).toContain("unknown protocol");
    expect(reasonOf(ascii("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"))).toContain("empty destination address");
  });

  test("v1: malformed addresses", () => {
    expect(reasonOf(ascii("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"))).toContain('malformed source address "1.2.3"');
    expect(reasonOf(ascii("PROXY TCP4 1.2.3.4 256.6.7.8 1 2\r\n"))).toContain("malformed destination address");
    expect(reasonOf(ascii("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"))).toContain("malformed source address");
    expect(reasonOf(ascii("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"))).toContain("for TCP6");
    expect(reasonOf(ascii("PROXY TCP6 ::1%eth0 ::1 1 2\r\n"))).toContain("malformed source address");
    expect(reasonOf(ascii("PROXY TCP6 1::2::3 ::1 1 2\r\n"))).toContain("malformed source address");
    // Refused as soon as the partial field cannot become an address.
    expect(reasonOf(ascii("PROXY TCP4 1.2.3.4x"))).toContain("malformed source address");
    expect(reasonOf(ascii("PROXY TCP4 1.2.3.4."))).toContain("malformed source address");
    expect(reasonOf(ascii("PROXY TCP4 300"))).toContain("malformed source address");
    expect(reasonOf(ascii("PROXY TCP6 ::g"))).toContain("malformed source address");
  });

  test("v1: ports", () => {
    expect(reasonOf(ascii("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"))).toContain('source port "65536" is not a port');
    expect(reasonOf(ascii("PROXY TCP4 1.2.3.4 5.6.7.8 1 080\r\n"))).toContain('destination port "080"');
    expect(reasonOf(ascii("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"))).toContain("source port");
    expect(reasonOf(ascii("PROXY TCP4 1.2.3.4 5.6.7.8 1 2x\r\n"))).toContain("destination port");
    expect(reasonOf(ascii("PROXY TCP4 1.2.3.4 5.6.7.8 99999"))).toContain("source port");
    expect(reasonOf(ascii("PROXY TCP4 1.2.3.4 5.6.7.8 1 00"))).toContain("destination port");
  });
});
