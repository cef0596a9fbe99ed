/**
 * `splice on` end to end, beyond the shared TCP suites (e2e-tcp runs those on
 * both paths): that relays really move to the splice worker (each spliced
 * relay holds two pipes, which the plain relay never opens), and that what
 * the relay holds in JS at handoff (a PROXY header to send, bytes that came
 * with the client's header) goes first; then the idle timeout, the shutdown
 * grace period and the byte counts of the log line and the metrics.
 */
import { readdirSync, readlinkSync, writeFileSync } from "node:fs";
import { describe, expect, test } from "bun:test";
import { encodeProxyV1, parseProxyHeader } from "../src/proxy-protocol.ts";
import { backend, cleanUpAfterEachTest, oi, oiOnFile, onCleanup, until } from "./helpers/harness.ts";
import { type OiProcess, writeTempFile } from "./helpers/oi-process.ts";
import { connectPeer, freePort, type Peer, randomBytes, sha256, withTimeout } from "./helpers/peers.ts";

cleanUpAfterEachTest();

const MiB = 1024 * 1024;

/** Pipes the process has open (a spliced relay holds two, that is four descriptors). */
function pipeDescriptors(process: OiProcess): number {
  const dir = `/proc/${process.proc.pid}/fd`;
  let pipes = 0;
  for (const fd of readdirSync(dir)) {
    try {
      if (readlinkSync(`${dir}/${fd}`).startsWith("pipe:")) pipes++;
    } catch {
      // Closed while listing.
    }
  }
  return pipes;
}

/** A backend echoing every chunk back, and closing after the client's FIN. */
function echoBackend() {
  return backend((peer) => {
    peer.onData = (p, chunk) => void p.socket?.write(chunk);
    peer.onEnd = (p) => void p.socket?.end();
  });
}

