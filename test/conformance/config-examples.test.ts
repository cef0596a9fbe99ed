/**
 * The example configs of the manuals load with `oi check`: rinetd-uv's
 * shipped .conf and YAML, and every config block of oxidinetd's README.
 * `--no-resolve` keeps their host names (example.com, *.internal) from
 * being looked up: no DNS query leaves the machine.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { runOi } from "../helpers/oi-process.ts";
import { check } from "./config-helpers.ts";

const REFERENCE = process.env.OI_REFERENCE_DIR ?? "/work/shared/ref";
const present = (name: string) => {
  try {
    readFileSync(join(REFERENCE, name));
    return true;
  } catch {
    return false;
  }
};

/** The fenced code blocks of a markdown text in one language. */
function codeBlocks(markdown: string, language: string): string[] {
  const blocks: string[] = [];
  const fence = new RegExp("```" + language + "\\n([\\s\\S]*?)```", "g");
  for (let match = fence.exec(markdown); match !== null; match = fence.exec(markdown)) blocks.push(match[1] ?? "");
  return blocks;
}

describe("the manuals' example configs load", () => {
  for (const name of ["rinetd-uv.conf", "rinetd-uv.yaml"]) {
    test.skipIf(!present(name))(name, async () => {
      const result = await runOi(["check", "--no-resolve", "-c", join(REFERENCE, name)]);
      expect(result.stderr).not.toMatch(/error/i);
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/forwarding rules/);
    });
  }

  test.skipIf(!present("oxidinetd-README.md"))("oxidinetd's README: its TOML and .conf blocks", async () => {
    const readme = readFileSync(join(REFERENCE, "oxidinetd-README.md"), "utf8");
    const configs = [
      ...codeBlocks(readme, "toml").map((text, index) => [`oxidinetd-${index}.toml`, text] as const),
      ...codeBlocks(readme, "conf").map((text, index) => [`oxidinetd-${index}.conf`, text] as const),
    ];
    expect(configs.length).toBe(3);
    for (const [file, text] of configs) {
      const result = await check(file, text);
      expect([file, result.code, result.stderr.match(/error.*/gi) ?? []]).toEqual([file, 0, []]);
    }
  });
});
