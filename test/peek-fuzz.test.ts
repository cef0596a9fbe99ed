/**
 * Property tests of the first-bytes parsers (src/peek/) on random and
 * mutated real inputs, with a fixed seed so a run is repeatable
 * (OI_FUZZ_SEED and OI_FUZZ_RUNS change the seed and the runs); the
 * properties are in helpers/peek-fuzz.ts. For longer runs with fresh seeds:
 * bench/fuzz.ts --parser peek (which saves failing cases under
 * fixtures/fuzz/, checked by fuzz.test.ts; the inputs under
 * fixtures/fuzz-peek/ were saved by its predecessor, and are checked here).
 */
import { describe, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { fuzzEnvironment } from "./helpers/fuzz-targets.ts";
import { PEEK_PROPERTIES, peekCase } from "./helpers/peek-fuzz.ts";

const SEED = 0x0e1_5eed;
const RUNS = 50_000;

describe("first-bytes parsers: properties", () => {
  for (const { name, check } of PEEK_PROPERTIES) {
    test(name, () => {
      fc.assert(
        fc.property(peekCase(), (input) => {
          check(input);
        }),
        fuzzEnvironment(RUNS, SEED),
      );
    });
  }
});

describe("first-bytes parsers: inputs the fuzzer once failed on", () => {
  const dir = join(import.meta.dir, "fixtures", "fuzz-peek");
  const saved = (() => {
    try {
      return readdirSync(dir).filter((file) => file.endsWith(".bin"));
    } catch {
      return [];
    }
  })();
  for (const file of saved) {
    const bytes = new Uint8Array(readFileSync(join(dir, file)));
    // The cut point the fuzzer used is in the note beside the input; every tenth of the input besides.
    const note = (() => {
      try {
        return readFileSync(join(dir, file.replace(/\.bin$/, ".txt")), "utf8");
      } catch {
        return "";
      }
    })();
    const cuts = [Number(/cut at (\d+)/.exec(note)?.[1] ?? 0)];
    for (let tenth = 0; tenth <= 10; tenth++) cuts.push(Math.floor((bytes.length * tenth) / 10));
    for (const { name, check } of PEEK_PROPERTIES) {
      test(`${file}: ${name}`, () => {
        for (const cut of cuts) check({ bytes, cut });
      });
    }
  }
});
