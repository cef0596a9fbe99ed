#!/usr/bin/env node
// The `oi` command of the npm package. oi is written for Bun: under Bun
// (`bunx --bun`) it runs in this process; under Node (`npx`) it starts the
// Bun binary that the `bun` dependency installed, passing signals on.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const cli = fileURLToPath(new URL("../src/cli.ts", import.meta.url));

if (process.versions.bun !== undefined) {
  const { runCli } = await import(cli);
  runCli();
} else {
  let bun = "bun";
  try {
    bun = join(dirname(createRequire(import.meta.url).resolve("bun/package.json")), "bin", "bun.exe");
  } catch {
    // No bun dependency installed next to us: use the one on PATH.
  }
  // The name this command was started under (a link named rinetd, say) is the name Bun's oi sees as argv[0].
  const child = spawn(bun, [cli, ...process.argv.slice(2)], { stdio: "inherit", argv0: basename(process.argv[1] ?? "oi") });
  child.on("error", (error) => {
    console.error(`oi: cannot start Bun (${bun}): ${error.message}`);
    process.exit(1);
  });
  // SIGINT from a terminal reaches the whole process group, Bun included: passing
  // it on too would count as a second signal (which means "exit at once").
  process.on("SIGINT", () => {});
  for (const signal of ["SIGTERM", "SIGHUP"]) process.on(signal, () => child.kill(signal));
  child.on("exit", (code, signal) => process.exit(code ?? (signal === null ? 1 : 128)));
}
