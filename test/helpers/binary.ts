/**
 * The single binary, built once per test run with the flags of `npm run
 * build`, for the suites that run what users install. It goes to one place
 * per checkout (node_modules/.cache/oi-test-binary/oi), replaced by each
 * run: bun test runs no exit handlers, so a temporary folder per run was
 * never removed (109 MB each).
 */
import { mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };

const ROOT = join(import.meta.dir, "..", "..");

let built: Promise<string> | undefined;

/** The path of the compiled `oi`; the build's output when it fails. */
export function compiledOi(): Promise<string> {
  built ??= (async () => {
    const dir = join(ROOT, "node_modules", ".cache", "oi-test-binary");
    mkdirSync(dir, { recursive: true });
    const flags = pkg.scripts.build.replace(/^bun build /, "").replace(/--outfile \S+/, "").trim().split(/\s+/);
    // Built under a name of this run's, then renamed: a run at the same time in this checkout keeps the file it is running.
    const building = join(dir, `oi.${process.pid}`);
    const output = join(dir, "oi");
    const build = Bun.spawn([process.execPath, "build", ...flags, "--outfile", building], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(build.stdout).text(), new Response(build.stderr).text(), build.exited]);
    if (code !== 0) throw new Error(`bun build failed (${code}):\n${out}\n${err}`);
    renameSync(building, output);
    return output;
  })();
  return built;
}
