/**
 * Run inside a network namespace whose ephemeral port range is 4 ports
 * wide, beside an oi that forwards ports FIRST..FIRST+7 to an echo backend
 * this script starts on BACKEND: a client holds one connection on each of
 * the 8 rule ports (the client's own ports can be shared, their
 * destinations differ; oi's to the backend cannot: same destination), so oi
 * runs out of local ports after 4. Then the first connections close and a
 * new round is tried. Prints JSON: which connections echoed in each round.
 *
 *   bun port-exhaustion-main.ts BACKEND FIRST
 */
import type { Socket } from "bun";

const [backendPort, firstRulePort] = process.argv.slice(2).map(Number) as [number, number];
const RULES = 8;

Bun.listen({
  hostname: "127.0.0.1",
  port: backendPort,
  socket: {
    data(socket, chunk) {
      socket.write(chunk);
    },
  },
});

interface Held {
  socket: Socket<undefined> | undefined;
  echoed: Promise<boolean>;
}

/** A connection to a rule port that sends "ping" and says whether it came back (false: closed, refused or no answer in 3 s). */
function hold(port: number): Held {
  const held: Held = { socket: undefined, echoed: Promise.resolve(false) };
  held.echoed = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 3000);
    const done = (value: boolean) => {
      clearTimeout(timer);
      resolve(value);
    };
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(socket) {
          held.socket = socket;
          socket.write("ping");
        },
        data() {
          done(true);
        },
        close() {
          done(false);
        },
        connectError() {
          done(false);
        },
      },
    }).catch(() => done(false));
  });
  return held;
}

// Round 1: one connection per rule, held open (one at a time, so the first four are the ones that get ports).
const first: Held[] = [];
const firstEchoed: boolean[] = [];
for (let i = 0; i < RULES; i++) {
  const held = hold(firstRulePort + i);
  first.push(held);
  firstEchoed.push(await held.echoed);
}
// Release them all, then a new round: oi must have recovered its ports.
for (const held of first) held.socket?.end();
// Linux reuses a local port in TIME-WAIT for a new connect (tcp_tw_reuse, loopback) once it is a second old.
await Bun.sleep(1500);
const second: boolean[] = [];
for (let i = 0; i < 4; i++) {
  const held = hold(firstRulePort + i);
  second.push(await held.echoed);
  held.socket?.end();
}
process.stdout.write(JSON.stringify({ firstEchoed, second }));
process.exit(0);
