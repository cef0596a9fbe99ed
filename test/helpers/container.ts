/**
 * The runtime image of `npm run image` for end-to-end tests: built once per
 * test run from the compiled binary (binary.ts) under a tag of its own,
 * removed when the run ends; and containers run from it with host
 * networking, watched through their output, removed after the test.
 */
import { chmodSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { buildImage } from "../../contrib/image/build.ts";
import { type Engine, findEngine } from "../../contrib/image/engine.ts";
import { compiledOi } from "./binary.ts";
import { onCleanup } from "./harness.ts";
import { OutputWatcher, tempDir } from "./oi-process.ts";
import { runTool, type ToolRun } from "./servers.ts";

const ROOT = join(import.meta.dir, "..", "..");

/** The container engine, or why there is none. */
export const engine: Engine | string = await findEngine();

/**
 * Why the container tests cannot run here (printed once, and put in their
 * names), or undefined. Under CI a missing engine is no reason to skip:
 * `.ci/run` installs podman, so the tests run and fail, saying why.
 */
export function engineMissing(): string | undefined {
  const underCi = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false";
  if (typeof engine !== "string" || underCi) return undefined;
  const reason = `skipped: ${engine}`;
  console.warn(reason);
  return reason;
}

function theEngine(): Engine {
  if (typeof engine === "string") throw new Error(engine);
  return engine;
}

/** Run the engine with `args` to its end (SIGKILLed after `timeoutMs`). */
export function engineRun(args: string[], timeoutMs = 60_000): Promise<ToolRun> {
  const { command, env } = theEngine();
  return runTool([command, ...args], { timeoutMs, env });
}

/** A name no other test run on this machine uses (containers, pods and volumes are machine-wide). */
export function uniqueName(what: string): string {
  return `oi-test-${what}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

let image: Promise<string> | undefined;

/** The tag of the image built from this checkout (once, until `removeTestImage`). */
export function testImage(): Promise<string> {
  image ??= (async () => {
    const tag = `localhost/${uniqueName("image")}:latest`;
    await buildImage(theEngine(), { binary: await compiledOi(), tag, config: join(ROOT, "examples", "oi.conf") });
    return tag;
  })();
  return image;
}

/**
 * Remove the test image: in each file's afterAll (bun runs no `exit`
 * handlers after a test run, so the image would outlive it); a later file
 * builds it again.
 */
export async function removeTestImage(): Promise<void> {
  const built = image;
  image = undefined;
  if (built === undefined) return;
  const tag = await built.catch(() => undefined);
  if (tag !== undefined) await engineRun(["rmi", "--force", tag]);
}

/** A folder the image's non-root user can read (temporary folders are 0700), holding `files`; mounted read-only by the tests, removed after the test. */
export function readableDir(files: Record<string, string>): string {
  const dir = tempDir();
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text, { mode: 0o644 });
  return dir;
}

export interface Container {
  name: string;
  /** `podman run` itself, attached: its exit code is the container's. */
  proc: Subprocess<"ignore", "pipe", "pipe">;
  stdout: OutputWatcher;
  stderr: OutputWatcher;
  /** `podman stop` (SIGTERM, SIGKILL after `timeoutSeconds`); resolves with the container's exit code. */
  stop(timeoutSeconds: number): Promise<number>;
}

/** `run --rm --network=host` of the test image with `args`, its config folder mounted at /etc/oi; removed after the test. */
export async function runContainer(configDir: string, args: string[]): Promise<Container> {
  const { command, env } = theEngine();
  const name = uniqueName("run");
  const proc = Bun.spawn([command, "run", "--rm", "--name", name, "--network=host", "--volume", `${configDir}:/etc/oi:ro`, await testImage(), ...args], {
    env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  onCleanup(async () => {
    if (proc.exitCode === null) await engineRun(["rm", "--force", "--time", "0", name], 30_000);
    proc.kill("SIGKILL");
  });
  return {
    name,
    proc,
    stdout: new OutputWatcher(proc.stdout),
    stderr: new OutputWatcher(proc.stderr),
    async stop(timeoutSeconds) {
      const stopped = await engineRun(["stop", "--time", String(timeoutSeconds), name], (timeoutSeconds + 30) * 1000);
      if (stopped.code !== 0) throw new Error(`stop ${name} failed (${stopped.code}): ${stopped.stderr}`);
      return await proc.exited;
    },
  };
}
