/**
 * The PROXY protocol end to end: oi telling a backend who the client is
 * (v1 and v2, IPv4 and IPv6), and oi behind another proxy reading the header
 * it is given (good, bad, missing) and using that address for access control.
 */
import { describe, expect, test } from "bun:test";
import { encodeProxyV1, encodeProxyV2, parseProxyHeader } from "../src/proxy-protocol.ts";
import { backend, cleanUpAfterEachTest, oi } from "./helpers/harness.ts";
import { connectExpectingClose, connectPeer, freePort, type Peer } from "./helpers/peers.ts";

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

async function exchange(client: Peer, payload: string): Promise<string> {
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
