#!/usr/bin/env bun
/**
 * @module The `oi` command line: `oi -c FILE` forwards, `oi check -c FILE`
 * validates. The flags of rinetd and rinetd-uv (`-f`, `-c FILE`, `-d`, `-h`,
 * `-v`) and of oxidinetd (`--config`, `--verbose`, `-V`) all work. The one
 * clash is `-v`: version for rinetd and rinetd-uv, verbose for oxidinetd.
 * oxidinetd refuses to run without `-c`, so `-v` on its own can only be a
 * rinetd user asking for the version; with other arguments it is verbose.
 * Started under rinetd's or rinetd-uv's name, `oi` takes that program's
 * defaults and detaches unless given `-f` (personality.ts).
 */
import { existsSync } from "node:fs";
import { defineCommand, runMain } from "citty";
import { consola, LogLevels } from "consola";
import { consoleLog } from "./log/console.ts";
import pkg from "../package.json" with { type: "json" };
import { findUnresolvedNames, lookUpSrvNames } from "./config/check-names.ts";
import { describeConfig, formatIssue } from "./config/describe.ts";
import { Daemon, loadWithIssues } from "./daemon.ts";
import { type ConfigSource, configSource } from "./config-source.ts";
import { isEtcdAddress } from "./etcd/address.ts";
import { announceListening, detach, useStartupConsole } from "./detach.ts";
import { OI, personalityOf } from "./personality.ts";
import { parseWorkers } from "./workers/count.ts";

/** The program this process stands in for, by the name it was started under. */
const personality = personalityOf(process.argv0);

/** Looked for in this order when no `-c` is given: oi's own, then rinetd-uv's (in its order), then rinetd's. */
export const DEFAULT_CONFIG_PATHS = OI.configPaths;
/** Each of these alone on the command line prints the version: rinetd's `-v`, oxidinetd's `-V`. */
const VERSION_FLAGS = ["-v", "-V", "--version"];
/** How to reach etcd, for `oi` and `oi check`. */
const ETCD_OPTIONS = ["--etcd-ca", "--etcd-cert", "--etcd-key", "--etcd-user-file"];
/** Every option oi knows, long and short; anything else is refused, as rinetd's getopt does. */
const KNOWN_OPTIONS = new Set(["--config", "--foreground", "--verbose", "--debug", "--grace", "--drain-delay", "--workers", "--watch", "--cache", "--help", ...ETCD_OPTIONS]);
const KNOWN_SHORT = "cfvdh";
/** Options of `oi check` only. */
const CHECK_OPTIONS = new Set(["--resolve", "--no-resolve"]);
const DEFAULT_GRACE_SECONDS = 10;

const configArg = {
  type: "string",
  alias: "c",
  description: `Config file: rinetd/rinetd-uv .conf; oxidinetd TOML when it ends in .toml; rinetd-uv YAML when it ends in .yaml or .yml; etcd://HOST:PORT[,HOST:PORT]/PREFIX (etcds:// for TLS) reads and watches etcd's keys (default: ${personality.configPaths.join(", then ")})`,
  valueHint: "FILE",
} as const;

/** How to reach etcd (`-c etcd://...`, `-c etcds://...`). */
const etcdArgs = {
  "etcd-ca": { type: "string", description: "etcds://: the CA certificate (PEM) that signed etcd's server certificates", valueHint: "FILE" },
  "etcd-cert": { type: "string", description: "etcds://: a client certificate (PEM) to present to etcd", valueHint: "FILE" },
  "etcd-key": { type: "string", description: "etcds://: the client certificate's private key (PEM)", valueHint: "FILE" },
  "etcd-user-file": { type: "string", description: "A file holding USER:PASSWORD for etcd's authentication", valueHint: "FILE" },
} as const;

