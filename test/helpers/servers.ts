/**
 * Real servers and real clients for end-to-end tests of routing by the first
 * bytes and of TLS: a private nginx (TLS server blocks, each with its own
 * certificate and name, and plain-HTTP blocks by Host) and a private sshd,
 * each started by the test on loopback ports it picks and stopped by PID
 * after it; and curl, openssl s_client, ssh and ssh-keyscan run against a
 * port, every one bounded in time.
 */
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { type IssuedCertificate, makeTestCa, type TestCa } from "./certs.ts";
import { onCleanup } from "./harness.ts";
import { tempDir } from "./oi-process.ts";
import { freePort } from "./peers.ts";

/** The Debian package of every command these helpers run (`.ci/run` installs them). */
export const TOOL_PACKAGES: Readonly<Record<string, string>> = {
  nginx: "nginx-light",
  sshd: "openssh-server",
  ssh: "openssh-client",
  "ssh-keygen": "openssh-client",
  "ssh-keyscan": "openssh-client",
  curl: "curl",
  openssl: "openssl",
  iperf3: "iperf3",
  chromium: "chromium",
  "systemd-socket-activate": "systemd",
  "systemd-analyze": "systemd",
  ab: "apache2-utils",
  dnsmasq: "dnsmasq-base",
  catatonit: "catatonit",
  etcd: "etcd-server",
  etcdctl: "etcd-client",
};

/** Absolute path of `command`, looked up on PATH and in the sbin directories (nginx and sshd live there). */
export function toolPath(command: string): string | undefined {
  const path = `${process.env.PATH ?? ""}:/usr/sbin:/sbin:/usr/local/sbin`;
  return Bun.which(command, { PATH: path }) ?? undefined;
}

function needTool(command: string): string {
  const path = toolPath(command);
  if (path === undefined) throw new Error(`${command} is not installed (Debian package ${TOOL_PACKAGES[command] ?? command})`);
  return path;
}

/**
 * Why a test that runs `commands` cannot run on this machine (for its skip
 * message, printed once too), or undefined when it can. Under CI (`CI` set)
 * a missing tool is no reason to skip: `.ci/run` installs them all, so the
 * test runs and fails, naming the tool.
 */
export function missingTools(commands: readonly string[]): string | undefined {
  const missing = commands.filter((command) => toolPath(command) === undefined);
  const underCi = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false";
  if (missing.length === 0 || underCi) return undefined;
  const packages = [...new Set(missing.map((command) => TOOL_PACKAGES[command] ?? command))];
  const reason = `skipped: ${missing.join(", ")} not installed (apt-get install ${packages.join(" ")}; CI installs them)`;
  console.warn(reason);
  return reason;
}

/** A test name with the skip reason after it, when there is one. */
export function testName(name: string, skipReason: string | undefined): string {
  return skipReason === undefined ? name : `${name} [${skipReason}]`;
}

export interface ToolRun {
  code: number;
  stdout: string;
  stderr: string;
  /** It was killed at its time limit. */
  timedOut: boolean;
}

/** Run a command to its end with `stdin` (or nothing) as input, in `env` (or this process's); SIGKILLed after `timeoutMs`. */
export async function runTool(cmd: string[], options: { stdin?: string; timeoutMs?: number; env?: Record<string, string | undefined> } = {}): Promise<ToolRun> {
  const proc = Bun.spawn(cmd, {
    ...(options.env === undefined ? {} : { env: options.env }),
    stdin: options.stdin === undefined ? "ignore" : new TextEncoder().encode(options.stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, options.timeoutMs ?? 10_000);
  try {
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    return { code, stdout, stderr, timedOut };
  } finally {
    clearTimeout(timer);
  }
}

/** A long-running server process with its stderr in a file, stopped by its PID. */
interface Daemon {
  proc: Subprocess<"ignore", "ignore", number>;
  log: string;
  stop(): Promise<void>;
}

function startDaemon(cmd: string[], log: string): Daemon {
  const fd = openSync(log, "a");
  const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "ignore", stderr: fd });
  closeSync(fd);
  return {
    proc,
    log,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 3000);
      await proc.exited;
      clearTimeout(timer);
    },
  };
}

