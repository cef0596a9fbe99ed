/**
 * @module The "how cost grows" section of latest.md: one table per part of
 * the scaling run (see measure/scaling.ts), the notes of the points that
 * failed or were skipped, and the section's chart.
 */
import { formatNumber } from "./figures.ts";
import type { ScalingReport, SystemName } from "./types.ts";

function names<T>(systems: Partial<Record<SystemName, T[]>>): SystemName[] {
  return Object.keys(systems) as SystemName[];
}

function header(first: string, points: number[], unit: string): string[] {
  return [`| ${first} | ${points.map((point) => `${point.toLocaleString("en-US")} ${unit}`).join(" | ")} |`, `|---|${points.map(() => "---:").join("|")}|`];
}

export function scalingMarkdown(scaling: ScalingReport, chart: string): string {
  const notes: string[] = [];
  const note = (what: string, text: string | undefined) => {
    if (text !== undefined) notes.push(`- ${what}: ${text}`);
  };

  const c = scaling.concurrency;
  const connRows = names(c.systems).map((name) => {
    const cells = c.points.map((clients) => {
      const point = c.systems[name]?.find((each) => each.clients === clients);
      note(`${name}, ${clients.toLocaleString("en-US")} clients`, point?.note);
      if (point === undefined) return "—";
      const failed = point.failed !== null && point.failed > 0 ? ` (${point.failed.toLocaleString("en-US")} failed)` : "";
      return `${formatNumber(point.conn_per_s)} · ${point.p99_ms === null ? "—" : Math.round(point.p99_ms).toLocaleString("en-US")} ms${failed}`;
    });
    return `| ${name} | ${cells.join(" | ")} |`;
  });

  const idleRows = names(scaling.idle.systems).map((name) => {
    const cells = scaling.idle.points.map((n) => {
      const point = scaling.idle.systems[name]?.find((each) => each.connections === n);
      note(`${name}, ${n.toLocaleString("en-US")} idle connections`, point?.note);
      return point?.note?.startsWith("skipped") === true ? "skipped" : formatNumber(point?.kib_per_conn ?? null);
    });
    return `| ${name} | ${cells.join(" | ")} |`;
  });

  const configRows = names(scaling.config.systems).flatMap((name) =>
    (scaling.config.systems[name] ?? []).map((point) => {
      note(`${name}, ${point.rules.toLocaleString("en-US")} rules`, point.note);
      return `| ${name} | ${point.rules.toLocaleString("en-US")} | ${formatNumber(point.start_ms)} | ${formatNumber(point.reload_ms)} | ${formatNumber(point.private_kib)} | ${formatNumber(point.file_kib)} |`;
    }),
  );

  const udpRows = (scaling.udp_sessions.systems.oi ?? []).map((point) => {
    note(`oi, ${point.sessions.toLocaleString("en-US")} UDP sessions`, point.note);
    return `| ${point.sessions.toLocaleString("en-US")} | ${point.answered === null ? "—" : point.answered.toLocaleString("en-US")} | ${formatNumber(point.private_kib)} | ${formatNumber(point.kib_per_session)} |`;
  });

  return `## How cost grows

(${scaling.wall_seconds.toFixed(0)} s.) New connections per second and ab's 99th percentile request time, without keep-alive, by
concurrent clients (${c.runs === 1 ? "one run" : `median of ${c.runs} interleaved runs`} per point; requests per point: ${c.points.map((clients) => `${clients.toLocaleString("en-US")}: ${(c.systems[names(c.systems)[0] ?? "oi"]?.find((each) => each.clients === clients)?.requests ?? 0).toLocaleString("en-US")}`).join(", ")}). Cell: conn/s · p99.

${[...header("system", c.points, "clients"), ...connRows].join("\n")}

Private memory (Pss_Anon) gained per idle connection, KiB, a fresh instance each time:

${[...header("system", scaling.idle.points, "idle"), ...idleRows].join("\n")}

Generated configs of N TCP rules (listening on ${scaling.config.ports}): start = launch until every rule listens;
reload = SIGHUP (haproxy -W: SIGUSR2) with the first rule moved to another port, until oi logs "reloaded"
(rinetd, haproxy: until the moved rule's new port accepts); private memory (Pss_Anon) and file-backed (RssFile)
half a second after the start, KiB; ${scaling.config.runs === 1 ? "one start per point" : `medians of ${scaling.config.runs} starts per point`} (oi: the compiled binary).

| system | rules | start (ms) | reload (ms) | private (KiB) | file-backed (KiB) |
|---|---:|---:|---:|---:|---:|
${configRows.join("\n")}

oi with N UDP sessions (one client socket per session, one datagram each, echoed back through oi):

| sessions | answered | private (KiB) | per session (KiB) |
|---|---:|---:|---:|
${udpRows.join("\n")}

![how cost grows](${chart})
${notes.length + scaling.skipped.length > 0 ? `\nIn this section:\n\n${[...scaling.skipped.map((text) => `- ${text}`), ...notes].join("\n")}\n` : ""}`;
}
