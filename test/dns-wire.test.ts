/**
 * The DNS wire format of SRV lookups: the query oi sends, and the parser of
 * answers, which must take whatever the network sends (bad lengths,
 * compression loops, random bytes) and either return records or throw a
 * WireError.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { decodeSrvAnswer, encodeQuery, messageId, TYPE_SRV, WireError } from "../src/dns-wire.ts";

const ID = 0x1234;

function u16(value: number): number[] {
  return [value >> 8, value & 0xff];
}

function u32(value: number): number[] {
  return [(value >>> 24) & 0xff, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff];
}

function name(text: string): number[] {
  return [...text.split(".").flatMap((label) => [label.length, ...Buffer.from(label)]), 0];
}

/** An answer to `encodeQuery(ID, "_svc._tcp.x.test", SRV)` with `records` (the owner names compressed to the question). */
function answer(records: number[][], flags = 0x8180): Uint8Array {
  const question = [...name("_svc._tcp.x.test"), ...u16(TYPE_SRV), ...u16(1)];
  const body = records.flatMap((rdata) => [0xc0, 12, ...u16(TYPE_SRV), ...u16(1), ...u32(30), ...u16(rdata.length), ...rdata]);
  return new Uint8Array([...u16(ID), ...u16(flags), ...u16(1), ...u16(records.length), 0, 0, 0, 0, ...question, ...body]);
}

function srv(priority: number, weight: number, port: number, target: number[]): number[] {
  return [...u16(priority), ...u16(weight), ...u16(port), ...target];
}

describe("encodeQuery", () => {
  test("header with recursion desired, the name as labels, type and class", () => {
    const query = encodeQuery(ID, "_svc._tcp.x.test.", TYPE_SRV);
    expect([...query]).toEqual([...u16(ID), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, ...name("_svc._tcp.x.test"), ...u16(33), ...u16(1)]);
    expect(messageId(query)).toBe(ID);
  });

  test("names that cannot be written are refused", () => {
    expect(() => encodeQuery(ID, "a..b", TYPE_SRV)).toThrow(RangeError);
    expect(() => encodeQuery(ID, `${"a".repeat(64)}.test`, TYPE_SRV)).toThrow(RangeError);
    expect(() => encodeQuery(ID, Array(130).fill("ab").join("."), TYPE_SRV)).toThrow(RangeError);
  });
});

describe("decodeSrvAnswer", () => {
  test("records with their TTL; a target compressed to the question's name", () => {
    // 0xc0 0x16 points at "x.test" inside the question (offset 12 + 5 + 5).
    const parsed = decodeSrvAnswer(answer([srv(0, 3, 8080, name("A.example.com")), srv(10, 0, 9090, [1, 0x63, 0xc0, 22])]), ID);
    expect(parsed).toEqual({
      rcode: 0,
      truncated: false,
      records: [
        { priority: 0, weight: 3, port: 8080, target: "a.example.com", ttl: 30 },
        { priority: 10, weight: 0, port: 9090, target: "c.x.test", ttl: 30 },
      ],
    });
  });

  test("the response code and the TC bit are passed on", () => {
    expect(decodeSrvAnswer(answer([], 0x8183), ID)).toEqual({ rcode: 3, truncated: false, records: [] });
    expect(decodeSrvAnswer(answer([], 0x8380), ID).truncated).toBe(true);
  });

  test("malformed answers are WireErrors", () => {
    const good = answer([srv(0, 1, 80, name("a.test"))]);
    const cases: Array<[string, Uint8Array]> = [
      ["another ID", Uint8Array.from([0x99, ...good.subarray(1)])],
      ["a query, not a response", Uint8Array.from([...good.subarray(0, 2), 0x01, 0x00, ...good.subarray(4)])],
      ["cut short", good.subarray(0, good.length - 3)],
      ["a pointer to itself", answer([srv(0, 1, 80, [0xc0, 12 + 22 + 12 + 6])])],
      ["a pointer forwards", answer([srv(0, 1, 80, [0xc0, 0xff])])],
      // The record's data is 14 bytes (6 + the 8 of a.test), its length the 2 before.
      ["an rdata length past the end", Uint8Array.from([...good.subarray(0, good.length - 16), 0x7f, 0xff, ...good.subarray(good.length - 14)])],
      ["an SRV length that does not match", answer([[...srv(0, 1, 80, name("a.test")), 0]])],
      ["an unknown label type", answer([srv(0, 1, 80, [0x40, 0])])],
    ];
    for (const [what, message] of cases) expect(() => decodeSrvAnswer(message, ID), what).toThrow(WireError);
  });

  test("any bytes at all: records or a WireError, quickly", () => {
    const good = [...answer([srv(0, 1, 80, name("a.test")), srv(1, 2, 81, [1, 0x62, 0xc0, 22])])];
    const mutated = fc
      .array(fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 6 })
      .map((edits) => {
        const bytes = Uint8Array.from(good);
        for (const [at, value] of edits) bytes[at] = value;
        return bytes;
      });
    fc.assert(
      fc.property(fc.oneof(mutated, fc.uint8Array({ maxLength: 600 })), (message) => {
        try {
          const parsed = decodeSrvAnswer(message, ID);
          for (const record of parsed.records) expect(record.target.length).toBeLessThanOrEqual(255);
        } catch (error) {
          if (!(error instanceof WireError)) throw error;
        }
      }),
      { seed: 19, numRuns: 5000 },
    );
  });
});
