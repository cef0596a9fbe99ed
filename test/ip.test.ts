import { describe, expect, test } from "bun:test";
import { formatHostPort, formatIp, isIpLiteral, normalizeIp, parseIPv4, parseIPv6, parseIp, unmapIPv4 } from "../src/ip.ts";

function bytesOf(text: string): number[] | undefined {
  const bytes = parseIp(text);
  return bytes === undefined ? undefined : [...bytes];
}

describe("parseIPv4", () => {
  test("dotted quads", () => {
    expect([...(parseIPv4("192.0.2.255") ?? [])]).toEqual([192, 0, 2, 255]);
    expect([...(parseIPv4("0.0.0.0") ?? [])]).toEqual([0, 0, 0, 0]);
  });

  test("refuses short, long, out-of-range, leading-zero and non-decimal forms", () => {
    for (const text of ["1.2.3", "1.2.3.4.5", "1.2.3.256", "01.2.3.4", "1.2.3.-4", "1.2.3.0x4", "1..3.4", "", " 1.2.3.4"]) {
      expect(parseIPv4(text)).toBeUndefined();
    }
  });
});

describe("parseIPv6", () => {
  test("full, compressed and embedded-IPv4 forms", () => {
    expect(bytesOf("::")).toEqual(new Array(16).fill(0));
    expect(bytesOf("::1")).toEqual([...new Array(15).fill(0), 1]);
    expect(bytesOf("1::")).toEqual([0, 1, ...new Array(14).fill(0)]);
    expect(bytesOf("2001:db8:0:0:0:0:0:a")).toEqual(bytesOf("2001:db8::a"));
    expect(bytesOf("::ffff:1.2.3.4")).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4]);
    expect(bytesOf("1:2:3:4:5:6:1.2.3.4")?.slice(12)).toEqual([1, 2, 3, 4]);
    expect(bytesOf("1:2:3:4:5:6:7::")?.[13]).toBe(7);
    expect(bytesOf("ABCD::EF")).toEqual(bytesOf("abcd::ef"));
  });

  test("refuses malformed text, zone ids and brackets", () => {
    for (const text of [
      ":",
      ":::",
      "1::2::3",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7:8::",
      ":1::",
      "1::2:",
      "12345::",
      "g::1",
      "::1.2.3.4:5",
      "::1.2.3",
      "fe80::1%eth0",
      "[::1]",
    ]) {
      expect(parseIPv6(text)).toBeUndefined();
    }
  });
});

describe("formatIp is RFC 5952", () => {
  const cases: Array<[string, string]> = [
    ["0:0:0:0:0:0:0:0", "::"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["2001:0DB8:0000:0000:0001:0000:0000:0001", "2001:db8::1:0:0:1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
    ["::ffff:102:304", "::ffff:1.2.3.4"],
    ["010.1.2.3", "invalid"],
    ["10.1.2.3", "10.1.2.3"],
  ];
  for (const [input, expected] of cases) {
    test(`${input} → ${expected}`, () => {
      const bytes = parseIp(input);
      expect(bytes === undefined ? "invalid" : formatIp(bytes)).toBe(expected);
    });
  }
});

describe("helpers", () => {
  test("normalizeIp makes spellings of one address equal", () => {
    expect(normalizeIp("0::0")).toBe("::");
    expect(normalizeIp("::")).toBe("::");
    expect(normalizeIp("example.com")).toBeUndefined();
  });

  test("isIpLiteral", () => {
    expect(isIpLiteral("10.0.0.1")).toBe(true);
    expect(isIpLiteral("::1")).toBe(true);
    expect(isIpLiteral("localhost")).toBe(false);
    expect(isIpLiteral("[::1]")).toBe(false);
  });

  test("unmapIPv4 gives the IPv4 inside a mapped address only", () => {
    expect([...unmapIPv4(parseIp("::ffff:10.0.0.1") ?? new Uint8Array())]).toEqual([10, 0, 0, 1]);
    expect(unmapIPv4(parseIp("::1") ?? new Uint8Array()).length).toBe(16);
  });

  test("formatHostPort brackets IPv6", () => {
    expect(formatHostPort("::1", 80)).toBe("[::1]:80");
    expect(formatHostPort("10.0.0.1", 80)).toBe("10.0.0.1:80");
    expect(formatHostPort("example.com", 443)).toBe("example.com:443");
  });
});
