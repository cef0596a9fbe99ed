/**
 * @module Backend for the idle-memory figure: accepts connections, counts
 * those whose first byte arrived (so the whole path through the forwarder is
 * up), holds them open without replying, and prints `count N total M` whenever
 * either changes (at most every 50 ms), collecting garbage whenever the count
 * stays still, so its own memory reads clean (it is `direct`'s idle figure).
 * Usage: bun holder.ts HOST PORT
 */
import type { Socket } from "bun";

interface Held {
  counted: boolean;
}

const [host = "127.0.0.1", portText = "0"] = process.argv.slice(2);
let count = 0;
/** Connections whose first byte ever arrived: lets the bench see one new arrival even while others close. */
let total = 0;
let printed = "";

function report(): void {
  const line = `count ${count} total ${total}\n`;
  if (line !== printed) {
    printed = line;
    process.stdout.write(line);
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
      total++;
    },
    close(socket: Socket<Held>): void {
      if (socket.data.counted) count--;
    },
    error(): void {},
  },
});
setInterval(report, 50);
// Collect garbage once the count has been still for a moment, so the bench
// reads this process's memory without leftovers of earlier connections.
let collectedAt = -1;
let seen = -1;
setInterval(() => {
  if (count === seen && collectedAt !== count) {
    Bun.gc(true);
    collectedAt = count;
  }
  seen = count;
}, 200);
process.stdout.write("listening\n");
process.on("SIGTERM", () => process.exit(0));
