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
  /** The file being read now: an `include` switches it while the included file is parsed. */
  constructor(
    public file: string,
    readonly errors: ConfigIssue[] = [],
    readonly warnings: ConfigIssue[] = [],
    private readonly prefix = "",
    private readonly unlessStartsWith: string | undefined = undefined,
  ) {}

  /**
   * A collector into the same lists whose reasons start with `prefix` (the
   * YAML rule they concern), except those that already start with
   * `unlessStartsWith` (a reason that names the rule's path itself).
   */
  withPrefix(prefix: string, unlessStartsWith?: string): IssueCollector {
    return new IssueCollector(this.file, this.errors, this.warnings, prefix, unlessStartsWith);
  }

  error(line: number, reason: string): void {
    this.errors.push({ file: this.file, line, reason: this.prefixed(reason) });
  }

  warn(line: number, reason: string): void {
    this.warnings.push({ file: this.file, line, reason: this.prefixed(reason) });
  }

  private prefixed(reason: string): string {
    if (this.unlessStartsWith !== undefined && reason.startsWith(this.unlessStartsWith)) return reason;
    return this.prefix + reason;
  }
}
