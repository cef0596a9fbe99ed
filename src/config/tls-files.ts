/**
 * @module The files TLS settings name, read at each load of the config (so a
 * reload picks up a rotated certificate): a rule's certificate and key for
 * termination, and the authorities a backend's certificate is checked
 * against for origination. A file that cannot be read, is not PEM, or a key
 * that does not belong to its certificate is an error on the rule's line.
 * Backends without TLS settings of their own take their rule's here.
 */
import { TlsFiles } from "../tls/certificates.ts";
import type { ConfigIssue, ForwardRule, TlsClientSettings } from "../types.ts";
import type { RuleLabel } from "./validate.ts";

/** Give each backend its rule's `tls-connect` unless it has its own. */
export function inheritBackendTls(rules: ForwardRule[]): void {
  for (const rule of rules) {
    if (rule.tlsConnect === undefined) continue;
    for (const backend of rule.backends) backend.tls ??= rule.tlsConnect;
  }
}

/** Read and check every certificate, key and CA file the rules name, into their settings; the problems found. */
export function loadTlsFiles(rules: ForwardRule[], label: RuleLabel): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  // One read per file and load, however many rules name it.
  const files = new TlsFiles();
  for (const rule of rules) {
    const report = (reason: string) => issues.push({ file: rule.at.file, line: rule.at.line, reason: label(rule) + reason });
    const tls = rule.tls;
    if (tls !== undefined && tls.certFile !== "" && tls.keyFile !== "") {
      const pair = files.server(tls.certFile, tls.keyFile);
      if (pair.ok) {
        tls.certPem = pair.value.cert;
        tls.keyPem = pair.value.key;
      } else {
        report(pair.reason);
      }
    }
    const seen = new Set<TlsClientSettings>();
    for (const backend of rule.backends) {
      const settings = backend.tls;
      if (settings === undefined || settings.caFile === undefined || seen.has(settings)) continue;
      seen.add(settings);
      const bundle = files.caBundle(settings.caFile);
      if (bundle.ok) settings.caPem = bundle.value;
      else report(bundle.reason);
    }
  }
  return issues;
}
