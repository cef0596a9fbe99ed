/**
 * The PROXY protocol end to end: oi telling a backend who the client is
 * (v1 and v2, IPv4 and IPv6), and oi behind another proxy reading the header
 * it is given (good, bad, missing) and using that address for access control,
 * from the peers `proxy-from` trusts only.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { encodeProxyV1, encodeProxyV2, parseProxyHeader } from "../src/proxy-protocol.ts";
import { writeFileSync } from "node:fs";
import { backend, cleanUpAfterEachTest, oi, oiOnFile, until } from "./helpers/harness.ts";
import { tempDir, writeTempFile } from "./helpers/oi-process.ts";
import { connectExpectingClose, connectPeer, freePort, type Peer, randomBytes, sha256 } from "./helpers/peers.ts";

cleanUpAfterEachTest();

/** A backend that, after the client's FIN, answers with what the PROXY header said and the bytes after it. */
function headerReporter() {
  return backend((peer) => {
    peer.keep = [];
    peer.onEnd = (p) => {
      const all = new Uint8Array(Buffer.concat(p.keep ?? []));
      const header = parseProxyHeader(all);
      const text =
        header.status === "ok"
          ? `v${header.version} ${header.source?.address}:${header.source?.port} -> ${header.destination?.address}:${header.destination?.port} | ${Buffer.from(all.subarray(header.headerLength)).toString()}`
          : `no header (${header.status}) | ${Buffer.from(all).toString()}`;
      void p.send(text, true);
    };
  });
}

async function exchange(client: Peer, payload: Uint8Array | string): Promise<string> {
  client.keep = [];
  await client.send(payload, true);
  await client.waitClosed();
  return client.text();
}

describe("sending a PROXY header to the backend", () => {
  for (const version of ["v1", "v2"] as const) {
    test(`proxy=${version} over IPv4: the backend learns the client's address and port; the data follows intact`, async () => {
      const server = headerReporter();
      const port = freePort();
      await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port} [proxy=${version}]\n`);
      const client = await connectPeer("127.0.0.1", port, "127.0.0.23");
      const localPort = client.socket?.localPort;
      expect(await exchange(client, "hello backend")).toBe(
        `${version} 127.0.0.23:${localPort} -> 127.0.0.1:${port} | hello backend`,
      );
    });

    test(`proxy=${version} over IPv6`, async () => {
      const server = headerReporter();
      const port = freePort("::1");
      await oi(`::1 ${port} 127.0.0.1 ${server.port} [proxy=${version}]\n`);
      const client = await connectPeer("::1", port);
      const localPort = client.socket?.localPort;
      expect(await exchange(client, "six")).toBe(`${version} ::1:${localPort} -> ::1:${port} | six`);
    });
  }
});

describe("accept_proxy: oi behind another proxy", () => {
  test("a v1 header is read and stripped; its address is the client's", async () => {
    const server = headerReporter();
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port} [accept_proxy,proxy=v2]\n`);
    const client = await connectPeer("127.0.0.1", port);
    const header = Buffer.from(encodeProxyV1({ address: "203.0.113.7", port: 4242 }, { address: "198.51.100.1", port: 443 })).toString();
    // The backend gets oi's own v2 header carrying the original client, then exactly the client's bytes.
    expect(await exchange(client, `${header}GET / HTTP/1.0\r\n\r\n`)).toBe(
      "v2 203.0.113.7:4242 -> 198.51.100.1:443 | GET / HTTP/1.0\r\n\r\n",
    );
  });

  test("a v2 header arriving in pieces works too", async () => {
    const server = headerReporter();
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port} [accept_proxy]\n`);
    const client = await connectPeer("127.0.0.1", port);
    client.keep = [];
    const header = encodeProxyV2({ address: "2001:db8::7", port: 5555 }, { address: "2001:db8::1", port: 80 }, "tcp");
    await client.send(header.subarray(0, 10));
    await Bun.sleep(50);
    await client.send(header.subarray(10));
    await client.send("payload", true);
    await client.waitClosed();
    expect(client.text()).toBe("no header (invalid) | payload");
  });

  test("the header's address is what access control sees", async () => {
    const server = headerReporter();
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port} [accept_proxy]\ndeny 203.0.113.*\n`);
    const denied = await connectPeer("127.0.0.1", port);
    const header = encodeProxyV1({ address: "203.0.113.9", port: 1 }, { address: "127.0.0.1", port });
    await denied.send(header);
    await denied.waitClosed(3000);
    expect(denied.received).toBe(0);
    expect(server.connections.length).toBe(0);
  });

  test("a malformed header or none at all closes the connection; the backend never sees it", async () => {
    const server = headerReporter();
    const port = freePort();
    await oi(`127.0.0.1 ${port} 127.0.0.1 ${server.port} [accept_proxy]\n`, ["-v"]);
    const bad = await connectPeer("127.0.0.1", port);
    await bad.send("PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n");
    await bad.waitClosed(3000);
    const none = await connectPeer("127.0.0.1", port);
    await none.send("GET / HTTP/1.1\r\n\r\n");
    await none.waitClosed(3000);
    expect(bad.received + none.received).toBe(0);
    expect(server.connections.length).toBe(0);
    // Silence: closed once the wait for a header is over (5 s).
    expect(await connectExpectingClose("127.0.0.1", port, undefined, 8000)).toBe(0);
  });
});

