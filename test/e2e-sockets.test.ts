/**
 * The `sockets` setting on a running oi: with direct sockets (the default
 * here) TCP listeners are watched by oi's own epoll set, which has Bun's
 * epoll nested in it; with `sockets bun` there is no such set. While direct
 * sockets run, what Bun serves (a UDP rule, the metrics endpoint, timers)
 * still answers promptly; a reload that changes the setting moves new
 * listeners only; legs of either kind relay together (a direct client to a
 * backend on a unix socket, which Bun serves). Byte integrity, half-close,
 * resets, backpressure and limits on both layers are in e2e-tcp.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startBlackhole } from "./helpers/blackhole.ts";
import { cleanUpAfterEachTest, greeter, greeting, oi, oiOnFile, onCleanup, unixBackend, until } from "./helpers/harness.ts";
import { type OiProcess, tempDir, writeTempFile } from "./helpers/oi-process.ts";
import { connectPeer, freePort } from "./helpers/peers.ts";
import { freeUdpPort, startUdpBackend, UdpClient } from "./helpers/udp.ts";

cleanUpAfterEachTest();

/** A process's eventpoll descriptors and what each watches (their descriptor numbers, from /proc/PID/fdinfo). */
function epollSets(pid: number): Map<number, Set<number>> {
  const sets = new Map<number, Set<number>>();
  for (const name of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${name}`) !== "anon_inode:[eventpoll]") continue;
      const watched = [...readFileSync(`/proc/${pid}/fdinfo/${name}`, "utf8").matchAll(/^tfd:\s+(\d+)\s/gm)].map((match) => Number(match[1]));
      sets.set(Number(name), new Set(watched));
    } catch {
      // Closed while listing.
    }
  }
  return sets;
}

/** The descriptor of the socket listening on 127.0.0.1:`port` in process `pid` (matched by inode via /proc/net/tcp). */
function listenerFd(pid: number, port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  const line = readFileSync(`/proc/${pid}/net/tcp`, "utf8")
    .split("\n")
    .find((row) => row.includes(`:${hexPort} 00000000:0000 0A `));
  const inode = line?.trim().split(/\s+/)[9];
  if (inode === undefined) throw new Error(`no listener on port ${port}`);
  for (const name of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${name}`) === `socket:[${inode}]`) return Number(name);
    } catch {
      // Closed while listing.
    }
  }
  throw new Error(`no descriptor for the listener on port ${port}`);
}

/** Which loop watches the listener on `port`: oi's own set (the one with another epoll nested in it), or Bun's. */
function loopOf(process: OiProcess, port: number): "direct" | "bun" {
  const sets = epollSets(process.proc.pid);
  const fd = listenerFd(process.proc.pid, port);
  const ours = [...sets.entries()].find(([, watched]) => [...watched].some((other) => sets.has(other)));
  if (ours !== undefined && ours[1].has(fd)) return "direct";
  if ([...sets.values()].some((watched) => watched.has(fd))) return "bun";
  throw new Error(`the listener on port ${port} is in no epoll set`);
}

