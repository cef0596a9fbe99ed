/**
 * The command line as a user meets it: a real `oi` process, its exit code and output.
 */
import { describe, expect, test } from "bun:test";
import pkg from "../package.json" with { type: "json" };
import { runOi, startOi, writeTempFile } from "./helpers/oi-process.ts";
import { connectionRefused, connectPeer, freePort, startBackend } from "./helpers/peers.ts";


describe("oi --version / --help", () => {
  test("--version prints the package version", async () => {
    const result = await runOi(["--version"]);
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe(pkg.version);
  });

  test("--help names the config flag and the check command", async () => {
    const result = await runOi(["--help"]);
    expect(result.code).toBe(0);
    const text = result.stdout + result.stderr;
    expect(text).toContain("--config");
    expect(text).toContain("-c");
    expect(text).toContain("check");
    expect(text).toContain("--verbose");
  });
});

describe("oi check", () => {
  test("a valid config prints its normalized rules and exits 0", async () => {
    const path = writeTempFile("ok.conf", "allow 10.0.0.*\n0.0.0.0 8080 192.0.2.10 80\n:: 8443/tcp ::1 443 [connect_timeout=3]\n");
    const result = await runOi(["check", "-c", path]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("0.0.0.0:8080");
    expect(result.stdout).toContain("192.0.2.10:80");
    expect(result.stdout).toContain("[::]:8443");
    expect(result.stdout).toContain("10.0.0.*");
  });

  test("every error is reported as FILE:LINE: reason, and the exit code is 1", async () => {
    const path = writeTempFile(
      "bad.conf",
      [
        "# a comment",
        "0.0.0.0 80 10.0.0.1", // 2: three fields
        "0.0.0.0 81 10.0.0.1 81",
        "frobnicate yes", // 4: unknown directive
        "0.0.0.0 70000 10.0.0.1 80", // 5: port out of range
        "0.0.0.0 82 10.0.0.1 82 [speed=fast]", // 6: unknown option
        "allow not-an-address", // 7: bad pattern
        "0.0.0.0 81 10.0.0.2 81", // 8: duplicate of line 3
      ].join("\n"),
    );
    const result = await runOi(["check", "-c", path]);
    expect(result.code).toBe(1);
    for (const line of [2, 4, 5, 6, 7, 8]) expect(result.stderr).toContain(`${path}:${line}: `);
    expect(result.stderr).not.toContain(`${path}:3: `);
    expect(result.stderr).not.toContain(`${path}:1: `);
  });

  test("a missing config file is reported with its path", async () => {
    const path = "/nonexistent-dir/oi-missing.conf";
    const result = await runOi(["check", "-c", path]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(path);
  });
});

describe("oi -c FILE", () => {
  test("a config with errors stops before binding anything", async () => {
    const port = freePort();
    const path = writeTempFile("half-bad.conf", `127.0.0.1 ${port} 127.0.0.1 9\n127.0.0.1 ${freePort()} 127.0.0.1\n`);
    const result = await runOi(["-c", path]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`${path}:2: `);
    expect(await connectionRefused(port)).toBe(true);
  });

  test("an address already in use fails with the rule's file and line", async () => {
    const taken = startBackend();
    try {
      const path = writeTempFile("busy.conf", `# busy\n127.0.0.1 ${taken.port} 127.0.0.1 9\n`);
      const result = await runOi(["-c", path]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`${path}:2: cannot listen on 127.0.0.1:${taken.port}`);
    } finally {
      taken.stop();
    }
  });

  test("-f is accepted (rinetd compatibility), SIGTERM stops oi with exit code 0", async () => {
    // A backend that answers: a refused one would make oi reset the client, which can look like a refused connect.
    const server = startBackend((peer) => void peer.send("forwarded", true));
    try {
      const port = freePort();
      const oi = await startOi(writeTempFile("f.conf", `127.0.0.1 ${port} 127.0.0.1 ${server.port}\n`), ["-f"]);
      const client = await connectPeer("127.0.0.1", port);
      client.keep = [];
      await client.waitEnd();
      expect(client.text()).toBe("forwarded");
      expect(await oi.stop()).toBe(0);
    } finally {
      server.stop();
    }
  });

  test("a config with a UDP rule and a TCP rule serves both", async () => {
    const server = startBackend((peer) => void peer.send("tcp works", true));
    const echo = await Bun.udpSocket({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(socket, data, port, address) {
          socket.send(data, port, address);
        },
      },
    });
    const [udpPort, tcpPort] = [freePort(), freePort()];
    const oi = await startOi(
      writeTempFile("mixed.conf", `127.0.0.1 ${udpPort}/udp 127.0.0.1 ${echo.port}/udp\n127.0.0.1 ${tcpPort} 127.0.0.1 ${server.port}\n`),
    );
    try {
      expect(oi.stdout.text).toContain("2 rules listening");
      const client = await connectPeer("127.0.0.1", tcpPort);
      client.keep = [];
      await client.waitEnd();
      expect(client.text()).toBe("tcp works");

      let reply = "";
      const udpClient = await Bun.udpSocket({
        socket: {
          data(_socket, data) {
            reply = Buffer.from(data).toString();
          },
        },
      });
      udpClient.send("udp works", udpPort, "127.0.0.1");
      const deadline = Date.now() + 3000;
      while (reply === "" && Date.now() < deadline) await Bun.sleep(10);
      udpClient.close();
      expect(reply).toBe("udp works");
    } finally {
      await oi.stop();
      server.stop();
      echo.close();
    }
  });
});
