/**
 * deploy/kubernetes, checked offline: every manifest against the Kubernetes
 * schemas (kubernetes-models' validators and types), the kustomization's
 * resources, the ConfigMap's config as oi loads it, and the promises the
 * README makes about the workloads (probes on the admin server, the grace
 * period longer than --drain-delay + --grace, --watch on a config mounted
 * as a directory, non-root with a read-only root file system, Prometheus
 * annotations), each tied to the config they serve.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { loadConfigText } from "../src/config/load.ts";
import { DEFAULT_TAG, IMAGE_UID } from "../contrib/image/build.ts";
import { loadManifests, MANIFEST_DIR, type Manifest, manifestOf, schemaErrors, typeErrors } from "./helpers/kubernetes.ts";
import { writeTempFile } from "./helpers/oi-process.ts";

const manifests = loadManifests();
const configMap = manifestOf(manifests, "ConfigMap");
const CONFIG_KEY = "oi.yaml";
const TOKEN_PATH = "/etc/oi-admin/admin.token";

/** The ConfigMap's config as oi loads it (its admin-token file swapped for a real one: the Secret is not here). */
function shippedConfig() {
  const text = configMap.data[CONFIG_KEY] as string;
  expect(text).toContain(`admin_token: ${TOKEN_PATH}`);
  const token = writeTempFile("admin.token", "a-token-of-at-least-16-characters\n");
  return loadConfigText(text.replace(TOKEN_PATH, token), CONFIG_KEY);
}

/** The number after `flag` in a container's args. */
function argSeconds(args: string[], flag: string): number {
  const at = args.indexOf(flag);
  expect(at).toBeGreaterThan(-1);
  return Number(args[at + 1]);
}

describe("deploy/kubernetes: schemas", () => {
  test("the files hold a ConfigMap, a Deployment, a DaemonSet and a Service", () => {
    expect(manifests.map(({ file, doc }) => `${file} ${doc.apiVersion} ${doc.kind}`).sort()).toEqual([
      "deploy/kubernetes/configmap.yaml v1 ConfigMap",
      "deploy/kubernetes/daemonset.yaml apps/v1 DaemonSet",
      "deploy/kubernetes/deployment.yaml apps/v1 Deployment",
      "deploy/kubernetes/service.yaml v1 Service",
    ]);
  });

  test("every manifest passes the Kubernetes schema validators (kubernetes-models)", () => {
    expect(schemaErrors(manifests)).toEqual([]);
    // The check can fail: a replica count that is no integer is refused.
    const broken = structuredClone(manifestOf(manifests, "Deployment"));
    broken.spec.replicas = "two";
    expect(schemaErrors([{ file: "broken.yaml", doc: broken }]).join("\n")).toContain("spec/replicas must be integer");
  });

  test("every manifest type-checks as its Kubernetes type: no unknown field, no wrong type (tsc, strict)", async () => {
    const broken: Manifest[] = structuredClone(manifests);
    const deployment = broken.find(({ doc }) => doc.kind === "Deployment")!.doc;
    const container = deployment.spec.template.spec.containers[0];
    container.readinesProbe = container.readinessProbe;
    delete container.readinessProbe;
    // Both in one tsc run: the shipped manifests, and a copy with a misspelt field, which must be refused.
    const errors = await typeErrors([...manifests, { file: "misspelt.yaml", doc: deployment }]);
    expect(errors.filter((line) => !line.startsWith("misspelt.yaml"))).toEqual([]);
    expect(errors.join("\n")).toContain(`misspelt.yaml (Deployment oi): error TS2353: Object literal may only specify known properties, and '"readinesProbe"' does not exist in type 'IContainer'`);
  }, 60_000);

  test("kustomization.yaml lists the ConfigMap, the Deployment and the Service (the DaemonSet is the alternative to the Deployment)", () => {
    const kustomization = Bun.YAML.parse(readFileSync(join(MANIFEST_DIR, "kustomization.yaml"), "utf8")) as { kind: string; resources: string[] };
    expect(kustomization.kind).toBe("Kustomization");
    expect(kustomization.resources).toEqual(["configmap.yaml", "deployment.yaml", "service.yaml"]);
    for (const file of kustomization.resources) expect(existsSync(join(MANIFEST_DIR, file))).toBe(true);
  });
});

