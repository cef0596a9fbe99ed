/** @module Medians of the runs of one figure (nulls are failed runs and are left out). */

export function median(values: ReadonlyArray<number | null>): number | null {
  const sorted = values.filter((value): value is number => value !== null && Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) return null;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** "median (min..max)" of one figure's runs, or "n/a" when there are none (the A/B scripts' tables). */
export function spread(values: readonly number[], digits: number): string {
  const middle = median(values);
  if (middle === null) return "n/a";
  return `${middle.toFixed(digits)} (${Math.min(...values).toFixed(digits)}..${Math.max(...values).toFixed(digits)})`;
}
