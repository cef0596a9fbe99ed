/**
 * @module Loading a config file: read it, pick the parser by extension
 * (`.toml` is oxidinetd's TOML, `.yaml`/`.yml` rinetd-uv's YAML, anything
 * else rinetd's `.conf`), then run the checks that span rules. A config is
 * returned only when there is no error.
 */

import { readFile, stat } from "node:fs/promises";
import type { Config, ConfigFormat, ConfigIssue, ForwardRule, LoadResult } from "../types.ts";
import { parseConf } from "./conf.ts";
import type { ParseResult } from "./issues.ts";
import { inheritBackendTls, loadTlsFiles } from "./tls-files.ts";
import { loadAdminSettings } from "./admin.ts";
import { resolvePrivilege } from "./accounts.ts";
import { findRangeMismatches } from "./port-range.ts";
import { clipIssue, MAX_CONFIG_BYTES, NUL_BYTE, nulByteLine, tooLarge } from "./text-limits.ts";
import { parseToml } from "./toml.ts";
import { findDuplicateBinds, findIneffectiveOptions, findMisplacedOptions, markIpv6OnlyBinds, type RuleLabel } from "./validate.ts";
import { parseYaml } from "./yaml.ts";

const PARSERS: Record<ConfigFormat, (text: string, file: string) => ParseResult> = { conf: parseConf, toml: parseToml, yaml: parseYaml };

export async function loadConfig(path: string): Promise<LoadResult> {
  let text: string;
  try {
    // Refused before it is read: a file of gigabytes must not be taken into memory to be refused.
    const size = (await stat(path)).size;
    if (size > MAX_CONFIG_BYTES) return { config: undefined, errors: [{ file: path, line: 0, reason: tooLarge(size) }], warnings: [], files: [path] };
    text = await readFile(path, "utf8");
  } catch (error) {
    return {
      config: undefined,
      errors: [{ file: path, line: 0, reason: `cannot read config: ${describeReadError(error)}` }],
      warnings: [],
      files: [path],
    };
  }
  return loadConfigText(text, path);
}

/** Parse and check config text as if read from `file` (whose extension picks the format). */
export function loadConfigText(text: string, file: string): LoadResult {
  // Editors on Windows may save a byte-order mark; it is not part of the first line.
  const source = text.startsWith("\uFEFF") ? text.slice(1) : text;
  // Also for text that came from no file (the admin API, or a FIFO whose size stat cannot tell).
  const bytes = Buffer.byteLength(source);
  if (bytes > MAX_CONFIG_BYTES) return { config: undefined, errors: [{ file, line: 0, reason: tooLarge(bytes) }], warnings: [], files: [file] };
  const nul = nulByteLine(source);
  if (nul !== undefined) return { config: undefined, errors: [{ file, line: nul, reason: NUL_BYTE }], warnings: [], files: [file] };
  const parsed = PARSERS[formatOf(file)](source, file);
  const rules = parsed.config.rules;
  markIpv6OnlyBinds(rules);
  inheritBackendTls(rules);
  // YAML rules have names (and a rule may span several lines): reasons about a rule name it.
  const label: RuleLabel = parsed.config.format === "yaml" ? (rule) => `rule '${rule.name}': ` : () => "";
  const errors = inReadingOrder(parsed.files, [
    ...parsed.errors,
    ...findDuplicateBinds(rules, label),
    ...findRangeMismatches(rules, label),
    ...findMisplacedOptions(rules, label),
    ...loadTlsFiles(rules, label),
    ...loadAdminSettings(parsed.config),
    ...resolvePrivilege(parsed.config),
  ]);
  return {
    config: errors.length === 0 ? parsed.config : undefined,
    errors: errors.map(clipIssue),
    warnings: inReadingOrder(parsed.files, [...parsed.warnings, ...findIneffectiveOptions(rules, label)]).map(clipIssue),
    files: parsed.files,
  };
}

/**
 * The checks that span rules, for a set of rules made at run time (the
 * file's with rules changed through the admin API): the same as a load
 * makes, reasons naming the rule.
 */
export function checkRunningRules(config: Config): ConfigIssue[] {
  const rules = config.rules;
  markIpv6OnlyBinds(rules);
  const label: RuleLabel = (rule) => `rule '${rule.name}': `;
  return [...findDuplicateBinds(rules, label), ...findRangeMismatches(rules, label), ...findMisplacedOptions(rules, label)];
}

/** Rules gathered from several places (a file and the API, etcd keys) as one set: numbered afresh, their ipv6-only marks left to the checks. */
export function renumbered(rules: readonly ForwardRule[]): ForwardRule[] {
  return rules.map((rule, index) => {
    const copy: ForwardRule = { ...rule, index };
    delete copy.bindIpv6Only;
    return copy;
  });
}

export function formatOf(path: string): ConfigFormat {
  const lower = path.toLowerCase();
  if (lower.endsWith(".toml")) return "toml";
  if (lower.endsWith(".yaml") || lower.endsWith(".yml")) return "yaml";
  return "conf";
}

/** By file (in the order files were read), then line; problems on one line keep the order they were found in. */
function inReadingOrder(files: string[], issues: ConfigIssue[]): ConfigIssue[] {
  const rank = (file: string) => {
    const index = files.indexOf(file);
    return index === -1 ? files.length : index;
  };
  return issues
    .map((issue, order) => ({ issue, order }))
    .sort((a, b) => rank(a.issue.file) - rank(b.issue.file) || a.issue.line - b.issue.line || a.order - b.order)
    .map(({ issue }) => issue);
}

const READ_ERRORS: Record<string, string> = {
  ENOENT: "no such file",
  EACCES: "permission denied",
  EISDIR: "is a directory",
  ENOTDIR: "a parent of the path is not a directory",
  ELOOP: "too many symbolic links",
};

function describeReadError(error: unknown): string {
  if (error instanceof Error) {
    const code = "code" in error && typeof error.code === "string" ? error.code : undefined;
    return (code !== undefined ? READ_ERRORS[code] : undefined) ?? error.message;
  }
  return String(error);
}
