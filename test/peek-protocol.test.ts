import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { detectProtocol, type FirstBytes } from "../src/peek/protocol.ts";
import { ascii } from "./helpers/bytes.ts";
import { helloFixtures } from "./helpers/client-hello.ts";

function fixture(name: string): Uint8Array {
  return new Uint8Array(readFileSync(join(import.meta.dir, "fixtures", "first-bytes", name)));
}

/**
 * `bytes` is told apart after exactly `decidedAt` bytes: undefined before,
 * `kind` from then on, whatever follows.
 */
function expectDecidedAt(bytes: Uint8Array, decidedAt: number, kind: FirstBytes): void {
  for (let length = 0; length <= bytes.length; length++) {
    const answer = detectProtocol(bytes.subarray(0, length));
    const expected = length < decidedAt ? undefined : kind;
    if (answer !== expected) throw new Error(`${length} bytes: ${answer}, expected ${expected}`);
  }
}

function kindOf(text: string): FirstBytes | undefined {
  return detectProtocol(ascii(text));
}

describe("detectProtocol: real clients", () => {
  for (const { file, bytes } of helloFixtures()) {
    test(`${file}: tls after 3 bytes`, () => expectDecidedAt(bytes, 3, "tls"));
  }

  test("curl's and Chromium's requests: http at the space after GET", () => {
    for (const file of ["curl-http.bin", "curl-http-proxy.bin", "chromium-http.bin"]) expectDecidedAt(fixture(file), 4, "http");
  });

  test("OpenSSH's banner: ssh once SSH-2.0- has come", () => {
    const banner = fixture("openssh.bin");
    expect(new TextDecoder().decode(banner)).toBe("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n");
    expectDecidedAt(banner, 8, "ssh");
  });
});

describe("detectProtocol", () => {
  test("nothing yet: undefined", () => {
    expect(detectProtocol(new Uint8Array(0))).toBeUndefined();
  });

  test("TLS record versions 3.0..3.4; anything else after 0x16 is other", () => {
    for (let minor = 0; minor <= 4; minor++) expect(detectProtocol(Uint8Array.of(0x16, 3, minor))).toBe("tls");
    expect(detectProtocol(Uint8Array.of(0x16))).toBeUndefined();
    expect(detectProtocol(Uint8Array.of(0x16, 3))).toBeUndefined();
    expect(detectProtocol(Uint8Array.of(0x16, 3, 5))).toBe("other");
    expect(detectProtocol(Uint8Array.of(0x16, 2))).toBe("other");
    expect(detectProtocol(Uint8Array.of(0x15, 3, 3))).toBe("other");
    // SSLv2-style hello
    expect(detectProtocol(Uint8Array.of(0x80, 0x2e, 0x01))).toBe("other");
  });

  test("methods of 1..20 uppercase letters, then a space", () => {
    expectDecidedAt(ascii("POST /x HTTP/1.1\r\n"), 5, "http");
    expect(kindOf("M ")).toBe("http");
    expect(kindOf(`${"A".repeat(20)} `)).toBe("http");
    expect(kindOf("A".repeat(20))).toBeUndefined();
    expect(kindOf("A".repeat(21))).toBe("other");
  });

  test("a byte that cannot go on a method: other", () => {
    expect(kindOf("get / HTTP/1.1")).toBe("other");
    expect(kindOf("M-SEARCH * HTTP/1.1")).toBe("other");
    expect(kindOf("GET\t/")).toBe("other");
    expect(kindOf(" GET")).toBe("other");
    expect(kindOf("GE")).toBeUndefined();
  });

  test("the HTTP/2 preface counts as http (parseRequestHead refuses its version)", () => {
    expectDecidedAt(ascii("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 4, "http");
  });

  test("SSH banners of version 2.0 and 1.99", () => {
    expectDecidedAt(ascii("SSH-1.99-OpenSSH_3.9\r\n"), 9, "ssh");
    expect(kindOf("SSH-2.0")).toBeUndefined();
    expect(kindOf("SSH-1.9")).toBeUndefined();
    expect(kindOf("SSH-1.5-old")).toBe("other");
    expect(kindOf("SSH-2.1-")).toBe("other");
    expect(kindOf("ssh-2.0-")).toBe("other");
  });

  test("SSH or a method until the bytes say which", () => {
    expect(kindOf("S")).toBeUndefined();
    expect(kindOf("SSH")).toBeUndefined();
    expect(kindOf("SSH ")).toBe("http");
    expect(kindOf("SSH-")).toBeUndefined();
    expect(kindOf("SSHX")).toBeUndefined();
    expect(kindOf("SSHX ")).toBe("http");
  });

  test("anything else: other at the first byte that shows it", () => {
    expect(detectProtocol(Uint8Array.of(0))).toBe("other");
    expect(kindOf("\r\n")).toBe("other");
    expect(kindOf("{")).toBe("other");
    expect(detectProtocol(Uint8Array.of(0x05, 0x01, 0x00))).toBe("other"); // SOCKS5
  });
});
