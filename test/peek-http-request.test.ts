import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type RequestHeadParse, parseRequestHead } from "../src/peek/http-request.ts";
import { MAX_PEEK_BYTES } from "../src/peek/limits.ts";
import { ascii, concat } from "./helpers/bytes.ts";

type Complete = Extract<RequestHeadParse, { status: "complete" }>;

function fixture(name: string): Uint8Array {
  return new Uint8Array(readFileSync(join(import.meta.dir, "fixtures", "first-bytes", name)));
}

function parse(text: string): RequestHeadParse {
  return parseRequestHead(ascii(text));
}

function expectComplete(result: RequestHeadParse): Complete {
  if (result.status !== "complete") throw new Error(`expected complete, got ${JSON.stringify(result)}`);
  return result;
}

function hostOf(text: string): string | undefined {
  return expectComplete(parse(text)).host;
}

function reasonOf(text: string | Uint8Array): string {
  const result = typeof text === "string" ? parse(text) : parseRequestHead(text);
  if (result.status !== "invalid") throw new Error(`expected invalid, got ${JSON.stringify(result)}`);
  return result.reason;
}

/** Every proper prefix must leave the parser waiting; the whole must parse to `expected`. */
function expectPrefixesIncomplete(bytes: Uint8Array, expected: Complete): void {
  for (let length = 0; length < bytes.length; length++) {
    const result = parseRequestHead(bytes.subarray(0, length));
    if (result.status !== "incomplete") throw new Error(`prefix of ${length}/${bytes.length} bytes: ${JSON.stringify(result)}`);
  }
  expect(parseRequestHead(bytes)).toEqual(expected);
}

describe("parseRequestHead: real clients", () => {
  const cases = [
    { file: "curl-http.bin", method: "GET", host: "curl.oi.test" },
    { file: "curl-http-proxy.bin", method: "GET", host: "proxied.oi.test" },
    { file: "chromium-http.bin", method: "GET", host: "chromium.oi.test" },
  ];
  for (const { file, method, host } of cases) {
    test(`${file}: ${method}, host ${host}; every proper prefix incomplete; a body after it changes nothing`, () => {
      const bytes = fixture(file);
      const expected: Complete = { status: "complete", method, host, length: bytes.length };
      expectPrefixesIncomplete(bytes, expected);
      expect(parseRequestHead(concat(bytes, ascii("GET / HTTP/1.1\r\n\x00\x01")))).toEqual(expected);
    });
  }
});

describe("parseRequestHead: requests", () => {
  test("GET with Host; length is the head's, through the empty line", () => {
    const head = "GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
    expect(parse(`${head}body`)).toEqual({ status: "complete", method: "GET", host: "example.com", length: head.length });
  });

  test("HTTP/1.0 without Host: no host", () => {
    expect(parse("GET / HTTP/1.0\r\n\r\n")).toEqual({ status: "complete", method: "GET", host: undefined, length: 18 });
  });

  test("an empty Host: no host", () => {
    expect(hostOf("GET / HTTP/1.1\r\nHost:\r\n\r\n")).toBeUndefined();
    expect(hostOf("GET / HTTP/1.1\r\nHost:  \t \r\n\r\n")).toBeUndefined();
  });

  test("the port is stripped; the name lowercased, its trailing dot dropped; whitespace around it ignored", () => {
    expect(hostOf("GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n")).toBe("example.com");
    expect(hostOf("GET / HTTP/1.1\r\nhOsT:\tWWW.Example.COM.:80 \t\r\n\r\n")).toBe("www.example.com");
    expect(hostOf("GET / HTTP/1.1\r\nHost: example.com:\r\n\r\n")).toBe("example.com");
    expect(hostOf("GET / HTTP/1.1\r\nHost: 192.0.2.1:80\r\n\r\n")).toBe("192.0.2.1");
  });

  test("IPv6 literals lose their brackets and port, in canonical form", () => {
    expect(hostOf("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")).toBe("::1");
    expect(hostOf("GET / HTTP/1.1\r\nHost: [2001:DB8:0:0::1]\r\n\r\n")).toBe("2001:db8::1");
    expect(hostOf("GET http://[::1]:8080/ HTTP/1.1\r\n\r\n")).toBe("::1");
  });

  test("an absolute-form target's host wins over the Host field", () => {
    expect(hostOf("GET http://Target.Example:8080/path?x HTTP/1.1\r\nHost: other.example\r\n\r\n")).toBe("target.example");
    expect(hostOf("GET HTTPS://secure.example HTTP/1.1\r\nHost: other.example\r\n\r\n")).toBe("secure.example");
    expect(hostOf("GET http://q.example?x=1 HTTP/1.1\r\n\r\n")).toBe("q.example");
  });

  test("other targets leave the host to the Host field", () => {
    expect(hostOf("OPTIONS * HTTP/1.1\r\nHost: a.example\r\n\r\n")).toBe("a.example");
    expect(hostOf("CONNECT b.example:443 HTTP/1.1\r\nHost: c.example:443\r\n\r\n")).toBe("c.example");
    expect(hostOf("GET ftp://d.example/ HTTP/1.1\r\nHost: e.example\r\n\r\n")).toBe("e.example");
  });

  test("bare LF line ends", () => {
    const head = "POST /x HTTP/1.1\nHost: lf.example\nContent-Length: 0\n\n";
    expect(parse(head)).toEqual({ status: "complete", method: "POST", host: "lf.example", length: head.length });
    expect(expectComplete(parse("GET / HTTP/1.1\r\nHost: mixed.example\n\r\n")).host).toBe("mixed.example");
  });

  test("any token is a method", () => {
    expect(expectComplete(parse("M-SEARCH * HTTP/1.1\r\n\r\n")).method).toBe("M-SEARCH");
    expect(expectComplete(parse("get / HTTP/1.1\r\n\r\n")).method).toBe("get");
  });

  test("field values may hold obs-text and HTAB", () => {
    expect(hostOf("GET / HTTP/1.1\r\nX-Name: caf\xe9\tau lait\r\nHost: a.example\r\n\r\n")).toBe("a.example");
  });

  test("every proper prefix of a request is incomplete, CRLF or LF", () => {
    const crlf = ascii("PUT http://x.example/ HTTP/1.1\r\nHost: y.example\r\nA: b\r\n\r\n");
    expectPrefixesIncomplete(crlf, { status: "complete", method: "PUT", host: "x.example", length: crlf.length });
    const lf = ascii("GET / HTTP/1.0\nHost: [::1]\n\n");
    expectPrefixesIncomplete(lf, { status: "complete", method: "GET", host: "::1", length: lf.length });
  });

  test("a head of exactly 16 KiB is accepted; one byte longer is not", () => {
    const start = "GET / HTTP/1.1\r\nHost: a.example\r\nX: ";
    const fill = (length: number) => `${start}${"x".repeat(length - start.length - 4)}\r\n\r\n`;
    expect(expectComplete(parse(fill(MAX_PEEK_BYTES))).length).toBe(MAX_PEEK_BYTES);
    expect(reasonOf(fill(MAX_PEEK_BYTES + 1))).toBe("request head longer than 16 KiB");
    // Refused as soon as 16 KiB have come without the head ending.
    expect(reasonOf(fill(MAX_PEEK_BYTES + 1).slice(0, MAX_PEEK_BYTES))).toBe("request head longer than 16 KiB");
    expect(parse(fill(MAX_PEEK_BYTES + 1).slice(0, MAX_PEEK_BYTES - 1)).status).toBe("incomplete");
  });
});

