/**
 * @module An impaired link between a network namespace of the bench's own
 * and the host: two TUN devices, one moved into the namespace, joined by the
 * shim thread (shim-worker.ts) that applies an Impairment to every packet in
 * both directions. The namespace reaches the host's `hostAddress` (and
 * nothing else) through it:
 *
 *   namespace 10.203.0.2 (tun oif_ns) <-> shim <-> (tun oif_host) host 10.203.0.1
 *
 * Root only. Everything is removed by `close()` (the namespace, and with the
 * descriptors closed, both devices).
 */
import { dlopen, FFIType as T, ptr } from "bun:ffi";
import { openSync, closeSync } from "node:fs";
import { SharedImpairment, type Impairment } from "./impairment.ts";

const TUNSETIFF = 0x400454ca;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const O_RDWR = 2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

export const LINK = {
  namespace: "oifault_c",
  hostAddress: "10.203.0.1",
  namespaceAddress: "10.203.0.2",
  hostDevice: "oif_host",
  namespaceDevice: "oif_ns",
};

async function run(command: string[]): Promise<string> {
  const proc = Bun.spawn(command, { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 15_000);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${command.join(" ")}: ${err.trim() || `exit ${code}`}`);
  return out;
}

/** A TUN device named `name` in this process's namespace, non-blocking; its descriptor. */
function openTun(name: string): number {
  const { symbols: c } = dlopen("libc.so.6", { ioctl: { args: [T.i32, T.u64, T.ptr], returns: T.i32 } });
  const fd = openSync("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  // struct ifreq: the name in 16 bytes, then the flags as a short.
  const ifreq = new Uint8Array(40);
  ifreq.set(new TextEncoder().encode(name), 0);
  new DataView(ifreq.buffer).setInt16(16, IFF_TUN | IFF_NO_PI, true);
  if (c.ioctl(fd, TUNSETIFF, ptr(ifreq)) !== 0) {
    closeSync(fd);
    throw new Error(`TUNSETIFF ${name} failed (root and /dev/net/tun needed)`);
  }
  return fd;
}

export class ImpairedLink {
  readonly shared = new SharedImpairment();
  private worker: Worker | undefined;
  private fds: number[] = [];

  /** The command prefix that runs a program inside the namespace. */
  readonly inNamespace = ["ip", "netns", "exec", LINK.namespace];

  static async create(seed: number): Promise<ImpairedLink> {
    const link = new ImpairedLink();
    await link.remove(); // leftovers of an interrupted run
    try {
      await link.build(seed);
    } catch (error) {
      await link.close();
      throw error;
    }
    return link;
  }

  private async build(seed: number): Promise<void> {
    await run(["ip", "netns", "add", LINK.namespace]);
    await run(["ip", "-n", LINK.namespace, "link", "set", "lo", "up"]);
    const hostFd = openTun(LINK.hostDevice);
    this.fds.push(hostFd);
    const nsFd = openTun(LINK.namespaceDevice);
    this.fds.push(nsFd);
    await run(["ip", "link", "set", LINK.namespaceDevice, "netns", LINK.namespace]);
    await run(["ip", "addr", "add", `${LINK.hostAddress}/32`, "peer", `${LINK.namespaceAddress}/32`, "dev", LINK.hostDevice]);
    await run(["ip", "link", "set", LINK.hostDevice, "up"]);
    await run(["ip", "-n", LINK.namespace, "addr", "add", `${LINK.namespaceAddress}/32`, "peer", `${LINK.hostAddress}/32`, "dev", LINK.namespaceDevice]);
    await run(["ip", "-n", LINK.namespace, "link", "set", LINK.namespaceDevice, "up"]);
    // The namespace has only this peer route: nothing it sends can go anywhere but the host's end of the link.
    const route = await run(["ip", "-n", LINK.namespace, "route", "get", LINK.hostAddress]);
    if (!route.includes(`dev ${LINK.namespaceDevice}`)) throw new Error(`refusing to run: ${LINK.hostAddress} does not route through ${LINK.namespaceDevice}`);
    this.worker = new Worker(new URL("./shim-worker.ts", import.meta.url).href);
    this.worker.postMessage({ fds: [hostFd, nsFd], buffer: this.shared.buffer, seed });
  }

  impair(impairment: Impairment): void {
    this.shared.set(impairment);
  }

  setDown(down: boolean): void {
    this.shared.setDown(down);
  }

  async close(): Promise<void> {
    if (this.worker !== undefined) {
      const worker = this.worker;
      this.worker = undefined;
      const stopped = new Promise<void>((done) => worker.addEventListener("message", () => done()));
      this.shared.stop();
      await Promise.race([stopped, Bun.sleep(2000)]);
      worker.terminate();
    }
    for (const fd of this.fds.splice(0)) closeSync(fd);
    await this.remove();
  }

  private async remove(): Promise<void> {
    await run(["ip", "netns", "del", LINK.namespace]).catch(() => {});
    await run(["ip", "link", "del", LINK.hostDevice]).catch(() => {});
  }
}
