/**
 * @module What the --tls section runs: a test certificate authority and a
 * certificate per name (made by openssl, as the tests make them), one nginx
 * with two TLS sites (a.test, b.test) and a plain-HTTP site sharing one
 * directory (the bulk file lives there), and the systems in front of it: oi
 * (an SNI-routed bind, a plain rule, a TLS-terminating rule, and for the
 * memory figure a bind whose clients never finish their ClientHello) and
 * haproxy doing the same in TCP mode; `direct` is the client talking to
 * nginx. Every process is stopped by its PID.
 */
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { type IssuedCertificate, makeTestCa } from "../test/helpers/certs.ts";
import { waitForPort } from "./net.ts";
import { spawnLogged, type Started } from "./procs.ts";
import { haproxyPreamble } from "./systems.ts";
import type { TlsSystemName } from "./types.ts";

/** What a client reaches for each figure. */
export type TlsRoute = "sni" | "plain" | "terminate" | "waiting";

/** The names the backend serves and the client asks for. */
export const ROUTED_NAME = "a.test";
export const OTHER_NAME = "b.test";

/** nginx's ports (below the ephemeral range, apart from the main bench's 23010..23176). */
export const TLS_BACKEND_PORTS = { a: 23301, b: 23302, plain: 23303 } as const;
const FRONT_BASE: Record<Exclude<TlsSystemName, "direct">, number> = { oi: 23310, haproxy: 23340 };
const ROUTE_OFFSET: Record<TlsRoute, number> = { sni: 1, plain: 2, terminate: 3, waiting: 4 };

/** Port of `route` on `system`; for direct, nginx's a.test site (over TLS, nginx terminating itself). */
export function tlsFrontPort(system: TlsSystemName, route: TlsRoute): number {
  return system === "direct" ? TLS_BACKEND_PORTS.a : FRONT_BASE[system] + ROUTE_OFFSET[route];
}

/** Seconds a forwarder waits for the rest of a ClientHello on the memory figure's bind (longer than the measurement). */
export const WAITING_PEEK_SECONDS = 30;

export interface TlsFiles {
  /** The authority's certificate, what clients trust. */
  caFile: string;
  a: IssuedCertificate;
  b: IssuedCertificate;
  /** a.test's certificate followed by its key: haproxy's `crt` file. */
  aCombined: string;
  /** nginx's document root: `big.bin` is the bulk figure's file. */
  root: string;
  bigFile: string;
  bigBytes: number;
}

/** Certificates for a.test and b.test (and *.b.test), and the bulk file of `bigMiB` random MiB. */
export function makeTlsFiles(dir: string, bigMiB: number): TlsFiles {
  const ca = makeTestCa("oi bench CA");
  const a = ca.issue([ROUTED_NAME], { file: "a" });
  const b = ca.issue([OTHER_NAME, `*.${OTHER_NAME}`], { file: "b" });
  const aCombined = join(dir, "a-combined.pem");
  writeFileSync(aCombined, a.certPem + a.keyPem);
  const root = join(dir, "www");
  const bigFile = join(root, "big.bin");
  mkdirSync(root, { recursive: true });
  // Random bytes, so nothing along the way could compress them.
  const chunk = new Uint8Array(1 << 20);
  const fd = openSync(bigFile, "w");
  try {
    for (let i = 0; i < bigMiB; i++) {
      for (let offset = 0; offset < chunk.length; offset += 65536) crypto.getRandomValues(chunk.subarray(offset, offset + 65536));
      writeSync(fd, chunk);
    }
  } finally {
    closeSync(fd);
  }
  return { caFile: ca.certFile, a, b, aCombined, root, bigFile, bigBytes: bigMiB << 20 };
}

