/**
 * @module Collecting config problems. Parsers never stop at the first mistake:
 * they record every error and warning with its line, and the loader prints
 * them together.
 */

import type { Config, ConfigIssue } from "../types.ts";

/** What a parser gives: a config built from everything that was valid, plus every problem found. */
export interface ParseResult {
  config: Config;
  errors: ConfigIssue[];
  warnings: ConfigIssue[];
  /** Every file read, in reading order (the config, then what it includes). */
  files: string[];
}

export class IssueCollector {
  readonly errors: ConfigIssue[] = [];
  readonly warnings: ConfigIssue[] = [];

  /** The file being read now: an `include` switches it while the included file is parsed. */
  constructor(public file: string) {}

  error(line: number, reason: string): void {
    this.errors.push({ file: this.file, line, reason });
  }

  warn(line: number, reason: string): void {
    this.warnings.push({ file: this.file, line, reason });
  }
}
