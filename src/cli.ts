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
import { describeConfig, formatIssue } from "./config/describe.ts";
import { loadConfig } from "./config/load.ts";
import { consoleSessionEvents } from "./connection-log.ts";
import { BindError, Server } from "./server.ts";
import type { Config, LoadResult } from "./types.ts";

/** Looked for in this order when no `-c` is given; the second is rinetd's own default. */
const DEFAULT_CONFIG_PATHS = ["/etc/oi/oi.conf", "/etc/rinetd.conf"];

const configArg = {
  type: "string",
  alias: "c",
  description: `Config file: rinetd .conf, or oxidinetd TOML when it ends in .toml (default: ${DEFAULT_CONFIG_PATHS.join(", then ")})`,
  valueHint: "FILE",
} as const;

function resolveConfigPath(given: string | undefined): string {
  if (given !== undefined && given !== "") return given;
  return DEFAULT_CONFIG_PATHS.find((path) => existsSync(path)) ?? DEFAULT_CONFIG_PATHS[0]!;
}

/** Print warnings and errors; return the config only when it loaded cleanly. */
async function loadOrReport(path: string): Promise<Config | undefined> {
  const result: LoadResult = await loadConfig(path);
  for (const warning of result.warnings) consola.warn(formatIssue(warning));
  for (const error of result.errors) consola.error(formatIssue(error));
  if (result.errors.length > 0 || result.config === undefined) {
    const count = result.errors.length;
    consola.error(`${path}: ${count} error${count === 1 ? "" : "s"}, nothing started`);
    return undefined;
  }
  return result.config;
}

const check = defineCommand({
  meta: { name: "check", description: "Validate a config without binding anything; print its rules or every error" },
  args: { config: configArg },
  async run({ args }) {
    const config = await loadOrReport(resolveConfigPath(args.config));
    if (config === undefined) process.exit(1);
    process.stdout.write(`${describeConfig(config)}\n`);
  },
});

async function serve(path: string, verbose: boolean): Promise<void> {
  const config = await loadOrReport(path);
  if (config === undefined) process.exit(1);
  const server = new Server(consoleSessionEvents(verbose));
  try {
    await server.apply(config);
  } catch (error) {
    if (!(error instanceof BindError)) throw error;
    consola.error(error.message);
    process.exit(1);
  }
  const served = server.running.length;
  consola.info(`oi ${pkg.version}: ${served} rule${served === 1 ? "" : "s"} listening (${path})`);
  const stop = (signal: string) => {
    consola.info(`${signal}: stopping`);
    server.stopAccepting();
    process.exit(0);
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  // rinetd reloads on SIGHUP; until oi does, it must at least not die of it (logrotate sends it).
  process.on("SIGHUP", () => consola.warn("SIGHUP: configuration reload is not supported yet; still running"));
}

export const main = defineCommand({
  meta: { name: "oi", version: pkg.version, description: pkg.description },
  args: {
    config: configArg,
    foreground: {
      type: "boolean",
      alias: "f",
      description: "Accepted for rinetd compatibility; oi always runs in the foreground",
    },
    verbose: { type: "boolean", alias: "v", description: "Log every connection" },
  },
  subCommands: { check },
  async run({ args }) {
    // citty runs the parent after a subcommand: `oi check` has already done its work.
    if (args._.length > 0) return;
    await serve(resolveConfigPath(args.config), args.verbose === true);
  },
});

if (import.meta.main) {
  // consola goes quiet when NODE_ENV=test or CI is set; a daemon's log must not depend on that.
  consola.level = LogLevels.info;
  await runMain(main);
}
