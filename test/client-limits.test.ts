/**
 * ClientLimiter (src/client-limits.ts) on its own, with a clock the test
 * moves: maxconn-client, connrate-client's sliding window, holds released
 * exactly once, IPv6 clients per /64, the bound on remembered clients, and
 * admitClient taking back a client's admission that a later check refused.
 */
import { describe, expect, test } from "bun:test";
import { type ClientHold, ClientLimiter } from "../src/client-limits.ts";
import { Admission, admitClient } from "../src/limits.ts";
import type { ConnectionRate, ForwardRule } from "../src/types.ts";
import { loadConfigText } from "../src/config/load.ts";

function limiter(maxOpen: number | undefined, rate: ConnectionRate | undefined, tableSize = 100_000) {
  const clock = { now: 1_000_000 };
  const limits = { maxConnectionsPerClient: maxOpen, connectionRatePerClient: rate, clientTableSize: tableSize };
  return { clock, clients: new ClientLimiter(limits, () => clock.now) };
}

function held(verdict: ClientHold | string): ClientHold {
  if (typeof verdict === "string") throw new Error(`refused: ${verdict}`);
  return verdict;
}

describe("maxconn-client", () => {
  test("the N+1th open connection of a client is refused; other clients are not; a closed one frees a place", () => {
    const { clients } = limiter(3, undefined);
    const holds = [1, 2, 3].map(() => held(clients.admit("127.0.0.2")));
    expect(clients.admit("127.0.0.2")).toBe("client-connections");
    held(clients.admit("127.0.0.3"));
    holds[0]!.release();
    held(clients.admit("127.0.0.2"));
    expect(clients.admit("127.0.0.2")).toBe("client-connections");
  });

  test("a hold is released once: releasing it again frees nothing more", () => {
    const { clients } = limiter(2, undefined);
    const first = held(clients.admit("127.0.0.2"));
    held(clients.admit("127.0.0.2"));
    first.release();
    first.release();
    first.cancel();
    held(clients.admit("127.0.0.2"));
    expect(clients.admit("127.0.0.2")).toBe("client-connections");
  });

  test("IPv6 clients are counted per /64, IPv4-mapped ones as their IPv4 address", () => {
    const { clients } = limiter(2, undefined);
    held(clients.admit("2001:db8:1:2::1"));
    held(clients.admit("2001:db8:1:2:ffff::9"));
    expect(clients.admit("2001:db8:1:2:abcd:1:2:3")).toBe("client-connections");
    held(clients.admit("2001:db8:1:3::1"));
    held(clients.admit("192.0.2.7"));
    held(clients.admit("::ffff:192.0.2.7"));
    expect(clients.admit("192.0.2.7")).toBe("client-connections");
  });

  test("a client without open connections is not remembered when there is no rate to keep", () => {
    const { clients } = limiter(1, undefined);
    for (let i = 0; i < 1000; i++) held(clients.admit(`10.0.${i >> 8}.${i & 255}`)).release();
    expect(clients.size).toBe(0);
  });
});

describe("connrate-client: a sliding window", () => {
  test("N per S seconds: the N+1th within S is refused, admitted again once the first is S seconds old", () => {
    const { clock, clients } = limiter(undefined, { connections: 3, seconds: 10 });
    const start = clock.now;
    for (let i = 0; i < 3; i++) {
      held(clients.admit("127.0.0.2")).release();
      clock.now += 1000;
    }
    expect(clients.admit("127.0.0.2")).toBe("client-rate");
    held(clients.admit("127.0.0.3"));
    clock.now = start + 9999;
    expect(clients.admit("127.0.0.2")).toBe("client-rate");
    clock.now = start + 10_000;
    held(clients.admit("127.0.0.2"));
    expect(clients.admit("127.0.0.2")).toBe("client-rate");
    clock.now = start + 11_000;
    held(clients.admit("127.0.0.2"));
  });

  test("no window of S seconds ever holds more than N admissions, and a steady client gets N per S", () => {
    const { clock, clients } = limiter(undefined, { connections: 5, seconds: 2 });
    const admitted: number[] = [];
    let seed = 7;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const start = clock.now;
    while (clock.now < start + 60_000) {
      clock.now += Math.floor(random() * 200);
      if (typeof clients.admit("127.0.0.2") !== "string") admitted.push(clock.now);
    }
    for (let i = 5; i < admitted.length; i++) expect(admitted[i]! - admitted[i - 5]!).toBeGreaterThanOrEqual(2000);
    // Attempts every 100 ms on average: the client is never short of trying, so it gets its full share, 5 per 2 s.
    expect(admitted.length).toBeGreaterThanOrEqual(145);
    expect(admitted.length).toBeLessThanOrEqual(150);
  });

  test("a cancelled admission does not count against the rate; refused attempts do not push the window on", () => {
    const { clock, clients } = limiter(undefined, { connections: 2, seconds: 10 });
    held(clients.admit("127.0.0.2")).cancel();
    held(clients.admit("127.0.0.2"));
    held(clients.admit("127.0.0.2"));
    clock.now += 5000;
    expect(clients.admit("127.0.0.2")).toBe("client-rate");
    clock.now += 5000;
    held(clients.admit("127.0.0.2"));
  });

  test("both limits together: either refuses", () => {
    const { clock, clients } = limiter(1, { connections: 2, seconds: 10 });
    const first = held(clients.admit("127.0.0.2"));
    expect(clients.admit("127.0.0.2")).toBe("client-connections");
    first.release();
    held(clients.admit("127.0.0.2")).release();
    expect(clients.admit("127.0.0.2")).toBe("client-rate");
    clock.now += 10_000;
    held(clients.admit("127.0.0.2"));
  });
});

