#!/usr/bin/env bun
/**
 * @module `npm run image`: a runtime image of `oi` made from the compiled
 * binary, pulling nothing (for machines that cannot reach a registry; the
 * Containerfile's multi-stage build is for those that can). The image is
 * `FROM scratch` plus what the binary needs to run: itself, the glibc
 * libraries `ldd` lists (at the paths it lists, the loader included), an
 * /etc/passwd and /etc/group with a non-root user, an /etc/nsswitch.conf so
 * host names resolve through /etc/hosts and DNS, and the example config at
 * /etc/oi/oi.conf. The context is assembled in a temporary folder, removed
 * afterwards.
 *
 *   bun contrib/image/build.ts [--binary dist/oi] [--tag localhost/oi:latest] [--config examples/oi.conf]
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import pkg from "../../package.json" with { type: "json" };
import { type Engine, findEngine } from "./engine.ts";

const ROOT = join(import.meta.dir, "..", "..");
export const DEFAULT_TAG = "localhost/oi:latest";
/** The user the image runs as: distroless's `nonroot` numbers, so volumes prepared for either image fit both. */
export const IMAGE_UID = 65532;

export interface ImageOptions {
  /** The compiled oi (`npm run build` makes dist/oi). */
  binary: string;
  tag: string;
  /** Copied to /etc/oi/oi.conf, the path oi reads without `-c`. */
  config: string;
}

/** The libraries a dynamically linked program loads, as `ldd` lists them (absolute paths; the vDSO, which has no file, left out). */
export async function linkedLibraries(binary: string): Promise<string[]> {
  const ldd = Bun.spawn(["ldd", binary], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(ldd.stdout).text(), new Response(ldd.stderr).text(), ldd.exited]);
  if (code !== 0) throw new Error(`ldd ${binary} failed (${code}): ${err.trim() || out.trim()}`);
  const paths: string[] = [];
  for (const line of out.split("\n")) {
    // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or the loader: `/lib64/ld-linux-x86-64.so.2 (0x...)`.
    const path = /=>\s*(\/\S+)/.exec(line)?.[1] ?? /^\s*(\/\S+)\s+\(/.exec(line)?.[1];
    if (path !== undefined) paths.push(path);
    else if (/=>\s*not found/.test(line)) throw new Error(`ldd ${binary}: ${line.trim()}`);
  }
  if (paths.length === 0) throw new Error(`ldd ${binary} listed no library: is it the compiled oi?`);
  return paths;
}

/** Copy `from` to `root` + `path`, following symlinks (the loader's /lib64 path is a link on the host, a file in the image). */
function place(root: string, path: string, from: string, mode: number): void {
  const target = join(root, path);
  mkdirSync(dirname(target), { recursive: true });
  copyFileSync(from, target);
  chmodSync(target, mode);
}

function write(root: string, path: string, text: string): void {
  const target = join(root, path);
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, text, { mode: 0o644 });
}

/** The image's build file: one layer holding the assembled root file system. */
function containerfile(): string {
  return [
    "FROM scratch",
    `LABEL org.opencontainers.image.title="oi" org.opencontainers.image.version="${pkg.version}" org.opencontainers.image.description="${pkg.description}"`,
    "COPY rootfs/ /",
    `USER ${IMAGE_UID}:${IMAGE_UID}`,
    'ENTRYPOINT ["/oi"]',
    'CMD ["-c", "/etc/oi/oi.conf"]',
    "",
  ].join("\n");
}

/** Assemble the build context in `dir`: `Containerfile` and `rootfs/`. */
export async function assembleContext(dir: string, options: ImageOptions): Promise<void> {
  const root = join(dir, "rootfs");
  place(root, "oi", options.binary, 0o755);
  for (const library of await linkedLibraries(options.binary)) place(root, library, library, 0o755);
  write(root, "etc/passwd", `root:x:0:0:root:/root:/sbin/nologin\noi:x:${IMAGE_UID}:${IMAGE_UID}:oi:/nonexistent:/sbin/nologin\n`);
  write(root, "etc/group", `root:x:0:\noi:x:${IMAGE_UID}:\n`);
  // glibc's defaults without this file would try DNS before /etc/hosts.
  write(root, "etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n");
  place(root, "etc/oi/oi.conf", options.config, 0o644);
  writeFileSync(join(dir, "Containerfile"), containerfile());
}

/** Build the image with `engine`; throws with the engine's output when it fails. */
export async function buildImage(engine: Engine, options: ImageOptions): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "oi-image-"));
  try {
    await assembleContext(dir, options);
    // podman keeps an intermediate image per instruction unless told not to: one image, nothing dangling.
    const layers = engine.name === "podman" ? ["--layers=false"] : [];
    const build = Bun.spawn([engine.command, "build", ...layers, "--tag", options.tag, "--file", join(dir, "Containerfile"), dir], {
      env: engine.env,
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, err, code] = await Promise.all([new Response(build.stdout).text(), new Response(build.stderr).text(), build.exited]);
    if (code !== 0) throw new Error(`${engine.name} build failed (${code}):\n${out}${err}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      binary: { type: "string", default: join(ROOT, "dist", "oi") },
      tag: { type: "string", default: process.env.OI_IMAGE ?? DEFAULT_TAG },
      config: { type: "string", default: join(ROOT, "examples", "oi.conf") },
    },
  });
  const engine = await findEngine();
  if (typeof engine === "string") {
    console.error(`npm run image: ${engine}`);
    process.exit(1);
  }
  if (!(await Bun.file(values.binary).exists())) {
    console.error(`npm run image: ${values.binary} does not exist: run \`npm run build\` first`);
    process.exit(1);
  }
  try {
    await buildImage(engine, { binary: values.binary, tag: values.tag, config: values.config });
  } catch (error) {
    console.error(`npm run image: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
  const conf = engine.env.CONTAINERS_CONF !== undefined && engine.env.CONTAINERS_CONF !== process.env.CONTAINERS_CONF ? `CONTAINERS_CONF=${engine.env.CONTAINERS_CONF} ` : "";
  console.log(`built ${values.tag} with ${engine.name} from ${values.binary}`);
  console.log(`run it: ${conf}${engine.name} run --rm --network=host -v "$PWD/oi.conf:/etc/oi/oi.conf:ro" ${values.tag}`);
}

if (import.meta.main) await main();
