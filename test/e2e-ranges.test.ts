/**
 * Port ranges end to end, over loopback: a 1:1 range of 1,000 ports, each
 * reaching its own backend port with bytes intact; a many-to-one range; a
 * UDP range; reloads that change another rule or the range itself; a port
 * of a range that cannot be bound; the range as one rule in the metrics and
 * `oi check`, with per-port counts in the status file; and --workers.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cleanUpAfterEachTest, greeter, greeting, oi, oiOnFile, onCleanup, until } from "./helpers/harness.ts";
import { runOi, startOi, tempDir, writeTempFile } from "./helpers/oi-process.ts";
import { connectionRefused, connectPeer, freePort, randomBytes, sha256, watchRefusals } from "./helpers/peers.ts";
import { freeBlock, greetAndEcho, portEchoBackends, portEchoUdpBackends } from "./helpers/port-block.ts";
import { makeTestCa } from "./helpers/certs.ts";
import { tlsTalk } from "./helpers/tls.ts";
import { UdpClient } from "./helpers/udp.ts";

cleanUpAfterEachTest();

/** `count` ports spread over 0..width-1: both ends and some in between. */
function sampleOffsets(width: number, count: number): number[] {
  const offsets = new Set([0, 1, width - 2, width - 1]);
  while (offsets.size < Math.min(count, width)) offsets.add(Math.floor(Math.random() * width));
  return [...offsets];
}

/** Check that 127.0.0.1:`port` reaches the backend on `expected`, with 16 KiB of random bytes echoed intact. */
async function reaches(port: number, expected: number): Promise<void> {
  const payload = randomBytes(16 * 1024);
  const { greeting: said, echoed } = await greetAndEcho(port, payload);
  expect({ port, reached: said }).toEqual({ port, reached: String(expected) });
  expect(sha256(echoed)).toBe(sha256(payload));
}

