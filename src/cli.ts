#!/usr/bin/env bun
/**
 * @module The `oi` command line: `oi -c FILE` forwards, `oi check -c FILE`
 * validates. Flags follow rinetd's (`-c`, `-f`) so its command lines work
 * unchanged.
 */
import { existsSync } from "node:fs";
import { defineCommand, runMain } from "citty";
import { consola, LogLevels } from "consola";
import pkg from "../package.json" with { type: "json" };
import { describeConfig } from "./config/describe.ts";
import { Daemon, loadReporting } from "./daemon.ts";
import { parseWorkers } from "./workers/count.ts";

/** Looked for in this order when no `-c` is given; the second is rinetd's own default. */
const DEFAULT_CONFIG_PATHS = ["/etc/oi/oi.conf", "/etc/rinetd.conf"];
const DEFAULT_GRACE_SECONDS = 10;

const configArg = {
  type: "string",
  alias: "c",
  description: `Config file: rinetd/rinetd-uv .conf; oxidinetd TOML when it ends in .toml; rinetd-uv YAML when it ends in .yaml or .yml (default: ${DEFAULT_CONFIG_PATHS.join(", then ")})`,
  valueHint: "FILE",
} as const;

function resolveConfigPath(given: string | undefined): string {
  if (given !== undefined && given !== "") return given;
  return DEFAULT_CONFIG_PATHS.find((path) => existsSync(path)) ?? DEFAULT_CONFIG_PATHS[0]!;
}

function parseGrace(text: string | undefined): number {
  if (text === undefined || text === "") return DEFAULT_GRACE_SECONDS;
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds < 0) {
    consola.error(`--grace must be a number of seconds (0 or more), got '${text}'`);
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
  args: { config: configArg },
  async run({ args }) {
    const path = resolveConfigPath(args.config);
    const config = await loadReporting(path);
    if (config === undefined) {
      consola.error(`${path}: invalid`);
      process.exit(1);
    }
    process.stdout.write(`${describeConfig(config)}\n`);
  },
});

export const main = defineCommand({
  meta: { name: "oi", version: pkg.version, description: pkg.description },
  args: {
    config: configArg,
    foreground: {
      type: "boolean",
      alias: "f",
      description: "Accepted for rinetd compatibility; oi always runs in the foreground",
    },
    verbose: { type: "boolean", alias: "v", description: "Log every connection on the console" },
    grace: {
      type: "string",
      description: `Seconds open connections get to finish after SIGTERM/SIGINT (default ${DEFAULT_GRACE_SECONDS})`,
      valueHint: "SECONDS",
    },
    workers: {
      type: "string",
      description: "Forwarding worker threads, overriding the config's `workers` (default 1)",
      valueHint: "N",
    },
  },
  subCommands: { check },
  async run({ args }) {
    // citty runs the parent after a subcommand: `oi check` has already done its work.
    if (args._.length > 0) return;
    await Daemon.start({
      configPath: resolveConfigPath(args.config),
      verbose: args.verbose === true,
      graceSeconds: parseGrace(args.grace),
      workers: parseWorkerCount(args.workers),
      version: pkg.version,
    });
  },
});

/** Run the command line on this process's arguments. */
export function runCli(): void {
  // consola goes quiet when NODE_ENV=test or CI is set; a daemon's log must not depend on that.
  consola.level = LogLevels.info;
  void runMain(main);
}

if (import.meta.main) runCli();