describe("accept_proxy: many clients on one listener", () => {
  /** What one client of the crowd sends, and what it expects. */
  interface Visitor {
    header: Uint8Array;
    payload: Uint8Array;
    /** The client the header names; undefined for a header oi must refuse. */
    claimed: { address: string; port: number } | undefined;
  }

  /** Client i: a v1 header, a v2 header over IPv4, one over IPv6, or (every fourth) a header oi refuses. */
  function visitor(i: number, port: number): Visitor {
    const payload = randomBytes(1 + ((i * 7919) % (96 * 1024)));
    const ipv4 = { address: `10.${i >> 8}.${i & 255}.${1 + (i % 250)}`, port: 1024 + i };
    const to4 = { address: "127.0.0.1", port };
    switch (i % 4) {
      case 0:
        return { header: encodeProxyV1(ipv4, to4), payload, claimed: ipv4 };
      case 1:
        return { header: encodeProxyV2(ipv4, to4, "tcp"), payload, claimed: ipv4 };
      case 2: {
        const ipv6 = { address: `2001:db8::${i.toString(16)}`, port: 2048 + i };
        return { header: encodeProxyV2(ipv6, { address: "2001:db8::1", port }, "tcp"), payload, claimed: ipv6 };
      }
      default:
        return { header: new TextEncoder().encode(`PROXY TCP4 10.0.0.${i} 999.0.0.1 1 ${port}\r\n`), payload, claimed: undefined };
    }
  }

  for (const { name, directive } of [
    { name: "plain relay", directive: "splice off\n" },
    { name: "splice on", directive: "splice on\n" },
  ]) {
    test(`${name}: 200 clients, 50 at a time, v1 and v2 mixed with refused headers: each served with its own bytes, logged with its header's address`, async () => {
      // The backend answers each connection, after its FIN, with the hash of what it received.
      const server = backend((peer) => {
        peer.onEnd = (p) => void p.send(p.digest(), true);
      });
      const port = freePort();
      const log = join(tempDir(), "proxy.log");
      await oi(`${directive}logfile ${log}\nlogjson\n127.0.0.1 ${port} 127.0.0.1 ${server.port} [accept_proxy]\n`);
      const visitors = Array.from({ length: 200 }, (_, i) => visitor(i, port));

      const outcomes: string[] = [];
      for (let batch = 0; batch < visitors.length; batch += 50) {
        const results = await Promise.all(
          visitors.slice(batch, batch + 50).map(async ({ header, payload, claimed }) => {
            const client = await connectPeer("127.0.0.1", port);
            client.keep = [];
            const whole = new Uint8Array(header.length + payload.length);
            whole.set(header, 0);
            whole.set(payload, header.length);
            await client.send(whole, true);
            await client.waitClosed(10000);
            if (claimed === undefined) return client.received === 0 ? "refused" : `refused client got ${client.received} bytes`;
            return client.text() === sha256(payload) ? "served" : `wrong reply: ${client.text().slice(0, 80)}`;
          }),
        );
        outcomes.push(...results);
      }
      expect(outcomes.filter((outcome) => outcome === "served")).toHaveLength(150);
      expect(outcomes.filter((outcome) => outcome === "refused")).toHaveLength(50);
      // Refused headers never reached the backend.
      expect(server.connections).toHaveLength(150);

      // Every client is in the log under the address its header gave, with its byte count.
      // Whole lines only: the log may be caught in the middle of a write.
      const lines = () => {
        const text = readFileSync(log, "utf8");
        return text.slice(0, text.lastIndexOf("\n") + 1).split("\n").filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
      };
      await until(() => lines().length >= 200, 5000, "200 log lines");
      const logged = lines();
      for (const { claimed, payload } of visitors) {
        if (claimed === undefined) continue;
        const line = logged.find((entry) => entry.client === claimed.address && entry.client_port === claimed.port);
        expect(line).toMatchObject({ result: "done", bytes_in: payload.length, bytes_out: 64 });
      }
      const refusals = logged.filter((entry) => String(entry.result).startsWith("error: bad PROXY header"));
      expect(refusals).toHaveLength(50);
      for (const entry of refusals) expect(entry.client).toBe("127.0.0.1");
    }, 60000);
  }
});

