/**
 * @module Finding the line of a syntax error that Bun's TOML and YAML parsers
 * report without one: the first line `n` such that lines 1..n alone already
 * fail the same way. Trying every prefix costs the square of the file's
 * size (100,000 short lines took minutes and gigabytes), so prefixes are
 * tried one by one only up to a budget of characters, and the rest of the
 * lines are bisected: a prefix that contains the error fails like the whole
 * text, so "fails the same way" holds from the error's line on.
 */

/** Characters re-parsed line by line before the search bisects (a few hundred KB of config stays exact). */
const LINEAR_BUDGET_CHARS = 2 * 1024 * 1024;

/**
 * The first line (from 1) whose prefix, newline included, `failsAlike`;
 * lines for which `skip` holds are not tried. The last line when none does.
 */
export function firstFailingLine(text: string, failsAlike: (prefix: string) => boolean, skip: (line: number) => boolean = () => false): number {
  let spent = 0;
  let line = 1;
  let end = text.indexOf("\n");
  for (; end !== -1 && spent <= LINEAR_BUDGET_CHARS; end = text.indexOf("\n", end + 1), line++) {
    if (skip(line)) continue;
    spent += end + 1;
    if (failsAlike(text.slice(0, end + 1))) return line;
  }
  if (end === -1) return line;
  // Past the budget: the line ends left, bisected for the first that fails alike.
  const ends: Array<{ line: number; end: number }> = [];
  for (; end !== -1; end = text.indexOf("\n", end + 1), line++) if (!skip(line)) ends.push({ line, end });
  let low = 0;
  let high = ends.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (failsAlike(text.slice(0, ends[middle]!.end + 1))) high = middle;
    else low = middle + 1;
  }
  return low < ends.length ? ends[low]!.line : line;
}