function readLog(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

async function accepts(port: number): Promise<boolean> {
  try {
    const socket = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {}, error() {} } });
    socket.end();
    return true;
  } catch {
    return false;
  }
}

/**
 * Wait until every port accepts a connection, or `daemon` exits first (its
 * log says why), or `timeoutMs` passes: true when it is listening.
 */
async function waitListening(daemon: Daemon, ports: number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (const port of ports) {
    while (!(await accepts(port))) {
      if (daemon.proc.exitCode !== null || Date.now() > deadline) return false;
      await Bun.sleep(20);
    }
  }
  return daemon.proc.exitCode === null;
}

/** One nginx server block: `id` names it (its answers say `backend=ID`), `names` are its server_name (a TLS block's certificate covers them all). */
export interface NginxSite {
  id: string;
  names: string[];
}

export interface NginxOptions {
  /** TLS server blocks, each with its own certificate from `ca`. */
  tls?: NginxSite[];
  /** Plain-HTTP server blocks, chosen by Host. */
  http?: NginxSite[];
  /** The authority that signs the sites' certificates (a fresh one by default). */
  ca?: TestCa;
}

export interface Nginx {
  pid: number;
  /** The authority clients trust (`ca.certFile`). */
  ca: TestCa;
  /** Every TLS site on this one port, chosen by SNI; a name none has is refused in the handshake (0 without TLS sites). */
  tlsPort: number;
  /** Every plain-HTTP site on this one port, chosen by Host; a Host none has gets 404 `backend=none` (0 without HTTP sites). */
  httpPort: number;
  /** Each site alone on a port of its own, answering whatever name the client asks for: where a router in front sends it. */
  ports: Record<string, number>;
  /** Each TLS site's certificate, by id. */
  certs: Record<string, IssuedCertificate>;
  /** The directory a site serves its other paths from (a test may put files there). */
  root(id: string): string;
  dir: string;
  log: string;
  stop(): Promise<void>;
}

/** What every site answers at `/`: `backend=ID` and a newline. */
export function siteBody(id: string): string {
  return `backend=${id}\n`;
}

function siteLocations(id: string, dir: string): string {
  // /info tells what the server saw: the SNI name, the Host and the scheme (TLS or not).
  return [
    `    root ${join(dir, `www-${id}`)};`,
    `    location = / { return 200 "${siteBody(id).replace("\n", "\\n")}"; }`,
    `    location = /info { return 200 "backend=${id} sni=$ssl_server_name host=$host scheme=$scheme\\n"; }`,
  ].join("\n");
}

function nginxConfig(dir: string, tls: NginxSite[], http: NginxSite[], certs: Record<string, IssuedCertificate>, ports: { tls: number; http: number; own: Record<string, number> }): string {
  const blocks: string[] = [];
  if (tls.length > 0) blocks.push(`  server { listen 127.0.0.1:${ports.tls} ssl default_server; ssl_reject_handshake on; }`);
  for (const site of tls) {
    const cert = certs[site.id]!;
    blocks.push(`  server {
    listen 127.0.0.1:${ports.tls} ssl;
    listen 127.0.0.1:${ports.own[site.id]} ssl;
    server_name ${site.names.join(" ")};
    ssl_certificate ${cert.certFile};
    ssl_certificate_key ${cert.keyFile};
${siteLocations(site.id, dir)}
  }`);
  }
  if (http.length > 0) blocks.push(`  server { listen 127.0.0.1:${ports.http} default_server; location / { return 404 "backend=none\\n"; } }`);
  for (const site of http) {
    blocks.push(`  server {
    listen 127.0.0.1:${ports.http};
    listen 127.0.0.1:${ports.own[site.id]};
    server_name ${site.names.join(" ")};
${siteLocations(site.id, dir)}
  }`);
  }
  // One process (no master, no workers that would change user): it is the PID the test stops.
  return `daemon off;
master_process off;
pid ${dir}/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
  access_log off;
  default_type text/plain;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  # nginx 1.22 leaves TLS 1.3 out by default.
  ssl_protocols TLSv1.2 TLSv1.3;
${blocks.join("\n")}
}
`;
}

