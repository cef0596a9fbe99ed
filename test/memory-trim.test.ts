/**
 * When a full collection runs: only once a burst of at least 1,000
 * connections has ended, and at most half of the peak since the last one is
 * still open; never in steady traffic.
 */
import { describe, expect, test } from "bun:test";
import { MemoryTrim } from "../src/memory-trim.ts";

function trimCounting(): { trim: MemoryTrim; collections: () => number } {
  let count = 0;
  const trim = new MemoryTrim(() => count++);
  trim.stop();
  return { trim, collections: () => count };
}

describe("memory trim", () => {
  test("after 2,000 connections came and went: one collection, then none until another burst", () => {
    const { trim, collections } = trimCounting();
    for (let i = 0; i < 2000; i++) trim.started();
    for (let i = 0; i < 2000; i++) trim.ended();
    expect(trim.check()).toBe(true);
    expect(trim.check()).toBe(false);
    expect(collections()).toBe(1);
  });

  test("steady traffic with many still open, or a small burst, does not pause the thread", () => {
    const { trim, collections } = trimCounting();
    // 3,000 open, 1,200 of them ended: more than half of the peak is still open.
    for (let i = 0; i < 3000; i++) trim.started();
    for (let i = 0; i < 1200; i++) trim.ended();
    expect(trim.check()).toBe(false);
    // A burst of 999 that ends entirely is not worth a collection either.
    const small = trimCounting();
    for (let i = 0; i < 999; i++) small.trim.started();
    for (let i = 0; i < 999; i++) small.trim.ended();
    expect(small.trim.check()).toBe(false);
    expect(collections() + small.collections()).toBe(0);
  });
});
