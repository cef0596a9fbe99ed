/**
 * @module Backend of the UDP-session figure: sends every datagram back to
 * where it came from (through oi: to that session's own socket), and prints
 * `listening` once bound. Usage: bun udp-echo.ts HOST PORT
 */
export {};

const [host = "127.0.0.1", portText = "0"] = process.argv.slice(2);

await Bun.udpSocket({
  hostname: host,
  port: Number(portText),
  socket: {
    data(socket, data, port, address): void {
      try {
        socket.send(data, port, address);
      } catch {
        // The sender is gone (ICMP unreachable shows up here): nothing to echo to.
      }
    },
  },
});
process.stdout.write("listening\n");
process.on("SIGTERM", () => process.exit(0));
