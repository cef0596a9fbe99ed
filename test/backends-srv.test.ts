/**
 * A rule's `srv:` backend at run time, with the SRV lookup and the address
 * lookup given by the test (no real DNS): the entries follow the records,
 * the lookup is repeated at their TTL but never more than once a second,
 * a failed lookup keeps the entries, and a connection that comes before the
 * first answer waits for it.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { DialPlan, RuleBackends } from "../src/backends.ts";
import type { SrvRecord } from "../src/srv.ts";
import type { ForwardRule } from "../src/types.ts";
import { textLoader } from "./helpers/config.ts";

const loadText = textLoader();
const started: RuleBackends[] = [];
afterEach(() => {
  for (const backends of started.splice(0)) backends.stop();
});

async function srvRule(options = ""): Promise<ForwardRule> {
  const result = await loadText("srv.conf", `127.0.0.1 8080 srv:_svc._tcp.x.test${options}\n`);
  const rule = result.config?.rules[0];
  if (rule === undefined) throw new Error(JSON.stringify(result.errors));
  return rule;
}

/** SRV answers set by the test, each lookup counted; a pending answer can be held back. */
class FakeSrv {
  calls = 0;
  answer: SrvRecord[] | Error = [];
  gate: Promise<void> | undefined;
  readonly lookup = async (): Promise<readonly SrvRecord[]> => {
    this.calls++;
    if (this.gate !== undefined) await this.gate;
    if (this.answer instanceof Error) throw this.answer;
    return this.answer;
  };
}

function record(target: string, port: number, priority: number, weight: number, ttl = 60): SrvRecord {
  return { target, port, priority, weight, ttl };
}

async function start(srv: FakeSrv, options = ""): Promise<RuleBackends> {
  const backends = new RuleBackends(await srvRule(options), {
    srvLookup: srv.lookup,
    lookup: async () => [{ address: "127.0.0.1", ttl: 60 }],
  });
  started.push(backends);
  return backends;
}

/** What the live entries are: name, weight. */
function entries(backends: RuleBackends): Array<[string, number]> {
  return backends.pool.backends.flatMap((status, index) => (backends.pool.isRetired(index) ? [] : [[status.name, status.weight] as [string, number]]));
}

describe("srv: backends", () => {
  test("an entry per target, with the record's weight; a changed record set is followed", async () => {
    const srv = new FakeSrv();
    srv.answer = [record("a.x.test", 80, 0, 1), record("b.x.test", 81, 0, 3), record("c.x.test", 82, 10, 0)];
    const backends = await start(srv);
    await backends.refreshNames();
    const name = "srv:_svc._tcp.x.test";
    expect(entries(backends)).toEqual([
      [`${name}[0]`, 1],
      [`${name}[1]`, 3],
      [`${name}[2]`, 0.01],
    ]);
    expect([0, 1, 2].map((index) => backends.targetOf(index, "127.0.0.1")?.port)).toEqual([80, 81, 82]);
    // b's weight changes, c moves to priority 0, a goes away.
    srv.answer = [record("b.x.test", 81, 0, 5), record("c.x.test", 82, 0, 5)];
    await backends.refreshNames();
    expect(entries(backends)).toEqual([
      [`${name}[1]`, 5],
      [`${name}[2]`, 5],
    ]);
    const counts = [0, 0, 0];
    for (let i = 0; i < 20; i++) {
      const index = backends.pool.pick("192.0.2.1")!;
      backends.pool.closed(index, 0, 0);
      counts[index]!++;
    }
    expect(counts).toEqual([0, 10, 10]);
  });

  test("TTL 0 is asked again after a second, not at once", async () => {
    const srv = new FakeSrv();
    srv.answer = [record("a.x.test", 80, 0, 1, 0)];
    await start(srv);
    await Bun.sleep(2300);
    // At start, then about 1 s and 2 s later.
    expect(srv.calls).toBeGreaterThanOrEqual(2);
    expect(srv.calls).toBeLessThanOrEqual(4);
  });

  test("a failed lookup keeps the entries it had", async () => {
    const srv = new FakeSrv();
    srv.answer = [record("a.x.test", 80, 0, 1)];
    const backends = await start(srv);
    await backends.refreshNames();
    srv.answer = Object.assign(new Error("SERVFAIL"), { code: "ESERVFAIL" });
    await backends.refreshNames();
    expect(entries(backends)).toEqual([["srv:_svc._tcp.x.test[0]", 1]]);
  });

  test("a connection before the first answer waits for it and goes to a target", async () => {
    const srv = new FakeSrv();
    let open = () => {};
    srv.gate = new Promise((resolve) => (open = resolve));
    srv.answer = [record("a.x.test", 8443, 0, 1)];
    const backends = await start(srv);
    const plan = new DialPlan(backends, "192.0.2.1");
    const target = plan.next();
    expect(target).toBeInstanceOf(Promise);
    open();
    const dialled = await target;
    expect([dialled?.address, dialled?.port, dialled?.backend.name]).toEqual(["127.0.0.1", 8443, "srv:_svc._tcp.x.test[0]"]);
  });
});
