/**
 * What users install: the single compiled binary (forwarding for real, with
 * no Bun and no node_modules beside it) and the npm package (packed, then
 * installed into an empty folder, its `oi` command run from there).
 */
import { describe, expect, test } from "bun:test";
import { copyFileSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { compiledOi } from "./helpers/binary.ts";
import { backend, cleanUpAfterEachTest, onCleanup } from "./helpers/harness.ts";
import { readUntilListening, tempDir } from "./helpers/oi-process.ts";
import { connectPeer, freePort, withTimeout } from "./helpers/peers.ts";
import pkg from "../package.json" with { type: "json" };

cleanUpAfterEachTest();

const ROOT = join(import.meta.dir, "..");

function run(command: string[], cwd: string): { code: number; output: string } {
  const result = Bun.spawnSync(command, { cwd, stdout: "pipe", stderr: "pipe", env: { ...process.env, NODE_ENV: "" } });
  return { code: result.exitCode, output: result.stdout.toString() + result.stderr.toString() };
}

/**
 * Run an installed `oi` (`command`, without -c) on a one-rule config that
 * starts with `globals`: it must listen, forward one connection, and stop
 * with 0 on SIGTERM. Resolves with what it wrote on stderr.
 */
async function forwardsOneConnection(command: string[], dir: string, globals = "", env: Record<string, string | undefined> = { ...process.env, NODE_ENV: "" }): Promise<string> {
  const server = backend((peer) => void peer.send("through the installed oi", true));
  const port = freePort();
  writeFileSync(join(dir, "one.conf"), `${globals}127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
  const proc = Bun.spawn([...command, "-c", join(dir, "one.conf"), "--grace", "1"], { cwd: dir, env, stdout: "pipe", stderr: "pipe" });
  onCleanup(() => proc.kill("SIGKILL"));
  const stderr = new Response(proc.stderr).text();
  await readUntilListening(proc.stdout, 15000, command.join(" "));
  const client = await connectPeer("127.0.0.1", port);
  client.keep = [];
  await client.waitEnd();
  expect(client.text()).toBe("through the installed oi");
  proc.kill("SIGTERM");
  expect(await withTimeout(proc.exited, 5000, "exit")).toBe(0);
  return stderr;
}

describe("single binary", () => {
  test("`bun build --compile` makes one file that forwards on its own, its splice worker included", async () => {
    // Built with the same flags as `npm run build`, then run from a folder with nothing else in it, with PATH emptied of Bun.
    const alone = tempDir();
    onCleanup(() => rmSync(alone, { recursive: true, force: true }));
    copyFileSync(await compiledOi(), join(alone, "oi"));
    // The main thread, worker threads (--workers), and `splice on`: both kinds of worker code are entry points of the binary.
    const cases: Array<[globals: string, workers: string]> = [["", "1"], ["", "2"], ["splice on\n", "1"], ["splice on\n", "2"]];
    for (const [globals, workers] of cases) {
      const stderr = await forwardsOneConnection([join(alone, "oi"), "--workers", workers], alone, globals, { PATH: "/usr/bin:/bin" });
      expect(stderr).not.toContain("splice on: not available");
    }
  });
});

describe("container image", () => {
  // The Containerfile's base images cannot be pulled here (the image of
  // `npm run image` is built and run in e2e-container.test.ts); what can be
  // checked is that its binary is built as the one tested above, with all of
  // its entry points.
  test("the Containerfile builds the binary with the package's build script", () => {
    const containerfile = readFileSync(join(ROOT, "Containerfile"), "utf8");
    expect(containerfile).toMatch(/^RUN bun run build\b/m);
    expect(containerfile).not.toMatch(/bun build --compile/);
    for (const entry of ["src/cli.ts", "src/tcp/splice/worker.ts", "src/workers/worker-main.ts"]) expect(pkg.scripts.build).toContain(entry);
  });
});

describe("npm package (installed from a tarball made by npm pack, as the README says)", () => {
  function pack(): string {
    const dir = tempDir();
    onCleanup(() => rmSync(dir, { recursive: true, force: true }));
    const packed = run(["npm", "pack", "--silent", "--pack-destination", dir], ROOT);
    expect(packed.code).toBe(0);
    return join(dir, packed.output.trim().split("\n").pop() ?? "");
  }

  test("into an empty project: its `oi` prints the version, checks the shipped example and forwards a connection", async () => {
    const tarball = pack();
    const project = tempDir();
    onCleanup(() => rmSync(project, { recursive: true, force: true }));
    writeFileSync(join(project, "package.json"), '{ "name": "empty", "version": "1.0.0", "private": true }\n');
    const installed = run(["npm", "install", "--no-audit", "--no-fund", tarball], project);
    expect(installed.code).toBe(0);

    const oi = join(project, "node_modules", ".bin", "oi");
    const version = run([oi, "--version"], project);
    expect(version.output.trim()).toBe(pkg.version);
    expect(version.code).toBe(0);
    const checked = run([oi, "check", "-c", join(project, "node_modules", pkg.name, "examples", "oi.conf")], project);
    expect(checked.code).toBe(0);
    expect(checked.output).toContain("127.0.0.1:8080 -> 127.0.0.1:8000");
    await forwardsOneConnection([oi], project);
  });

  test("globally (npm install -g, here into an empty prefix): `oi` on that PATH forwards a connection", async () => {
    const tarball = pack();
    const prefix = tempDir();
    onCleanup(() => rmSync(prefix, { recursive: true, force: true }));
    const installed = run(["npm", "install", "-g", "--prefix", prefix, "--no-audit", "--no-fund", tarball], prefix);
    expect(installed.code).toBe(0);
    await forwardsOneConnection([join(prefix, "bin", "oi")], prefix);
  });
});
