/**
 * When a full collection runs: once a burst of at least 1,000 connections
 * has ended and at most half of the peak since the last one is still open;
 * under steady traffic (the burst never over), at most once a minute, and
 * only with 1,000 connections ended since the last.
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

  test("steady traffic with many still open, or a small burst, does not pause the thread within the minute", () => {
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

  test("steady traffic: a collection a minute at most, each after 1,000 more connections ended", () => {
    const { trim, collections } = trimCounting();
    const start = performance.now();
    for (let i = 0; i < 3000; i++) trim.started();
    for (let i = 0; i < 1200; i++) trim.ended();
    expect(trim.check(start + 59_000)).toBe(false);
    expect(trim.check(start + 61_000)).toBe(true);
    // Not again in the next minute, however many end meanwhile...
    for (let i = 0; i < 1000; i++) trim.started();
    for (let i = 0; i < 1000; i++) trim.ended();
    expect(trim.check(start + 100_000)).toBe(false);
    // ...nor after it without 1,000 more ended since the last collection.
    const quiet = trimCounting();
    for (let i = 0; i < 3000; i++) quiet.trim.started();
    for (let i = 0; i < 999; i++) quiet.trim.ended();
    expect(quiet.trim.check(start + 120_000)).toBe(false);
    expect(trim.check(start + 122_000)).toBe(true);
    expect(collections()).toBe(2);
    expect(quiet.collections()).toBe(0);
  });
});
