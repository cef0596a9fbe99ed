/**
 * Certificates for TLS tests, made by the real `openssl` command: a test
 * certificate authority of its own per call, and leaf certificates it signs
 * for the names a test asks for. Files live in a fresh temporary directory.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./oi-process.ts";

export interface IssuedCertificate {
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
}

export interface IssueOptions {
  file?: string;
  keyType?: "ec" | "rsa";
  /** IP addresses the certificate is also for (IP subject alternative names). */
  ips?: string[];
  /** Usable as a client certificate too (extended key usage clientAuth besides serverAuth). */
  clientAuth?: boolean;
}

export interface TestCa {
  dir: string;
  /** The authority's own certificate: what a client trusts (`--cacert`, `-CAfile`, `tls-ca=`). */
  certFile: string;
  certPem: string;
  /** A leaf certificate for `names` (the first is its CN; all are DNS subject alternative names), signed by this authority. */
  issue(names: string[], options?: IssueOptions): IssuedCertificate;
}

function openssl(args: string[], cwd: string): void {
  const result = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`openssl ${args[0]} failed: ${result.stderr.toString()}`);
}

function keyArgs(keyType: "ec" | "rsa"): string[] {
  return keyType === "ec" ? ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] : ["-newkey", "rsa:2048"];
}

/** A new certificate authority in a temporary directory. Needs `openssl` on the PATH. */
export function makeTestCa(name = "oi test CA"): TestCa {
  const dir = tempDir();
  openssl(["req", "-x509", ...keyArgs("ec"), "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", `/CN=${name}`], dir);
  const certFile = join(dir, "ca.pem");
  let serial = 1;
  return {
    dir,
    certFile,
    certPem: readFileSync(certFile, "utf8"),
    issue(names, options = {}) {
      const base = options.file ?? `leaf-${serial}`;
      const extensions = join(dir, `${base}.ext`);
      const san = [...names.map((host) => `DNS:${host}`), ...(options.ips ?? []).map((ip) => `IP:${ip}`)].join(",");
      const usage = options.clientAuth === true ? "serverAuth,clientAuth" : "serverAuth";
      writeFileSync(extensions, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=${usage}\n`);
      const keyFile = join(dir, `${base}.key`);
      const csr = join(dir, `${base}.csr`);
      const certFile = join(dir, `${base}.pem`);
      openssl(["req", "-new", ...keyArgs(options.keyType ?? "ec"), "-nodes", "-keyout", keyFile, "-out", csr, "-subj", `/CN=${names[0] ?? "localhost"}`], dir);
      openssl(
        ["x509", "-req", "-in", csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", String(serial++), "-days", "30", "-extfile", extensions, "-out", certFile],
        dir,
      );
      return { certFile, keyFile, certPem: readFileSync(certFile, "utf8"), keyPem: readFileSync(keyFile, "utf8") };
    },
  };
}
