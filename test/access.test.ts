import { describe, expect, test } from "bun:test";
import { compilePattern, isAllowed, parseClientAddress } from "../src/access.ts";
import type { AccessList, AccessRule, AddressPattern, ClientAddress } from "../src/types.ts";

function pattern(text: string): AddressPattern {
  const compiled = compilePattern(text);
  if (typeof compiled === "string") throw new Error(`pattern '${text}' did not compile: ${compiled}`);
  return compiled;
}

function client(text: string): ClientAddress {
  const parsed = parseClientAddress(text);
  if (parsed === undefined) throw new Error(`'${text}' is not a client address`);
  return parsed;
}

function matches(patternText: string, clientText: string): boolean {
  return pattern(patternText).matches(client(clientText));
}

function rule(kind: "allow" | "deny", text: string): AccessRule {
  return { kind, pattern: pattern(text), at: { file: "test.conf", line: 1 } };
}

function list(allow: string[], deny: string[] = []): AccessList {
  return { allow: allow.map((text) => rule("allow", text)), deny: deny.map((text) => rule("deny", text)) };
}

const NONE = list([]);

describe("compilePattern: rinetd globs", () => {
  test("* matches any run of characters", () => {
    expect(matches("206.125.69.*", "206.125.69.81")).toBe(true);
    expect(matches("206.125.69.*", "206.125.69.0")).toBe(true);
    expect(matches("206.125.69.*", "206.125.70.1")).toBe(false);
  });

  test("* may match nothing at all", () => {
    expect(matches("1.2.3.4*", "1.2.3.4")).toBe(true);
    expect(matches("*1.2.3.4", "1.2.3.4")).toBe(true);
  });

  test("the glob is anchored at both ends", () => {
    expect(matches("1.2.3.4", "11.2.3.4")).toBe(false);
    expect(matches("2.3.*", "1.2.3.4")).toBe(false);
    expect(matches("*.1", "10.200.3.12")).toBe(false);
    expect(matches("10.*.1", "10.200.3.1")).toBe(true);
    expect(matches("10.*.1", "10.200.3.12")).toBe(false);
    expect(matches("*", "192.0.2.1")).toBe(true);
    expect(matches("*", "2001:db8::1")).toBe(true);
  });

  test("? matches exactly one character", () => {
    expect(matches("192.168.2.1?", "192.168.2.10")).toBe(true);
    expect(matches("192.168.2.1?", "192.168.2.19")).toBe(true);
    expect(matches("192.168.2.1?", "192.168.2.1")).toBe(false);
    expect(matches("192.168.2.1?", "192.168.2.100")).toBe(false);
  });

  test("'.' is literal, not a regular-expression wildcard", () => {
    expect(matches("1.2.3.*", "1.2.3.4")).toBe(true);
    expect(matches("1.2.3.*", "1.213.4.5")).toBe(false);
  });

  test("IPv6 globs match the canonical text, whatever case the pattern uses", () => {
    expect(matches("fe80:*", "fe80::1")).toBe(true);
    expect(matches("FE80:*", "fe80::abcd")).toBe(true);
    expect(matches("fe80:*", "fe81::1")).toBe(false);
    expect(matches("2001:618:*:e43f", "2001:618::e43f")).toBe(true);
    expect(matches("2001:618:*:e43f", "2001:618:1:2::e43f")).toBe(true);
    expect(matches("2001:618:*:e43f", "2001:618::e43e")).toBe(false);
    // The client spelled it in full; globs see the RFC 5952 form.
    expect(matches("2001:618:*:e43f", "2001:0618:0000:0000:0000:0000:0000:E43F")).toBe(true);
  });

  test("keeps the text the user wrote", () => {
    expect(pattern("206.125.69.*").text).toBe("206.125.69.*");
  });
});

describe("compilePattern: CIDR", () => {
  test("IPv4 blocks on and off byte boundaries", () => {
    expect(matches("10.0.0.0/8", "10.255.1.2")).toBe(true);
    expect(matches("10.0.0.0/8", "11.0.0.1")).toBe(false);
    expect(matches("172.16.0.0/12", "172.31.255.255")).toBe(true);
    expect(matches("172.16.0.0/12", "172.32.0.0")).toBe(false);
    expect(matches("192.0.2.7/32", "192.0.2.7")).toBe(true);
    expect(matches("192.0.2.7/32", "192.0.2.6")).toBe(false);
    expect(matches("0.0.0.0/0", "203.0.113.9")).toBe(true);
  });

  test("host bits in the address are ignored", () => {
    expect(matches("10.1.2.3/8", "10.9.9.9")).toBe(true);
  });

  test("IPv6 blocks", () => {
    expect(matches("fe80::/10", "fe80::1")).toBe(true);
    expect(matches("fe80::/10", "febf:ffff::1")).toBe(true);
    expect(matches("fe80::/10", "fec0::1")).toBe(false);
    expect(matches("::/0", "2001:db8::1")).toBe(true);
    expect(matches("2001:db8::/32", "2001:db9::1")).toBe(false);
  });

  test("an IPv4 block never matches an IPv6 client and the other way round", () => {
    expect(matches("0.0.0.0/0", "2001:db8::1")).toBe(false);
    expect(matches("::/0", "192.0.2.1")).toBe(false);
  });
});

