/**
 * Per-test resources for end-to-end suites: everything a test starts is
 * registered here and stopped after it, whatever happened.
 */
import { afterEach } from "bun:test";
import { type OiProcess, startOi, writeTempFile } from "./oi-process.ts";
import { type Backend, connectPeer, type Peer, startBackend, startUnixBackend } from "./peers.ts";

const cleanups: Array<() => unknown> = [];

/**
 * Call at the top of each test file using these helpers. bun runs every test
 * file in one process and evaluates a shared module once, so an `afterEach`
 * registered by this module itself would apply to the first file importing
 * it only, and the `oi` processes of the other files would outlive the run.
 */
export function cleanUpAfterEachTest(): void {
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
}

/** Run `cleanup` after the current test (once the file called `cleanUpAfterEachTest`). */
export function onCleanup(cleanup: () => unknown): void {
  cleanups.push(cleanup);
}

export function backend(onConnection?: (peer: Peer) => void, host?: string): Backend {
  const started = startBackend(onConnection, host);
  onCleanup(() => started.stop());
  return started;
}

/** A backend that greets every connection with `name` and half-closes; stopped after the test. */
export function greeter(name: string): Backend {
  return backend((peer) => void peer.send(name, true));
}

/** Connect to 127.0.0.1:`port`, read until the far end's FIN, close: what it said. */
export async function greeting(port: number): Promise<string> {
  const client = await connectPeer("127.0.0.1", port);
  client.keep = [];
  await client.waitEnd(5000);
  client.socket?.end();
  return client.text();
}

/** A backend on a unix socket at `path`, stopped after the test. */
export function unixBackend(path: string, onConnection?: (peer: Peer) => void): Backend {
  const started = startUnixBackend(path, onConnection);
  onCleanup(() => started.stop());
  return started;
}

/** Start oi on a config file the test may rewrite before a SIGHUP; stopped after the test. */
export async function oiOnFile(configPath: string, args: string[] = []): Promise<OiProcess> {
  const process = await startOi(configPath, args);
  onCleanup(() => process.stop());
  return process;
}

/** Start oi on `config` (written to a temporary `name`); stopped after the test. */
export async function oi(config: string, args: string[] = [], name = "oi.conf"): Promise<OiProcess> {
  const process = await startOi(writeTempFile(name, config), args);
  onCleanup(() => process.stop());
  return process;
}

/** Poll `condition` until it holds, or fail after `ms`. */
export async function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}