describe("parseRequestHead: refused, with the reason", () => {
  test("bad request lines", () => {
    expect(reasonOf("\r\nGET / HTTP/1.1\r\n\r\n")).toBe("empty line before the request line");
    expect(reasonOf(" GET")).toBe("request line starts with 0x20, not a method");
    expect(reasonOf("GET\t/")).toBe("0x09 in the method");
    expect(reasonOf("G(T / HTTP/1.1\r\n")).toBe("0x28 in the method");
    expect(reasonOf("GET  / HTTP/1.1\r\n")).toBe("empty request target");
    expect(reasonOf("GET /\x7f HTTP/1.1\r\n")).toBe("0x7f in the request target");
    expect(reasonOf("GET /caf\xe9 HTTP/1.1\r\n")).toBe("0xe9 in the request target");
    expect(reasonOf("GET\r\n")).toBe("request line has no target");
    expect(reasonOf("GET /\r\n\r\n")).toBe("request line has no HTTP version");
    expect(reasonOf("GET / HTTP/1.1 \r\n")).toBe("0x20 in the HTTP version");
    expect(reasonOf("GET / HTTP/1.1\rX\n")).toBe("0x0d in the HTTP version");
  });

  test("versions other than HTTP/1.0 and HTTP/1.1, as soon as they differ", () => {
    expect(reasonOf("GET / HTTP/2.0\r\n\r\n")).toBe('HTTP version "HTTP/2.0" is not HTTP/1.0 or HTTP/1.1');
    expect(reasonOf("GET / HTTP/2")).toBe('HTTP version "HTTP/2" is not HTTP/1.0 or HTTP/1.1');
    expect(reasonOf("GET / http/1.1\r\n")).toBe('HTTP version "http/1.1" is not HTTP/1.0 or HTTP/1.1');
    expect(reasonOf("GET / h")).toBe('HTTP version "h" is not HTTP/1.0 or HTTP/1.1');
    expect(reasonOf("GET / HTTP/1.12")).toBe('HTTP version "HTTP/1.12" is not HTTP/1.0 or HTTP/1.1');
    expect(reasonOf("GET / HTTP/1.1x\r\n")).toBe('HTTP version "HTTP/1.1x" is not HTTP/1.0 or HTTP/1.1');
  });

  test("the HTTP/2 preface", () => {
    expect(reasonOf("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")).toBe('HTTP version "HTTP/2.0" is not HTTP/1.0 or HTTP/1.1');
  });

  test("HTTP/0.9 (no version)", () => {
    expect(reasonOf("GET /\r\n")).toBe("request line has no HTTP version");
  });

  test("bad field lines", () => {
    expect(reasonOf("GET / HTTP/1.1\r\nHost a.example\r\n")).toBe("whitespace between header field name and colon");
    expect(reasonOf("GET / HTTP/1.1\r\nHost : a.example\r\n")).toBe("whitespace between header field name and colon");
    expect(reasonOf("GET / HTTP/1.1\r\nHost\t")).toBe("whitespace between header field name and colon");
    expect(reasonOf("GET / HTTP/1.1\r\nNoColon\r\n\r\n")).toBe("header field without a colon");
    expect(reasonOf("GET / HTTP/1.1\r\n: value\r\n")).toBe("empty header field name");
    expect(reasonOf("GET / HTTP/1.1\r\nA(b: c\r\n")).toBe("0x28 in a header field name");
    expect(reasonOf("GET / HTTP/1.1\r\nA: b\x00c\r\n")).toBe("control character 0x00 in a header field value");
    expect(reasonOf("GET / HTTP/1.1\r\nA: b\rc\r\n")).toBe("control character 0x0d in a header field value");
    expect(reasonOf("GET / HTTP/1.1\r\nA: b\x7f")).toBe("control character 0x7f in a header field value");
  });

  test("obs-fold, and whitespace before the first field", () => {
    expect(reasonOf("GET / HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n")).toBe("header line starts with whitespace (obs-fold)");
    expect(reasonOf("GET / HTTP/1.1\r\n\tHost: a\r\n")).toBe("header line starts with whitespace (obs-fold)");
  });

  test("two Host fields, even the same or one empty", () => {
    expect(reasonOf("GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n")).toBe("two Host header fields");
    expect(reasonOf("GET / HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n")).toBe("two Host header fields");
    expect(reasonOf("GET / HTTP/1.1\r\nHost:\r\nHost: a.example\r\n")).toBe("two Host header fields");
    expect(reasonOf("GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n")).toBe("two Host header fields");
  });

  test("Host values that are not hosts", () => {
    expect(reasonOf("GET / HTTP/1.1\r\nHost: a b\r\n")).toBe("Host: byte 0x20 in host name");
    expect(reasonOf("GET / HTTP/1.1\r\nHost: a..b\r\n")).toBe("Host: empty label in host name");
    expect(reasonOf("GET / HTTP/1.1\r\nHost: :80\r\n")).toBe("Host: empty host name");
    expect(reasonOf("GET / HTTP/1.1\r\nHost: a%2eb\r\n")).toBe("Host: byte 0x25 in host name");
    expect(reasonOf("GET / HTTP/1.1\r\nHost: a.example:http\r\n")).toBe("Host: port is not a number");
    expect(reasonOf("GET / HTTP/1.1\r\nHost: a.example:65536\r\n")).toBe("Host: port out of range");
    expect(reasonOf("GET / HTTP/1.1\r\nHost: u@a.example\r\n")).toBe("Host: byte 0x40 in host name");
    expect(reasonOf("GET / HTTP/1.1\r\nHost: [::1\r\n")).toBe("Host: IPv6 literal without its ]");
    expect(reasonOf("GET / HTTP/1.1\r\nHost: [::1]x\r\n")).toBe("Host: junk after the host");
    expect(reasonOf("GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n")).toBe("Host: not an IPv6 literal in brackets");
    expect(reasonOf("GET / HTTP/1.1\r\nHost: [v1.x]\r\n")).toBe("Host: not an IPv6 literal in brackets");
    expect(reasonOf("GET / HTTP/1.1\r\nHost: ::1\r\n")).toBe("Host: byte 0x3a in host name");
    expect(reasonOf("GET / HTTP/1.1\r\nHost: caf\xe9.example\r\n")).toBe("Host: byte 0xe9 in host name");
  });

  test("a bad Host is refused even when the target gives the host", () => {
    expect(reasonOf("GET http://a.example/ HTTP/1.1\r\nHost: a b\r\n")).toBe("Host: byte 0x20 in host name");
  });

  test("absolute-form targets with userinfo, an empty or bad host", () => {
    expect(reasonOf("GET http://user:pw@a.example/ HTTP/1.1\r\n")).toBe("request target: userinfo in an http(s) URI");
    expect(reasonOf("GET http:///path HTTP/1.1\r\n")).toBe("request target: empty host in an http(s) URI");
    expect(reasonOf("GET http://a_b!/ HTTP/1.1\r\n")).toBe("request target: byte 0x21 in host name");
    expect(reasonOf("GET https://a.example:99999/ HTTP/1.1\r\n")).toBe("request target: port out of range");
  });

  test("refused as soon as the bad byte has come, before the head ends", () => {
    expect(reasonOf("GET / HTTP/1.1\r\nX-A: b\r\n ")).toBe("header line starts with whitespace (obs-fold)");
    expect(reasonOf("\x16\x03\x01")).toBe("request line starts with 0x16, not a method");
  });
});