describe("compilePattern: exact addresses", () => {
  test("IPv4", () => {
    expect(matches("192.168.1.50", "192.168.1.50")).toBe(true);
    expect(matches("192.168.1.50", "192.168.1.5")).toBe(false);
  });

  test("IPv6 compares bytes, so every spelling is the same address", () => {
    expect(matches("::1", "0:0:0:0:0:0:0:1")).toBe(true);
    expect(matches("0:0:0:0:0:0:0:1", "::1")).toBe(true);
    expect(matches("2001:DB8::A", "2001:db8:0:0:0:0:0:a")).toBe(true);
    expect(matches("::1", "::2")).toBe(false);
  });
});

describe("IPv4-mapped IPv6 clients are IPv4", () => {
  test("parseClientAddress unmaps text and bytes", () => {
    const mapped = client("::ffff:1.2.3.4");
    expect(mapped.text).toBe("1.2.3.4");
    expect([...mapped.bytes]).toEqual([1, 2, 3, 4]);
  });

  test("they match IPv4 globs, CIDR blocks and exact addresses", () => {
    expect(matches("1.2.3.*", "::ffff:1.2.3.4")).toBe(true);
    expect(matches("1.2.3.0/24", "::ffff:1.2.3.4")).toBe(true);
    expect(matches("1.2.3.4", "::ffff:1.2.3.4")).toBe(true);
    expect(matches("1.2.4.*", "::ffff:1.2.3.4")).toBe(false);
    expect(matches("1.2.4.0/24", "::ffff:1.2.3.4")).toBe(false);
    expect(matches("1.2.3.5", "::ffff:1.2.3.4")).toBe(false);
  });

  test("patterns written in the mapped form match them too", () => {
    expect(matches("::ffff:1.2.3.4", "1.2.3.4")).toBe(true);
    expect(matches("::ffff:1.2.3.0/120", "::ffff:1.2.3.99")).toBe(true);
    expect(matches("::ffff:1.2.3.*", "::ffff:1.2.3.99")).toBe(true);
  });
});

describe("parseClientAddress", () => {
  test("IPv4 and IPv6 in canonical text with their bytes", () => {
    expect(client("127.0.0.1")).toEqual({ text: "127.0.0.1", bytes: new Uint8Array([127, 0, 0, 1]) });
    const loopback = client("::1");
    expect(loopback.text).toBe("::1");
    expect(loopback.bytes.length).toBe(16);
    expect(loopback.bytes[15]).toBe(1);
    expect(client("2001:DB8:0:0:1:0:0:1").text).toBe("2001:db8::1:0:0:1");
  });

  test("a zone id is dropped", () => {
    expect(client("fe80::1%eth0").text).toBe("fe80::1");
  });

  test("anything else is not an address", () => {
    for (const text of ["", "localhost", "1.2.3", "1.2.3.256", "::1::", "[::1]"]) {
      expect(parseClientAddress(text)).toBeUndefined();
    }
  });
});