function nginxTlsConfig(dir: string, files: TlsFiles): string {
  const site = (id: string) => `    root ${files.root};\n    location = / { return 200 "backend=${id}\\n"; }`;
  return `daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
pid ${dir}/nginx-tls.pid;
error_log ${dir}/nginx-tls-error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  default_type application/octet-stream;
  client_body_temp_path ${dir}/nginx-tls-body;
  proxy_temp_path ${dir}/nginx-tls-proxy;
  fastcgi_temp_path ${dir}/nginx-tls-fastcgi;
  uwsgi_temp_path ${dir}/nginx-tls-uwsgi;
  scgi_temp_path ${dir}/nginx-tls-scgi;
  # Every connection a full handshake: no session cache, no tickets (ab never resumes anyway).
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache off;
  ssl_session_tickets off;
  server {
    listen 127.0.0.1:${TLS_BACKEND_PORTS.a} ssl backlog=4096;
    server_name ${ROUTED_NAME};
    ssl_certificate ${files.a.certFile};
    ssl_certificate_key ${files.a.keyFile};
${site("a")}
  }
  server {
    listen 127.0.0.1:${TLS_BACKEND_PORTS.b} ssl backlog=4096;
    server_name ${OTHER_NAME} *.${OTHER_NAME};
    ssl_certificate ${files.b.certFile};
    ssl_certificate_key ${files.b.keyFile};
${site("b")}
  }
  server {
    listen 127.0.0.1:${TLS_BACKEND_PORTS.plain} backlog=4096;
${site("plain")}
  }
}
`;
}

/** The TLS backend: nginx serving a.test and b.test over TLS and the same files over plain HTTP. */
export async function startTlsBackend(dir: string, files: TlsFiles, limitPrefix: string[]): Promise<Started> {
  const config = join(dir, "nginx-tls.conf");
  writeFileSync(config, nginxTlsConfig(dir, files));
  const proc = spawnLogged("nginx (tls)", [...limitPrefix, "nginx", "-p", dir, "-e", join(dir, "nginx-tls-error.log"), "-c", config], { log: join(dir, "nginx-tls.log") });
  for (const port of Object.values(TLS_BACKEND_PORTS)) {
    if (!(await waitForPort("127.0.0.1", port, 10_000))) {
      await proc.stop();
      throw new Error(`nginx (tls) did not listen on ${port} (see ${join(dir, "nginx-tls-error.log")})`);
    }
  }
  return proc;
}

/**
 * oi's rules for `routes`, in its rinetd-style syntax: the SNI-routed bind
 * (a.test to site a, b.test and *.b.test to site b), the plain rule to site a,
 * the terminating rule (a.test's certificate, plain HTTP behind), and the
 * waiting bind (SNI-routed, a peek timeout longer than the figure takes).
 */
export function oiTlsRules(routes: readonly TlsRoute[], files: TlsFiles): string {
  const port = (route: TlsRoute) => tlsFrontPort("oi", route);
  const { a, b, plain } = TLS_BACKEND_PORTS;
  const lines: Record<TlsRoute, string[]> = {
    sni: [
      `127.0.0.1 ${port("sni")} 127.0.0.1 ${a} [sni=${ROUTED_NAME}]`,
      `127.0.0.1 ${port("sni")} 127.0.0.1 ${b} [sni=*.${OTHER_NAME}|${OTHER_NAME}]`,
    ],
    plain: [`127.0.0.1 ${port("plain")} 127.0.0.1 ${a}`],
    terminate: [`127.0.0.1 ${port("terminate")} 127.0.0.1 ${plain} [tls-cert=${files.a.certFile},tls-key=${files.a.keyFile}]`],
    waiting: [`127.0.0.1 ${port("waiting")} 127.0.0.1 ${a} [sni=${ROUTED_NAME},peek-timeout=${WAITING_PEEK_SECONDS}]`],
  };
  return routes.flatMap((route) => lines[route]).join("\n") + "\n";
}

