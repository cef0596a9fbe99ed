/**
 * @module Which container engine builds and runs `oi`'s image on this
 * machine: podman when it is installed, else docker when its daemon answers
 * (a docker client alone, with no daemon behind it, cannot build anything).
 * Shared by `npm run image` (build.ts) and the tests that run the image.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The containers.conf shipped for machines where podman's defaults cannot start a container (see below). */
export const SHIPPED_CONTAINERS_CONF = join(import.meta.dir, "containers.conf");

/** podman's default `nofile` ulimit for containers started as root (its default_ulimits are empty: it raises to this). */
const PODMAN_ROOT_NOFILE = 1_048_576;

export interface Engine {
  /** `podman` or `docker`, as found on PATH. */
  command: string;
  name: "podman" | "docker";
  /** The environment to run it with (CONTAINERS_CONF set when this machine needs the shipped file). */
  env: Record<string, string | undefined>;
}

/** The hard limit on open files of this process; Infinity when unlimited or unknown. */
function hardNofile(): number {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((each) => each.startsWith("Max open files"));
    const hard = line?.trim().split(/\s+/)[4];
    return hard === undefined || hard === "unlimited" ? Infinity : Number(hard);
  } catch {
    return Infinity;
  }
}

/**
 * Why podman's defaults cannot start a container here (undefined when they
 * can): crun refuses cgroups in hybrid mode (v1 with a v2 `unified` mount),
 * and a container cannot get more open files than the hard limit podman
 * itself runs under. The shipped containers.conf asks for runc and fixed
 * ulimits below such a limit.
 */
export function podmanDefaultsFail(): string | undefined {
  if (existsSync("/sys/fs/cgroup/unified")) return "cgroups in hybrid mode (crun refuses them: runc is needed)";
  if (hardNofile() < PODMAN_ROOT_NOFILE) return `hard limit on open files ${hardNofile()} is below podman's default ulimit (${PODMAN_ROOT_NOFILE})`;
  return undefined;
}

async function answers(cmd: string[], env?: Record<string, string | undefined>): Promise<boolean> {
  try {
    const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "ignore", stderr: "ignore", ...(env === undefined ? {} : { env }) });
    const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
    const code = await proc.exited;
    clearTimeout(timer);
    return code === 0;
  } catch {
    return false;
  }
}

/**
 * The engine to use, or why there is none. `OI_CONTAINER_ENGINE=podman|docker`
 * chooses one; else podman first (it needs no daemon), then docker.
 */
export async function findEngine(environment: Record<string, string | undefined> = process.env): Promise<Engine | string> {
  const wanted = environment.OI_CONTAINER_ENGINE;
  const podman = wanted === "docker" ? null : Bun.which("podman");
  if (podman !== null) {
    const env = { ...environment };
    if (env.CONTAINERS_CONF === undefined && podmanDefaultsFail() !== undefined) env.CONTAINERS_CONF = SHIPPED_CONTAINERS_CONF;
    if (await answers([podman, "version"], env)) return { command: podman, name: "podman", env };
    return `${podman} is installed but \`podman version\` fails`;
  }
  const docker = wanted === "podman" ? null : Bun.which("docker");
  if (docker !== null) {
    if (await answers([docker, "info"])) return { command: docker, name: "docker", env: { ...environment } };
    if (wanted === "docker") return `${docker} is installed but no docker daemon answers (\`docker info\` fails)`;
    return `no podman, and ${docker} is a client with no daemon answering (\`docker info\` fails): install podman (Debian: podman buildah runc uidmap slirp4netns fuse-overlayfs containernetworking-plugins iptables)`;
  }
  return `no ${wanted ?? "container engine"} found: install podman (Debian: podman buildah runc uidmap slirp4netns fuse-overlayfs containernetworking-plugins iptables) or docker`;
}