describe("sockets", () => {
  test("by default TCP rules listen on direct sockets, in oi's own epoll set with Bun's nested in it; `sockets bun` leaves them to Bun", async () => {
    const server = greeter("hello");
    const [direct, bun] = [freePort(), freePort()];
    const onDirect = await oi(`127.0.0.1 ${direct} 127.0.0.1 ${server.port}\n`);
    const onBun = await oi(`sockets bun\n127.0.0.1 ${bun} 127.0.0.1 ${server.port}\n`);
    expect(loopOf(onDirect, direct)).toBe("direct");
    expect(loopOf(onBun, bun)).toBe("bun");
    expect(await greeting(direct)).toBe("hello");
    expect(await greeting(bun)).toBe("hello");
  });

  test("while direct sockets wait, what Bun serves answers at once: UDP round trips and the metrics endpoint", async () => {
    const tcpServer = greeter("tcp");
    const udpServer = await startUdpBackend();
    const [tcpPort, udpPort, metricsPort] = [freePort(), await freeUdpPort(), freePort()];
    const process = await oi(
      `metrics 127.0.0.1:${metricsPort}\n127.0.0.1 ${tcpPort} 127.0.0.1 ${tcpServer.port}\n127.0.0.1 ${udpPort}/udp 127.0.0.1 ${udpServer.port}/udp\n`,
    );
    expect(loopOf(process, tcpPort)).toBe("direct");
    const client = await UdpClient.open("127.0.0.1", udpPort);
    // Each round trip well under the direct loop's longest wait (25 ms): Bun's events wake it.
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      await Bun.sleep(30);
      const started = performance.now();
      client.send(`ping ${i}`);
      await client.waitCount(i + 1, 2000);
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    expect(times[Math.floor(times.length / 2)]!).toBeLessThan(10);
    const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(2000) });
    expect(metrics.status).toBe(200);
    expect(await greeting(tcpPort)).toBe("tcp");
  });

  test("a reload that changes the setting: the kept listener stays on its sockets, a new one opens on the new ones; both forward", async () => {
    const server = greeter("kept");
    const [kept, added] = [freePort(), freePort()];
    const path = writeTempFile("sockets.conf", `sockets bun\n127.0.0.1 ${kept} 127.0.0.1 ${server.port}\n`);
    const process = await oiOnFile(path);
    expect(loopOf(process, kept)).toBe("bun");
    writeFileSync(path, `sockets direct\n127.0.0.1 ${kept} 127.0.0.1 ${server.port}\n127.0.0.1 ${added} 127.0.0.1 ${server.port}\n`);
    process.signal("SIGHUP");
    await process.stdout.waitFor("reloaded", 5000);
    expect(loopOf(process, kept)).toBe("bun");
    expect(loopOf(process, added)).toBe("direct");
    expect([await greeting(kept), await greeting(added)]).toEqual(["kept", "kept"]);
  });

  test("a direct client leg relays with a backend leg on a unix socket (Bun's): bytes both ways, half-close", async () => {
    const path = join(tempDir(), "backend.sock");
    unixBackend(path, (peer) => {
      peer.keep = [];
      peer.onEnd = (p) => void p.send(`unix got ${p.text()}`, true);
    });
    const port = freePort();
    const process = await oi(`127.0.0.1 ${port} unix:${path}\n`);
    expect(loopOf(process, port)).toBe("direct");
    const client = await connectPeer("127.0.0.1", port);
    client.keep = [];
    await client.send("over two layers", true);
    await client.waitEnd(5000);
    expect(client.text()).toBe("unix got over two layers");
  });

  test("listen-backlog (rinetd-uv's) sets the backlog of direct listeners (4096 without it); Bun's sockets keep their 512 and oi says so", async () => {
    const server = greeter("q");
    const [asked, plain, onBun] = [freePort(), freePort(), freePort()];
    const somaxconn = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8"));
    /** The backlog the kernel shows for a listener (ss's Send-Q column). */
    const backlog = (port: number) => Number(Bun.spawnSync(["ss", "-ltnH", `sport = :${port}`]).stdout.toString().trim().split(/\s+/)[2]);
    await oi(`listen-backlog 77\n127.0.0.1 ${asked} 127.0.0.1 ${server.port}\n`);
    await oi(`127.0.0.1 ${plain} 127.0.0.1 ${server.port}\n`);
    const bun = await oi(`sockets bun\nlisten-backlog 77\n127.0.0.1 ${onBun} 127.0.0.1 ${server.port}\n`);
    expect(backlog(asked)).toBe(77);
    expect(backlog(plain)).toBe(Math.min(4096, somaxconn));
    expect(backlog(onBun)).toBe(Math.min(512, somaxconn));
    expect(bun.stderr.text).toContain("listen-backlog 77 has no effect on Bun's sockets");
    expect(await greeting(asked)).toBe("q");
  });

  test("a connect given up at connect_timeout is abandoned on direct sockets (its socket closed at once); Bun's keep theirs until the kernel gives up", async () => {
    const hole = await startBlackhole();
    onCleanup(() => hole.close());
    /** Sockets the process has open that are connecting to the blackhole (SYN_SENT, state 02, to its port). */
    const connecting = (process: OiProcess) => {
      const inodes = new Set(
        readFileSync(`/proc/${process.proc.pid}/net/tcp`, "utf8")
          .split("\n")
          .filter((row) => row.includes(`:${hole.port.toString(16).toUpperCase().padStart(4, "0")} 02 `))
          .map((row) => row.trim().split(/\s+/)[9]),
      );
      return readdirSync(`/proc/${process.proc.pid}/fd`).filter((fd) => {
        try {
          return inodes.has(/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${process.proc.pid}/fd/${fd}`))?.[1]);
        } catch {
          return false;
        }
      }).length;
    };
    for (const [sockets, leftOpen] of [["direct", 0], ["bun", 1]] as const) {
      const port = freePort();
      const process = await oi(`sockets ${sockets}\n127.0.0.1 ${port} 127.0.0.1 ${hole.port} [connect_timeout=1]\n`);
      const client = await connectPeer("127.0.0.1", port);
      await until(() => connecting(process) === 1, 2000, "the connect in flight");
      await client.waitClosed(5000);
      await Bun.sleep(200);
      expect(connecting(process)).toBe(leftOpen);
    }
  });
});