/**
 * Start a private nginx on loopback: the `tls` sites share `tlsPort` (chosen
 * by SNI, each with its own certificate) and the `http` sites share
 * `httpPort` (chosen by Host); every site also listens alone on its own port.
 * Resolves once every port accepts; stopped by PID after the test.
 */
export async function startNginx(options: NginxOptions): Promise<Nginx> {
  const nginx = needTool("nginx");
  const tls = options.tls ?? [];
  const http = options.http ?? [];
  const ids = [...tls, ...http].map((site) => site.id);
  if (new Set(ids).size !== ids.length) throw new Error(`nginx site ids must differ: ${ids.join(", ")}`);
  const ca = options.ca ?? makeTestCa();
  const dir = tempDir();
  const certs: Record<string, IssuedCertificate> = {};
  for (const site of tls) certs[site.id] = ca.issue(site.names, { file: `site-${site.id}` });
  for (const id of ids) mkdirSync(join(dir, `www-${id}`));
  const config = join(dir, "nginx.conf");
  const log = join(dir, "nginx.log");
  // A port picked free may be taken before nginx binds it: try again with new ones.
  for (let attempt = 1; ; attempt++) {
    const own: Record<string, number> = {};
    for (const id of ids) own[id] = freePort();
    const ports = { tls: tls.length > 0 ? freePort() : 0, http: http.length > 0 ? freePort() : 0, own };
    writeFileSync(config, nginxConfig(dir, tls, http, certs, ports));
    const daemon = startDaemon([nginx, "-p", dir, "-e", "stderr", "-c", config], log);
    const all = [ports.tls, ports.http, ...Object.values(own)].filter((port) => port !== 0);
    if (await waitListening(daemon, all, 10_000)) {
      onCleanup(() => daemon.stop());
      return {
        pid: daemon.proc.pid, ca, tlsPort: ports.tls, httpPort: ports.http, ports: own, certs, dir, log,
        root: (id) => join(dir, `www-${id}`),
        stop: () => daemon.stop(),
      };
    }
    await daemon.stop();
    const text = readLog(log);
    if (attempt >= 3 || !text.includes("Address already in use")) throw new Error(`nginx did not start:\n${text}`);
  }
}

export interface Sshd {
  pid: number;
  port: number;
  /** The host key's public line as ssh-keyscan prints it after the host: `ssh-ed25519 AAAA...` (no comment). */
  hostKey: string;
  dir: string;
  /** sshd's own log (-e): connections, and why it refused them. */
  log: string;
  stop(): Promise<void>;
}

/** sshd's privilege separation directory: the package makes it at boot (tmpfiles), a fresh container may not have it. */
const PRIVSEP_DIR = "/run/sshd";

/**
 * Start a private sshd on 127.0.0.1 with an ed25519 host key of its own and
 * a config that lets nobody in (public keys only, none authorized, no PAM):
 * enough for a client to exchange banners and keys with it. Resolves once it
 * says it listens; stopped by PID after the test.
 */
