/**
 * @module The config that etcd's keys make: `PREFIX/global` (the content of
 * rinetd-uv's YAML `global` section) and one rule per `PREFIX/rules/NAME`
 * (rinetd-uv's YAML rule schema), each read by the YAML config reader.
 * A key that does not parse, or whose rule does not fit beside the others
 * (the same bind twice...), is refused with its key name and reason; the
 * other keys apply. A refused key that had a good version before keeps that
 * version, as a reload with a broken file keeps the running config; a new
 * one is left out.
 */
import { emptyConfig } from "../config/model.ts";
import { checkRunningRules, renumbered } from "../config/load.ts";
import { type GlobalText, readYamlGlobal, readYamlRule } from "../config/yaml-rule.ts";
import type { Config, ConfigIssue, ForwardRule } from "../types.ts";

/** The keys' values under the prefix, by what they are: what a load reads, and what the cache keeps. */
export interface KeySet {
  global?: string | undefined;
  /** By rule name (the key's last part). */
  rules: Record<string, string>;
}

export interface Assembled {
  config: Config;
  errors: ConfigIssue[];
  warnings: ConfigIssue[];
  /** The values that made it into the config: the next load's fallbacks, and the cache's contents. */
  used: KeySet;
}

export const GLOBAL_KEY = "global";
export const RULES_DIRECTORY = "rules/";

/** Sort keys read under the prefix (names relative to it) into a key set; others are named in `ignored`. */
export function keySetOf(entries: Array<{ name: string; value: string }>): { keys: KeySet; ignored: string[] } {
  const keys: KeySet = { rules: {} };
  const ignored: string[] = [];
  for (const { name, value } of entries) {
    if (name === GLOBAL_KEY) keys.global = value;
    else if (name.startsWith(RULES_DIRECTORY) && name.length > RULES_DIRECTORY.length) keys.rules[name.slice(RULES_DIRECTORY.length)] = value;
    else ignored.push(name);
  }
  return { keys, ignored };
}

/**
 * The config of `keys`, falling back to `previous` for refused keys;
 * `label` names a key (`global`, `rules/web`) in messages; `file` is what
 * the config says it was read from.
 */
export function assemble(keys: KeySet, previous: KeySet, label: (name: string) => string, file: string): Assembled {
  const errors: ConfigIssue[] = [];
  const warnings: ConfigIssue[] = [];
  const used: KeySet = { rules: {} };
  /** After a refused key's reasons: what runs instead. */
  const outcome = (name: string, kept: boolean): ConfigIssue => ({
    file: label(name),
    line: 0,
    reason: kept ? "refused: its last good version stays in force" : "refused: left out",
  });

  // The global section first: rules take its defaults.
  let base = emptyConfig(file, "yaml");
  let global: GlobalText | undefined;
  const globalLabel = label(GLOBAL_KEY);
  for (const [index, text] of candidates(keys.global, previous.global).entries()) {
    const read = readYamlGlobal(text, globalLabel);
    if (index === 0) warnings.push(...read.warnings);
    if (read.config === undefined) {
      if (index === 0) errors.push(...read.errors);
      continue;
    }
    if (index > 0) errors.push(outcome(GLOBAL_KEY, true));
    base = { ...read.config, file };
    global = { text, file: globalLabel };
    used.global = text;
    break;
  }
  if (keys.global !== undefined && used.global === undefined) errors.push(outcome(GLOBAL_KEY, false));

  // Each key's versions that read well, the one put first; a version that does not read is reported if it is the one put.
  const names = Object.keys(keys.rules).sort();
  const versions = new Map<string, RuleVersion[]>();
  for (const name of names) {
    const ruleLabel = label(`${RULES_DIRECTORY}${name}`);
    const readable: RuleVersion[] = [];
    for (const [index, text] of candidates(keys.rules[name], previous.rules[name]).entries()) {
      const read = readYamlRule(name, text, ruleLabel, global);
      if (read.ok) readable.push({ text, rules: read.rules, warnings: read.warnings, put: index === 0 });
      else if (index === 0) errors.push(...(read.errors.length > 0 ? read.errors : [{ file: ruleLabel, line: 0, reason: read.message }]));
    }
    versions.set(name, readable);
  }
  // Then the checks that span rules, on all of them at once. Rules whose text ran before come first, so a new or
  // changed key that clashes with them is the one the checks name; each key named falls back to its next version (or
  // is left out), until the set passes.
  const unchanged = (name: string) => keys.rules[name] === previous.rules[name];
  const order = [...names.filter(unchanged), ...names.filter((name) => !unchanged(name))];
  for (;;) {
    const current = order.flatMap((name) => versions.get(name)?.[0]?.rules ?? []);
    const issues = checkRunningRules({ ...base, rules: renumbered(current) });
    if (issues.length === 0) break;
    const named = order.filter((name) => issues.some((issue) => issue.file === label(`${RULES_DIRECTORY}${name}`)));
    // Each round drops at least one version: the last key in the order, if no issue names a key.
    const refused = named.length > 0 ? named : order.filter((name) => (versions.get(name)?.length ?? 0) > 0).slice(-1);
    for (const name of refused) {
      const dropped = versions.get(name)?.shift();
      const ruleLabel = label(`${RULES_DIRECTORY}${name}`);
      if (dropped?.put === true) errors.push(...issues.filter((issue) => issue.file === ruleLabel || named.length === 0));
    }
  }
  for (const name of names) {
    const chosen = versions.get(name)?.[0];
    const key = `${RULES_DIRECTORY}${name}`;
    if (chosen === undefined) errors.push(outcome(key, false));
    else {
      if (chosen.put) warnings.push(...chosen.warnings);
      else errors.push(outcome(key, true));
      used.rules[name] = chosen.text;
    }
  }
  const rules = names.flatMap((name) => versions.get(name)?.[0]?.rules ?? []);
  return { config: { ...base, rules: renumbered(rules) }, errors, warnings, used };
}

/** A version of a rule key that reads well. */
interface RuleVersion {
  text: string;
  rules: ForwardRule[];
  warnings: ConfigIssue[];
  /** The value in etcd now (else the last good one). */
  put: boolean;
}

/** The value to try, then the one that ran before when it differs. */
function candidates(now: string | undefined, before: string | undefined): string[] {
  if (now === undefined) return [];
  return before === undefined || before === now ? [now] : [now, before];
}
