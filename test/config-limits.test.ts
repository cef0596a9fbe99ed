/**
 * The bounds on config text (src/config/text-limits.ts), with the inputs
 * that broke loading before them: each gives an error with its file, line
 * and a readable reason, in well under a second.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig, loadConfigText } from "../src/config/load.ts";
import { MAX_CONFIG_BYTES, MAX_NESTING_DEPTH, MAX_TABLE_KEYS } from "../src/config/text-limits.ts";
import { parseRuleBody } from "../src/admin/rule-body.ts";
import type { LoadResult } from "../src/types.ts";
import { linesAndReasons } from "./helpers/config.ts";

/** Loading takes at most this long, where it took 20 s to minutes before (a loaded machine fits in it many times). */
const BOUND_MS = 2000;

function timedLoad(text: string, file: string): LoadResult {
  const start = performance.now();
  const result = loadConfigText(text, file);
  expect(performance.now() - start).toBeLessThan(BOUND_MS);
  return result;
}

const DEEP = `nested more than ${MAX_NESTING_DEPTH} levels deep: a config needs a handful`;

describe("nesting", () => {
  test("YAML: 10,000 nested flow lists, on one line or one per line; block mappings indented 3,000 deep", () => {
    expect(linesAndReasons(timedLoad(`rules: ${"[".repeat(10_000)}${"]".repeat(10_000)}\n`, "a.yaml").errors)).toEqual([[1, DEEP]]);
    expect(linesAndReasons(timedLoad(`a: [\n${"  [\n".repeat(100_000)}`, "a.yaml").errors)).toEqual([[MAX_NESTING_DEPTH, DEEP]]);
    const block = Array.from({ length: 3000 }, (_, i) => `${" ".repeat(i)}k:`).join("\n");
    expect(linesAndReasons(timedLoad(block, "a.yaml").errors)).toEqual([[MAX_NESTING_DEPTH + 1, DEEP]]);
    expect(linesAndReasons(timedLoad(`rules:\n  - ${"- ".repeat(5000)}1\n`, "a.yaml").errors)).toEqual([[2, DEEP]]);
  });

  test("YAML: 100,000 unclosed brackets", () => {
    expect(linesAndReasons(timedLoad("[".repeat(100_000), "a.yaml").errors)).toEqual([[1, DEEP]]);
  });

  test("TOML: nested arrays and inline tables, long dotted keys and headers", () => {
    const rule = '[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = 80\n';
    expect(linesAndReasons(timedLoad(`${rule}connect_port = ${"[".repeat(200_000)}${"]".repeat(200_000)}\n`, "a.toml").errors)).toEqual([[4, DEEP]]);
    expect(linesAndReasons(timedLoad(`a = ${"{b=".repeat(100_000)}1${"}".repeat(100_000)}\n`, "a.toml").errors)).toEqual([[1, DEEP]]);
    expect(linesAndReasons(timedLoad(`${"k.".repeat(70_000)}k = 1\n`, "a.toml").errors)).toEqual([[1, DEEP]]);
    expect(linesAndReasons(timedLoad(`[${"k.".repeat(70_000)}k]\n`, "a.toml").errors)).toEqual([[1, DEEP]]);
  });

  test("what a real config nests stays well inside the limit, strings and comments not counted", () => {
    const yaml = `# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\nrules:\n  - name: "web ${"[".repeat(100)}"\n    bind: ["0.0.0.0:8080/tcp"]\n    connect:\n      - { dest: "127.0.0.1:80", name: "a${"{".repeat(100)}" }\n    access: { allow: ["127.*"] }\n`;
    expect(timedLoad(yaml, "ok.yaml").errors).toEqual([]);
    const toml = `# ${"[".repeat(100)}\n[[forwarding_rules]]\nname = "x${"[".repeat(100)}"\nbind_address = "0.0.0.0"\nbind_port = 80\nconnect = [{ address = "127.0.0.1", port = 81 }]\nload_balancing = { algorithm = "random" }\n`;
    expect(timedLoad(toml, "ok.toml").errors).toEqual([]);
  });
});

test(`TOML: more than ${MAX_TABLE_KEYS} keys in one table (Bun's parser takes the square of their number)`, () => {
  const keys = Array.from({ length: 200_000 }, (_, i) => `k${i} = 1`).join("\n");
  expect(linesAndReasons(timedLoad(`${keys}\na = [\n`, "a.toml").errors)).toEqual([[MAX_TABLE_KEYS + 1, `more than ${MAX_TABLE_KEYS} keys in one table: a rule or the top level needs a few dozen`]]);
  // Many rules are many tables, not many keys.
  const rules = Array.from(
    { length: 2000 },
    (_, i) => `[[forwarding_rules]]\nbind_address = "127.0.0.1"\nbind_port = ${10_000 + i}\nconnect_address = "127.0.0.1"\nconnect_port = 80\n[forwarding_rules.load_balancing]\nalgorithm = "random"\nprobe_interval = 5`,
  ).join("\n");
  expect(timedLoad(rules, "many.toml").errors).toEqual([]);
});

test("a syntax error at the end of a long file is found on its line without re-parsing every prefix", () => {
  const comments = Array.from({ length: 200_000 }, (_, i) => `# line ${i}`).join("\n");
  expect(linesAndReasons(timedLoad(`${comments}\na: [\n`, "a.yaml").errors)).toEqual([[200_001, expect.stringContaining("YAML syntax error")]]);
  expect(linesAndReasons(timedLoad(`${comments}\na = [\n`, "a.toml").errors)).toEqual([[200_001, expect.stringContaining("TOML syntax error")]]);
});