export async function startSshd(): Promise<Sshd> {
  // sshd re-executes itself and insists on an absolute path (toolPath gives one: /usr/sbin/sshd).
  const sshd = needTool("sshd");
  const keygen = needTool("ssh-keygen");
  // Only root's sshd chroots its pre-authentication child there.
  if (process.getuid?.() === 0) mkdirSync(PRIVSEP_DIR, { recursive: true, mode: 0o755 });
  const dir = tempDir();
  const key = join(dir, "host_ed25519");
  const made = await runTool([keygen, "-q", "-N", "", "-t", "ed25519", "-C", "oi-test", "-f", key]);
  if (made.code !== 0) throw new Error(`ssh-keygen failed: ${made.stderr}`);
  const hostKey = readFileSync(`${key}.pub`, "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
  const config = join(dir, "sshd_config");
  writeFileSync(
    config,
    [
      `HostKey ${key}`,
      "PidFile none",
      "UsePAM no",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PubkeyAuthentication yes",
      "AuthorizedKeysFile none",
      "StrictModes no",
      "LogLevel VERBOSE",
      "",
    ].join("\n"),
  );
  const log = join(dir, "sshd.log");
  for (let attempt = 1; ; attempt++) {
    const port = freePort();
    const daemon = startDaemon([sshd, "-D", "-e", "-f", config, "-p", String(port), "-o", "ListenAddress=127.0.0.1"], log);
    const deadline = Date.now() + 10_000;
    while (!readLog(log).includes(`Server listening on 127.0.0.1 port ${port}.`) && daemon.proc.exitCode === null && Date.now() < deadline) {
      await Bun.sleep(20);
    }
    if (daemon.proc.exitCode === null && readLog(log).includes(`port ${port}.`)) {
      onCleanup(() => daemon.stop());
      return { pid: daemon.proc.pid, port, hostKey, dir, log, stop: () => daemon.stop() };
    }
    await daemon.stop();
    const text = readLog(log);
    if (attempt >= 3 || !text.includes("Address already in use")) throw new Error(`sshd did not start:\n${text}`);
  }
}

export interface SshAttempt extends ToolRun {
  /** What the server said it runs (its banner, as ssh -v reports it), e.g. `OpenSSH_9.2p1 Debian-2+deb12u10`. */
  remoteVersion: string | undefined;
  /** ssh printed "Permission denied (publickey...)": it spoke SSH with an sshd to the end of authentication. */
  permissionDenied: boolean;
}

/**
 * Log in as `nobody` to host:port with ssh in batch mode (no prompts, no
 * known_hosts, none of the user's config) and run `true`: against the
 * private sshd this exchanges banners and keys and ends in "Permission
 * denied". Bounded by `timeoutMs`.
 */
export async function sshAttempt(port: number, host = "127.0.0.1", timeoutMs = 10_000): Promise<SshAttempt> {
  const cmd = [
    needTool("ssh"), "-v", "-F", "/dev/null",
    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", `ConnectTimeout=${Math.max(1, Math.floor(timeoutMs / 2000))}`,
    "-p", String(port), `nobody@${host}`, "true",
  ];
  const run = await runTool(cmd, { timeoutMs });
  return {
    ...run,
    remoteVersion: /remote software version (.+)$/m.exec(run.stderr)?.[1]?.trim(),
    permissionDenied: /Permission denied \(publickey/.test(run.stderr),
  };
}

/**
 * `ssh-keyscan -t ed25519` of host:port: the key line without the host
 * (`ssh-ed25519 AAAA...`, comparable to `Sshd.hostKey`), or undefined when
 * no key came back. `run` has the whole output (the server's banner is a
 * comment on stderr).
 */
export async function sshKeyscan(port: number, host = "127.0.0.1", timeoutMs = 10_000): Promise<{ key: string | undefined; run: ToolRun }> {
  const seconds = Math.max(1, Math.floor(timeoutMs / 2000));
  const run = await runTool([needTool("ssh-keyscan"), "-T", String(seconds), "-p", String(port), "-t", "ed25519", host], { timeoutMs });
  const line = run.stdout.split("\n").find((each) => / ssh-ed25519 /.test(each));
  return { key: line?.split(/\s+/).slice(1, 3).join(" "), run };
}

export interface CurlResult extends ToolRun {
  /** HTTP status (0 when there was no answer). */
  status: number;
  body: string;
}

export interface CurlOptions {
  path?: string;
  /** Trust this authority's certificate (https); without it, https is not attempted. */
  ca?: string;
  timeoutMs?: number;
  /** More curl arguments (a header, --http1.1, ...). */
  args?: string[];
}

const STATUS_MARK = "\n--oi-curl-status ";

/**
 * GET `name`:`port` with curl, the name resolved to 127.0.0.1 (`--resolve`),
 * so SNI and Host carry `name`: https when `ca` is given (verified against
 * it), plain HTTP otherwise. Bounded by `timeoutMs`.
 */
export async function curl(name: string, port: number, options: CurlOptions = {}): Promise<CurlResult> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const scheme = options.ca === undefined ? "http" : "https";
  const cmd = [
    needTool("curl"), "-sS", "--max-time", String(timeoutMs / 1000), "--resolve", `${name}:${port}:127.0.0.1`,
    ...(options.ca === undefined ? [] : ["--cacert", options.ca]),
    "--write-out", `${STATUS_MARK}%{http_code}`,
    ...(options.args ?? []),
    `${scheme}://${name}:${port}${options.path ?? "/"}`,
  ];
  const run = await runTool(cmd, { timeoutMs: timeoutMs + 2000 });
  const at = run.stdout.lastIndexOf(STATUS_MARK);
  const status = at < 0 ? 0 : Number(run.stdout.slice(at + STATUS_MARK.length).trim());
  return { ...run, status, body: at < 0 ? run.stdout : run.stdout.slice(0, at) };
}

export interface TlsProbeOptions {
  /** The SNI name; null sends none. Default: no name given, none sent. */
  servername?: string | null;
  /** Verify the server's certificate against this authority (the handshake fails otherwise). */
  ca?: string;
  /** Sent once the handshake is done. Default: `GET /` for the servername with `Connection: close`. */
  send?: string;
  host?: string;
  timeoutMs?: number;
}

export interface TlsProbe extends ToolRun {
  /** The handshake completed. */
  connected: boolean;
  /** CN of the certificate the server presented. */
  subjectCN: string | undefined;
  /** `TLSv1.3`, `TLSv1.2`. */
  protocol: string | undefined;
  /** The certificate chain verified against `ca`. */
  verified: boolean;
  /** What the server answered (stdout: the application data only). */
  response: string;
}

/**
 * Connect to host:port with `openssl s_client` and send `send`; reads until
 * the server closes (or `timeoutMs`): the presented certificate's CN, the
 * protocol, whether it verified, and the answer.
 */
export async function tlsProbe(port: number, options: TlsProbeOptions = {}): Promise<TlsProbe> {
  const host = options.host ?? "127.0.0.1";
  const name = options.servername ?? null;
  const send = options.send ?? `GET / HTTP/1.1\r\nHost: ${name ?? host}\r\nConnection: close\r\n\r\n`;
  // -brief puts the handshake's summary on stderr and only the application data on stdout;
  // -ign_eof keeps reading after our input ends, until the server closes.
  const cmd = [
    needTool("openssl"), "s_client", "-brief", "-ign_eof", "-connect", `${host}:${port}`,
    ...(name === null ? ["-noservername"] : ["-servername", name]),
    ...(options.ca === undefined ? [] : ["-CAfile", options.ca, "-verify_return_error"]),
  ];
  const run = await runTool(cmd, { stdin: send, timeoutMs: options.timeoutMs ?? 10_000 });
  return {
    ...run,
    connected: run.stderr.includes("CONNECTION ESTABLISHED"),
    subjectCN: /^Peer certificate: .*?CN = ([^,\n]+)/m.exec(run.stderr)?.[1]?.trim(),
    protocol: /^Protocol version: (\S+)/m.exec(run.stderr)?.[1],
    verified: /^Verification: OK$/m.test(run.stderr),
    response: run.stdout,
  };
}
