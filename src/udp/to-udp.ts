/**
 * @module UDP to UDP: a client session's leg is one UDP socket connected to
 * the backend the balancer picked for it (upstream.ts: confirmation by the
 * first answer, failover on ICMP refusal, the PROXY header). Datagrams pass
 * one for one, boundaries and sizes (0 to 65507 bytes) exactly as they
 * came; nothing is added but the PROXY v2 header the rule may ask for, at
 * the start of the session's first datagram. A session whose backend never
 * answered ends as `refused` when it goes idle.
 */
import type { DialPlan } from "../backends.ts";
import type { ProxyAddress } from "../proxy-protocol.ts";
import type { SessionResult } from "../session.ts";
import type { Backend, ForwardRule } from "../types.ts";
import { ListenSession, type UdpListener } from "./listener.ts";
import { UdpLeg, type UdpLegOwner, udpProxyHeader } from "./upstream.ts";

export class UdpToUdpSession extends ListenSession implements UdpLegOwner {
  private readonly leg: UdpLeg;

  constructor(owner: UdpListener, rule: ForwardRule, address: string, port: number, plan: DialPlan, destination: ProxyAddress) {
    super(owner, rule, address, port);
    this.leg = new UdpLeg(this, plan, udpProxyHeader(rule, { address, port }, destination));
  }

  get counters(): UdpListener["counters"] {
    return this.owner.counters;
  }

  get backend(): Backend | undefined {
    return this.leg.backend;
  }

  open(): void {
    this.leg.open();
  }

  fromClient(datagram: Uint8Array): void {
    this.leg.send(datagram);
  }

  fromBackend(datagram: Uint8Array): void {
    if (this.ended) return;
    this.bytesOut += datagram.length;
    this.toClient(datagram);
  }

  legReady(): void {}

  legSwitching(): void {}

  legFailed(result: SessionResult): void {
    this.end(result);
  }

  close(_result: SessionResult): void {
    this.leg.close(this.bytesIn, this.bytesOut);
  }

  /** `refused` rather than `timeout` when the backend only ever refused. */
  override idleResult(): SessionResult {
    return this.leg.refused && !this.leg.answered ? "refused" : "timeout";
  }
}

export function createUdpToUdpSession(
  owner: UdpListener,
  rule: ForwardRule,
  address: string,
  port: number,
  plan: DialPlan,
  destination: ProxyAddress,
): ListenSession {
  return new UdpToUdpSession(owner, rule, address, port, plan, destination);
}
