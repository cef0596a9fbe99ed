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

  // Rules whose text is what ran before go in first: a new or changed key that clashes with them is the one refused.
  const names = [...new Set([...Object.keys(keys.rules), ...Object.keys(previous.rules)])].sort();
  const unchanged = (name: string) => keys.rules[name] !== undefined && keys.rules[name] === previous.rules[name];
  const order = [...names.filter(unchanged), ...names.filter((name) => !unchanged(name))];
  const chosen = new Map<string, ForwardRule[]>();
  for (const name of order) {
    const ruleLabel = label(`${RULES_DIRECTORY}${name}`);
    // A key deleted from etcd is gone, whatever it was before.
    if (keys.rules[name] === undefined) continue;
    for (const [index, text] of candidates(keys.rules[name], previous.rules[name]).entries()) {
      const read = readYamlRule(name, text, ruleLabel, global);
      const problems = read.ok ? clashes(base, chosen, read.rules) : read.errors.length > 0 ? read.errors : [{ file: ruleLabel, line: 0, reason: read.message }];
      if (problems.length > 0) {
        if (index === 0) errors.push(...problems);
        continue;
      }
      if (read.ok) {
        if (index === 0) warnings.push(...read.warnings);
        else errors.push(outcome(`${RULES_DIRECTORY}${name}`, true));
        chosen.set(name, read.rules);
        used.rules[name] = text;
      }
      break;
    }
    if (used.rules[name] === undefined) errors.push(outcome(`${RULES_DIRECTORY}${name}`, false));
  }
  const rules = [...chosen.keys()].sort().flatMap((name) => chosen.get(name)!);
  return { config: { ...base, rules: renumbered(rules) }, errors, warnings, used };
}

/** The value to try, then the one that ran before when it differs. */
function candidates(now: string | undefined, before: string | undefined): string[] {
  if (now === undefined) return [];
  return before === undefined || before === now ? [now] : [now, before];
}

/** What the checks that span rules say once `rules` join the rules chosen so far (which passed them): each is a reason to refuse `rules`. */
function clashes(base: Config, chosen: ReadonlyMap<string, ForwardRule[]>, rules: ForwardRule[]): ConfigIssue[] {
  return checkRunningRules({ ...base, rules: renumbered([...[...chosen.values()].flat(), ...rules]) });
}
