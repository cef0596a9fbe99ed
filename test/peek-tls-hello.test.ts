import { describe, expect, test } from "bun:test";
import { MAX_PEEK_BYTES } from "../src/peek/limits.ts";
import { type HelloParse, parseClientHello } from "../src/peek/tls-hello.ts";
import {
  alpnExtension,
  clientHello,
  extension,
  handshake,
  handshakeOf,
  helloBody,
  helloFixtures,
  recordHeader,
  records,
  serverNameExtension,
} from "./helpers/client-hello.ts";
import { ascii, concat } from "./helpers/bytes.ts";

type Complete = Extract<HelloParse, { status: "complete" }>;

function expectComplete(result: HelloParse): Complete {
  if (result.status !== "complete") throw new Error(`expected complete, got ${JSON.stringify(result)}`);
  return result;
}

function reasonOf(bytes: Uint8Array): string {
  const result = parseClientHello(bytes);
  if (result.status !== "invalid") throw new Error(`expected invalid, got ${JSON.stringify(result)}`);
  return result.reason;
}

/** The answer for a hello whose extensions are these (in one record). */
function withExtensions(...extensions: Uint8Array[]): HelloParse {
  return parseClientHello(clientHello({ extensions }));
}

function nameOf(...extensions: Uint8Array[]): string | undefined {
  return expectComplete(withExtensions(...extensions)).serverName;
}

function reasonWith(...extensions: Uint8Array[]): string {
  return reasonOf(clientHello({ extensions }));
}

/** Every proper prefix must leave the parser waiting; the whole must parse to `expected`. */
function expectPrefixesIncomplete(bytes: Uint8Array, expected: Complete): void {
  for (let length = 0; length < bytes.length; length++) {
    const result = parseClientHello(bytes.subarray(0, length));
    if (result.status !== "incomplete") throw new Error(`prefix of ${length}/${bytes.length} bytes: ${JSON.stringify(result)}`);
  }
  expect(parseClientHello(bytes)).toEqual(expected);
}

describe("parseClientHello: real clients", () => {
  for (const fixture of helloFixtures()) {
    test(`${fixture.file}: ${fixture.serverName}, ALPN [${fixture.alpn.join(", ")}]${fixture.ech ? ", ECH" : ""}`, () => {
      const result = expectComplete(parseClientHello(fixture.bytes));
      expect(result).toEqual({ status: "complete", serverName: fixture.serverName, alpn: fixture.alpn, ech: fixture.ech, length: fixture.bytes.length });
    });

    test(`${fixture.file}: every proper prefix is incomplete (fed byte by byte)`, () => {
      expectPrefixesIncomplete(fixture.bytes, expectComplete(parseClientHello(fixture.bytes)));
    });

    test(`${fixture.file}: bytes after the hello's records change nothing`, () => {
      const answer = parseClientHello(fixture.bytes);
      // What a TLS 1.3 client may send next: a change_cipher_spec record, then early data.
      const next = Uint8Array.of(20, 3, 3, 0, 1, 1, 23, 3, 3, 0, 2, 0xaa, 0xbb);
      for (let length = 1; length <= next.length; length++) {
        expect(parseClientHello(concat(fixture.bytes, next.subarray(0, length)))).toEqual(answer);
      }
    });

    test(`${fixture.file}: re-framed into records of many sizes, same answer`, () => {
      const message = handshakeOf(fixture.bytes);
      const { serverName, alpn, ech } = expectComplete(parseClientHello(fixture.bytes));
      for (const size of [1, 2, 3, 4, 5, 64, 255, 1000]) {
        const sizes: number[] = [];
        for (let carried = size; carried < message.length; carried += size) sizes.push(size);
        const framed = records(message, sizes);
        expect(parseClientHello(framed)).toEqual({ status: "complete", serverName, alpn, ech, length: framed.length });
      }
    });
  }

  test("the two-record fixtures: every prefix incomplete across the record boundaries", () => {
    for (const fixture of helloFixtures().filter((f) => f.file.includes("records"))) {
      const message = handshakeOf(fixture.bytes);
      expect(fixture.bytes.length).toBeGreaterThan(message.length + 5); // really more than one record
      expectPrefixesIncomplete(fixture.bytes, expectComplete(parseClientHello(fixture.bytes)));
    }
  });
});

