/**
 * @module How many forwarding workers `oi` may run. More threads than cores
 * only add switching; four per core leaves room for hosts whose CPU count
 * changes, and still catches typos such as `workers 400`.
 */
import { availableParallelism } from "node:os";

export const MAX_WORKERS = Math.max(1, availableParallelism()) * 4;

/** `--workers N`: a reason when it is not a whole number from 1 to MAX_WORKERS. */
export function parseWorkers(text: string): number | string {
  const value = Number(text);
  if (text.trim() === "" || !Number.isInteger(value) || value < 1 || value > MAX_WORKERS) {
    return `--workers must be a whole number from 1 to ${MAX_WORKERS} (4 per CPU), got '${text}'`;
  }
  return value;
}
