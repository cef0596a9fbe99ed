/**
 * Socket addresses for the direct sockets: what encodeAddress writes is what
 * the kernel's struct sockaddr_in/in6 hold, and hostOf/portOf read back the
 * text Bun's sockets give for the same peer.
 */
import { describe, expect, test } from "bun:test";
import { encodeAddress, encodeAddressCached, hostOf, portOf } from "../src/fd/address.ts";

describe("socket addresses", () => {
  test("IPv4: family 2 (little-endian), port in network order, the four bytes", () => {
    const encoded = encodeAddress("10.1.2.3", 8080)!;
    expect(encoded.family).toBe(2);
    expect([...encoded.bytes.subarray(0, 8)]).toEqual([2, 0, 0x1f, 0x90, 10, 1, 2, 3]);
    expect(encoded.bytes.length).toBe(16);
    expect([hostOf(encoded.bytes), portOf(encoded.bytes)]).toEqual(["10.1.2.3", 8080]);
  });

  test("IPv6: family 10, the sixteen bytes at offset 8, read back in RFC 5952 form; mapped IPv4 as Bun shows it", () => {
    const encoded = encodeAddress("2001:DB8:0:0:0:0:0:1", 443)!;
    expect(encoded.family).toBe(10);
    expect(encoded.bytes.length).toBe(28);
    expect([...encoded.bytes.subarray(8, 12)]).toEqual([0x20, 0x01, 0x0d, 0xb8]);
    expect([hostOf(encoded.bytes), portOf(encoded.bytes)]).toEqual(["2001:db8::1", 443]);
    expect(hostOf(encodeAddress("::ffff:127.0.0.1", 1)!.bytes)).toBe("::ffff:127.0.0.1");
    expect(hostOf(encodeAddress("::1", 1)!.bytes)).toBe("::1");
  });

  test("a host name is no address; an unknown family reads as empty", () => {
    expect(encodeAddress("localhost", 80)).toBeUndefined();
    expect(encodeAddressCached("localhost", 80)).toBeUndefined();
    expect(hostOf(new Uint8Array(16))).toBe("");
  });

  test("the cache gives the same bytes for the same host and port, other bytes for another port", () => {
    const first = encodeAddressCached("127.0.0.1", 9000);
    expect(encodeAddressCached("127.0.0.1", 9000)).toBe(first);
    expect(portOf(encodeAddressCached("127.0.0.1", 9001)!.bytes)).toBe(9001);
  });
});
