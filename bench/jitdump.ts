/**
 * @module Names for Bun's JIT frames. Bun (JavaScriptCore) writes a jitdump
 * file (`jit-*.dump`) when started with BUN_JSC_useJITDump=1 (directory from
 * BUN_JSC_jitDumpDirectory). `perf inject --jit` expects the file to be named
 * `jit-PID.dump` and Bun names it `jit-TID-PID.dump`, so instead the
 * JIT_CODE_LOAD records are turned into the perf map (/tmp/perf-PID.map:
 * `start size name` per line) that `perf script` reads by itself.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const MAGIC = 0x4a695444; // "JiTD"
const JIT_CODE_LOAD = 0;

export interface JitSymbol {
  start: bigint;
  size: bigint;
  name: string;
}

/** JIT_CODE_LOAD records of one jitdump file (format: tools/perf/Documentation/jitdump-specification.txt). */
export function parseJitDump(bytes: Uint8Array): { pid: number; symbols: JitSymbol[] } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 40 || view.getUint32(0, true) !== MAGIC) throw new Error("not a jitdump file");
  const headerSize = view.getUint32(8, true);
  const pid = view.getUint32(20, true);
  const symbols: JitSymbol[] = [];
  const decoder = new TextDecoder();
  let offset = headerSize;
  while (offset + 16 <= bytes.length) {
    const id = view.getUint32(offset, true);
    const size = view.getUint32(offset + 4, true);
    if (size < 16 || offset + size > bytes.length) break; // a record still being written
    if (id === JIT_CODE_LOAD) {
      // Record header (16), pid, tid (4 + 4), vma, code_addr, code_size, code_index (8 each), name.
      const start = view.getBigUint64(offset + 32, true);
      const codeSize = view.getBigUint64(offset + 40, true);
      const nameStart = offset + 56;
      let nameEnd = nameStart;
      while (nameEnd < offset + size && bytes[nameEnd] !== 0) nameEnd++;
      symbols.push({ start, size: codeSize, name: decoder.decode(bytes.subarray(nameStart, nameEnd)) });
    }
    offset += size;
  }
  return { pid, symbols };
}

/** Perf map text from every jitdump in `dir` written by process `pid`. */
export function perfMapFromJitDumps(dir: string, pid: number): { text: string; count: number } {
  const lines: string[] = [];
  for (const name of readdirSync(dir)) {
    if (!/^jit-.*\.dump$/.test(name)) continue;
    const dump = parseJitDump(readFileSync(join(dir, name)));
    if (dump.pid !== pid) continue;
    for (const symbol of dump.symbols) {
      lines.push(`${symbol.start.toString(16)} ${symbol.size.toString(16)} ${symbol.name.replace(/\s+/g, " ")}`);
    }
  }
  return { text: `${lines.join("\n")}\n`, count: lines.length };
}