describe("splice on", () => {
  for (const splice of [true, false]) {
    test(`an open relay holds ${splice ? "four pipe descriptors in the worker" : "no pipe with splice off"}; none once it ends`, async () => {
      const server = echoBackend();
      const port = freePort();
      const forwarder = await oi(`splice ${splice ? "on" : "off"}\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
      const baseline = pipeDescriptors(forwarder);
      const client = await connectPeer("127.0.0.1", port);
      client.keep = [];
      client.socket?.write("ping");
      await until(() => client.received === 4, 5000, "the echo");
      expect(client.text()).toBe("ping");
      expect(pipeDescriptors(forwarder) - baseline).toBe(splice ? 4 : 0);
      client.socket?.end();
      await until(() => pipeDescriptors(forwarder) === baseline, 5000, "the pipes to close");
    });
  }

  test("splice auto: a relay stays plain until it has carried 1 MiB, then moves, its bytes intact both ways", async () => {
    const server = echoBackend();
    const port = freePort();
    const forwarder = await oi(`splice auto\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    const baseline = pipeDescriptors(forwarder);
    const client = await connectPeer("127.0.0.1", port);
    client.keep = [];
    client.socket?.write("ping");
    await until(() => client.received === 4, 5000, "the echo");
    // A small exchange: no pipe, no handoff.
    expect(pipeDescriptors(forwarder) - baseline).toBe(0);

    // The first bulk read starts the splice worker; a read after it is up moves the relay.
    const echoed = new Bun.CryptoHasher("sha256").update("ping");
    let expected = 4;
    for (let round = 0; round < 20 && pipeDescriptors(forwarder) - baseline === 0; round++) {
      const payload = randomBytes(2 * MiB);
      echoed.update(payload);
      expected += payload.length;
      await client.send(payload, false);
      await until(() => client.received === expected, 20000, "the echo");
    }
    expect(pipeDescriptors(forwarder) - baseline).toBe(4);
    // One more round through the worker, then every byte echoed is checked.
    const last = randomBytes(2 * MiB);
    echoed.update(last);
    expected += last.length;
    await client.send(last, false);
    await until(() => client.received === expected, 20000, "the echo through the worker");
    expect(client.digest()).toBe(echoed.digest("hex"));
    client.socket?.end();
    await until(() => pipeDescriptors(forwarder) === baseline, 5000, "the pipes to close");
  });

  test("a reload turns splicing on for new relays and off again; relays keep the path they have", async () => {
    const server = echoBackend();
    const port = freePort();
    const rule = `127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`;
    const configPath = writeTempFile("splice-reload.conf", `splice off\n${rule}`);
    const forwarder = await oiOnFile(configPath);
    const baseline = pipeDescriptors(forwarder);
    const echoOnce = async (client: Peer, text: string, total: number) => {
      client.socket?.write(text);
      await until(() => client.received === total, 5000, "the echo");
    };

    const plain = await connectPeer("127.0.0.1", port);
    plain.keep = [];
    await echoOnce(plain, "one", 3);
    expect(pipeDescriptors(forwarder) - baseline).toBe(0);

    writeFileSync(configPath, `splice on\n${rule}`);
    forwarder.signal("SIGHUP");
    await forwarder.stdout.waitFor("reloaded: 0 listener(s) started, 1 kept, 0 stopped; 1 connection(s) open", 5000);
    const spliced = await connectPeer("127.0.0.1", port);
    spliced.keep = [];
    await echoOnce(spliced, "two", 3);
    await until(() => pipeDescriptors(forwarder) - baseline === 4, 5000, "the new relay's pipes");

    writeFileSync(configPath, `splice off\n${rule}`);
    forwarder.signal("SIGHUP");
    await forwarder.stdout.waitFor("reloaded: 0 listener(s) started, 1 kept, 0 stopped; 2 connection(s) open", 5000);
    const plainAgain = await connectPeer("127.0.0.1", port);
    plainAgain.keep = [];
    await echoOnce(plainAgain, "three", 5);
    // Only the relay made under `splice on` holds pipes; all three still echo.
    expect(pipeDescriptors(forwarder) - baseline).toBe(4);
    await echoOnce(plain, "!", 4);
    await echoOnce(spliced, "!", 4);
    expect([plain.text(), spliced.text(), plainAgain.text()]).toEqual(["one!", "two!", "three"]);
  });

  test("bytes held at handoff go first: the PROXY header to the backend, then what came with the client's header", async () => {
    const server = backend((peer) => {
      peer.keep = [];
      peer.onEnd = (p) => void p.send(sha256(new Uint8Array(Buffer.concat(p.keep ?? []))), true);
    });
    const port = freePort();
    const forwarder = await oi(`splice on\n127.0.0.1 ${port} 127.0.0.1 ${server.port} [accept_proxy,proxy=v1]\n`);
    const baseline = pipeDescriptors(forwarder);

    const client = await connectPeer("127.0.0.1", port);
    client.keep = [];
    const incoming = encodeProxyV1({ address: "192.0.2.7", port: 4242 }, { address: "198.51.100.1", port: 80 });
    const early = new TextEncoder().encode("early bytes, in the header's segment");
    await client.send(new Uint8Array([...incoming, ...early]));
    const far = await server.nextConnection();
    await until(() => far.received > 0, 5000, "the first bytes at the backend");
    await until(() => pipeDescriptors(forwarder) - baseline === 4, 5000, "the handoff");

    const rest = randomBytes(4 * MiB);
    await client.send(rest, true);
    await client.waitClosed(20000);

    const all = new Uint8Array(Buffer.concat(far.keep ?? []));
    const header = parseProxyHeader(all);
    if (header.status !== "ok") throw new Error(`no PROXY header at the backend (${header.status})`);
    expect(header.source?.address).toBe("192.0.2.7");
    const body = all.subarray(header.headerLength);
    expect(body.length).toBe(early.length + rest.length);
    expect(sha256(body)).toBe(sha256(new Uint8Array([...early, ...rest])));
    expect(client.text()).toBe(sha256(all));
  });

  test("[idle=S] resets a silent spliced relay and spares one that keeps talking", async () => {
    const server = echoBackend();
    const port = freePort();
    const forwarder = await oi(`splice on\n127.0.0.1 ${port} 127.0.0.1 ${server.port} [idle=0.6]\n`, ["-v"]);
    const silent = await connectPeer("127.0.0.1", port);
    const chatty = await connectPeer("127.0.0.1", port);
    silent.socket?.write("once");
    await until(() => silent.received === 4, 5000, "the echo");
    const started = Date.now();
    const talking = setInterval(() => chatty.socket?.write("ping"), 150);
    onCleanup(() => clearInterval(talking));
    await silent.waitClosed(5000);
    const silentFor = Date.now() - started;
    expect(silentFor).toBeGreaterThanOrEqual(500);
    expect(silentFor).toBeLessThan(2500);
    expect(silent.closeError).toBeDefined();
    await forwarder.stdout.waitFor(/timeout in=4 out=4/, 3000);
    await Bun.sleep(800);
    expect(chatty.closed).toBe(false);
    expect(chatty.received).toBeGreaterThan(8);
  });

  test("the log line and the metrics count a spliced relay's bytes, while it is open and at its end", async () => {
    const up = randomBytes(MiB + 17);
    const down = randomBytes(3 * MiB + 5);
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    const server = backend((peer) => {
      // Answer after the client's FIN, and hold the connection open until the test has read the metrics.
      peer.onEnd = (p) => void released.then(() => p.send(down, true));
    });
    const [port, metricsPort] = [freePort(), freePort()];
    const forwarder = await oi(`splice on\nmetrics 127.0.0.1:${metricsPort}\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`, ["-v"]);
    const client = await connectPeer("127.0.0.1", port);
    await client.send(up, true);
    const far = await server.nextConnection();
    await far.waitEnd(10000);

    const metric = async (): Promise<string> => (await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
    expect(await metric()).toMatch(new RegExp(`oi_bytes_total\\{[^}]*direction="in"[^}]*\\} ${up.length}\\b`));

    release();
    await client.waitClosed(10000);
    expect(client.received).toBe(down.length);
    expect(client.digest()).toBe(sha256(down));
    await forwarder.stdout.waitFor(new RegExp(`done in=${up.length} out=${down.length}`), 5000);
    expect(await metric()).toMatch(new RegExp(`oi_bytes_total\\{[^}]*direction="out"[^}]*\\} ${down.length}\\b`));
  });

  test("shutdown: a quiet spliced relay is closed with FINs at once, busy ones finish within the grace period, those still busy at its end are reset, and oi exits 0", async () => {
    const payload = randomBytes(8 * MiB);
    const server = backend((peer) => {
      peer.onEnd = (p) => void p.send(p.digest(), true);
    });
    // Sends a byte every 50 ms for as long as the connection lasts: never quiet.
    const trickle = backend((peer) => {
      const timer = setInterval(() => (peer.closed ? clearInterval(timer) : peer.socket?.write("t")), 50);
      onCleanup(() => clearInterval(timer));
    });
    const [port, tricklePort] = [freePort(), freePort()];
    const forwarder = await oi(`splice on\n127.0.0.1 ${port} 127.0.0.1 ${server.port}\n127.0.0.1 ${tricklePort} 127.0.0.1 ${trickle.port}\n`, ["--grace", "2"]);
    const idle = await connectPeer("127.0.0.1", port);
    const busy = await connectPeer("127.0.0.1", port);
    busy.keep = [];
    const endless = await connectPeer("127.0.0.1", tricklePort);
    await until(() => server.connections.length === 2 && endless.received > 0, 5000, "all three connections at their backends");

    const signalled = Date.now();
    forwarder.signal("SIGTERM");
    await forwarder.stdout.waitFor("stopped accepting", 3000);
    await busy.send(payload, true);
    await busy.waitClosed(10000);
    expect(busy.text()).toBe(sha256(payload));

    // The idle one: FIN, no reset, well before the grace period ends.
    await idle.waitEnd(3000);
    expect(idle.closeError).toBeUndefined();
    expect(Date.now() - signalled).toBeLessThan(1900);

    // The endless one: reset when the grace period is over.
    expect(await withTimeout(forwarder.proc.exited, 5000, "exit")).toBe(0);
    await endless.waitClosed(3000);
    expect(endless.closeError).toBeDefined();
    expect(Date.now() - signalled).toBeGreaterThanOrEqual(1900);
    expect(Date.now() - signalled).toBeLessThan(5000);
  });
});
