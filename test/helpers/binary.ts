/**
 * The single binary, built once per test run with the flags of `npm run
 * build` into a temporary folder (removed when the run ends), for the suites
 * that run what users install.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };

const ROOT = join(import.meta.dir, "..", "..");

let built: Promise<string> | undefined;

/** The path of the compiled `oi`; the build's output when it fails. */
export function compiledOi(): Promise<string> {
  built ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), "oi-binary-"));
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
    const flags = pkg.scripts.build.replace(/^bun build /, "").replace(/--outfile \S+/, "").trim().split(/\s+/);
    const output = join(dir, "oi");
    const build = Bun.spawn([process.execPath, "build", ...flags, "--outfile", output], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(build.stdout).text(), new Response(build.stderr).text(), build.exited]);
    if (code !== 0) throw new Error(`bun build failed (${code}):\n${out}\n${err}`);
    return output;
  })();
  return built;
}
