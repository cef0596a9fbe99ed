/**
 * A private etcd (Debian's `etcd-server`) for end-to-end tests: one member
 * on loopback ports the test picks, with a temporary data directory, keys
 * put and deleted through its JSON gateway, stopped by its PID (and started
 * again on the same ports and data, to test a return).
 */
import { openSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { tempDir } from "./oi-process.ts";
import { freePort } from "./peers.ts";

/** How long a starting member gets to answer. */
const START_MS = 20_000;

export interface Etcd {
  port: number;
  /** `http://127.0.0.1:PORT`. */
  endpoint: string;
  /** Its log, for a failure's message. */
  logFile: string;
  put(key: string, value: string): Promise<void>;
  del(key: string): Promise<void>;
  /** SIGTERM, then SIGKILL if it lingers; resolves once it has exited. */
  stop(): Promise<void>;
  /** Start again on the same ports and data (after `stop`). */
  restart(): Promise<void>;
}

const base64 = (text: string) => Buffer.from(text).toString("base64");

async function call(endpoint: string, path: string, body: unknown): Promise<unknown> {
  const response = await fetch(`${endpoint}${path}`, { method: "POST", body: JSON.stringify(body), signal: AbortSignal.timeout(5000) });
  if (!response.ok) throw new Error(`etcd ${path}: HTTP ${response.status} ${await response.text()}`);
  return response.json();
}

/** Start a member; `tls` (cert, key, client CA) makes it serve https with client certificates required. */
export async function startEtcd(tls?: { certFile: string; keyFile: string; clientCaFile: string }): Promise<Etcd> {
  const dir = tempDir();
  const port = freePort();
  const peerPort = freePort();
  const scheme = tls === undefined ? "http" : "https";
  const endpoint = `${scheme}://127.0.0.1:${port}`;
  const logFile = join(dir, "etcd.log");
  const command = [
    "etcd",
    "--name", "default",
    "--data-dir", join(dir, "data"),
    "--listen-client-urls", endpoint,
    "--advertise-client-urls", endpoint,
    "--listen-peer-urls", `http://127.0.0.1:${peerPort}`,
    "--initial-advertise-peer-urls", `http://127.0.0.1:${peerPort}`,
    "--initial-cluster", `default=http://127.0.0.1:${peerPort}`,
    ...(tls === undefined ? [] : ["--cert-file", tls.certFile, "--key-file", tls.keyFile, "--trusted-ca-file", tls.clientCaFile, "--client-cert-auth"]),
  ];
  let proc: Subprocess | undefined;
  const launch = async () => {
    const log = openSync(logFile, "a");
    proc = Bun.spawn(command, { stdin: "ignore", stdout: log, stderr: log });
    const deadline = Date.now() + START_MS;
    // Ready once the gateway answers a read (the health endpoint may answer before a leader is elected).
    const readable = tls === undefined ? () => call(endpoint, "/v3/kv/range", { key: base64("probe") }) : () => probeTls(port);
    for (;;) {
      try {
        await readable();
        return;
      } catch (error) {
        if (proc.exitCode !== null) throw new Error(`etcd exited with ${proc.exitCode}; see ${logFile}`);
        if (Date.now() > deadline) throw new Error(`etcd did not answer within ${START_MS} ms (${String(error)}); see ${logFile}`);
        await Bun.sleep(100);
      }
    }
  };
  await launch();
  const etcd: Etcd = {
    port,
    endpoint,
    logFile,
    async put(key, value) {
      if (tls !== undefined) throw new Error("put on a TLS member: use etcdctl");
      await call(endpoint, "/v3/kv/put", { key: base64(key), value: base64(value) });
    },
    async del(key) {
      if (tls !== undefined) throw new Error("del on a TLS member: use etcdctl");
      await call(endpoint, "/v3/kv/deleterange", { key: base64(key) });
    },
    async stop() {
      const running = proc;
      if (running === undefined || running.exitCode !== null) return;
      running.kill("SIGTERM");
      const timer = setTimeout(() => running.kill("SIGKILL"), 5000);
      await running.exited;
      clearTimeout(timer);
    },
    async restart() {
      await launch();
    },
  };
  return etcd;
}

/** A TLS member is up once its port takes connections. */
async function probeTls(port: number): Promise<void> {
  const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
  socket.end();
}