/** The source `-c` names, with the etcd options; exits 1 with the reason when it cannot be one. */
function sourceFor(path: string, args: { "etcd-ca"?: string; "etcd-cert"?: string; "etcd-key"?: string; "etcd-user-file"?: string; cache?: string }, purpose: "run" | "check"): ConfigSource {
  const source = configSource(path, { ca: args["etcd-ca"], cert: args["etcd-cert"], key: args["etcd-key"], userFile: args["etcd-user-file"], cache: args.cache }, purpose);
  if (typeof source === "string") {
    consola.error(source);
    process.exit(1);
  }
  if (args.cache !== undefined && !isEtcdAddress(path)) consola.warn(`--cache keeps etcd's keys: ignored for ${path}`);
  return source;
}

/** The config to read: the one given, else the first default that exists (else the first default, for its "cannot read" error). */
export function resolveConfigPath(
  given: string | undefined,
  exists: (path: string) => boolean = existsSync,
  defaults: string[] = personality.configPaths,
): string {
  if (given !== undefined && given !== "") return given;
  return defaults.find((path) => exists(path)) ?? defaults[0]!;
}

/** `--grace`, `--drain-delay`: a number of seconds, 0 or more; exits 1 with the reason otherwise. */
function parseSeconds(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined || text === "") return fallback;
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds < 0) {
    consola.error(`${flag} must be a number of seconds (0 or more), got '${text}'`);
    process.exit(1);
  }
  return seconds;
}

function parseWorkerCount(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const workers = parseWorkers(text);
  if (typeof workers === "string") {
    consola.error(workers);
    process.exit(1);
  }
  return workers;
}

const check = defineCommand({
  meta: { name: "check", description: "Validate a config without binding anything; print its rules or every error" },
  args: {
    config: configArg,
    ...etcdArgs,
    resolve: {
      type: "boolean",
      default: true,
      description: "Look up the config's host names and warn about those that do not resolve here (--no-resolve: no DNS queries)",
    },
  },
  async run({ args }) {
    const path = resolveConfigPath(args.config);
    const { config, errors } = await loadWithIssues(sourceFor(path, args, "check"));
    // etcd's keys make a config even when some are refused: any error fails the check.
    if (config === undefined || errors.length > 0) {
      consola.error(`${path}: invalid`);
      process.exit(1);
    }
    const srv = args.resolve ? await lookUpSrvNames(config) : { lines: [], issues: [] };
    if (args.resolve) for (const warning of [...(await findUnresolvedNames(config)), ...srv.issues]) consola.warn(formatIssue(warning));
    process.stdout.write(`${[describeConfig(config), ...srv.lines].join("\n")}\n`);
  },
});

export const main = defineCommand({
  meta: { name: "oi", version: pkg.version, description: pkg.description },
  args: {
    config: configArg,
    foreground: {
      type: "boolean",
      alias: "f",
      description: "Stay in the foreground: always so as oi; started as rinetd or rinetd-uv, oi detaches without -f",
    },
    verbose: {
      type: "boolean",
      alias: "v",
      description: "Log every connection on the console (as oxidinetd's -v; '-v' alone prints the version, as rinetd's)",
    },
    debug: {
      type: "boolean",
      alias: "d",
      description: "Debug logging, as rinetd-uv's -d: DNS look-ups and refreshes, failed connects that trigger a new look-up",
    },
    grace: {
      type: "string",
      description: `Seconds open connections get to finish after SIGTERM/SIGINT (default ${DEFAULT_GRACE_SECONDS})`,
      valueHint: "SECONDS",
    },
    "drain-delay": {
      type: "string",
      description: "At SIGTERM/SIGINT, seconds /readyz answers 503 while oi still accepts, before it stops listening (default 0)",
      valueHint: "SECONDS",
    },
    workers: {
      type: "string",
      description: "Forwarding worker threads, overriding the config's `workers` (default 1)",
      valueHint: "N",
    },
    watch: {
      type: "boolean",
      description: "Reload when the config file or a file it includes changes (as the config's `watch`; ConfigMap symlink swaps included)",
    },
    ...etcdArgs,
    cache: {
      type: "string",
      description: "etcd://: keep the keys of each config applied in FILE, and start from it when etcd is unreachable at start",
      valueHint: "FILE",
    },
  },
  subCommands: { check },
  async run({ args }) {
    // citty runs the parent after a subcommand: `oi check` has already done its work.
    if (args._.length > 0) return;
    if (args.debug === true) consola.level = LogLevels.debug;
    // A daemon copy started by `detach` writes to its starter's streams until it listens.
    useStartupConsole();
    const configPath = resolveConfigPath(args.config);
    await Daemon.start({
      configPath,
      source: sourceFor(configPath, args, "run"),
      verbose: args.verbose === true,
      graceSeconds: parseSeconds("--grace", args.grace, DEFAULT_GRACE_SECONDS),
      drainDelaySeconds: parseSeconds("--drain-delay", args["drain-delay"], 0),
      workers: parseWorkerCount(args.workers),
      version: pkg.version,
      defaultPidFile: personality.pidFile,
      watch: args.watch === true,
    });
    // Every rule listens: a starting process waiting for that (see detach.ts) may return now.
    announceListening();
  },
});