describe("parseClientHello: synthetic hellos", () => {
  test("a TLS 1.2 hello with SNI", () => {
    const bytes = clientHello();
    expect(parseClientHello(bytes)).toEqual({ status: "complete", serverName: "example.com", alpn: [], ech: false, length: bytes.length });
  });

  test("no server_name extension: complete, no name", () => {
    expect(expectComplete(withExtensions(alpnExtension("h2"))).serverName).toBeUndefined();
  });

  test("no extensions block at all (allowed before TLS 1.3)", () => {
    const result = expectComplete(parseClientHello(clientHello({ extensions: null })));
    expect(result.serverName).toBeUndefined();
    expect(result.alpn).toEqual([]);
  });

  test("an empty extensions block", () => {
    expect(expectComplete(parseClientHello(clientHello({ extensions: [] }))).serverName).toBeUndefined();
  });

  test("the name is lowercased, its trailing dot dropped", () => {
    expect(nameOf(serverNameExtension("WWW.Example.COM."))).toBe("www.example.com");
  });

  test("digits, dots, '-' and '_' are fine; an all-digits name is a name", () => {
    expect(nameOf(serverNameExtension("_acme-challenge.a-1.example"))).toBe("_acme-challenge.a-1.example");
    expect(nameOf(serverNameExtension("192.0.2.1"))).toBe("192.0.2.1");
  });

  test("a name of 253 bytes passes, with or without a trailing dot", () => {
    const name = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
    expect(name.length).toBe(253);
    expect(nameOf(serverNameExtension(name))).toBe(name);
    expect(nameOf(serverNameExtension(`${name}.`))).toBe(name);
  });

  test("ALPN names are read as latin1", () => {
    const result = expectComplete(withExtensions(serverNameExtension("a.test"), alpnExtension("h2", "http/1.1", "\xe9x")));
    expect(result.alpn).toEqual(["h2", "http/1.1", "\xe9x"]);
  });

  test("the ECH extension is noticed and the outer name returned", () => {
    const result = expectComplete(withExtensions(serverNameExtension("public.example"), extension(0xfe0d, [0, 1, 2, 3])));
    expect(result.ech).toBe(true);
    expect(result.serverName).toBe("public.example");
  });

  test("unknown extensions (GREASE, padding) are skipped", () => {
    expect(nameOf(extension(0x0a0a, []), serverNameExtension("a.test"), extension(21, new Uint8Array(300)), extension(0xfafa, [0]))).toBe("a.test");
  });

  test("server_name entries of other types are skipped; only them: no name", () => {
    const other = Uint8Array.of(0, 9, 1, 0, 2, 0x61, 0x62, 0, 0, 1, 0x63);
    // list: type 1 "ab", type 0 "c"
    expect(nameOf(extension(0, other))).toBe("c");
    expect(nameOf(extension(0, [0, 5, 1, 0, 2, 0x61, 0x62]))).toBeUndefined();
  });

  test("record versions 3.0 to 3.4 are accepted", () => {
    const message = handshake(helloBody());
    for (const version of [0x0300, 0x0301, 0x0302, 0x0303, 0x0304]) {
      expect(parseClientHello(records(message, [], version)).status).toBe("complete");
    }
  });

  test("a hello that fills exactly 16 KiB of one record is accepted; one byte more is not", () => {
    const fill = (padding: number) => clientHello({ extensions: [serverNameExtension("a.test"), extension(21, new Uint8Array(padding))] });
    const base = fill(0).length;
    const exact = fill(MAX_PEEK_BYTES - base);
    expect(exact.length).toBe(MAX_PEEK_BYTES);
    expect(expectComplete(parseClientHello(exact)).length).toBe(MAX_PEEK_BYTES);
    const over = fill(MAX_PEEK_BYTES - base + 1);
    // Refused on the record header alone, before its contents come.
    expect(reasonOf(over.subarray(0, 5))).toBe("ClientHello longer than 16 KiB");
  });

  test("over several records, 16 KiB of records in all is the limit", () => {
    const message = (padding: number) => handshake(helloBody({ extensions: [serverNameExtension("a.test"), extension(21, new Uint8Array(padding))] }));
    const base = records(message(0), [100]).length;
    const exact = records(message(MAX_PEEK_BYTES - base), [100]);
    expect(exact.length).toBe(MAX_PEEK_BYTES);
    expect(parseClientHello(exact).status).toBe("complete");
    const over = records(message(MAX_PEEK_BYTES - base + 1), [100]);
    // The handshake header in the first record already says the end is too far.
    expect(reasonOf(over.subarray(0, 9))).toBe("ClientHello longer than 16 KiB");
  });
});

