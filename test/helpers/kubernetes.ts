/**
 * The Kubernetes manifests of deploy/kubernetes, read as a cluster would
 * read them, and checked against the Kubernetes schemas offline (no cluster,
 * no kubectl) with the `kubernetes-models` package, in two ways:
 * its validators (types, required fields, formats), and its TypeScript
 * types through tsc, which catch what those validators let through: an
 * unknown field (a misspelt `readinesProbe` would be silently dropped by
 * a cluster that does not validate strictly).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DaemonSet } from "kubernetes-models/apps/v1/DaemonSet";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Service } from "kubernetes-models/v1/Service";

const ROOT = join(import.meta.dir, "..", "..");
export const MANIFEST_DIR = join(ROOT, "deploy", "kubernetes");

/** A manifest as a cluster gets it: the parsed YAML document. */
export interface Manifest {
  /** Its file, relative to the repository. */
  file: string;
  doc: { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [key: string]: any };
}

/** The kinds the manifests use: the model class that validates each, and its TypeScript type. */
const KINDS: Record<string, { model: new (data: any) => { validate(): void }; module: string; type: string }> = {
  "v1/ConfigMap": { model: ConfigMap, module: "kubernetes-models/v1/ConfigMap", type: "IConfigMap" },
  "v1/Service": { model: Service, module: "kubernetes-models/v1/Service", type: "IService" },
  "apps/v1/Deployment": { model: Deployment, module: "kubernetes-models/apps/v1/Deployment", type: "IDeployment" },
  "apps/v1/DaemonSet": { model: DaemonSet, module: "kubernetes-models/apps/v1/DaemonSet", type: "IDaemonSet" },
};

/** Every document of every manifest file (kustomization.yaml, kustomize's own file, left out). */
export function loadManifests(): Manifest[] {
  const manifests: Manifest[] = [];
  for (const name of readdirSync(MANIFEST_DIR).filter((each) => each.endsWith(".yaml") && each !== "kustomization.yaml").sort()) {
    const parsed = Bun.YAML.parse(readFileSync(join(MANIFEST_DIR, name), "utf8"));
    for (const doc of Array.isArray(parsed) ? parsed : [parsed]) manifests.push({ file: `deploy/kubernetes/${name}`, doc });
  }
  return manifests;
}

/** The one manifest of `kind`. */
export function manifestOf(manifests: Manifest[], kind: string): Manifest["doc"] {
  const found = manifests.filter((each) => each.doc.kind === kind);
  if (found.length !== 1) throw new Error(`${found.length} manifests of kind ${kind}`);
  return found[0]!.doc;
}

/** What the schema validators of kubernetes-models refuse, one line per manifest: `FILE (Kind name): reason`. */
export function schemaErrors(manifests: Manifest[]): string[] {
  const errors: string[] = [];
  for (const { file, doc } of manifests) {
    const kind = KINDS[`${doc.apiVersion}/${doc.kind}`];
    const where = `${file} (${doc.kind} ${doc.metadata?.name})`;
    if (kind === undefined) {
      errors.push(`${where}: no schema known for ${doc.apiVersion} ${doc.kind}`);
      continue;
    }
    try {
      new kind.model(doc).validate();
    } catch (error) {
      errors.push(`${where}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return errors;
}

/**
 * What tsc says of each manifest given as an object literal of its
 * kubernetes-models type (strict, excess properties refused): one line per
 * error, `FILE (Kind name): message`. Runs tsc on a generated file in a
 * temporary folder (a few seconds).
 */
export async function typeErrors(manifests: Manifest[]): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), "oi-manifests-"));
  try {
    symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
    const imports = new Set<string>();
    const lines: string[] = [];
    const owners: string[] = [];
    manifests.forEach(({ file, doc }, index) => {
      const kind = KINDS[`${doc.apiVersion}/${doc.kind}`];
      if (kind === undefined) return;
      imports.add(`import type { ${kind.type} } from "${kind.module}";`);
      // One manifest per line, so an error's line number says whose it is.
      owners[lines.length] = `${file} (${doc.kind} ${doc.metadata?.name})`;
      lines.push(`export const manifest${index}: ${kind.type} = ${JSON.stringify(doc)};`);
    });
    const header = [...imports];
    writeFileSync(join(dir, "manifests.ts"), [...header, ...lines, ""].join("\n"));
    const config = { compilerOptions: { strict: true, noEmit: true, skipLibCheck: true, module: "preserve", moduleResolution: "bundler", target: "esnext", types: [] }, files: ["manifests.ts"] };
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify(config));
    const tsc = Bun.spawn([process.execPath, join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", dir, "--pretty", "false"], { cwd: dir, stdout: "pipe", stderr: "pipe" });
    const [out, err] = await Promise.all([new Response(tsc.stdout).text(), new Response(tsc.stderr).text(), tsc.exited]);
    return `${out}${err}`
      .split("\n")
      .filter((line) => line.trim() !== "" && !line.startsWith(" "))
      .map((line) => {
        const at = /^manifests\.ts\((\d+),\d+\): (.*)$/.exec(line);
        if (at === null) return line;
        return `${owners[Number(at[1]) - 1 - header.length] ?? "manifests.ts"}: ${at[2]}`;
      });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
