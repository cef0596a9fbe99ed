/**
 * @module A self-contained flamegraph: collapses `perf script` stacks into
 * folded lines (`root;child;leaf count`, as Brendan Gregg's
 * stackcollapse-perf.pl does) and renders them as an SVG (root at the bottom,
 * width = share of samples, a tooltip per frame). FlameGraph's scripts are not
 * packaged in Debian, and perf's own `flamegraph` report writes HTML that
 * loads d3 from the network.
 */

/** Frame name from one `perf script` stack line: `addr symbol+off (dso)`. */
function frameName(line: string): string {
  const match = /^\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$/.exec(line);
  if (match === null) return "[unknown]";
  const symbol = match[1]!.replace(/\+0x[0-9a-f]+$/, "");
  const dso = match[2]!;
  const base = dso.split("/").at(-1) ?? dso;
  if (dso === "[kernel.kallsyms]") return `${symbol}_[k]`;
  if (symbol !== "[unknown]") return symbol;
  // Bun ships without its internal symbols: its native frames can only be named by the binary.
  if (/^bun(\.exe)?$/.test(base)) return "[bun native]";
  if (/^perf-\d+\.map$/.test(base)) return "[JIT, unnamed]";
  return `[${base}]`;
}

/** Folded stacks from `perf script` text: one `frame;frame;... count` per distinct stack. */
export function collapsePerfScript(text: string): Map<string, number> {
  const folded = new Map<string, number>();
  let comm = "";
  let frames: string[] = [];
  const flush = () => {
    if (comm !== "") {
      // perf lists the leaf first; flamegraphs go root first. Runs of one frame name are merged.
      const names = [comm, ...frames.reverse()].filter((name, i, all) => i === 0 || name !== all[i - 1]);
      const key = names.join(";");
      folded.set(key, (folded.get(key) ?? 0) + 1);
    }
    comm = "";
    frames = [];
  };
  for (const line of text.split("\n")) {
    if (line.trim() === "") {
      flush();
    } else if (/^\S/.test(line)) {
      flush();
      comm = (line.split(/\s+/)[0] ?? "?").replace(/;/g, ":");
    } else {
      frames.push(frameName(line).replace(/;/g, ":"));
    }
  }
  flush();
  return folded;
}

export function foldedText(folded: Map<string, number>): string {
  return [...folded].map(([stack, count]) => `${stack} ${count}`).join("\n") + "\n";
}

interface Node {
  name: string;
  value: number;
  children: Map<string, Node>;
}

function buildTree(folded: Map<string, number>): Node {
  const root: Node = { name: "all", value: 0, children: new Map() };
  for (const [stack, count] of folded) {
    root.value += count;
    let node = root;
    for (const name of stack.split(";")) {
      let child = node.children.get(name);
      if (child === undefined) {
        child = { name, value: 0, children: new Map() };
        node.children.set(name, child);
      }
      child.value += count;
      node = child;
    }
  }
  return root;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function color(name: string): string {
  let hash = 0;
  for (let i = 0; i < name.length; i++) hash = (hash * 31 + name.charCodeAt(i)) >>> 0;
  const vary = hash % 60;
  if (name.endsWith("_[k]")) return `rgb(${200 + (vary % 55)},${120 + vary},${40})`; // kernel: orange
  if (name.startsWith("JSC-") || name.startsWith("[JIT")) return `rgb(${60 + vary},${180 + (vary % 50)},${70})`; // JIT: green
  if (name.startsWith("[bun")) return `rgb(${150 + vary},${150 + vary},${170 + (vary % 60)})`; // Bun native: grey-blue
  return `rgb(${220 + (vary % 35)},${80 + vary * 2},${50 + vary})`; // other native: red-yellow
}

/** `subtitle` may hold several lines (newline-separated). */
export function renderFlamegraph(folded: Map<string, number>, title: string, subtitle: string): string {
  const root = buildTree(folded);
  const width = 1200;
  const frameHeight = 16;
  const pad = 10;
  let depth = 0;
  const measure = (node: Node, level: number) => {
    depth = Math.max(depth, level);
    for (const child of node.children.values()) measure(child, level + 1);
  };
  measure(root, 0);
  const height = (depth + 1) * frameHeight + 84;
  const scale = root.value === 0 ? 0 : (width - 2 * pad) / root.value;
  const rects: string[] = [];
  const draw = (node: Node, x: number, level: number) => {
    const w = node.value * scale;
    if (w < 0.3) return;
    const y = height - 20 - (level + 1) * frameHeight;
    const share = ((node.value / root.value) * 100).toFixed(2);
    const label = w > 35 ? escapeXml(node.name.slice(0, Math.floor((w - 6) / 6.5))) : "";
    rects.push(
      `<g><title>${escapeXml(node.name)} (${node.value} samples, ${share}%)</title>` +
        `<rect x="${x.toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="${frameHeight - 1}" fill="${color(node.name)}" rx="2"/>` +
        (label === "" ? "" : `<text x="${(x + 3).toFixed(2)}" y="${y + 11}">${label}</text>`) +
        `</g>`,
    );
    let childX = x;
    const children = [...node.children.values()].sort((a, b) => a.name.localeCompare(b.name));
    for (const child of children) {
      draw(child, childX, level + 1);
      childX += child.value * scale;
    }
  };
  draw(root, pad, 0);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="monospace" font-size="11">
<rect width="100%" height="100%" fill="#fdfdf5"/>
<text x="${width / 2}" y="22" text-anchor="middle" font-size="16" font-family="sans-serif">${escapeXml(title)}</text>
${subtitle
  .split("\n")
  .map((line, i) => `<text x="${width / 2}" y="${40 + i * 14}" text-anchor="middle" font-size="11" font-family="sans-serif" fill="#555">${escapeXml(line)}</text>`)
  .join("\n")}
${rects.join("\n")}
</svg>
`;
}
