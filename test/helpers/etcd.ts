/**
 * A private etcd (Debian's `etcd-server`) for end-to-end tests: one member
 * on loopback ports the test picks, with a temporary data directory, keys
 * put and deleted through its JSON gateway, stopped by its PID (and started
 * again on the same ports and data, to test a return).
 */
import { openSync, readFileSync } from "node:fs";
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
  /** Add user `root` with `password` and turn authentication on; the helper's own calls log in from then on. */
  enableAuth(password: string): Promise<void>;
  /** SIGTERM, then SIGKILL if it lingers; resolves once it has exited. */
  stop(): Promise<void>;
  /** Start again on the same ports and data (after `stop`). */
  restart(): Promise<void>;
}

const base64 = (text: string) => Buffer.from(text).toString("base64");

/** A TLS member's files: its own certificate, the CA its clients' certificates come from, and a client certificate for the helper's own calls. */
export interface EtcdTls {
  certFile: string;
  keyFile: string;
  caFile: string;
  clientCertFile: string;
  clientKeyFile: string;
}

/** What the helper's own calls present to a TLS member, and an authentication token. */
interface CallOptions {
  tls?: { ca: string; cert: string; key: string } | undefined;
  token?: string | undefined;
}

async function call(endpoint: string, path: string, body: unknown, options: CallOptions = {}): Promise<unknown> {
  const response = await fetch(`${endpoint}${path}`, {
    method: "POST",
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
    ...(options.token === undefined ? {} : { headers: { authorization: options.token } }),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
  });
  if (!response.ok) throw new Error(`etcd ${path}: HTTP ${response.status} ${await response.text()}`);
  return response.json();
}

/** Start a member; with `tls` it serves https, client certificates required; `extraArgs` go to etcd as they are. */
export async function startEtcd(tls?: EtcdTls, extraArgs: string[] = []): Promise<Etcd> {
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
    ...(tls === undefined ? [] : ["--cert-file", tls.certFile, "--key-file", tls.keyFile, "--trusted-ca-file", tls.caFile, "--client-cert-auth"]),
    ...extraArgs,
  ];
  const options: CallOptions = {
    tls: tls === undefined ? undefined : { ca: readFileSync(tls.caFile, "utf8"), cert: readFileSync(tls.clientCertFile, "utf8"), key: readFileSync(tls.clientKeyFile, "utf8") },
  };
  let password: string | undefined;
  /** Calls as root once authentication is on (a token per call: simple, and never stale). */
  const authorized = async (path: string, body: unknown) => {
    if (password !== undefined) {
      const login = (await call(endpoint, "/v3/auth/authenticate", { name: "root", password }, options)) as { token: string };
      return call(endpoint, path, body, { ...options, token: login.token });
    }
    return call(endpoint, path, body, options);
  };
  let proc: Subprocess | undefined;
  const launch = async () => {
    const log = openSync(logFile, "a");
    proc = Bun.spawn(command, { stdin: "ignore", stdout: log, stderr: log });
    const deadline = Date.now() + START_MS;
    // Ready once the gateway answers a read (the health endpoint may answer before a leader is elected).
    const readable = () => call(endpoint, "/v3/kv/range", { key: base64("probe") }, options);
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
      await authorized("/v3/kv/put", { key: base64(key), value: base64(value) });
    },
    async del(key) {
      await authorized("/v3/kv/deleterange", { key: base64(key) });
    },
    async enableAuth(rootPassword) {
      await call(endpoint, "/v3/auth/role/add", { name: "root" }, options);
      await call(endpoint, "/v3/auth/user/add", { name: "root", password: rootPassword }, options);
      await call(endpoint, "/v3/auth/user/grant", { user: "root", role: "root" }, options);
      await call(endpoint, "/v3/auth/enable", {}, options);
      password = rootPassword;
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
