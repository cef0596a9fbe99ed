/**
 * rinetd-uv's per-rule options in one bracket, `[timeout=N,src=ADDR,
 * keepalive=on|off,dns-refresh=N,mode=0660]`, and its unix sockets: each
 * shown by its effect on a running `oi`, and by the errors `oi check` gives.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { backend, cleanUpAfterEachTest, oi, onCleanup, until } from "../helpers/harness.ts";
import { tempDir } from "../helpers/oi-process.ts";
import { connectPeer, connectUnix, freePort } from "../helpers/peers.ts";
import { freeUdpPort, startUdpBackend, UdpClient } from "../helpers/udp.ts";
import { check, issuesIn } from "./config-helpers.ts";

cleanUpAfterEachTest();

/** `ss` lines of established TCP sockets matching `filter` (with their timers). */
async function sockets(filter: string): Promise<string> {
  const proc = Bun.spawn(["ss", "-tnoH", "state", "established", filter], { stdout: "pipe" });
  return (await new Response(proc.stdout).text()).trim();
}

describe("per-rule options in one bracket", () => {
  test.skipIf(Bun.which("ss") === null)("[src=,keepalive=on,dns-refresh=] on TCP; [keepalive=off]; [timeout=,src=] on UDP", async () => {
    const server = backend();
    const plain = backend();
    const echo = await startUdpBackend();
    const [kept, unkept, udpPort] = [freePort(), freePort(), await freeUdpPort()];
    await oi(
      [
        `127.0.0.1 ${kept} 127.0.0.1 ${server.port} [src=127.0.0.2,keepalive=on,dns-refresh=30]`,
        `127.0.0.1 ${unkept} 127.0.0.1 ${plain.port} [keepalive=off, dns-refresh=0]`,
        `127.0.0.1 ${udpPort}/udp 127.0.0.1 ${echo.port}/udp [timeout=1,src=127.0.0.3]`,
        "",
      ].join("\n"),
    );
    const [a, b] = [await connectPeer("127.0.0.1", kept), await connectPeer("127.0.0.1", unkept)];
    onCleanup(() => {
      a.socket?.terminate();
      b.socket?.terminate();
    });
    await until(() => server.connections.length === 1 && plain.connections.length === 1, 3000, "both connections");
    // src: the backend sees the connection coming from the address asked for.
    expect(server.connections[0]?.socket?.remoteAddress).toBe("127.0.0.2");
    // keepalive=on: rinetd-uv's 60 s probes on both legs; off: none.
    expect(await sockets(`( sport = :${kept} )`)).toMatch(/timer:\(keepalive,/);
    expect(await sockets(`( sport = :${server.connections[0]?.socket?.remotePort} )`)).toMatch(/timer:\(keepalive,/);
    expect(await sockets(`( sport = :${unkept} )`)).not.toMatch(/keepalive/);

    // UDP: src sets the session socket's address; timeout=1 ends a silent session after a second.
    const client = await UdpClient.open("127.0.0.1", udpPort);
    client.send("one");
    await client.waitCount(1);
    expect(echo.received[0]?.address).toBe("127.0.0.3");
    await Bun.sleep(1600);
    client.send("two");
    await client.waitCount(2);
    expect(echo.sources().length).toBe(2);
  });

  test("option errors: unknown names, bad values, each on its line", async () => {
    const result = await check(
      "options.conf",
      [
        "0.0.0.0 1 10.0.0.1 1 [timeout=0]", // 1
        "0.0.0.0 2 10.0.0.1 1 [src=example.com]", // 2
        "0.0.0.0 3 10.0.0.1 1 [keepalive=sometimes]", // 3
        "0.0.0.0 4 10.0.0.1 1 [dns-refresh=soon]", // 4
        "unix:/tmp/x.sock 10.0.0.1 1 [mode=0999]", // 5
        "0.0.0.0 6 10.0.0.1 1 [colour=blue]", // 6
        "0.0.0.0 7 10.0.0.1 1 [mode=0660]", // 7
        "",
      ].join("\n"),
    );
    expect(result.code).toBe(1);
    expect(issuesIn(result)).toEqual([
      [1, "timeout must be a positive whole number of seconds, got '0'"],
      [2, "source address 'example.com' must be an IP address"],
      [3, "keepalive must be on, off or a whole number of seconds from 1 to 86400, got 'sometimes'"],
      [4, "dns_refresh must be a whole number from 0 to 86400, got 'soon'"],
      [5, "mode must be octal permissions like 0660, got '0999'"],
      [6, expect.stringContaining("unknown option 'colour'") as unknown as string],
      [7, "mode applies to rules listening on a unix socket only"],
    ]);
  });
});

describe("unix sockets", () => {
  test("[mode=0660] on a socket file, removed at shutdown; an abstract socket, where mode has no effect", async () => {
    const server = backend((peer) => void peer.send("via unix", true));
    const path = join(tempDir(), "oi.sock");
    const abstract = `@oi-conformance-${process.pid}-${freePort()}`;
    const proc = await oi(`unix:${path} 127.0.0.1 ${server.port} [mode=0660]\nunix:${abstract} 127.0.0.1 ${server.port} [mode=0600]\n`);
    expect(statSync(path).mode & 0o777).toBe(0o660);
    expect(proc.stderr.text + proc.stdout.text).toContain(`mode has no effect on the abstract socket unix:${abstract}`);
    for (const target of [path, `\0${abstract.slice(1)}`]) {
      const client = await connectUnix(target);
      client.keep = [];
      await client.waitEnd();
      expect(client.text()).toBe("via unix");
      client.socket?.end();
    }
    expect(await proc.stop()).toBe(0);
    expect(existsSync(path)).toBe(false);
  });

  test("UDP to or from a unix socket is a config error", async () => {
    const result = await check("unix-udp.conf", "0.0.0.0 53/udp unix:/run/dns.sock\nunix:/run/in.sock 10.0.0.1 53/udp\n");
    expect(result.code).toBe(1);
    expect(issuesIn(result)).toEqual([
      [1, "UDP cannot be forwarded to a unix socket: unix sockets carry streams (forward TCP to it)"],
      [2, "a unix socket listener forwards streams: its backends must be TCP or unix sockets"],
    ]);
  });
});
