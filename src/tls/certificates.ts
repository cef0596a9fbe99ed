/**
 * @module The files TLS needs, read and checked once per config load: a
 * certificate chain and its private key for termination (each pair made into
 * one `tls.SecureContext`, shared by every connection it serves), and CA
 * bundles for origination (`tls-ca=FILE`). A file that cannot serve gives a
 * reason for a config error, never an exception: missing or unreadable, not
 * PEM, an encrypted key (oi asks for no passphrase), a key that is not the
 * certificate's.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext, type SecureContext } from "node:tls";
import type { Checked } from "../config/validate.ts";

/** What a terminating leg needs, made once per certificate, key and ALPN list. */
export interface ServerTls {
  readonly certFile: string;
  readonly keyFile: string;
  /** Holds the parsed chain and key (in Bun, a native SSL_CTX made here, once). */
  readonly context: SecureContext;
  /** Protocols offered by ALPN, in order of preference; empty: none, so no ALPN is agreed. */
  readonly alpn: readonly string[];
  /** The `tls` options of Bun's upgradeTLS for this certificate: the native context and the ALPN list (wire format). */
  readonly upgradeOptions: Readonly<BunServerTlsOptions>;
  /** The leaf certificate, for logs: its subject, DNS names and end of validity. */
  readonly subject: string;
  readonly dnsNames: readonly string[];
  readonly validTo: Date;
}

/** What Bun's upgradeTLS takes as `tls` for a server: its own context (SecureContext's `context`, an undocumented field), or key and chain to make one. */
export interface BunServerTlsOptions {
  secureContext?: unknown;
  key?: string;
  cert?: string;
  /** Wire format: each name preceded by its length. */
  ALPNProtocols?: Uint8Array;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n[\s\S]*?-----END \1-----/g;
const MAX_ALPN_PROTOCOL_BYTES = 255;

function ok<T>(value: T): Checked<T> {
  return { ok: true, value };
}

function invalid<T>(reason: string): Checked<T> {
  return { ok: false, reason };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function readText(file: string, role: string): Checked<string> {
  try {
    return ok(readFileSync(file, "utf8"));
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : messageOf(error);
    return invalid(`${role} ${file}: cannot read (${why})`);
  }
}

/** The PEM blocks of `text` labelled `label`, each exactly as written. */
function pemBlocks(text: string, label: string): string[] {
  const blocks: string[] = [];
  for (const match of text.matchAll(PEM_BLOCK)) if (match[1] === label) blocks.push(match[0]);
  return blocks;
}

/** Every certificate of a PEM file, parsed; a reason naming the first that is not one. */
function parseCertificates(text: string, file: string, role: string): Checked<{ pems: string[]; parsed: X509Certificate[] }> {
  const pems = pemBlocks(text, "CERTIFICATE");
  if (pems.length === 0) return invalid(`${role} ${file}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`);
  const parsed: X509Certificate[] = [];
  for (const [index, pem] of pems.entries()) {
    try {
      parsed.push(new X509Certificate(pem));
    } catch (error) {
      return invalid(`${role} ${file}: certificate ${index + 1} is not valid (${messageOf(error)})`);
    }
  }
  return ok({ pems, parsed });
}

function parsePrivateKey(text: string, file: string): Checked<KeyObject> {
  const encrypted = `tls-key ${file}: the private key is encrypted; oi needs it unencrypted (openssl pkey -in ${file} -out NEW)`;
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) return invalid(`tls-key ${file}: no PEM private key in it (expected -----BEGIN PRIVATE KEY-----)`);
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----/.test(text) || /Proc-Type:\s*4,ENCRYPTED/.test(text)) return invalid(encrypted);
  try {
    return ok(createPrivateKey(text));
  } catch (error) {
    if ((error as { code?: unknown }).code === "ERR_MISSING_PASSPHRASE") return invalid(encrypted);
    return invalid(`tls-key ${file}: not a valid private key (${messageOf(error)})`);
  }
}

/** A reason when `alpn` cannot be offered: empty names, names over 255 bytes, repeats. */
export function checkAlpn(alpn: readonly string[]): string | undefined {
  const seen = new Set<string>();
  for (const protocol of alpn) {
    const bytes = Buffer.byteLength(protocol);
    if (bytes === 0) return "an ALPN protocol name is empty";
    if (bytes > MAX_ALPN_PROTOCOL_BYTES) return `ALPN protocol name '${protocol.slice(0, 20)}...' is longer than 255 bytes`;
    if (seen.has(protocol)) return `ALPN protocol '${protocol}' is listed twice`;
    seen.add(protocol);
  }
  return undefined;
}

/** A certificate chain and its key as read and checked, before a context is made of them. */
export interface ServerFiles {
  /** The chain's PEM certificates, leaf first. */
  cert: string;
  key: string;
}

