/**
 * deploy/kubernetes run for real with `podman kube play` and the image built
 * from this checkout: the Deployment, and the DaemonSet's pod, each
 * forwarding through its pod, answering its probes and Prometheus, and
 * stopping as the kubelet stops it (SIGTERM: --drain-delay, then exit 0).
 *
 * podman 4.3 is no cluster, so each run uses a test variant of the shipped
 * manifests, changed only where podman cannot follow them (the rest, args,
 * probes, security context, grace period, mounts, is played as shipped):
 * - the pods use the host's network, on loopback ports of their own (no
 *   Service, no pod network here), and so one replica, as two on one
 *   network namespace would want the same port; podman turns containerPorts
 *   into port mappings, which it refuses on the host's network, so they go,
 *   and the probes name the admin port by number;
 * - the admin token comes from a ConfigMap: podman 4.3 knows no Secret
 *   documents, and a Deployment's secret volume crashes it;
 * - the DaemonSet's pod template is played as a Pod: podman 4.3 plays Pods,
 *   Deployments and PersistentVolumeClaims only.
 * podman turns the HTTP probes into healthchecks that would run curl inside
 * the container (the image has none) on systemd timers (none here): they
 * never run, so the probes are asked here, as the kubelet would.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { engine, engineMissing, engineRun, removeTestImage, testImage, uniqueName } from "./helpers/container.ts";
import { backend, cleanUpAfterEachTest, onCleanup } from "./helpers/harness.ts";
import { loadManifests, manifestOf } from "./helpers/kubernetes.ts";
import { tempDir } from "./helpers/oi-process.ts";
import { freeBlock } from "./helpers/port-block.ts";
import { connectPeer, randomBytes, sha256, withTimeout } from "./helpers/peers.ts";
import { missingTools, testName } from "./helpers/servers.ts";

cleanUpAfterEachTest();

const missing =
  engineMissing() ??
  (typeof engine !== "string" && engine.name !== "podman" ? "skipped: podman kube play needs podman, not docker" : undefined) ??
  // podman builds the pods' pause image from catatonit.
  missingTools(["catatonit"]);

const TOKEN = "kube-test-token-0123456789abcdef";

interface Variant {
  /** Every podman object of the run is named after this. */
  name: string;
  image: string;
  port: number;
  adminPort: number;
  backendPort: number;
}

/** The pod spec as podman can play it on this machine (see the top of the file). */
function playablePodSpec(spec: any, variant: Variant): any {
  const copy = structuredClone(spec);
  copy.hostNetwork = true;
  for (const container of copy.containers) {
    container.image = variant.image;
    delete container.ports;
    container.livenessProbe.httpGet.port = variant.adminPort;
    container.readinessProbe.httpGet.port = variant.adminPort;
  }
  copy.volumes = copy.volumes.map((volume: any) =>
    volume.configMap !== undefined
      ? { name: volume.name, configMap: { name: `${variant.name}-config` } }
      : { name: volume.name, configMap: { name: `${variant.name}-token` } },
  );
  return copy;
}

/** The ConfigMap's config with loopback addresses of this test; the rest as shipped. */
function playableConfig(text: string, variant: Variant): string {
  const config = Bun.YAML.parse(text) as { global: Record<string, unknown>; rules: Array<Record<string, unknown>> };
  config.global.admin = `127.0.0.1:${variant.adminPort}`;
  config.rules[0]!.bind = `127.0.0.1:${variant.port}/tcp`;
  config.rules[0]!.connect = `127.0.0.1:${variant.backendPort}`;
  // JSON is YAML: oi reads it as it reads the shipped file.
  return JSON.stringify(config, null, 2);
}

/** The documents to play: the config and token ConfigMaps, then the workload (`kind`'s pod, as a Deployment of one or as a Pod). */
function playable(kind: "Deployment" | "DaemonSet", variant: Variant): object[] {
  const manifests = loadManifests();
  const configMap = manifestOf(manifests, "ConfigMap");
  const workload = manifestOf(manifests, kind);
  const docs: object[] = [
    { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `${variant.name}-config` }, data: { "oi.yaml": playableConfig(configMap.data["oi.yaml"], variant) } },
    { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `${variant.name}-token` }, data: { "admin.token": TOKEN } },
  ];
  const template = workload.spec.template;
  if (kind === "Deployment") {
    docs.push({
      ...workload,
      metadata: { ...workload.metadata, name: variant.name },
      spec: { ...workload.spec, replicas: 1, template: { ...template, spec: playablePodSpec(template.spec, variant) } },
    });
  } else {
    docs.push({ apiVersion: "v1", kind: "Pod", metadata: { ...template.metadata, name: variant.name }, spec: playablePodSpec(template.spec, variant) });
  }
  return docs;
}