describe("compilePattern rejections", () => {
  const cases: Array<[string, string]> = [
    ["", "empty pattern"],
    ["example.com", "host names are not permitted in allow/deny rules (rinetd)"],
    ["localhost", "host names are not permitted in allow/deny rules (rinetd)"],
    ["*.example.com", "host names are not permitted in allow/deny rules (rinetd)"],
    ["cafe.de", "host names are not permitted in allow/deny rules (rinetd)"],
    ["10.0.0.%", "bad character '%' (patterns may use 0-9, a-f, '.', ':', '?' and '*')"],
    ["fe80::1%eth0", "bad character '%' (patterns may use 0-9, a-f, '.', ':', '?' and '*')"],
    ["1.2.3.4 ", "bad character ' ' (patterns may use 0-9, a-f, '.', ':', '?' and '*')"],
    ["10.0.0.0/33", "bad CIDR prefix length '33' (0..32 for IPv4)"],
    ["fe80::/129", "bad CIDR prefix length '129' (0..128 for IPv6)"],
    ["10.0.0.0/", "bad CIDR prefix length '' (0..32 for IPv4)"],
    ["10.0.0.0/x", "bad CIDR prefix length 'x' (0..32 for IPv4)"],
    ["10.0.0.0/-1", "bad CIDR prefix length '-1' (0..32 for IPv4)"],
    ["10.0.0/8", "malformed address '10.0.0' in CIDR pattern"],
    ["example.com/8", "malformed address 'example.com' in CIDR pattern"],
    ["10.0.*.0/16", "wildcards cannot be combined with a CIDR prefix"],
    ["1.2.3", "malformed IP address (use '*' or '?' for wildcards, or ADDRESS/PREFIX)"],
    ["1.2.3.256", "malformed IP address (use '*' or '?' for wildcards, or ADDRESS/PREFIX)"],
    ["1:2:3", "malformed IP address (use '*' or '?' for wildcards, or ADDRESS/PREFIX)"],
  ];
  for (const [text, reason] of cases) {
    test(`'${text}'`, () => {
      expect(compilePattern(text)).toBe(reason);
    });
  }
});

describe("isAllowed: rinetd's decision", () => {
  const inside = client("10.0.0.5");
  const outside = client("192.0.2.1");

  test("no rules at all: everyone is allowed", () => {
    expect(isAllowed(outside, NONE, NONE)).toBe(true);
  });

  test("a global allow list must be matched", () => {
    const global = list(["10.0.0.*"]);
    expect(isAllowed(inside, global, NONE)).toBe(true);
    expect(isAllowed(outside, global, NONE)).toBe(false);
  });

  test("matching any one of several allow rules is enough", () => {
    const global = list(["172.16.*", "10.0.0.*"]);
    expect(isAllowed(inside, global, NONE)).toBe(true);
  });

  test("a global deny match refuses, even when a global allow matched", () => {
    expect(isAllowed(inside, list([], ["10.0.0.5"]), NONE)).toBe(false);
    expect(isAllowed(inside, list(["10.0.0.*"], ["10.0.0.5"]), NONE)).toBe(false);
    expect(isAllowed(outside, list([], ["10.0.0.5"]), NONE)).toBe(true);
  });

  test("a rule's allow list must be matched too", () => {
    expect(isAllowed(inside, NONE, list(["10.0.0.0/24"]))).toBe(true);
    expect(isAllowed(outside, NONE, list(["10.0.0.0/24"]))).toBe(false);
  });

  test("a rule's deny match refuses", () => {
    expect(isAllowed(inside, NONE, list([], ["10.0.0.5"]))).toBe(false);
    expect(isAllowed(outside, NONE, list([], ["10.0.0.5"]))).toBe(true);
  });

  test("a rule's allow cannot override a global refusal", () => {
    expect(isAllowed(outside, list(["10.0.0.*"]), list(["192.0.2.*"]))).toBe(false);
    expect(isAllowed(inside, list([], ["10.*"]), list(["10.0.0.5"]))).toBe(false);
  });

  test("global and rule lists combined: every check must pass", () => {
    const global = list(["10.*", "192.0.2.*"], ["10.9.*"]);
    const perRule = list(["10.0.0.0/16"], ["10.0.0.66"]);
    expect(isAllowed(client("10.0.0.5"), global, perRule)).toBe(true);
    expect(isAllowed(client("10.9.0.1"), global, perRule)).toBe(false); // global deny
    expect(isAllowed(client("192.0.2.1"), global, perRule)).toBe(false); // not in the rule's allow
    expect(isAllowed(client("10.0.0.66"), global, perRule)).toBe(false); // rule deny
    expect(isAllowed(client("172.16.0.1"), global, perRule)).toBe(false); // not in the global allow
  });

  test("mapped clients are judged as IPv4", () => {
    expect(isAllowed(client("::ffff:10.0.0.5"), list(["10.0.0.*"]), list([], ["10.0.0.6"]))).toBe(true);
    expect(isAllowed(client("::ffff:10.0.0.6"), list(["10.0.0.*"]), list([], ["10.0.0.6"]))).toBe(false);
  });
});

describe("compilePattern: length", () => {
  test("a pattern longer than any address is refused with its length, not compiled (a glob of a megabyte is a regular expression too large)", () => {
    expect(compilePattern(`10.${"1".repeat(1_200_000)}*`)).toBe("pattern of 1200004 characters: an address pattern has at most 64");
    expect(typeof compilePattern("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128")).toBe("object");
  });
});