describe("deploy/kubernetes: what the manifests promise", () => {
  test("the ConfigMap's config loads cleanly: one TCP rule on port 8080 of every address, the admin server on 9090 with a token", () => {
    const { config, errors, warnings } = shippedConfig();
    expect(errors).toEqual([]);
    expect(warnings).toEqual([]);
    expect(config?.admin?.address).toEqual({ transport: "tcp", host: "0.0.0.0", port: 9090 });
    expect(config?.admin?.tokenFile).toBeDefined();
    expect(config?.rules.map((rule) => `${rule.bind.host}:${rule.bind.port}/${rule.bind.transport}`)).toEqual(["0.0.0.0:8080/tcp"]);
  });

  for (const kind of ["Deployment", "DaemonSet"]) {
    test(`${kind}: probes on the admin server, grace period, --watch on the mounted directory, security context, scrape annotations`, () => {
      const workload = manifestOf(manifests, kind);
      const pod = workload.spec.template;
      const container = pod.spec.containers[0];
      const { config } = shippedConfig();
      const adminPort = config!.admin!.address!.transport === "tcp" ? config!.admin!.address!.port : -1;
      const ports = Object.fromEntries((container.ports as Array<{ name: string; containerPort: number }>).map((port) => [port.name, port.containerPort]));
      expect(ports).toEqual({ forward: config!.rules[0]!.bind.port, admin: adminPort });

      expect(container.image).toBe(DEFAULT_TAG);
      expect(container.args.slice(0, 3)).toEqual(["-c", `/etc/oi/${CONFIG_KEY}`, "--watch"]);
      expect(container.livenessProbe.httpGet).toEqual({ path: "/healthz", port: "admin" });
      expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "admin" });
      // oi ends by itself after --drain-delay + --grace (and a second for the log): before the kubelet's SIGKILL.
      expect(pod.spec.terminationGracePeriodSeconds).toBeGreaterThan(argSeconds(container.args, "--drain-delay") + argSeconds(container.args, "--grace") + 1);
      // The readiness probe sees the 503 within the drain delay.
      expect(container.readinessProbe.periodSeconds * container.readinessProbe.failureThreshold).toBeLessThan(argSeconds(container.args, "--drain-delay"));

      // The ConfigMap as a whole directory (a subPath mount would never see an update), read-only.
      const mounts = Object.fromEntries((container.volumeMounts as Array<{ name: string; mountPath: string; subPath?: string; readOnly: boolean }>).map((mount) => [mount.name, mount]));
      expect(mounts.config).toEqual({ name: "config", mountPath: "/etc/oi", readOnly: true });
      expect(mounts["admin-token"]).toEqual({ name: "admin-token", mountPath: dirname(TOKEN_PATH), readOnly: true });
      const volumes = Object.fromEntries((pod.spec.volumes as Array<{ name: string; [source: string]: unknown }>).map((volume) => [volume.name, volume]));
      expect(volumes.config).toEqual({ name: "config", configMap: { name: configMap.metadata.name } });
      expect(volumes["admin-token"]).toEqual({ name: "admin-token", secret: { secretName: "oi-admin-token" } });

      expect(pod.spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: IMAGE_UID, runAsGroup: IMAGE_UID });
      expect(container.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
      expect(pod.metadata.annotations).toEqual({ "prometheus.io/scrape": "true", "prometheus.io/port": String(adminPort), "prometheus.io/path": "/metrics" });
      expect(pod.metadata.labels).toEqual(workload.spec.selector.matchLabels);
    });
  }

  test("Deployment: two replicas behind the Service; DaemonSet: on the host's network, cluster DNS kept", () => {
    const deployment = manifestOf(manifests, "Deployment");
    expect(deployment.spec.replicas).toBe(2);
    const service = manifestOf(manifests, "Service");
    expect(service.spec.selector).toEqual(deployment.spec.template.metadata.labels);
    expect(service.spec.ports).toEqual([{ name: "forward", port: 8080, targetPort: "forward", protocol: "TCP" }]);
    const daemonSet = manifestOf(manifests, "DaemonSet");
    expect(daemonSet.spec.template.spec.hostNetwork).toBe(true);
    expect(daemonSet.spec.template.spec.dnsPolicy).toBe("ClusterFirstWithHostNet");
    // Not selected by the Deployment's Service: the two are alternatives.
    expect(daemonSet.spec.template.metadata.labels).not.toEqual(service.spec.selector);
  });
});