/** Poll `url` until it answers `status`, or fail after `ms`. */
async function untilStatus(url: string, status: number, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  let last = "no answer";
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
      if (response.status === status) return;
      last = `${response.status}`;
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
    }
    await Bun.sleep(100);
  }
  throw new Error(`timed out waiting for ${what} (${url} answered ${last})`);
}

async function playAndForward(kind: "Deployment" | "DaemonSet"): Promise<void> {
  const port = await freeBlock(2);
  const server = backend();
  const variant: Variant = { name: uniqueName(kind.toLowerCase()), image: await testImage(), port, adminPort: port + 1, backendPort: server.port };
  const dir = tempDir();
  const file = join(dir, "play.yaml");
  writeFileSync(file, playable(kind, variant).map((doc) => JSON.stringify(doc, null, 2)).join("\n---\n"));
  // As a Deployment, podman names the pod NAME-pod-0; a Pod keeps its name. Containers are POD-CONTAINER.
  const pod = kind === "Deployment" ? `${variant.name}-pod-0` : variant.name;
  const container = `${pod}-oi`;
  onCleanup(async () => {
    await engineRun(["kube", "down", file]);
    // podman keeps a ConfigMap's volume after `kube down`.
    await engineRun(["volume", "rm", "--force", `${variant.name}-config`, `${variant.name}-token`]);
    rmSync(dir, { recursive: true, force: true });
  });

  const played = await engineRun(["kube", "play", file], 120_000);
  expect(played.code).toBe(0);
  const admin = `http://127.0.0.1:${variant.adminPort}`;
  try {
    await untilStatus(`${admin}/readyz`, 200, 30_000, "the pod to be ready");
  } catch (error) {
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${(await engineRun(["logs", container])).stderr}`);
  }
  expect((await fetch(`${admin}/healthz`)).status).toBe(200);
  expect(await (await fetch(`${admin}/metrics`)).text()).toContain("oi_");
  // The API itself asks for the token (from the mounted file).
  expect((await fetch(`${admin}/api/v1/status`)).status).toBe(401);
  expect((await fetch(`${admin}/api/v1/status`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);

  // The security context as played: the image's non-root user, a read-only root, no capability left.
  const secured = await engineRun(["inspect", "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} caps=[{{range .EffectiveCaps}}{{.}} {{end}}]", container]);
  expect(secured.stdout.trim()).toBe("65532:65532 true caps=[]");

  const up = randomBytes(2 << 20);
  const down = randomBytes(2 << 20);
  const client = await connectPeer("127.0.0.1", variant.port);
  const far = await server.nextConnection();
  await Promise.all([client.send(up, true), far.send(down, true)]);
  await Promise.all([client.waitClosed(), far.waitClosed()]);
  expect(far.digest()).toBe(sha256(up));
  expect(client.digest()).toBe(sha256(down));

  // As the kubelet stops a pod: SIGTERM, and SIGKILL only after terminationGracePeriodSeconds (40).
  const stopping = engineRun(["pod", "stop", "--time", "40", pod], 60_000);
  await untilStatus(`${admin}/readyz`, 503, 10_000, "/readyz to say 503 at SIGTERM");
  expect((await withTimeout(stopping, 60_000, "pod stop")).code).toBe(0);
  const exit = await engineRun(["inspect", "--format", "{{.State.ExitCode}}", container]);
  expect(exit.stdout.trim()).toBe("0");
  const log = await engineRun(["logs", container]);
  expect(log.stdout).toContain("watch: reloading when /etc/oi/oi.yaml changes");
  expect(log.stdout).toContain("SIGTERM: not ready (/readyz 503); still accepting for 5s (--drain-delay)");
  expect(log.stdout).toContain("SIGTERM: stopped accepting");
}

describe("deploy/kubernetes with podman kube play", () => {
  beforeAll(async () => {
    if (missing === undefined) await testImage();
  }, 180_000);
  afterAll(() => removeTestImage(), 60_000);

  test(testName("the Deployment: ready, forwards (bytes intact both ways), metrics; pod stop drains and exits 0", missing), async () => {
    if (missing !== undefined) return;
    await playAndForward("Deployment");
  }, 120_000);

  test(testName("the DaemonSet's pod (played as a Pod): the same", missing), async () => {
    if (missing !== undefined) return;
    await playAndForward("DaemonSet");
  }, 120_000);
});
