/**
 * @module The last connections that did not end well, for the dashboard and
 * `GET /api/v1/errors`: a session event listener keeping a bounded ring of
 * them (refusals by the access rules or a limit, backends refused or timed
 * out, resets, TLS failures). Connections that ended well are not kept.
 */
import { formatHostPort } from "../ip.ts";
import { refusalWords, type Refusal, type SessionEvents, type SessionRecord } from "../session.ts";
import type { ForwardRule } from "../types.ts";

/** Errors kept: the dashboard shows them all. */
export const RECENT_ERRORS = 50;

export interface RecentError {
  /** When it happened (ms since the epoch). */
  time: number;
  rule: string;
  /** `address:port` of the client (`unix` for a unix socket client). */
  client: string;
  /** The log's result: `refused`, `timeout`, `error: backend reset`, `denied`, `refused: client connection limit`... */
  result: string;
}

export class RecentErrors implements SessionEvents {
  private readonly ring: RecentError[] = [];

  constructor(private readonly capacity = RECENT_ERRORS) {}

  /** Oldest first. */
  list(): RecentError[] {
    return [...this.ring];
  }

  denied(rule: ForwardRule, clientAddress: string, clientPort: number, reason: Refusal): void {
    this.add(rule, clientAddress, clientPort, reason === "denied" ? "denied" : `refused: ${refusalWords(reason)}`);
  }

  started(): void {}

  ended(record: SessionRecord): void {
    if (record.result === "done") return;
    this.add(record.rule, record.clientAddress, record.clientPort, record.result);
  }

  private add(rule: ForwardRule, address: string, port: number, result: string): void {
    const client = address === "" || address === "unix" ? "unix" : formatHostPort(address, port);
    this.ring.push({ time: Date.now(), rule: rule.name, client, result });
    if (this.ring.length > this.capacity) this.ring.shift();
  }
}
