/**
 * The runtime image `npm run image` builds (contrib/image/build.ts), built
 * here from this checkout's compiled binary and run with podman (or docker):
 * what is in it, forwarding through it with host networking, and SIGTERM
 * (`podman stop`) as Kubernetes sends it: /readyz 503 through the
 * --drain-delay while new connections are still taken, then a transfer in
 * flight finishing within --grace, and exit code 0.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { engineMissing, engineRun, readableDir, removeTestImage, runContainer, testImage, uniqueName } from "./helpers/container.ts";
import { backend, cleanUpAfterEachTest, onCleanup } from "./helpers/harness.ts";
import { freeBlock } from "./helpers/port-block.ts";
import { tempDir } from "./helpers/oi-process.ts";
import { connectionRefused, connectPeer, randomBytes, sha256, withTimeout } from "./helpers/peers.ts";
import { runTool, testName } from "./helpers/servers.ts";
import { IMAGE_UID } from "../contrib/image/build.ts";
import pkg from "../package.json" with { type: "json" };

cleanUpAfterEachTest();

const missing = engineMissing();

describe("container image (npm run image)", () => {
  beforeAll(async () => {
    // One build for the whole file (the binary and the image); a few seconds each.
    if (missing === undefined) await testImage();
  }, 180_000);
  afterAll(() => removeTestImage(), 60_000);

  test(testName("holds the binary, its libraries and loader, passwd, group and the example config, nothing else; runs as a non-root user", missing), async () => {
    if (missing !== undefined) return;
    const tag = await testImage();
    const inspected = await engineRun(["image", "inspect", "--format", "{{json .Config}}", tag]);
    expect(inspected.code).toBe(0);
    const config = JSON.parse(inspected.stdout) as { User: string; Entrypoint: string[]; Cmd: string[] };
    expect(config.User).toBe(`${IMAGE_UID}:${IMAGE_UID}`);
    expect(config.Entrypoint).toEqual(["/oi"]);
    expect(config.Cmd).toEqual(["-c", "/etc/oi/oi.conf"]);

    // The files of the image, read from a container created (not started) from it.
    const name = uniqueName("files");
    expect((await engineRun(["create", "--name", name, tag])).code).toBe(0);
    onCleanup(() => engineRun(["rm", "--force", name]));
    const scratch = tempDir();
    onCleanup(() => rmSync(scratch, { recursive: true, force: true }));
    const archive = join(scratch, "files.tar");
    expect((await engineRun(["export", "--output", archive, name])).code).toBe(0);
    const listed = await runTool(["tar", "-tf", archive]);
    expect(listed.code).toBe(0);
    const files = listed.stdout.split("\n").filter((path) => path !== "" && !path.endsWith("/"));
    // The engine adds its own mount points (/etc/hosts, /etc/resolv.conf, /run/.containerenv...) as empty files: leave those out.
    const own = files.filter((path) => !/^(etc\/(hosts|hostname|resolv\.conf)|run\/|dev\/|proc\/|sys\/|\.)/.test(path)).sort();
    expect(own).toContain("oi");
    expect(own).toContain("lib64/ld-linux-x86-64.so.2");
    expect(own.filter((path) => /\/libc\.so\.6$/.test(path))).toHaveLength(1);
    expect(own.filter((path) => !/^(oi|lib64\/|lib\/|usr\/lib\/)/.test(path))).toEqual(["etc/group", "etc/nsswitch.conf", "etc/oi/oi.conf", "etc/passwd"]);
    // No shell, no tools: only the binary and shared libraries are executable.
    expect(own.some((path) => /(^|\/)(sh|bash|busybox)$/.test(path))).toBe(false);

    const version = await engineRun(["run", "--rm", tag, "--version"]);
    expect(version.stdout.trim()).toBe(pkg.version);
    const checked = await engineRun(["run", "--rm", tag, "check", "--no-resolve"]);
    expect(checked.stderr).toBe("");
    expect(checked.stdout).toContain("/etc/oi/oi.conf:7  tcp  127.0.0.1:8080 -> 127.0.0.1:8000");
    expect(checked.code).toBe(0);
  }, 60_000);

  test(testName("forwards with host networking (bytes intact both ways); podman stop: /readyz 503 and still accepting for --drain-delay, then a transfer in flight completes and the exit code is 0", missing), async () => {
    if (missing !== undefined) return;
    const port = await freeBlock(2);
    const adminPort = port + 1;
    // The backend reads slowly at first, so the second transfer is still running at the stop.
    let slow = false;
    const server = backend((peer) => {
      if (!slow) return;
      peer.socket?.pause();
      setTimeout(() => peer.socket?.resume(), 1500);
    });
    const dir = readableDir({ "oi.conf": `admin 127.0.0.1:${adminPort}\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n` });
    const container = await runContainer(dir, ["-c", "/etc/oi/oi.conf", "--grace", "10", "--drain-delay", "1"]);
    await Promise.race([
      container.stdout.waitFor("1 rule listening", 30_000),
      container.proc.exited.then((code) => {
        throw new Error(`the container exited with ${code} before listening:\n${container.stdout.text}\n${container.stderr.text}`);
      }),
    ]);
    expect(container.stdout.text).toContain("pid 1");
    const readyz = async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status;
    expect(await readyz()).toBe(200);

    // 4 MiB each way through the container, hashed.
    const up = randomBytes(4 << 20);
    const down = randomBytes(4 << 20);
    const client = await connectPeer("127.0.0.1", port);
    const far = await server.nextConnection();
    await Promise.all([client.send(up, true), far.send(down, true)]);
    await Promise.all([client.waitClosed(), far.waitClosed()]);
    expect(far.digest()).toBe(sha256(up));
    expect(client.digest()).toBe(sha256(down));

    // A 16 MiB upload still under way when the container is stopped.
    slow = true;
    const payload = randomBytes(16 << 20);
    const busy = await connectPeer("127.0.0.1", port);
    const uploading = busy.send(payload, true);
    const busyFar = await server.nextConnection();
    const stopping = container.stop(30);
    await container.stdout.waitFor("SIGTERM: not ready (/readyz 503); still accepting for 1s (--drain-delay)", 10_000);
    expect(await readyz()).toBe(503);
    await container.stdout.waitFor(/SIGTERM: stopped accepting; 1 connection\(s\) open, closing quiet ones now, waiting up to 10s for the others/, 10_000);
    expect(await connectionRefused(port)).toBe(true);
    await withTimeout(uploading, 15_000, "the upload through the stopping container");
    await busyFar.waitEnd(15_000);
    expect(busyFar.digest()).toBe(sha256(payload));
    busyFar.socket?.end();
    expect(await withTimeout(stopping, 20_000, "the container's exit")).toBe(0);
    expect(container.stdout.text).not.toContain("grace period over");
  }, 90_000);
});
