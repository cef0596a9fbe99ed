/**
 * @module Open-ended fuzzing of every parser a client or an operator can
 * feed: the targets and properties of test/fuzz.test.ts and
 * test/peek-fuzz.test.ts (test/helpers/fuzz-targets.ts), run for as long as
 * asked with a fresh seed. Not a test: run by hand.
 *
 *   bun bench/fuzz.ts [--minutes 10] [--parser NAME[,NAME...]] [--seed S] [--batch 200]
 *
 * The time is shared equally among the targets chosen (all unless
 * --parser): in turn, each runs batches of `--batch` cases with seeds S,
 * S+1, ... for 5 s. Prints the seed so a run can be repeated, then each
 * target's cases, failures and time. A failing case, shrunk by fast-check, is saved as
 * test/fixtures/fuzz/TARGET-SEED.json (target, seed, error, input), which
 * test/fuzz.test.ts checks on every run from then on, so a fixed bug stays
 * fixed; a target that failed is not run again in this run. Exits 1 when any
 * target failed.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import fc from "fast-check";
import { encodeCase, FUZZ_TARGETS, type FuzzTarget } from "../test/helpers/fuzz-targets.ts";

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "10" },
    parser: { type: "string" },
    seed: { type: "string" },
    batch: { type: "string", default: "200" },
  },
});
const minutes = Number(values.minutes);
const batch = Number(values.batch);
const firstSeed = values.seed === undefined ? Math.floor(Math.random() * 0x7fffffff) : Number(values.seed);
const names = values.parser?.split(",").map((name) => name.trim());
const targets = names === undefined ? FUZZ_TARGETS : FUZZ_TARGETS.filter((target) => names.some((name) => target.name === name || target.name.startsWith(`${name}-`)));
if (!(minutes > 0) || !(batch > 0) || !Number.isInteger(firstSeed) || targets.length === 0) {
  console.error(`usage: bun bench/fuzz.ts [--minutes N] [--parser NAME[,NAME...]] [--seed S] [--batch CASES]\nparsers: ${FUZZ_TARGETS.map((t) => t.name).join(", ")} (a prefix such as "config" or "peek" picks a family)`);
  process.exit(2);
}

const SAVE_DIR = join(import.meta.dir, "..", "test", "fixtures", "fuzz");
/** Time each target runs before the next one's turn. */
const SLICE_MS = 5000;

interface Tally {
  cases: number;
  ms: number;
  failed: boolean;
}

console.log(`fuzz: seed ${firstSeed}, ${minutes} min over ${targets.length} target(s), batches of ${batch} cases`);
const deadline = Date.now() + minutes * 60_000;
const tallies = new Map<string, Tally>(targets.map(({ name }) => [name, { cases: 0, ms: 0, failed: false }]));

// Equal time per target, not equal cases (a config case costs 50 times a PROXY header's): each in turn
// runs batches for a slice of time. Batch k of a target runs with seed firstSeed + k, so a failing
// batch is re-run alone with --parser NAME --seed SEED.
const batches = new Map<string, number>(targets.map(({ name }) => [name, 0]));
while (Date.now() < deadline) {
  const live = targets.filter(({ name }) => !tallies.get(name)!.failed);
  if (live.length === 0) break;
  for (const target of live) {
    const sliceEnd = Math.min(deadline, Date.now() + SLICE_MS);
    while (Date.now() < sliceEnd && !tallies.get(target.name)!.failed) await runBatch(target);
  }
}

async function runBatch(target: FuzzTarget): Promise<void> {
  const tally = tallies.get(target.name)!;
  const k = batches.get(target.name)!;
  batches.set(target.name, k + 1);
  const seed = (firstSeed + k) | 0;
  const start = performance.now();
  const check = target.check as (input: unknown) => void | Promise<void>;
  const details = await fc.check(
    fc.asyncProperty(target.input(), async (input) => {
      await check(input);
    }),
    { seed, numRuns: batch },
  );
  tally.ms += performance.now() - start;
  tally.cases += details.numRuns;
  if (details.failed && details.counterexample !== null) {
    tally.failed = true;
    save(target, seed, details.counterexamplePath ?? "", details.counterexample[0], details.errorInstance);
  }
}

const width = Math.max(...targets.map(({ name }) => name.length));
for (const [name, tally] of tallies) {
  const rate = tally.ms > 0 ? Math.round((tally.cases / tally.ms) * 1000) : 0;
  console.log(`  ${name.padEnd(width)}  ${String(tally.cases).padStart(9)} cases  ${(tally.ms / 1000).toFixed(0).padStart(5)} s  ${String(rate).padStart(6)}/s${tally.failed ? "  FAILED" : ""}`);
}
const failures = [...tallies.values()].filter((tally) => tally.failed).length;
console.log(`  ${failures} target(s) failed`);
process.exit(failures > 0 ? 1 : 0);

function save(target: FuzzTarget, seed: number, path: string, input: unknown, error: unknown): void {
  mkdirSync(SAVE_DIR, { recursive: true });
  const file = join(SAVE_DIR, `${target.name}-${seed >>> 0}.json`);
  const message = error instanceof Error ? error.message : String(error);
  const note = { target: target.name, seed, path, rerun: `bun bench/fuzz.ts --parser ${target.name} --seed ${seed} --batch ${batch} --minutes 1`, error: message.slice(0, 2000) };
  // The note first, the input last: test/fuzz.test.ts reads `input` only.
  writeFileSync(file, `${encodeCase({ ...note, input }).trimEnd()}\n`);
  console.log(`  ${target.name} FAILED at seed ${seed}: ${message.slice(0, 500)}\n  saved ${file}`);
}
