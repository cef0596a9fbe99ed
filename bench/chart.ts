/**
 * @module The chart of the report: one small panel per figure, one bar per
 * system, its length the ratio to rinetd (the dashed line is rinetd, ×1).
 * Plain SVG, no dependency.
 */
import { ALL_FIGURES, formatRatio, ratio } from "./figures.ts";
import type { BenchReport, SystemName } from "./types.ts";

const COLORS: Record<SystemName, string> = {
  oi: "#d9480f",
  "oi-plain": "#f08c00",
  "oi-w2": "#2f9e44",
  rinetd: "#495057",
  socat: "#1c7ed6",
  haproxy: "#2f9e44",
  dnat: "#868e96",
  direct: "#ae3ec9",
};

/** Figures with a meaningful ratio (not the loss and failure percentages). */
const CHARTED = ALL_FIGURES.filter((figure) => figure.noRatio !== true);

export function systemColor(name: SystemName): string {
  return COLORS[name];
}

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function renderChart(report: BenchReport): string {
  const results = report.results;
  const rinetd = results.find((result) => result.system === "rinetd");
  const columns = 3;
  const panelWidth = 300;
  const barHeight = 16;
  const labelWidth = 60;
  const panelHeight = 40 + results.length * (barHeight + 4);
  const rows = Math.ceil(CHARTED.length / columns);
  const width = columns * panelWidth + 20;
  const height = 70 + rows * (panelHeight + 10);
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`);
  parts.push(`<rect width="100%" height="100%" fill="#fff"/>`);
  const title = `Ratio to rinetd (${report.mode} run, ${report.path}, ${report.machine.date.slice(0, 10)}, ${report.machine.cores} cores)`;
  parts.push(`<text x="10" y="20" font-size="14" font-weight="bold">${escape(title)}</text>`);
  parts.push(`<text x="10" y="38" fill="#555">Each bar: the system's figure divided by rinetd's; dashed line = rinetd (×1). ↑ higher is better, ↓ lower is better.</text>`);
  CHARTED.forEach((figure, index) => {
    const x0 = 10 + (index % columns) * panelWidth;
    const y0 = 55 + Math.floor(index / columns) * (panelHeight + 10);
    const ratios = results.map((result) => ratio(figure.get(result), rinetd === undefined ? null : figure.get(rinetd)));
    const max = Math.max(1.2, ...ratios.map((value) => value ?? 0)) * 1.1;
    const barSpace = panelWidth - labelWidth - 60;
    const scale = (value: number) => (value / max) * barSpace;
    const arrow = figure.higherIsBetter ? "↑" : "↓";
    parts.push(`<text x="${x0}" y="${y0 + 12}" font-weight="bold">${escape(`${figure.title} (${figure.unit}) ${arrow}`)}</text>`);
    results.forEach((result, row) => {
      const y = y0 + 22 + row * (barHeight + 4);
      const value = ratios[row] ?? null;
      parts.push(`<text x="${x0}" y="${y + 12}">${escape(result.system)}</text>`);
      if (value !== null) {
        const w = Math.max(1, scale(value));
        parts.push(`<rect x="${x0 + labelWidth}" y="${y}" width="${w.toFixed(1)}" height="${barHeight}" fill="${COLORS[result.system]}"/>`);
        parts.push(`<text x="${(x0 + labelWidth + w + 4).toFixed(1)}" y="${y + 12}">${escape(formatRatio(value))}</text>`);
      } else {
        parts.push(`<text x="${x0 + labelWidth}" y="${y + 12}" fill="#999">n/a</text>`);
      }
    });
    const one = x0 + labelWidth + scale(1);
    parts.push(`<line x1="${one.toFixed(1)}" y1="${y0 + 18}" x2="${one.toFixed(1)}" y2="${y0 + panelHeight - 4}" stroke="#000" stroke-dasharray="3,3"/>`);
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