describe("long lines and tokens", () => {
  const token = "a".repeat(2_000_000);
  test("a 2 MB token: the reason is kept, its quote clipped to a readable length", () => {
    for (const [file, text] of [
      ["a.conf", `0.0.0.0 80 ${token} 80\n`],
      ["a.toml", `[[forwarding_rules]]\nbind_address = "0.0.0.0"\nbind_port = 80\nconnect_address = "${token}"\nconnect_port = 80\n`],
      ["a.yaml", `rules:\n  - name: a\n    bind: 0.0.0.0:80\n    connect: ${token}:80\n`],
    ] as const) {
      const [error, ...rest] = timedLoad(text, file).errors;
      expect(rest).toEqual([]);
      expect(error?.line).toBeGreaterThanOrEqual(1);
      expect(error?.reason).toMatch(/connect address 'a{95}…a{15}' \(2000002 characters\) is not a valid IP address or host name$/);
    }
  });

  test("a long reason made of short words loses its middle, not its end", () => {
    const [error] = timedLoad(`rules:\n  - name: a\n    bind: 0.0.0.0:80\n    connect: "${"a ".repeat(1_000_000)}"\n`, "a.yaml").errors;
    expect(error?.reason.length).toBeLessThan(1000);
    expect(error?.reason).toEndWith("' has no port (write HOST:PORT/PROTO)");
  });

  test("oi check prints the reason of a 2 MB line (it printed only 'FILE: invalid')", async () => {
    const directory = mkdtempSync(join(tmpdir(), "oi-limits-"));
    try {
      const file = join(directory, "long.conf");
      writeFileSync(file, `0.0.0.0 80 ${token} 80\n`);
      const child = Bun.spawn([process.execPath, join(import.meta.dir, "..", "src", "cli.ts"), "check", "--no-resolve", "-c", file], { stdout: "pipe", stderr: "pipe" });
      const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
      expect(code).toBe(1);
      expect(stderr).toContain(`${file}:1: connect address 'aaaa`);
      expect(stderr).toContain("is not a valid IP address or host name");
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});

describe("size", () => {
  test(`a config over ${MAX_CONFIG_BYTES} bytes is refused before it is read, whole or with its includes`, async () => {
    const directory = mkdtempSync(join(tmpdir(), "oi-limits-"));
    try {
      const big = join(directory, "big.conf");
      // Lines of 100 bytes, one more than fit.
      const lines = Math.floor(MAX_CONFIG_BYTES / 100) + 1;
      writeFileSync(big, `# ${"x".repeat(97)}\n`.repeat(lines));
      const start = performance.now();
      const result = await loadConfig(big);
      expect(performance.now() - start).toBeLessThan(BOUND_MS);
      expect(linesAndReasons(result.errors)).toEqual([[0, `config is ${lines * 100} bytes, over the limit of ${MAX_CONFIG_BYTES} (8 MiB, includes counted)`]]);
      // Two includes under the limit each, over it together: the second is refused on its include line.
      const half = join(directory, "half.inc");
      writeFileSync(half, `# ${"x".repeat(97)}\n`.repeat(Math.floor(lines / 2) + 1));
      const main = join(directory, "main.conf");
      writeFileSync(main, `include ${half}\ninclude ${half}\n127.0.0.1 8000 127.0.0.1 80\n`);
      const included = await loadConfig(main);
      expect(included.errors.map((error) => [error.file, error.line, error.reason.replace(/\d+ bytes/, "N bytes")])).toEqual([[main, 2, `include ${half}: config is N bytes, over the limit of ${MAX_CONFIG_BYTES} (8 MiB, includes counted)`]]);
      // The admin API's text has the same bound.
      expect(loadConfigText("#".repeat(MAX_CONFIG_BYTES + 1), "api.yaml").errors[0]?.reason).toStartWith(`config is ${MAX_CONFIG_BYTES + 1} bytes`);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});

test("admin API: a deeply nested rule body is refused with its line, not a stack overflow", () => {
  const body = parseRuleBody("web", `bind: "0.0.0.0:80/tcp"\nconnect: ${"[".repeat(10_000)}\n`);
  expect(body).toMatchObject({ ok: false, status: 422, errors: [{ file: "request body", line: 2, reason: DEEP }] });
});

describe("NUL bytes", () => {
  const NUL = "holds a NUL byte: a config is text (a binary file, or a file saved in UTF-16?)";

  test("in any format, at the line that holds one (a path with one would make node:fs throw instead of failing with a reason)", () => {
    expect(linesAndReasons(timedLoad("0.0.0.0 1 127.0.0.1 2\nlogfile /tmp/a\0b\n", "a.conf").errors)).toEqual([[2, NUL]]);
    expect(linesAndReasons(timedLoad('[[forwarding_rules]]\nlisten_addr = "0.0.0.0:1"\n\0\n', "a.toml").errors)).toEqual([[3, NUL]]);
    expect(linesAndReasons(timedLoad("rules:\n  - name: a\0b\n", "a.yaml").errors)).toEqual([[2, NUL]]);
  });

  test("in an included file, and in an include line's path", () => {
    const dir = mkdtempSync(join(tmpdir(), "oi-nul-"));
    try {
      writeFileSync(join(dir, "part.conf"), "0.0.0.0 1 127.0.0.1 2\n\0\n");
      const main = join(dir, "main.conf");
      writeFileSync(main, "include part.conf\n");
      const result = loadConfigText("include part.conf\n", main);
      expect(linesAndReasons(result.errors)).toEqual([[1, `include ${join(dir, "part.conf")}: line 2 ${NUL}`]]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("in a rule given to the admin API (as etcd keys are read)", () => {
    const body = parseRuleBody("web", 'bind: "0.0.0.0:1"\nconnect: "127.0.0.1:2"\n# \0\n');
    expect(body).toMatchObject({ ok: false, status: 422, errors: [{ file: "request body", line: 3, reason: NUL }] });
  });
});