/** Read a certificate chain (leaf first) and its private key for termination, and check that the key is the leaf's. */
export function readServerFiles(certFile: string, keyFile: string): Checked<ServerFiles> {
  const certText = readText(certFile, "tls-cert");
  if (!certText.ok) return certText;
  const keyText = readText(keyFile, "tls-key");
  if (!keyText.ok) return keyText;
  const chain = parseCertificates(certText.value, certFile, "tls-cert");
  if (!chain.ok) return chain;
  const key = parsePrivateKey(keyText.value, keyFile);
  if (!key.ok) return key;
  const leaf = chain.value.parsed[0]!;
  if (!leaf.checkPrivateKey(key.value)) return invalid(`tls-key ${keyFile} does not match tls-cert ${certFile} (${leaf.subject})`);
  return ok({ cert: chain.value.pems.join("\n"), key: keyText.value });
}

/**
 * Make what a terminating leg needs of a chain and key already read and
 * checked (`readServerFiles`): their SecureContext, once. `alpn` is what the
 * server offers (none by default).
 */
export function makeServerTls(certFile: string, keyFile: string, files: ServerFiles, alpn: readonly string[] = []): Checked<ServerTls> {
  const alpnProblem = checkAlpn(alpn);
  if (alpnProblem !== undefined) return invalid(alpnProblem);
  let context: SecureContext;
  let leaf: X509Certificate;
  try {
    context = createSecureContext({ cert: files.cert, key: files.key });
    leaf = new X509Certificate(files.cert);
  } catch (error) {
    return invalid(`tls-cert ${certFile} with tls-key ${keyFile}: ${messageOf(error)}`);
  }
  const native = (context as unknown as { context?: unknown }).context;
  const upgradeOptions: BunServerTlsOptions = native !== undefined ? { secureContext: native } : { key: files.key, cert: files.cert };
  if (alpn.length > 0) upgradeOptions.ALPNProtocols = alpnWire(alpn);
  return ok({
    certFile,
    keyFile,
    context,
    alpn: [...alpn],
    upgradeOptions: Object.freeze(upgradeOptions),
    subject: leaf.subject,
    dnsNames: dnsNamesOf(leaf),
    validTo: new Date(leaf.validTo),
  });
}

/** `readServerFiles`, then `makeServerTls`. */
export function loadServerTls(certFile: string, keyFile: string, alpn: readonly string[] = []): Checked<ServerTls> {
  const alpnProblem = checkAlpn(alpn);
  if (alpnProblem !== undefined) return invalid(alpnProblem);
  const files = readServerFiles(certFile, keyFile);
  return files.ok ? makeServerTls(certFile, keyFile, files.value, alpn) : files;
}

const serverTlsBySettings = new WeakMap<object, Checked<ServerTls>>();

/**
 * A rule's termination settings as a terminating leg needs them, made once
 * per loaded config (the settings object is new at each load, so a reload
 * makes a new context from the files read again) and per thread.
 */
export function serverTlsOf(settings: { certFile: string; keyFile: string; certPem: string; keyPem: string; alpn: readonly string[] }): Checked<ServerTls> {
  let made = serverTlsBySettings.get(settings);
  if (made === undefined) {
    made = makeServerTls(settings.certFile, settings.keyFile, { cert: settings.certPem, key: settings.keyPem }, settings.alpn);
    serverTlsBySettings.set(settings, made);
  }
  return made;
}

/** ALPN names as TLS sends them: each preceded by its length in one byte. */
function alpnWire(alpn: readonly string[]): Uint8Array {
  const names = alpn.map((name) => Buffer.from(name));
  const wire = new Uint8Array(names.reduce((sum, name) => sum + 1 + name.length, 0));
  let at = 0;
  for (const name of names) {
    wire[at++] = name.length;
    wire.set(name, at);
    at += name.length;
  }
  return wire;
}

function dnsNamesOf(certificate: X509Certificate): string[] {
  const names = certificate.subjectAltName;
  if (names === undefined) return [];
  return names
    .split(", ")
    .filter((name) => name.startsWith("DNS:"))
    .map((name) => name.slice(4));
}

/**
 * Read a CA bundle (`tls-ca=FILE`) for verifying backends: the PEM text of
 * its certificates, each checked to parse.
 */
export function loadCaBundle(file: string): Checked<string> {
  const text = readText(file, "tls-ca");
  if (!text.ok) return text;
  const certificates = parseCertificates(text.value, file, "tls-ca");
  if (!certificates.ok) return certificates;
  return ok(certificates.value.pems.join("\n"));
}

/**
 * The TLS files of one config load: each certificate and key pair and each
 * CA bundle is read and checked once, however many rules name it. A new load
 * starts a new TlsFiles, so a reload reads the files again (a renewed
 * certificate takes effect).
 */
export class TlsFiles {
  private readonly servers = new Map<string, Checked<ServerFiles>>();
  private readonly bundles = new Map<string, Checked<string>>();

  server(certFile: string, keyFile: string): Checked<ServerFiles> {
    const key = JSON.stringify([certFile, keyFile]);
    let loaded = this.servers.get(key);
    if (loaded === undefined) {
      loaded = readServerFiles(certFile, keyFile);
      this.servers.set(key, loaded);
    }
    return loaded;
  }

  caBundle(file: string): Checked<string> {
    let loaded = this.bundles.get(file);
    if (loaded === undefined) {
      loaded = loadCaBundle(file);
      this.bundles.set(file, loaded);
    }
    return loaded;
  }
}