/** Whether the command line asks for the foreground (`-f`, `--foreground`, or `-f` grouped as in `-fv`). */
function foregroundAsked(rawArgs: string[]): boolean {
  return rawArgs.some((arg) => arg === "--foreground" || (/^-[a-z]+$/.test(arg) && arg.includes("f")));
}

/** The first argument that is no option of oi's (`--bogus`, `-x`), if any. */
function unknownOption(rawArgs: string[]): string | undefined {
  const checking = rawArgs[0] === "check";
  return rawArgs.find((arg) => {
    if (!arg.startsWith("-") || arg === "-") return false;
    if (arg.startsWith("--")) {
      const name = arg.split("=")[0]!;
      return !KNOWN_OPTIONS.has(name) && !(checking && CHECK_OPTIONS.has(name));
    }
    // -fv, -fc FILE: short flags may be grouped, as getopt allows.
    return [...arg.slice(1)].some((flag) => !KNOWN_SHORT.includes(flag));
  });
}

/** Run the command line on this process's arguments. */
export function runCli(): void {
  consoleLog.install(false);
  const rawArgs = process.argv.slice(2);
  if (rawArgs.length === 1 && VERSION_FLAGS.includes(rawArgs[0]!)) {
    process.stdout.write(`${pkg.version}\n`);
    return;
  }
  const unknown = unknownOption(rawArgs);
  if (unknown !== undefined) {
    process.stderr.write(
      `oi: unknown option '${unknown}'\nusage: oi [-f] [-d] [-v] [-c FILE] [--grace SECONDS] [--drain-delay SECONDS] [--workers N] [--watch] [--cache FILE] [--etcd-ca FILE --etcd-cert FILE --etcd-key FILE] [--etcd-user-file FILE] | oi check [-c FILE] [--no-resolve] | oi -h | oi -v\n`,
    );
    process.exitCode = 1;
    return;
  }
  const config = rawArgs.findIndex((arg) => arg === "-c" || arg === "--config");
  if (config !== -1 && (rawArgs[config + 1] === undefined || rawArgs[config + 1]!.startsWith("-"))) {
    process.stderr.write(`oi: ${rawArgs[config]} needs a FILE\n`);
    process.exitCode = 1;
    return;
  }
  // As rinetd: forwarding (not `check`, not `-h`) without -f goes to the background once it listens.
  const forwarding = rawArgs[0] !== "check" && !rawArgs.some((arg) => arg === "-h" || arg === "--help");
  if (personality.detaches && forwarding && !foregroundAsked(rawArgs)) {
    void detach(rawArgs);
    return;
  }
  void runMain(main);
}

if (import.meta.main) runCli();
