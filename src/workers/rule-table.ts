/**
 * @module The supervisor's view of the rules the workers' events name. An
 * event names its rule by config generation and position; a generation is
 * kept while it is the running one, while a reload is applying it, or while
 * connections started under it are open (their end is still to be logged),
 * and dropped after.
 */
import type { ForwardRule } from "../types.ts";
import type { RuleRef } from "./wire.ts";

interface Generation {
  rules: ForwardRule[];
  /** Connections and sessions started under this generation and not ended yet. */
  open: number;
}

export class RuleTable {
  private readonly generations = new Map<number, Generation>();
  private running = 0;
  private applying: number | undefined;

  /** A generation about to be applied: events may name it from now on. */
  add(generation: number, rules: ForwardRule[]): void {
    this.generations.set(generation, { rules, open: 0 });
    this.applying = generation;
  }

  /** The workers run `generation` now (or, after a failed reload, still run it). */
  settle(running: number): void {
    this.running = running;
    this.applying = undefined;
    this.prune();
  }

  /** The rule `ref` names; when its generation is gone, the newest kept rule of that name. */
  resolve(ref: RuleRef): ForwardRule | undefined {
    const exact = this.generations.get(ref.generation)?.rules[ref.index];
    if (exact !== undefined) return exact;
    let newest: ForwardRule | undefined;
    let newestGeneration = -1;
    for (const [generation, { rules }] of this.generations) {
      if (generation < newestGeneration) continue;
      const named = rules.find((rule) => rule.name === ref.name);
      if (named !== undefined) {
        newest = named;
        newestGeneration = generation;
      }
    }
    return newest;
  }

  opened(ref: RuleRef): void {
    const generation = this.generations.get(ref.generation);
    if (generation !== undefined) generation.open++;
  }

  closed(ref: RuleRef): void {
    const generation = this.generations.get(ref.generation);
    if (generation === undefined) return;
    generation.open--;
    if (generation.open <= 0) this.prune();
  }

  /** Generations kept now (for tests). */
  get size(): number {
    return this.generations.size;
  }

  private prune(): void {
    for (const [number, generation] of this.generations) {
      if (number !== this.running && number !== this.applying && generation.open <= 0) this.generations.delete(number);
    }
  }
}