describe("accept_proxy turned on and off by reloads", () => {
  test("open connections carry on through both reloads; each new client follows the rule as it is when it connects", async () => {
    const server = headerReporter();
    const port = freePort();
    const path = writeTempFile("toggle.conf", `127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    const process = await oiOnFile(path);
    const header = Buffer.from(encodeProxyV1({ address: "198.51.100.4", port: 44 }, { address: "127.0.0.1", port })).toString();

    // Open before accept_proxy is on, finished after: a plain relay all along.
    const before = await connectPeer("127.0.0.1", port);
    before.keep = [];
    await before.send("first half, ");
    // oi has accepted it (as a plain relay) before the reload: its backend connection is there.
    await server.nextConnection();
    writeFileSync(path, `127.0.0.1 ${port} 127.0.0.1 ${server.port} [accept_proxy]\n`);
    process.signal("SIGHUP");
    await process.stdout.waitFor("reloaded", 5000);
    const waiting = await connectPeer("127.0.0.1", port);
    waiting.keep = [];
    expect(await exchange(await connectPeer("127.0.0.1", port), `${header}with a header`)).toMatch(/^no header \(\w+\) \| with a header$/);
    await before.send("second half", true);
    await before.waitClosed();
    expect(before.text()).toMatch(/^no header \(\w+\) \| first half, second half$/);

    // Off again, while a client that connected under accept_proxy has not sent its header yet.
    writeFileSync(path, `127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`);
    process.signal("SIGHUP");
    await until(() => (process.stdout.text.match(/reloaded/g) ?? []).length === 2, 5000, "the second reload");
    expect(await exchange(await connectPeer("127.0.0.1", port), "plain again")).toMatch(/^no header \(\w+\) \| plain again$/);
    // The waiting client is still read as it was accepted: its header first.
    await waiting.send(`${header}late header`, true);
    await waiting.waitClosed();
    expect(waiting.text()).toMatch(/^no header \(\w+\) \| late header$/);
  });
});

const forged = (port: number) => encodeProxyV1({ address: "203.0.113.7", port: 4242 }, { address: "127.0.0.1", port });

/**
 * `proxy-from=`: PROXY headers trusted from the networks named only. A peer
 * elsewhere is reset before its header is read (so it cannot put a forged
 * client address into the logs and the access rules), counted and logged;
 * IPv6 peers and IPv4 peers of a dual-stack listener (IPv4-mapped) included.
 */
describe("accept_proxy with proxy-from: headers from trusted networks only", () => {
  test("a trusted peer's header is used; an untrusted peer is reset at once without its header read, counted and logged", async () => {
    const server = headerReporter();
    const [port, metricsPort] = [freePort(), freePort()];
    const log = join(tempDir(), "oi.log");
    const process = await oi(`metrics 127.0.0.1:${metricsPort}\nlogfile ${log}\nlogjson\n127.0.0.1 ${port} 127.0.0.1 ${server.port} [accept_proxy,proxy=v2,proxy-from=127.0.0.2/32|10.0.0.0/8]\n`, ["-v"]);

    const trusted = await connectPeer("127.0.0.1", port, "127.0.0.2");
    expect(await exchange(trusted, Buffer.concat([forged(port), Buffer.from("hello")]))).toBe(`v2 203.0.113.7:4242 -> 127.0.0.1:${port} | hello`);

    // From 127.0.0.3 the same header gets nowhere: the connection is reset before oi reads a byte.
    const untrusted = await connectPeer("127.0.0.1", port, "127.0.0.3");
    untrusted.keep = [];
    const started = Date.now();
    await untrusted.waitClosed(3000);
    // Closed without waiting for a header (the wait for one is 5 s).
    expect(Date.now() - started).toBeLessThan(2000);
    expect(untrusted.received).toBe(0);
    expect(server.connections.length).toBe(1);

    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const rule = `rule="127.0.0.1:${port}/tcp",mode="tcp"`;
    expect(metrics).toContain(`oi_proxy_untrusted_total{${rule}} 1\n`);
    expect(metrics).toContain(`oi_connections_total{${rule}} 1\n`);
    expect(metrics).toContain(`oi_denied_total{${rule}} 0\n`);
    await process.stdout.waitFor(new RegExp(`127\\.0\\.0\\.3:\\d+ -> 127\\.0\\.0\\.1:${port}/tcp refused: PROXY header from a source not in proxy-from`), 3000);
    // The log file has the peer's own address, never the header's.
    await until(() => readFileSync(log, "utf8").includes("proxy-from"), 3000, "the refusal in the log file");
    const refused = readFileSync(log, "utf8").split("\n").filter((line) => line.includes("proxy-from"));
    expect(refused.length).toBe(1);
    expect(JSON.parse(refused[0]!)).toMatchObject({ client: "127.0.0.3", result: "error: PROXY header from a source not in proxy-from" });
    expect(readFileSync(log, "utf8")).not.toContain("203.0.113.7\",\"result\":\"error");
  });

  test("IPv6 peers, and IPv4 peers of a dual-stack listener as IPv4 (mapped): matched by their networks", async () => {
    const server = headerReporter();
    const port = freePort("::");
    await oi(`:: ${port} 127.0.0.1 ${server.port} [accept_proxy,proxy=v2,proxy-from=::1/128|127.0.0.2]\n`);
    const header = encodeProxyV2({ address: "2001:db8::7", port: 5555 }, { address: "2001:db8::1", port: 80 }, "tcp");

    const six = await connectPeer("::1", port);
    expect(await exchange(six, Buffer.concat([header, Buffer.from("six")]))).toBe("v2 2001:db8::7:5555 -> 2001:db8::1:80 | six");
    // ::ffff:127.0.0.2 on the dual-stack socket is 127.0.0.2.
    const mapped = await connectPeer("127.0.0.1", port, "127.0.0.2");
    expect(await exchange(mapped, Buffer.concat([header, Buffer.from("four")]))).toBe("v2 2001:db8::7:5555 -> 2001:db8::1:80 | four");
    const outside = await connectPeer("127.0.0.1", port, "127.0.0.4");
    expect(await exchange(outside, Buffer.concat([header, Buffer.from("spoof")]))).toBe("");
    expect(server.connections.length).toBe(2);
  });

  test("a network written as IPv4-mapped IPv6 matches IPv4 peers; a tcptoudp rule refuses untrusted peers too", async () => {
    const server = headerReporter();
    const [port, crossPort] = [freePort(), freePort()];
    let datagrams = 0;
    const udp = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0, socket: { data: () => void datagrams++ } });
    try {
      await oi(
        `127.0.0.1 ${port} 127.0.0.1 ${server.port} [accept_proxy,proxy=v2,proxy-from=::ffff:127.0.0.0/120]\n` +
          `127.0.0.1 ${crossPort} 127.0.0.1 ${udp.port}/udp [accept_proxy,proxy-from=10.0.0.0/8]\n`,
      );
      const inside = await connectPeer("127.0.0.1", port, "127.0.0.9");
      expect(await exchange(inside, Buffer.concat([forged(port), Buffer.from("x")]))).toBe(`v2 203.0.113.7:4242 -> 127.0.0.1:${port} | x`);
      const cross = await connectPeer("127.0.0.1", crossPort);
      expect(await exchange(cross, Buffer.concat([forged(crossPort), Buffer.from("datagram")]))).toBe("");
      await Bun.sleep(200);
      expect(datagrams).toBe(0);
    } finally {
      udp.close();
    }
  });
});
