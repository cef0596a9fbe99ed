/**
 * The listeners of a port range (port-listeners.ts) with a stand-in for the
 * socket layer: opening is all or nothing and names the port that failed; a
 * changed range keeps the ports that stay, opens the new ones first and
 * closes the removed ones at commit (or the new ones again at abandon). And
 * the descriptor budget: listening sockets leave less of it to connections.
 */
import { describe, expect, test } from "bun:test";
import { Admission } from "../src/limits.ts";
import { PortBindError, PortListeners } from "../src/port-listeners.ts";
import type { Endpoint } from "../src/types.ts";

/** Listeners that are just their port; `busy` ports refuse; `open` is what is listening now. */
function standIn(busy: number[] = []) {
  const open = new Set<number>();
  let opened = 0;
  const listeners = new PortListeners<number>(
    (endpoint) => {
      expect(endpoint.portEnd).toBeUndefined();
      if (busy.includes(endpoint.port)) throw Object.assign(new Error("Failed to listen at 127.0.0.1"), { code: "EADDRINUSE" });
      open.add(endpoint.port);
      opened++;
      return endpoint.port;
    },
    (port) => void open.delete(port),
  );
  return { listeners, open, opened: () => opened };
}

const range = (port: number, portEnd?: number): Endpoint => (portEnd === undefined ? { host: "127.0.0.1", port, transport: "tcp" } : { host: "127.0.0.1", port, portEnd, transport: "tcp" });
const sorted = (ports: Set<number>) => [...ports].sort((a, b) => a - b);

describe("PortListeners", () => {
  test("a range opens a listener per port; a port that fails closes those opened and names the port", async () => {
    const { listeners, open } = standIn([8003]);
    const failure = await listeners.open(range(8000, 8005)).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(PortBindError);
    expect((failure as PortBindError).where).toBe("127.0.0.1:8003/tcp");
    expect((failure as PortBindError).message).toBe("Failed to listen at 127.0.0.1 (EADDRINUSE)");
    expect(open.size).toBe(0);
    expect(listeners.size).toBe(0);
  });

  test("widening and moving keeps the ports that stay; removed ones close at commit, new ones at abandon", async () => {
    const { listeners, open, opened } = standIn();
    await listeners.open(range(8000, 8009));
    listeners.commit(range(8000, 8009));
    expect(opened()).toBe(10);

    // Moved up by 5: 8010..8014 open now, 8000..8004 stay open until the commit.
    await listeners.open(range(8005, 8014));
    expect(opened()).toBe(15);
    expect(open.size).toBe(15);
    listeners.commit(range(8005, 8014));
    expect(sorted(open)).toEqual(Array.from({ length: 10 }, (_, i) => 8005 + i));

    // A reload that fails after this bind prepared: the ports it added close, the others stay.
    await listeners.open(range(8005, 8019));
    listeners.abandon();
    expect(sorted(open)).toEqual(Array.from({ length: 10 }, (_, i) => 8005 + i));

    listeners.closeAll();
    expect(open.size).toBe(0);
  });

  test("a single port is a range of one", async () => {
    const { listeners, open } = standIn();
    await listeners.open(range(9000));
    listeners.commit(range(9000));
    expect(sorted(open)).toEqual([9000]);
  });
});

describe("descriptor budget", () => {
  test("listening sockets count against it, and give it back when they close", () => {
    const admission = new Admission(undefined, 10);
    admission.holdForListeners(8);
    expect(admission.admit(2)).toBe(true);
    expect(admission.admit(2)).toBe(false);
    admission.release(2);
    // Six listeners close: four connections of two fit beside the two left.
    admission.holdForListeners(2);
    for (let i = 0; i < 4; i++) expect(admission.admit(2)).toBe(true);
    expect(admission.admit(2)).toBe(false);
  });
});
