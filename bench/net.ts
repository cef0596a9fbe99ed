/**
 * @module Ports the bench uses and small socket helpers. Ports sit below the
 * kernel's ephemeral range (32768+) so outgoing connections never take them.
 */
import type { Service, SystemName } from "./types.ts";

/** `udp` is the iperf3 server again: iperf3 -u sends its datagrams to the port of its TCP control connection. */
export const BACKEND_PORTS: Record<Service, number> = { iperf: 23101, sockperf: 23102, http: 23103, hold: 23104, udp: 23101, dns: 23105 };
/** The UDP echo backend of the UDP-session figure (agents/udp-echo.ts). */
export const UDP_ECHO_PORT = 23106;

const SYSTEM_BASE: Record<Exclude<SystemName, "direct">, number> = {
  oi: 23010, rinetd: 23020, socat: 23030, haproxy: 23040, "oi-plain": 23050, "oi-w2": 23060, dnat: 23070,
};
const SERVICE_OFFSET: Record<Service, number> = { iperf: 1, sockperf: 2, http: 3, hold: 4, udp: 5, dns: 6 };

/** Port on which `system` forwards `service` (for `direct`: the backend's own port). */
export function frontPort(system: SystemName, service: Service): number {
  if (system === "direct") return BACKEND_PORTS[service];
  return SYSTEM_BASE[system] + SERVICE_OFFSET[service];
}

/** True once something accepts a TCP connection on host:port. */
export async function canConnect(host: string, port: number): Promise<boolean> {
  try {
    const socket = await Bun.connect({ hostname: host, port, socket: { data(): void {}, error(): void {} } });
    socket.end();
    return true;
  } catch {
    return false;
  }
}

export async function waitForPort(host: string, port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await canConnect(host, port)) return true;
    await Bun.sleep(100);
  }
  return false;
}

/** Wait until `text()` matches `pattern` or the time is up. */
export async function waitForText(text: () => string, pattern: RegExp, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (pattern.test(text())) return true;
    await Bun.sleep(50);
  }
  return false;
}

/** A TCP port free on 127.0.0.1 right now (the kernel's pick, released at once). */
export function freePort(): number {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data(): void {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}
