/**
 * @module The chart of the "how cost grows" section: one panel per figure,
 * the sizes measured along x (evenly spaced: they grow tenfold or so each
 * step), one line per system. Plain SVG, no dependency.
 */
import { systemColor } from "./chart.ts";
import { formatNumber } from "./figures.ts";
import type { BenchReport, ScalingReport, SystemName } from "./types.ts";

interface Series {
  name: SystemName;
  values: Array<number | null>;
}

interface Panel {
  title: string;
  xs: number[];
  xLabel: string;
  series: Series[];
}

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function panels(scaling: ScalingReport): Panel[] {
  const c = scaling.concurrency;
  const bySystem = <T>(systems: Partial<Record<SystemName, T[]>>, xs: number[], x: (point: T) => number, y: (point: T) => number | null): Series[] =>
    (Object.keys(systems) as SystemName[]).map((name) => ({
      name,
      values: xs.map((value) => {
        const point = systems[name]?.find((each) => x(each) === value);
        return point === undefined ? null : y(point);
      }),
    }));
  return [
    { title: "new conn/s by concurrent clients ↑", xs: c.points, xLabel: "clients", series: bySystem(c.systems, c.points, (p) => p.clients, (p) => p.conn_per_s) },
    { title: "p99 request time (ms) by concurrent clients ↓", xs: c.points, xLabel: "clients", series: bySystem(c.systems, c.points, (p) => p.clients, (p) => p.p99_ms) },
    { title: "private KiB per idle connection ↓", xs: scaling.idle.points, xLabel: "idle connections", series: bySystem(scaling.idle.systems, scaling.idle.points, (p) => p.connections, (p) => p.kib_per_conn) },
    { title: "start (ms) by rules ↓", xs: scaling.config.points, xLabel: "rules", series: bySystem(scaling.config.systems, scaling.config.points, (p) => p.rules, (p) => p.start_ms) },
    { title: "reload (ms) by rules ↓", xs: scaling.config.points, xLabel: "rules", series: bySystem(scaling.config.systems, scaling.config.points, (p) => p.rules, (p) => p.reload_ms) },
    { title: "private MiB by rules ↓", xs: scaling.config.points, xLabel: "rules", series: bySystem(scaling.config.systems, scaling.config.points, (p) => p.rules, (p) => (p.private_kib === null ? null : p.private_kib / 1024)) },
    { title: "oi: private MiB by UDP sessions ↓", xs: scaling.udp_sessions.points, xLabel: "sessions", series: bySystem(scaling.udp_sessions.systems, scaling.udp_sessions.points, (p) => p.sessions, (p) => (p.private_kib === null ? null : p.private_kib / 1024)) },
  ];
}

export function renderScalingChart(report: BenchReport, scaling: ScalingReport): string {
  const list = panels(scaling);
  const columns = 3;
  const panelWidth = 320;
  const panelHeight = 210;
  const plot = { left: 50, right: 28, top: 28, bottom: 40 };
  const rows = Math.ceil(list.length / columns);
  const width = columns * panelWidth + 20;
  const legendY = 50 + rows * panelHeight;
  const systems = [...new Set(list.flatMap((panel) => panel.series.map((series) => series.name)))];
  const height = legendY + 30;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`);
  parts.push(`<rect width="100%" height="100%" fill="#fff"/>`);
  const title = `How cost grows (${report.mode} run, ${report.path}, ${report.machine.date.slice(0, 10)}, ${report.machine.cores} cores)`;
  parts.push(`<text x="10" y="20" font-size="14" font-weight="bold">${escape(title)}</text>`);
  parts.push(`<text x="10" y="38" fill="#555">Sizes evenly spaced along x; ↑ higher is better, ↓ lower is better; a missing point failed or was skipped (see latest.md).</text>`);
  list.forEach((panel, index) => {
    const x0 = 10 + (index % columns) * panelWidth;
    const y0 = 45 + Math.floor(index / columns) * panelHeight;
    const w = panelWidth - plot.left - plot.right;
    const h = panelHeight - plot.top - plot.bottom;
    const values = panel.series.flatMap((series) => series.values.filter((value): value is number => value !== null && Number.isFinite(value)));
    const max = Math.max(...values, 0) * 1.1 || 1;
    const xAt = (i: number) => x0 + plot.left + (panel.xs.length === 1 ? w / 2 : (i / (panel.xs.length - 1)) * w);
    const yAt = (value: number) => y0 + plot.top + h - (value / max) * h;
    parts.push(`<text x="${x0}" y="${y0 + 14}" font-weight="bold">${escape(panel.title)}</text>`);
    parts.push(`<line x1="${x0 + plot.left}" y1="${y0 + plot.top + h}" x2="${x0 + plot.left + w}" y2="${y0 + plot.top + h}" stroke="#999"/>`);
    parts.push(`<line x1="${x0 + plot.left}" y1="${y0 + plot.top}" x2="${x0 + plot.left}" y2="${y0 + plot.top + h}" stroke="#999"/>`);
    for (const fraction of [0, 0.5, 1]) {
      const value = (max / 1.1) * fraction;
      parts.push(`<text x="${x0 + plot.left - 4}" y="${(yAt(value) + 4).toFixed(1)}" text-anchor="end" fill="#555">${escape(formatNumber(value))}</text>`);
    }
    panel.xs.forEach((x, i) => {
      parts.push(`<text x="${xAt(i).toFixed(1)}" y="${y0 + plot.top + h + 14}" text-anchor="middle" fill="#555">${escape(x.toLocaleString("en-US"))}</text>`);
    });
    parts.push(`<text x="${x0 + plot.left + w / 2}" y="${y0 + plot.top + h + 28}" text-anchor="middle" fill="#555">${escape(panel.xLabel)}</text>`);
    if (values.length === 0) parts.push(`<text x="${x0 + plot.left + 10}" y="${y0 + plot.top + h / 2}" fill="#999">no data</text>`);
    for (const series of panel.series) {
      const color = systemColor(series.name);
      const points = series.values.map((value, i) => (value === null || !Number.isFinite(value) ? null : { x: xAt(i), y: yAt(value) }));
      let path = "";
      points.forEach((point, i) => {
        if (point === null) return;
        path += `${path === "" || points[i - 1] === null ? "M" : "L"}${point.x.toFixed(1)},${point.y.toFixed(1)} `;
      });
      if (path !== "") parts.push(`<path d="${path.trim()}" fill="none" stroke="${color}" stroke-width="2"/>`);
      for (const point of points) if (point !== null) parts.push(`<circle cx="${point.x.toFixed(1)}" cy="${point.y.toFixed(1)}" r="3" fill="${color}"/>`);
    }
  });
  systems.forEach((name, i) => {
    const x = 10 + i * 110;
    parts.push(`<rect x="${x}" y="${legendY}" width="14" height="10" fill="${systemColor(name)}"/>`);
    parts.push(`<text x="${x + 18}" y="${legendY + 9}">${escape(name)}</text>`);
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