describe("memory", () => {
  test("200,000 distinct clients: the clients remembered for their rate never pass the table's bound", () => {
    const { clients } = limiter(2, { connections: 5, seconds: 60 }, 1000);
    let largest = 0;
    for (let i = 0; i < 200_000; i++) {
      held(clients.admit(`127.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)).release();
      if ((i & 1023) === 0) largest = Math.max(largest, clients.size);
    }
    expect(largest).toBeLessThanOrEqual(1000);
    expect(clients.size).toBe(1000);
    // The most recent clients are the ones kept: the last one still has its window.
    for (let i = 0; i < 4; i++) held(clients.admit("127.3.13.63")).release();
    expect(clients.admit("127.3.13.63")).toBe("client-rate");
  });

  test("a client with open connections is never forgotten, whatever the flood", () => {
    const { clients } = limiter(1, { connections: 100, seconds: 60 }, 100);
    const hold = held(clients.admit("127.0.0.2"));
    for (let i = 0; i < 10_000; i++) held(clients.admit(`10.1.${i >> 8}.${i & 255}`)).release();
    expect(clients.admit("127.0.0.2")).toBe("client-connections");
    expect(clients.size).toBe(101);
    hold.release();
    held(clients.admit("127.0.0.2"));
  });

  test("a reload keeps the counts; new limits apply to new connections", () => {
    const { clients } = limiter(2, undefined);
    held(clients.admit("127.0.0.2"));
    held(clients.admit("127.0.0.2"));
    clients.configure({ maxConnectionsPerClient: 3, connectionRatePerClient: undefined, clientTableSize: 100_000 });
    held(clients.admit("127.0.0.2"));
    expect(clients.admit("127.0.0.2")).toBe("client-connections");
  });
});

describe("admitClient", () => {
  const rule = (text: string): ForwardRule => loadConfigText(text, "oi.conf").config!.rules[0]!;

  test("a client refused by the global bound after its own limits had room gets its place back", () => {
    const limited = rule("127.0.0.1 8080 127.0.0.1 80 [maxconn-client=1,connrate-client=1/60]\n");
    const clients = new ClientLimiter(limited);
    const admission = new Admission(1, Number.POSITIVE_INFINITY);
    const other = admitClient("127.0.0.3", limited, { allow: [], deny: [] }, 0, admission, 2, clients);
    expect(typeof other).not.toBe("string");
    expect(admitClient("127.0.0.2", limited, { allow: [], deny: [] }, 1, admission, 2, clients)).toBe("global");
    (other as ClientHold).release();
    admission.release(2);
    expect(typeof admitClient("127.0.0.2", limited, { allow: [], deny: [] }, 0, admission, 2, clients)).not.toBe("string");
  });

  test("the rule's maxconn refuses as `rule`, the client's own as `client-connections`", () => {
    const limited = rule("127.0.0.1 8080 127.0.0.1 80 [maxconn=1,maxconn-client=1]\n");
    const clients = new ClientLimiter(limited);
    const admission = new Admission(undefined, Number.POSITIVE_INFINITY);
    expect(typeof admitClient("127.0.0.2", limited, { allow: [], deny: [] }, 0, admission, 2, clients)).not.toBe("string");
    expect(admitClient("127.0.0.2", limited, { allow: [], deny: [] }, 1, admission, 2, clients)).toBe("client-connections");
    expect(admitClient("127.0.0.3", limited, { allow: [], deny: [] }, 1, admission, 2, clients)).toBe("rule");
  });
});
