import { describe, expect, test } from "bun:test";
import { RecentErrors } from "../src/admin/recent-errors.ts";
import type { ForwardRule } from "../src/types.ts";

const rule = { name: "web" } as ForwardRule;
const ended = (result: string, port: number) => ({
  rule,
  backend: undefined,
  clientAddress: "192.0.2.1",
  clientPort: port,
  bytesIn: 0,
  bytesOut: 0,
  startedAt: 0,
  endedAt: 0,
  result: result as "done",
});

describe("RecentErrors: the dashboard's last errors", () => {
  test("keeps refusals and failed connections, not the ones that ended well, oldest first", () => {
    const errors = new RecentErrors();
    errors.ended(ended("done", 1));
    errors.ended(ended("refused", 2));
    errors.denied(rule, "2001:db8::1", 3, "denied");
    errors.denied(rule, "192.0.2.9", 4, "client-rate");
    errors.ended({ ...ended("error: client reset", 5), clientAddress: "unix" });
    expect(errors.list().map(({ client, result, rule }) => ({ client, result, rule }))).toEqual([
      { client: "192.0.2.1:2", result: "refused", rule: "web" },
      { client: "[2001:db8::1]:3", result: "denied", rule: "web" },
      { client: "192.0.2.9:4", result: "refused: client connection rate", rule: "web" },
      { client: "unix", result: "error: client reset", rule: "web" },
    ]);
  });

  test("bounded: only the last N are kept", () => {
    const errors = new RecentErrors(3);
    for (let port = 1; port <= 10; port++) errors.ended(ended("timeout", port));
    expect(errors.list().map((error) => error.client)).toEqual(["192.0.2.1:8", "192.0.2.1:9", "192.0.2.1:10"]);
  });
});
