/**
 * @module Backend for the idle-memory figure: accepts connections, counts
 * those whose first byte arrived (so the whole path through the forwarder is
 * up), holds them open without replying, and prints `count N` whenever the
 * number changes (at most every 50 ms). Usage: bun holder.ts HOST PORT
 */
import type { Socket } from "bun";

interface Held {
  counted: boolean;
}

const [host = "127.0.0.1", portText = "0"] = process.argv.slice(2);
let count = 0;
let printed = -1;

function report(): void {
  if (count !== printed) {
    printed = count;
    process.stdout.write(`count ${count}\n`);
  }
}

Bun.listen<Held>({
  hostname: host,
  port: Number(portText),
  socket: {
    open(socket: Socket<Held>): void {
      socket.data = { counted: false };
    },
    data(socket: Socket<Held>): void {
      if (socket.data.counted) return;
      socket.data.counted = true;
      count++;
    },
    close(socket: Socket<Held>): void {
      if (socket.data.counted) count--;
    },
    error(): void {},
  },
});
setInterval(report, 50);
process.stdout.write("listening\n");
process.on("SIGTERM", () => process.exit(0));