/** haproxy in TCP mode doing the same: SNI from the ClientHello (inspect-delay), a plain listener, `bind ... ssl crt`. */
export function haproxyTlsConfig(routes: readonly TlsRoute[], files: TlsFiles, fdLimit: number): string {
  const port = (route: TlsRoute) => tlsFrontPort("haproxy", route);
  const { a, b, plain } = TLS_BACKEND_PORTS;
  const sni = (route: TlsRoute, delay: number) => `frontend ${route}
  bind 127.0.0.1:${port(route)}
  tcp-request inspect-delay ${delay}s
  tcp-request content accept if { req_ssl_hello_type 1 }
  use_backend site_a if { req.ssl_sni -i ${ROUTED_NAME} }
  use_backend site_b if { req.ssl_sni -i ${OTHER_NAME} } || { req.ssl_sni -m end .${OTHER_NAME} }
`;
  const sections: Record<TlsRoute, string> = {
    sni: sni("sni", 5),
    plain: `listen plain\n  bind 127.0.0.1:${port("plain")}\n  server a 127.0.0.1:${a}\n`,
    terminate: `listen terminate\n  bind 127.0.0.1:${port("terminate")} ssl crt ${files.aCombined}\n  server plain 127.0.0.1:${plain}\n`,
    waiting: sni("waiting", WAITING_PEEK_SECONDS),
  };
  return `${haproxyPreamble(fdLimit)}${routes.map((route) => sections[route]).join("")}backend site_a
  server a 127.0.0.1:${a}
backend site_b
  server b 127.0.0.1:${b}
`;
}

export interface TlsSystem {
  name: TlsSystemName;
  /** Routes this instance serves (the ports it listens on). */
  routes: readonly TlsRoute[];
  port(route: TlsRoute): number;
  /** The forwarder's process (undefined for direct). */
  proc: Started | undefined;
  log: string | undefined;
  stop(): Promise<void>;
}

export interface TlsLaunch {
  dir: string;
  limitPrefix: string[];
  fdLimit: number;
  oiCli: string;
  files: TlsFiles;
  /** Distinguishes the files of several instances. */
  tag: string;
}

/** Thrown when a forwarder refuses its config or exits before listening: `reason` is the first line of its log that says why. */
export class NotStarted extends Error {
  constructor(readonly system: TlsSystemName, readonly reason: string) {
    super(`${system} did not start: ${reason}`);
  }
}

function firstError(log: string): string {
  let text: string;
  try {
    text = readFileSync(log, "utf8");
  } catch {
    return "no log";
  }
  const lines = text.split("\n").map((line) => line.trim()).filter((line) => line !== "");
  const line = lines.find((each) => /error|unknown|invalid|alert|not /i.test(each)) ?? lines[0] ?? "exited without a word";
  // oi's line: "<time> [ERROR] /path/to/NAME.conf:LINE: reason (known: a long list)": the file's name and the reason are enough.
  return line.replace(/^\S+Z \[ERROR\] /, "").replace(/^\/\S*\/([^/\s]+:\d+:)/, "$1").replace(/ \(known: [^)]*\)?$/, "").slice(0, 200);
}

/** Start `name` serving `routes`; resolves once every route's port accepts, throws NotStarted otherwise. */
export async function startTlsSystem(name: TlsSystemName, routes: readonly TlsRoute[], launch: TlsLaunch): Promise<TlsSystem> {
  if (name === "direct") {
    return { name, routes, port: (route) => tlsFrontPort("direct", route), proc: undefined, log: undefined, stop: async () => {} };
  }
  const log = join(launch.dir, `${launch.tag}.log`);
  let cmd: string[];
  if (name === "oi") {
    const config = join(launch.dir, `${launch.tag}.conf`);
    writeFileSync(config, oiTlsRules(routes, launch.files));
    cmd = [process.execPath, launch.oiCli, "-c", config];
  } else {
    const config = join(launch.dir, `${launch.tag}.cfg`);
    writeFileSync(config, haproxyTlsConfig(routes, launch.files, launch.fdLimit));
    cmd = ["haproxy", "-db", "-f", config];
  }
  const proc = spawnLogged(launch.tag, [...launch.limitPrefix, ...cmd], { log });
  const system: TlsSystem = { name, routes, port: (route) => tlsFrontPort(name, route), proc, log, stop: () => proc.stop() };
  for (const route of routes) {
    const ready = await Promise.race([waitForPort("127.0.0.1", system.port(route), 15_000), proc.exited.then(() => false)]);
    if (!ready || proc.proc.exitCode !== null) {
      await proc.stop();
      throw new NotStarted(name, firstError(log));
    }
  }
  return system;
}
