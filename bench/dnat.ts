/**
 * @module The `dnat` system of --netns: kernel forwarding, no process. An
 * nftables table of the bench's own (`ip oibench`) rewrites the destination
 * of packets that arrive from the client namespace on the host's client-side
 * veth, for the dnat system's ports only, to the backends in the server
 * namespace; conntrack rewrites the replies back. The table is added before
 * each measurement of dnat and deleted after it (and when the bench ends),
 * so connection tracking is never active while another system is measured.
 */
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onCleanup, runBounded } from "./procs.ts";
import type { Rule } from "./systems.ts";
import { HOST_CLIENT_LINK } from "./topology.ts";
import type { Topology } from "./types.ts";

const TABLE = "oibench";
let cleanupRegistered = false;

/** The nft script of the table: one DNAT rule per port and protocol. */
export function dnatRuleset(rules: Rule[], topology: Topology): string {
  const lines = rules.map(
    (rule) =>
      `    iifname "${HOST_CLIENT_LINK}" ip daddr ${topology.forwardHost} ${rule.proto} dport ${rule.listen} dnat to ${topology.backendHost}:${rule.backend}`,
  );
  return `table ip ${TABLE} {\n  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n${lines.join("\n")}\n  }\n}\n`;
}

export async function installDnat(ruleset: string): Promise<void> {
  if (!cleanupRegistered) {
    cleanupRegistered = true;
    onCleanup(removeDnat);
  }
  await removeDnat();
  const file = join(tmpdir(), `oibench-dnat-${process.pid}.nft`);
  writeFileSync(file, ruleset);
  const result = await runBounded(["nft", "-f", file], 15_000);
  if (result.code !== 0) throw new Error(`nft -f ${file}: ${result.stderr.trim()}`);
}

/** Delete the bench's table if it exists (nothing else is touched). */
export async function removeDnat(): Promise<void> {
  const listed = await runBounded(["nft", "list", "table", "ip", TABLE], 15_000);
  if (listed.code !== 0) return;
  const result = await runBounded(["nft", "delete", "table", "ip", TABLE], 15_000);
  if (result.code !== 0) throw new Error(`nft delete table ip ${TABLE}: ${result.stderr.trim()}`);
}
