/**
 * @module oi's private memory with many UDP sessions: a fresh oi with one
 * UDP rule (max_sessions raised above the count, a 10-minute session
 * timeout) in front of a UDP echo backend (agents/udp-echo.ts); a client
 * (agents/udp-client.ts) opens one socket per session and sends one datagram
 * from each, which comes back through oi. Pss_Anon of oi before (after 20
 * warm-up sessions) and after the N sessions, settled for a second.
 */
import { join } from "node:path";
import { UDP_ECHO_PORT, waitForText } from "../net.ts";
import { treeMemoryKiB } from "../proc-stats.ts";
import { spawnLogged } from "../procs.ts";
import type { UdpSessionPoint } from "../types.ts";
import type { MeasureContext } from "./context.ts";

const ECHO = join(import.meta.dir, "..", "agents", "udp-echo.ts");
const CLIENT = join(import.meta.dir, "..", "agents", "udp-client.ts");
export const UDP_SESSION_PORT = 23201;
/** Loopback: the clients bind 127.0.0.2 from port 3000 up, out of the ephemeral range oi's session sockets use. */
const CLIENT_ADDRESS = "127.0.0.2";
const CLIENT_FIRST_PORT = 3000;
const WARM_UP = 20;

async function openSessions(ctx: MeasureContext, n: number, tag: string, first: number) {
  const local = ctx.topology.kind === "loopback" ? [CLIENT_ADDRESS, String(first)] : [];
  const cmd = [...ctx.limitPrefix, ...ctx.topology.clientPrefix, process.execPath, CLIENT, ctx.topology.forwardHost, String(UDP_SESSION_PORT), String(n), ...local];
  const client = spawnLogged("udp client", cmd, { log: join(ctx.tmpDir, `udp-client-${tag}.log`), collect: true });
  await waitForText(client.output, /ready \d+ \d+/, 30_000 + n * 5);
  const match = /ready (\d+) (\d+)/.exec(client.output());
  return { opened: Number(match?.[1] ?? 0), answered: Number(match?.[2] ?? 0), stop: () => client.stop("SIGTERM", 5000) };
}

export async function measureUdpSessions(ctx: MeasureContext, n: number): Promise<UdpSessionPoint> {
  const point: UdpSessionPoint = { sessions: n, answered: null, private_kib: null, kib_per_session: null };
  const tag = `udp-sessions-${n}`;
  const { topology } = ctx;
  const echo = spawnLogged("udp echo", [...topology.serverPrefix, ...ctx.limitPrefix, process.execPath, ECHO, topology.backendHost, String(UDP_ECHO_PORT)], {
    log: join(ctx.tmpDir, `udp-echo-${tag}.log`),
    collect: true,
  });
  try {
    if (!(await waitForText(echo.output, /listening/, 10_000))) {
      point.note = "the UDP echo backend did not start";
      return point;
    }
    const config = join(ctx.tmpDir, `${tag}.conf`);
    const max = Math.max(n + 1000, 5000);
    await Bun.write(config, `${topology.forwardHost} ${UDP_SESSION_PORT}/udp ${topology.backendHost} ${UDP_ECHO_PORT}/udp [max_sessions=${max},timeout=600]\n`);
    const oi = spawnLogged(`oi ${tag}`, [...ctx.limitPrefix, process.execPath, ctx.oiCli, "-c", config], { log: join(ctx.tmpDir, `oi-${tag}.log`) });
    try {
      await Bun.sleep(1000);
      if (oi.proc.exitCode !== null) {
        point.note = `oi did not start (see oi-${tag}.log)`;
        return point;
      }
      const warm = await openSessions(ctx, WARM_UP, `${tag}-warm`, CLIENT_FIRST_PORT - WARM_UP);
      await warm.stop();
      if (warm.answered === 0) {
        point.note = "no datagram came back through oi";
        return point;
      }
      await Bun.sleep(500);
      const before = treeMemoryKiB([oi.pid])?.pssAnon;
      const sessions = await openSessions(ctx, n, tag, CLIENT_FIRST_PORT);
      try {
        await Bun.sleep(1000);
        const after = treeMemoryKiB([oi.pid])?.pssAnon;
        point.answered = sessions.answered;
        if (before === undefined || after === undefined) return point;
        point.private_kib = after;
        point.kib_per_session = (after - before) / n;
        if (sessions.opened < n || sessions.answered < n) point.note = `${sessions.opened} of ${n} client sockets opened, ${sessions.answered} answered`;
        return point;
      } finally {
        await sessions.stop();
      }
    } finally {
      await oi.stop("SIGTERM", 5000);
    }
  } finally {
    await echo.stop();
  }
}
