import { describe, expect, test } from "bun:test";
import { ClientTable, clientKey } from "../src/clients.ts";

describe("clientKey: who one client is", () => {
  test("IPv4 per address; IPv4-mapped IPv6 as its IPv4 address", () => {
    expect(clientKey("192.0.2.7")).toBe("192.0.2.7");
    expect(clientKey("::ffff:192.0.2.7")).toBe("192.0.2.7");
    expect(clientKey("::FFFF:192.0.2.7")).toBe("192.0.2.7");
  });

  test("IPv6 per /64: addresses of one prefix are one client, of another prefix another", () => {
    expect(clientKey("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:db8:1:2:ffff:ffff:ffff:ffff")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:0DB8:1:2:a:b:c:d%eth0")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:db8:1:3::1")).toBe("2001:db8:1:3::/64");
    expect(clientKey("::1")).toBe("0:0:0:0::/64");
  });

  test("what does not parse is its own key", () => {
    expect(clientKey("")).toBe("");
    expect(clientKey("not:an:address:x")).toBe("not:an:address:x");
  });
});

describe("ClientTable: bounded least-recently-used state", () => {
  test("never holds more than its bound; the client touched longest ago goes first", () => {
    const table = new ClientTable<{ n: number }>(3);
    for (const key of ["a", "b", "c"]) table.touch(key, () => ({ n: 0 }));
    table.touch("a", () => ({ n: 99 })).n++;
    table.touch("d", () => ({ n: 0 }));
    expect(table.size).toBe(3);
    expect(table.peek("b")).toBeUndefined();
    expect(table.peek("a")).toEqual({ n: 1 });
    expect(table.peek("c")).toBeDefined();
    for (let i = 0; i < 10_000; i++) table.touch(`x${i}`, () => ({ n: 0 }));
    expect(table.size).toBe(3);
  });
});