describe("parseClientHello: refused, with the reason", () => {
  const good = clientHello();

  test("as soon as the first byte is not a handshake record", () => {
    expect(reasonOf(Uint8Array.of(23))).toBe("record type 23 is not a handshake");
    expect(reasonOf(ascii("GET / HTTP/1.1\r\n"))).toBe("record type 71 is not a handshake");
    expect(reasonOf(ascii("SSH-2.0-x"))).toBe("record type 83 is not a handshake");
  });

  test("record versions that are not 3.0..3.4", () => {
    expect(reasonOf(Uint8Array.of(22, 2))).toBe("record version 2.x is not TLS");
    expect(reasonOf(Uint8Array.of(22, 3, 5))).toBe("record version 3.5 is unknown");
  });

  test("record lengths of 0 and over 2^14", () => {
    expect(reasonOf(recordHeader(0))).toBe("empty handshake record");
    expect(reasonOf(recordHeader(16385))).toBe("record of 16385 bytes is longer than 16384");
  });

  test("a handshake message other than ClientHello", () => {
    const serverHello = records(handshake(helloBody(), { type: 2 }));
    expect(reasonOf(serverHello.subarray(0, 6))).toBe("handshake type 2 is not a ClientHello");
  });

  test("a ClientHello too short to hold its fixed fields", () => {
    expect(reasonOf(records(handshake(new Uint8Array(40))))).toBe("ClientHello of 40 bytes is too short");
  });

  test("a declared length past 16 KiB, as soon as it is read", () => {
    const header = concat(recordHeader(16384), [1, 0, 0x50, 0x00]);
    expect(reasonOf(header)).toBe("ClientHello longer than 16 KiB");
    expect(reasonOf(concat(recordHeader(100), [1, 0xff, 0xff, 0xff]))).toBe("ClientHello longer than 16 KiB");
  });

  test("a record that goes on after the ClientHello", () => {
    const message = handshake(helloBody());
    const framed = concat(recordHeader(message.length + 3), message, [22, 3, 3]);
    // Known from the record and handshake headers alone.
    expect(reasonOf(framed.subarray(0, 9))).toBe("record carries data after the ClientHello");
  });

  test("a record of another type in the middle of the hello", () => {
    const message = handshake(helloBody());
    const framed = concat(recordHeader(10), message.subarray(0, 10), [21, 3, 3, 0, 2, 2, 40]);
    expect(reasonOf(framed)).toBe("record type 21 is not a handshake");
  });

  test("a later record claiming more than the rest of the hello", () => {
    const message = handshake(helloBody());
    const framed = concat(recordHeader(10), message.subarray(0, 10), recordHeader(message.length - 10 + 1));
    expect(reasonOf(framed)).toBe("record carries data after the ClientHello");
  });

  test("a body whose fields overrun its declared length", () => {
    const body = helloBody();
    expect(reasonOf(records(handshake(body.subarray(0, 45))))).toMatch(/^ClientHello (session id|cipher suites) overruns$/);
    const noCompression = helloBody({ extensions: null }).subarray(0, 2 + 32 + 1 + 32 + 2 + 4);
    expect(reasonOf(records(handshake(noCompression)))).toBe("ClientHello compression methods overruns");
  });

  test("bad fixed fields", () => {
    expect(reasonOf(clientHello({ version: 0x0203 }))).toBe("ClientHello version 0x0203 is not TLS");
    expect(reasonOf(clientHello({ sessionId: new Uint8Array(33) }))).toBe("session id of 33 bytes is longer than 32");
    expect(reasonOf(clientHello({ cipherSuites: Uint8Array.of(0x13, 0x01, 0xc0) }))).toBe("cipher suites length 3 is not a positive even number");
    expect(reasonOf(clientHello({ cipherSuites: new Uint8Array(0) }))).toBe("cipher suites length 0 is not a positive even number");
    expect(reasonOf(clientHello({ compression: new Uint8Array(0) }))).toBe("no compression methods");
  });

  test("an extensions block whose length does not match the rest of the hello", () => {
    const ext = serverNameExtension("a.test");
    expect(reasonOf(clientHello({ extensions: [ext], extensionsLength: ext.length + 1 }))).toBe("ClientHello extensions overrun");
    expect(reasonOf(clientHello({ extensions: [ext], extensionsLength: ext.length - 1 }))).toBe("ClientHello has bytes after its extensions");
  });

  test("a truncated extension", () => {
    // The last extension claims 10 bytes of data and has 2.
    expect(reasonWith(serverNameExtension("a.test"), Uint8Array.of(0, 21, 0, 10, 0, 0))).toBe("extension 0x0015 overruns the ClientHello");
    expect(reasonWith(serverNameExtension("a.test"), Uint8Array.of(0, 21, 0))).toBe("ClientHello extension header overruns");
  });

  test("two server_name extensions, or two host names in one", () => {
    expect(reasonWith(serverNameExtension("a.test"), serverNameExtension("b.test"))).toBe("two server_name extensions");
    expect(reasonWith(serverNameExtension("a.test", "b.test"))).toBe("two host names in server_name");
  });

  test("any other extension twice", () => {
    expect(reasonWith(alpnExtension("h2"), alpnExtension("h2"))).toBe("two extensions of type 0x0010");
  });

  test("host names that are not names", () => {
    expect(reasonWith(serverNameExtension(""))).toBe("server_name: empty host name");
    expect(reasonWith(serverNameExtension("."))).toBe("server_name: empty host name");
    expect(reasonWith(serverNameExtension("a..b"))).toBe("server_name: empty label in host name");
    expect(reasonWith(serverNameExtension(".a"))).toBe("server_name: empty label in host name");
    expect(reasonWith(serverNameExtension("a.."))).toBe("server_name: empty label in host name");
    expect(reasonWith(serverNameExtension("exa mple.com"))).toBe("server_name: byte 0x20 in host name");
    expect(reasonWith(serverNameExtension("a/b"))).toBe("server_name: byte 0x2f in host name");
    expect(reasonWith(serverNameExtension("[::1]"))).toBe("server_name: byte 0x5b in host name");
    expect(reasonWith(serverNameExtension(Uint8Array.of(0x61, 0, 0x62)))).toBe("server_name: byte 0x00 in host name");
    expect(reasonWith(serverNameExtension("b\xfccher.example"))).toBe("server_name: byte 0xfc in host name");
    expect(reasonWith(serverNameExtension("a".repeat(254)))).toBe("server_name: host name longer than 253 bytes");
    expect(reasonWith(serverNameExtension(`${"a".repeat(64)}.test`))).toBe("server_name: host name label longer than 63 bytes");
  });

  test("malformed server_name extensions", () => {
    expect(reasonWith(extension(0, []))).toBe("server_name extension too short");
    expect(reasonWith(extension(0, [0, 0]))).toBe("empty server_name list");
    expect(reasonWith(extension(0, [0, 9, 0, 0, 2, 0x61, 0x62]))).toBe("server_name list length does not match its extension");
    expect(reasonWith(extension(0, [0, 2, 0, 0]))).toBe("server_name entry truncated");
    expect(reasonWith(extension(0, [0, 5, 0, 0, 9, 0x61, 0x62]))).toBe("server_name entry overruns its list");
  });

  test("malformed ALPN extensions", () => {
    expect(reasonWith(extension(16, [0]))).toBe("ALPN extension too short");
    expect(reasonWith(extension(16, [0, 0]))).toBe("empty ALPN list");
    expect(reasonWith(extension(16, [0, 4, 2, 0x68, 0x32]))).toBe("ALPN list length does not match its extension");
    expect(reasonWith(extension(16, [0, 3, 0, 2, 0x68]))).toBe("empty ALPN protocol name");
    expect(reasonWith(extension(16, [0, 3, 5, 0x68, 0x32]))).toBe("ALPN protocol name overruns its list");
  });

  test("a bad extension is refused before the rest of the hello has come", () => {
    const bytes = clientHello({ extensions: [serverNameExtension("a b"), extension(21, new Uint8Array(500))] });
    const cut = bytes.length - 400;
    expect(reasonOf(bytes.subarray(0, cut))).toBe("server_name: byte 0x20 in host name");
  });

  test("a bad field is refused even while the next record's header is still coming", () => {
    // Found by the fuzzer: the partial header used to end the parse before the fields were walked.
    const message = handshake(helloBody({ sessionId: new Uint8Array(33) }));
    const framed = records(message, [60]);
    for (const extra of [0, 1, 2, 3, 4]) expect(reasonOf(framed.subarray(0, 65 + extra))).toBe("session id of 33 bytes is longer than 32");
  });

  test("the good hello these are made from is complete", () => {
    expect(expectComplete(parseClientHello(good)).serverName).toBe("example.com");
  });
});
