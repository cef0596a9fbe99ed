/**
 * Property tests of every parser a client or an operator can feed (the
 * targets and their properties: helpers/fuzz-targets.ts), with a fixed seed
 * so a run is repeatable: OI_FUZZ_SEED=N changes the seed, OI_FUZZ_RUNS=N the
 * cases per target. The first-bytes parsers run in peek-fuzz.test.ts. Then
 * every case bench/fuzz.ts saved under fixtures/fuzz/ (a failure once
 * found) is checked again.
 */
import { describe, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { decodeCase, FUZZ_TARGETS, fuzzSettings } from "./helpers/fuzz-targets.ts";

describe("parsers: properties on generated and mutated inputs", () => {
  for (const target of FUZZ_TARGETS.filter(({ name }) => !name.startsWith("peek-"))) {
    test(target.name, async () => {
      const check = target.check as (input: unknown) => void | Promise<void>;
      await fc.assert(
        fc.asyncProperty(target.input(), async (input) => {
          await check(input);
        }),
        fuzzSettings(target),
      );
      // Its own bound, so the file also runs alone under bun test's 5 s default: a loaded 2-core machine takes 4-7 s for a config target.
    }, 60_000);
  }
});

describe("parsers: cases the fuzzer once failed on", () => {
  const dir = join(import.meta.dir, "fixtures", "fuzz");
  const saved = readdirSync(dir).filter((file) => file.endsWith(".json"));
  for (const file of saved) {
    const target = FUZZ_TARGETS.find(({ name }) => file.startsWith(`${name}-`));
    test(file, async () => {
      if (target === undefined) throw new Error(`${file}: no fuzz target of that name`);
      const saved = decodeCase(readFileSync(join(dir, file), "utf8")) as { input: unknown };
      await (target.check as (input: unknown) => void | Promise<void>)(saved.input);
    });
  }
});