describe("TCP port ranges", () => {
  test("a range of 1,000 ports: port 8000+i reaches backend port 9000+i, bytes intact both ways", async () => {
    const width = 1000;
    const backendFirst = await freeBlock(width);
    const first = await freeBlock(width, [[backendFirst, width]]);
    portEchoBackends(backendFirst, width);
    await oi(`127.0.0.1 ${first}-${first + width - 1} 127.0.0.1 ${backendFirst}-${backendFirst + width - 1}\n`);
    const offsets = sampleOffsets(width, 40);
    await Promise.all(offsets.map((offset) => reaches(first + offset, backendFirst + offset)));
    // Just past either end nothing listens.
    expect(await connectionRefused(first + width)).toBe(true);
    if (first > 1) expect(await connectionRefused(first - 1)).toBe(true);
  });

  test("many to one: every port of the range reaches the one backend port", async () => {
    const width = 20;
    const backendPort = await freeBlock(1);
    const first = await freeBlock(width, [[backendPort, 1]]);
    portEchoBackends(backendPort, 1);
    await oi(`127.0.0.1 ${first}-${first + width - 1} 127.0.0.1 ${backendPort}\n`);
    for (const offset of [0, 5, width - 1]) await reaches(first + offset, backendPort);
  });

  test("several backends: a range backend keeps the offset, a one-port backend takes every port", async () => {
    const width = 10;
    const rangeBackends = await freeBlock(width);
    const single = await freeBlock(1, [[rangeBackends, width]]);
    const first = await freeBlock(width, [[rangeBackends, width], [single, 1]]);
    portEchoBackends(rangeBackends, width);
    portEchoBackends(single, 1);
    await oi(`127.0.0.1 ${first}-${first + width - 1} 127.0.0.1:${rangeBackends}-${rangeBackends + width - 1},127.0.0.1:${single} [lb=roundrobin]\n`);
    const reached = new Set<string>();
    for (let round = 0; round < 4; round++) {
      const { greeting: said } = await greetAndEcho(first + 3, randomBytes(16));
      reached.add(said);
    }
    expect([...reached].sort()).toEqual([String(rangeBackends + 3), String(single)].sort());
  });

  test("rules chosen by first bytes share a range: each port's client goes to its rule, at its offset", async () => {
    const width = 10;
    const sshBackends = await freeBlock(width);
    const other = await freeBlock(1, [[sshBackends, width]]);
    const first = await freeBlock(width, [[sshBackends, width], [other, 1]]);
    portEchoBackends(sshBackends, width);
    portEchoBackends(other, 1);
    const ports = `${first}-${first + width - 1}`;
    await oi(`127.0.0.1 ${ports} 127.0.0.1 ${sshBackends}-${sshBackends + width - 1} [protocol=ssh]\n127.0.0.1 ${ports} 127.0.0.1 ${other}\n`);
    const ssh = new Uint8Array([...new TextEncoder().encode("SSH-2.0-oi-test\r\n"), ...randomBytes(1000)]);
    const plain = new Uint8Array([0, ...randomBytes(1000)]);
    for (const offset of [0, 4, width - 1]) {
      const viaSsh = await greetAndEcho(first + offset, ssh);
      expect(viaSsh.greeting).toBe(String(sshBackends + offset));
      expect(sha256(viaSsh.echoed)).toBe(sha256(ssh));
      const viaDefault = await greetAndEcho(first + offset, plain);
      expect(viaDefault.greeting).toBe(String(other));
      expect(sha256(viaDefault.echoed)).toBe(sha256(plain));
    }
  });

  test("TLS termination on a range: the handshake with the rule's certificate, then the backend port at the client's offset", async () => {
    const width = 5;
    const backendFirst = await freeBlock(width);
    const first = await freeBlock(width, [[backendFirst, width]]);
    // Backends that say their port and close.
    for (let port = backendFirst; port < backendFirst + width; port++) {
      const listener = Bun.listen({ hostname: "127.0.0.1", port, socket: { open: (socket) => void socket.end(`${port}`), data() {} } });
      onCleanup(() => listener.stop(true));
    }
    const ca = makeTestCa();
    const leaf = ca.issue(["t.test"]);
    await oi(`127.0.0.1 ${first}-${first + width - 1} 127.0.0.1 ${backendFirst}-${backendFirst + width - 1} [tls-cert=${leaf.certFile},tls-key=${leaf.keyFile}]\n`);
    for (const offset of [0, 3]) {
      const talk = await tlsTalk(first + offset, "t.test", ca.certPem);
      expect({ subject: talk.subject, text: talk.text }).toEqual({ subject: "t.test", text: String(backendFirst + offset) });
    }
  });

  test("a range of 10,000 ports starts and serves both ends", async () => {
    const width = 10_000;
    const hard = Number((await new Response(Bun.spawn(["sh", "-c", "ulimit -Hn"]).stdout).text()).trim());
    if (!(hard >= width + 200)) {
      console.warn(`skipped: the hard descriptor limit (${hard}) is below the ${width + 200} a 10,000-port range needs`);
      return;
    }
    const backendPort = await freeBlock(1);
    const first = await freeBlock(width, [[backendPort, 1]]);
    portEchoBackends(backendPort, 1);
    const configPath = writeTempFile("wide.conf", `127.0.0.1 ${first}-${first + width - 1} 127.0.0.1 ${backendPort}\n`);
    const process = await startOi(configPath, [], ["sh", "-c", 'ulimit -n "$(ulimit -Hn)" && exec "$0" "$@"']);
    onCleanup(() => process.stop());
    for (const offset of [0, 5000, width - 1]) await reaches(first + offset, backendPort);
  });

  test("a port of the range that cannot be bound fails the start, naming the line and the port", async () => {
    const width = 10;
    const first = await freeBlock(width);
    const blocker = Bun.listen({ hostname: "127.0.0.1", port: first + 6, socket: { data() {} } });
    onCleanup(() => blocker.stop(true));
    const configPath = writeTempFile("busy-range.conf", `# ranges\n127.0.0.1 ${first}-${first + width - 1} 127.0.0.1 9\n`);
    const run = await runOi(["-c", configPath]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain(`${configPath}:2: cannot listen on 127.0.0.1:${first + 6}/tcp (port ${first + 6} of 127.0.0.1:${first}-${first + width - 1}/tcp)`);
    // All or nothing: the ports it did bind were let go.
    expect(await connectionRefused(first)).toBe(true);
  });
});

describe("UDP port ranges", () => {
  test("datagrams to port 8000+i reach backend port 9000+i and the reply comes back from 8000+i", async () => {
    const width = 50;
    const backendFirst = await freeBlock(width);
    const first = await freeBlock(width, [[backendFirst, width]]);
    await portEchoUdpBackends(backendFirst, width);
    await oi(`127.0.0.1 ${first}-${first + width - 1}/udp 127.0.0.1 ${backendFirst}-${backendFirst + width - 1}/udp\n`);
    for (const offset of sampleOffsets(width, 8)) {
      const client = await UdpClient.open("127.0.0.1", first + offset);
      client.send(`hello ${offset}`);
      await client.waitCount(1, 3000, `a reply through port ${first + offset}`);
      const reply = client.received[0]!;
      expect(new TextDecoder().decode(reply.data)).toBe(`${backendFirst + offset}:hello ${offset}`);
      expect(reply.port).toBe(first + offset);
    }
  });

  test("one client sending to two ports of a UDP range has two sessions, each with its backend port", async () => {
    const width = 4;
    const backendFirst = await freeBlock(width);
    const first = await freeBlock(width, [[backendFirst, width]]);
    await portEchoUdpBackends(backendFirst, width);
    await oi(`127.0.0.1 ${first}-${first + width - 1}/udp 127.0.0.1 ${backendFirst}-${backendFirst + width - 1}/udp\n`);
    const replies: Array<[number, string]> = [];
    const socket = await Bun.udpSocket({
      hostname: "127.0.0.1",
      port: 0,
      binaryType: "uint8array",
      socket: { data: (_socket, data, port) => void replies.push([port, new TextDecoder().decode(data)]) },
    });
    onCleanup(() => socket.close());
    socket.send("a", first, "127.0.0.1");
    socket.send("b", first + 3, "127.0.0.1");
    await until(() => replies.length === 2, 3000, "two replies");
    expect(replies.sort()).toEqual([
      [first, `${backendFirst}:a`],
      [first + 3, `${backendFirst + 3}:b`],
    ]);
  });
});

describe("cross-protocol ranges", () => {
  test("tcptoudp: a TCP client on port 8000+i reaches UDP backend port 9000+i; the log line names both ports", async () => {
    const width = 10;
    const backendFirst = await freeBlock(width);
    const first = await freeBlock(width, [[backendFirst, width]]);
    await portEchoUdpBackends(backendFirst, width);
    const logPath = join(tempDir(), "oi.log");
    await oi(`logfile ${logPath}\nlogjson\n127.0.0.1 ${first}-${first + width - 1}/tcp 127.0.0.1 ${backendFirst}-${backendFirst + width - 1}/udp\n`);
    for (const offset of [0, 6]) {
      const client = await connectPeer("127.0.0.1", first + offset);
      client.keep = [];
      await client.send(`ping ${offset}`);
      const expected = `${backendFirst + offset}:ping ${offset}`;
      await until(() => client.text() === expected, 3000, `the reply through port ${first + offset}`);
      client.socket?.end();
    }
    await until(() => {
      try {
        return readFileSync(logPath, "utf8").trim().split("\n").length === 2;
      } catch {
        return false;
      }
    }, 5000, "two log lines");
    const lines = readFileSync(logPath, "utf8").trim().split("\n").map((line) => JSON.parse(line));
    expect(lines.map((line) => [line.bind_port, line.connect_port]).sort()).toEqual([
      [first, backendFirst],
      [first + 6, backendFirst + 6],
    ]);
    expect(lines.every((line) => line.rule === `127.0.0.1:${first}-${first + width - 1}/tcp`)).toBe(true);
  });
});

describe("reloading a range", () => {
  test("a reload of another rule leaves the range's connections alone; widening and moving the range keeps the ports that stay and their connections", async () => {
    const width = 10;
    const backendFirst = await freeBlock(width + 10);
    const first = await freeBlock(width + 10, [[backendFirst, width + 10]]);
    portEchoBackends(backendFirst, width + 10);
    const [before, after] = [greeter("before"), greeter("after")];
    const otherPort = freePort();
    const range = (from: number, to: number) => `127.0.0.1 ${first + from}-${first + to} 127.0.0.1 ${backendFirst + from}-${backendFirst + to}\n`;
    const configPath = writeTempFile("range-reload.conf", `${range(0, width - 1)}127.0.0.1 ${otherPort} 127.0.0.1 ${before.port}\n`);
    const process = await oiOnFile(configPath);

    // Connections open on ports that stay (2 and 7) and on one that goes (1) across both reloads.
    const open = await Promise.all([1, 2, 7].map((offset) => connectPeer("127.0.0.1", first + offset)));
    for (const peer of open) peer.keep = [];
    await until(() => open.every((peer) => peer.text().endsWith("\n")), 3000, "greetings");

    // Another rule changes: the range is kept as it is.
    writeFileSync(configPath, `${range(0, width - 1)}127.0.0.1 ${otherPort} 127.0.0.1 ${after.port}\n`);
    process.signal("SIGHUP");
    await process.stdout.waitFor("reloaded: 0 listener(s) started, 2 kept, 0 stopped", 5000);
    expect(await greeting(otherPort)).toBe("after");

    // The range moves up by two and widens by five: ports 0 and 1 go, 10..16 come. A port that stays is never closed meanwhile.
    const refusals = watchRefusals(first + 5);
    writeFileSync(configPath, `${range(2, width + 6)}127.0.0.1 ${otherPort} 127.0.0.1 ${after.port}\n`);
    process.signal("SIGHUP");
    await until(() => process.stdout.text.split("reloaded: 0 listener(s) started, 2 kept, 0 stopped").length === 3, 5000, "the second reload");
    await Bun.sleep(100);
    expect(await refusals.stop()).toBe(0);

    // Every connection opened before still carries bytes both ways, the one on a removed port too.
    for (const peer of open) {
      const payload = randomBytes(4096);
      const greetingLength = peer.received;
      await peer.send(payload);
      await until(() => peer.received === greetingLength + payload.length, 3000, "echo");
      expect(sha256(new Uint8Array(Buffer.concat(peer.keep!).subarray(greetingLength)))).toBe(sha256(payload));
    }
    for (const peer of open) peer.socket?.end();

    // New ports work, kept ports work, removed ports refuse.
    await reaches(first + width + 6, backendFirst + width + 6);
    await reaches(first + 10, backendFirst + 10);
    await reaches(first + 2, backendFirst + 2);
    expect(await connectionRefused(first)).toBe(true);
    expect(await connectionRefused(first + 1)).toBe(true);
  });

  test("a reload that widens a range into a busy port changes nothing", async () => {
    const width = 5;
    const backendFirst = await freeBlock(width + 5);
    const first = await freeBlock(width + 5, [[backendFirst, width + 5]]);
    portEchoBackends(backendFirst, width + 5);
    const blocker = Bun.listen({ hostname: "127.0.0.1", port: first + width + 2, socket: { data() {} } });
    onCleanup(() => blocker.stop(true));
    const configPath = writeTempFile("range-busy.conf", `127.0.0.1 ${first}-${first + width - 1} 127.0.0.1 ${backendFirst}-${backendFirst + width - 1}\n`);
    const process = await oiOnFile(configPath);
    writeFileSync(configPath, `127.0.0.1 ${first}-${first + width + 4} 127.0.0.1 ${backendFirst}-${backendFirst + width + 4}\n`);
    process.signal("SIGHUP");
    await process.stderr.waitFor(`${configPath}:1: cannot listen on 127.0.0.1:${first + width + 2}/tcp`, 5000);
    // The ports opened before the busy one were closed again; the running range still serves.
    expect(await connectionRefused(first + width)).toBe(true);
    await reaches(first + width - 1, backendFirst + width - 1);
  });
});

describe("one range, one rule", () => {
  test("metrics have one label set for the range; the status file counts its ports; oi check shows one line", async () => {
    const width = 100;
    const backendFirst = await freeBlock(1);
    const first = await freeBlock(width, [[backendFirst, 1]]);
    portEchoBackends(backendFirst, 1);
    const metricsPort = freePort();
    const statusPath = join(tempDir(), "status.json");
    const config = `metrics 127.0.0.1:${metricsPort}\nstatusfile ${statusPath}\nstatusinterval 1\n127.0.0.1 ${first}-${first + width - 1} 127.0.0.1 ${backendFirst}\n`;
    const configPath = writeTempFile("range-one.conf", config);

    const check = await runOi(["check", "-c", configPath]);
    expect(check.code).toBe(0);
    const ruleLines = check.stdout.split("\n").filter((line) => /^\S+:\d+ /.test(line));
    expect(ruleLines).toEqual([`${configPath}:4  tcp  127.0.0.1:${first}-${first + width - 1} -> 127.0.0.1:${backendFirst}  connect_timeout=10s`]);

    await startOi(configPath).then((process) => onCleanup(() => process.stop()));
    for (const offset of [0, 0, 50, 99]) await reaches(first + offset, backendFirst);
    const held = await connectPeer("127.0.0.1", first + 50);

    const name = `127.0.0.1:${first}-${first + width - 1}/tcp`;
    await until(() => {
      try {
        return JSON.parse(readFileSync(statusPath, "utf8")).rules[0].connections_active === 1;
      } catch {
        return false;
      }
    }, 5000, "the status file");
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const totals = metrics.split("\n").filter((line) => line.startsWith("oi_connections_total{"));
    expect(totals).toEqual([`oi_connections_total{rule="${name}",mode="tcp"} 5`]);

    const status = JSON.parse(readFileSync(statusPath, "utf8"));
    expect(status.rules).toHaveLength(1);
    expect(status.rules[0].name).toBe(name);
    expect(status.rules[0].ports).toEqual([
      { port: first, connections_active: 0, connections_total: 2 },
      { port: first + 50, connections_active: 1, connections_total: 2 },
      { port: first + 99, connections_active: 0, connections_total: 1 },
    ]);
    held.socket?.end();
  });

  test("maxconn counts the whole range", async () => {
    const width = 10;
    const backendFirst = await freeBlock(1);
    const first = await freeBlock(width, [[backendFirst, 1]]);
    portEchoBackends(backendFirst, 1);
    await oi(`127.0.0.1 ${first}-${first + width - 1} 127.0.0.1 ${backendFirst} [maxconn=2]\n`);
    const a = await connectPeer("127.0.0.1", first);
    const b = await connectPeer("127.0.0.1", first + 5);
    for (const peer of [a, b]) peer.keep = [];
    await until(() => a.received > 0 && b.received > 0, 3000, "two admitted");
    const third = await connectPeer("127.0.0.1", first + 9);
    await third.waitClosed(3000);
    expect(third.received).toBe(0);
  });

  test("--workers 2: every worker listens on the range", async () => {
    const width = 20;
    const backendFirst = await freeBlock(width);
    const first = await freeBlock(width, [[backendFirst, width]]);
    portEchoBackends(backendFirst, width);
    await oi(`127.0.0.1 ${first}-${first + width - 1} 127.0.0.1 ${backendFirst}-${backendFirst + width - 1}\n`, ["--workers", "2"]);
    await Promise.all(sampleOffsets(width, 8).map((offset) => reaches(first + offset, backendFirst + offset)));
  });
});
