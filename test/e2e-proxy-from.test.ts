/**
 * `proxy-from=`: PROXY headers trusted from the networks named only. A peer
 * elsewhere is reset before its header is read (so it cannot put a forged
 * client address into the logs and the access rules), counted and logged;
 * IPv6 peers and IPv4 peers of a dual-stack listener (IPv4-mapped) included.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { encodeProxyV1, encodeProxyV2, parseProxyHeader } from "../src/proxy-protocol.ts";
import { backend, cleanUpAfterEachTest, oi, until } from "./helpers/harness.ts";
import { tempDir } from "./helpers/oi-process.ts";
import { connectPeer, freePort, type Peer } from "./helpers/peers.ts";

cleanUpAfterEachTest();

/** A backend that answers, after the client's FIN, with the PROXY header oi sent it and the bytes after it. */
function headerReporter() {
  return backend((peer) => {
    peer.keep = [];
    peer.onEnd = (p) => {
      const all = new Uint8Array(Buffer.concat(p.keep ?? []));
      const header = parseProxyHeader(all);
      const text = header.status === "ok" ? `${header.source?.address} | ${Buffer.from(all.subarray(header.headerLength)).toString()}` : `no header | ${Buffer.from(all).toString()}`;
      void p.send(text, true);
    };
  });
}

async function exchange(client: Peer, payload: Uint8Array | string): Promise<string> {
  client.keep = [];
  await client.send(payload, true);
  await client.waitClosed(5000);
  return client.text();
}

const forged = (port: number) => encodeProxyV1({ address: "203.0.113.7", port: 4242 }, { address: "127.0.0.1", port });

describe("proxy-from", () => {
  test("a trusted peer's header is used; an untrusted peer is reset at once without its header read, counted and logged", async () => {
    const server = headerReporter();
    const [port, metricsPort] = [freePort(), freePort()];
    const log = join(tempDir(), "oi.log");
    const process = await oi(`metrics 127.0.0.1:${metricsPort}\nlogfile ${log}\nlogjson\n127.0.0.1 ${port} 127.0.0.1 ${server.port} [accept_proxy,proxy=v2,proxy-from=127.0.0.2/32|10.0.0.0/8]\n`, ["-v"]);

    const trusted = await connectPeer("127.0.0.1", port, "127.0.0.2");
    expect(await exchange(trusted, Buffer.concat([forged(port), Buffer.from("hello")]))).toBe("203.0.113.7 | hello");

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
    expect(await exchange(six, Buffer.concat([header, Buffer.from("six")]))).toBe("2001:db8::7 | six");
    // ::ffff:127.0.0.2 on the dual-stack socket is 127.0.0.2.
    const mapped = await connectPeer("127.0.0.1", port, "127.0.0.2");
    expect(await exchange(mapped, Buffer.concat([header, Buffer.from("four")]))).toBe("2001:db8::7 | four");
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
      expect(await exchange(inside, Buffer.concat([forged(port), Buffer.from("x")]))).toBe("203.0.113.7 | x");
      const cross = await connectPeer("127.0.0.1", crossPort);
      expect(await exchange(cross, Buffer.concat([forged(crossPort), Buffer.from("datagram")]))).toBe("");
      await Bun.sleep(200);
      expect(datagrams).toBe(0);
    } finally {
      udp.close();
    }
  });
});
