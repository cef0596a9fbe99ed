/**
 * @module The files TLS settings name, read at each load of the config (so a
 * reload picks up a rotated certificate): a rule's certificate and key for
 * termination, and the authorities a backend's certificate is checked
 * against for origination. A file that cannot be read, is not PEM, or a key
 * that does not belong to its certificate is an error on the rule's line.
 * Backends without TLS settings of their own take their rule's here.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { ConfigIssue, ForwardRule, TlsClientSettings } from "../types.ts";
import type { RuleLabel } from "./validate.ts";

/** Give each backend its rule's `tls-connect` unless it has its own. */
export function inheritBackendTls(rules: ForwardRule[]): void {
  for (const rule of rules) {
    if (rule.tlsConnect === undefined) continue;
    for (const backend of rule.backends) backend.tls ??= rule.tlsConnect;
  }
}

/** Read every certificate, key and CA file the rules name into their settings; the problems found. */
export function loadTlsFiles(rules: ForwardRule[], label: RuleLabel): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  // One read per file and load, however many rules name it.
  const cache = new Map<string, string | { error: string }>();
  const read = (path: string, what: "certificate" | "private key" | "CA certificates") => {
    const key = `${what}\0${path}`;
    let text = cache.get(key);
    if (text === undefined) {
      text = readPemFile(path, what);
      cache.set(key, text);
    }
    return text;
  };
  for (const rule of rules) {
    const report = (reason: string) => issues.push({ file: rule.at.file, line: rule.at.line, reason: label(rule) + reason });
    const tls = rule.tls;
    if (tls !== undefined && tls.certFile !== "" && tls.keyFile !== "") {
      const cert = read(tls.certFile, "certificate");
      const key = read(tls.keyFile, "private key");
      if (typeof cert !== "string") report(`tls-cert ${tls.certFile}: ${cert.error}`);
      if (typeof key !== "string") report(`tls-key ${tls.keyFile}: ${key.error}`);
      if (typeof cert === "string" && typeof key === "string") {
        const mismatch = checkCertificatePair(cert, key);
        if (mismatch !== undefined) report(`tls-key ${tls.keyFile} ${mismatch} (tls-cert ${tls.certFile})`);
        tls.certPem = cert;
        tls.keyPem = key;
      }
    }
    const seen = new Set<TlsClientSettings>();
    for (const backend of rule.backends) {
      const settings = backend.tls;
      if (settings === undefined || settings.caFile === undefined || seen.has(settings)) continue;
      seen.add(settings);
      const ca = read(settings.caFile, "CA certificates");
      if (typeof ca === "string") settings.caPem = ca;
      else report(`tls-ca ${settings.caFile}: ${ca.error}`);
    }
  }
  return issues;
}

const PEM_BEGIN: Record<string, RegExp> = {
  certificate: /-----BEGIN CERTIFICATE-----/,
  "private key": /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/,
  "CA certificates": /-----BEGIN CERTIFICATE-----/,
};

/** The PEM text of a file, or why it is not usable as `what`. */
function readPemFile(path: string, what: "certificate" | "private key" | "CA certificates"): string | { error: string } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = error instanceof Error && "code" in error ? String(error.code) : "";
    return { error: code === "ENOENT" ? "no such file" : code === "EACCES" ? "permission denied" : `cannot read: ${String(error)}` };
  }
  if (!PEM_BEGIN[what]!.test(text)) return { error: `not a PEM ${what} (no BEGIN line)` };
  if (what === "private key" && /ENCRYPTED/.test(text)) return { error: "the key is encrypted (oi reads keys without a passphrase)" };
  try {
    if (what === "private key") createPrivateKey(text);
    else new X509Certificate(text);
  } catch (error) {
    return { error: `not a valid ${what}: ${error instanceof Error ? error.message : String(error)}` };
  }
  return text;
}

/** Why `keyPem` is not the key of the first certificate of `certPem`, or undefined when it is. */
function checkCertificatePair(certPem: string, keyPem: string): string | undefined {
  try {
    return new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem)) ? undefined : "does not match the certificate";
  } catch (error) {
    return `cannot be checked against the certificate: ${error instanceof Error ? error.message : String(error)}`;
  }
}
