/**
 * @module Open-ended fuzzing of the first-bytes parsers (src/peek/): the
 * properties of test/peek-fuzz.test.ts (test/helpers/peek-fuzz.ts), run for
 * as long as asked with a fresh seed. Not a test: run by hand.
 *
 *   bun bench/fuzz-peek.ts [--seconds 60] [--seed S] [--batch 2000]
 *
 * Prints the seed (a random one unless given) so a run can be repeated, and
 * each property's run count. A failing input, shrunk by fast-check, is saved
 * as test/fixtures/fuzz-peek/PROPERTY-SEED.bin with a .txt note (property,
 * seed, path, cut point, error); test/peek-fuzz.test.ts then checks every
 * saved input against every property, so a fixed bug stays fixed. Exits 1
 * when any property failed.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import fc from "fast-check";
import { PEEK_PROPERTIES, type PeekCase, peekCase } from "../test/helpers/peek-fuzz.ts";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "60" },
    seed: { type: "string" },
    batch: { type: "string", default: "2000" },
  },
});
const seconds = Number(values.seconds);
const batch = Number(values.batch);
const firstSeed = values.seed === undefined ? Math.floor(Math.random() * 0x7fffffff) : Number(values.seed);
if (!(seconds > 0) || !(batch > 0) || !Number.isInteger(firstSeed)) {
  console.error("usage: bun bench/fuzz-peek.ts [--seconds N] [--seed S] [--batch RUNS]");
  process.exit(2);
}

const SAVE_DIR = join(import.meta.dir, "..", "test", "fixtures", "fuzz-peek");

console.log(`fuzz-peek: seed ${firstSeed}, ${seconds} s, batches of ${batch} runs per property`);
const deadline = Date.now() + seconds * 1000;
const runs = new Map<string, number>(PEEK_PROPERTIES.map(({ name }) => [name, 0]));
const failed = new Set<string>();

// Batch k runs every property with seed firstSeed + k: any batch can be re-run alone with --seed.
for (let k = 0; Date.now() < deadline && failed.size < PEEK_PROPERTIES.length; k++) {
  const seed = (firstSeed + k) | 0;
  for (const { name, check } of PEEK_PROPERTIES) {
    if (failed.has(name)) continue;
    const details = fc.check(
      fc.property(peekCase(), (input) => {
        check(input);
      }),
      { seed, numRuns: batch },
    );
    runs.set(name, (runs.get(name) ?? 0) + details.numRuns);
    if (details.failed && details.counterexample !== null) {
      failed.add(name);
      save(name, seed, details.counterexamplePath ?? "", details.counterexample[0], details.errorInstance);
    }
  }
}

for (const [name, count] of runs) console.log(`  ${name}: ${count} runs${failed.has(name) ? ", FAILED" : ""}`);
process.exit(failed.size > 0 ? 1 : 0);

function save(property: string, seed: number, path: string, input: PeekCase, error: unknown): void {
  mkdirSync(SAVE_DIR, { recursive: true });
  const base = join(SAVE_DIR, `${property}-${seed >>> 0}`);
  writeFileSync(`${base}.bin`, input.bytes);
  const message = error instanceof Error ? error.message : String(error);
  const cut = input.cut % (input.bytes.length + 1);
  writeFileSync(
    `${base}.txt`,
    `property: ${property}\nseed: ${seed} (re-run: bun bench/fuzz-peek.ts --seed ${seed} --batch ${batch})\npath: ${path}\ninput: ${input.bytes.length} bytes, cut at ${cut}\nerror: ${message}\n`,
  );
  console.log(`  ${property} FAILED at seed ${seed}: ${message}\n  saved ${base}.bin and .txt`);
}
