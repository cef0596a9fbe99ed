/**
 * @module A worker's session events on their way to the supervisor, which
 * writes the one log file, the console lines and the counters. Posting a
 * message per connection would cost more than the connection's own
 * bookkeeping, so events wait here for at most BATCH_MS (or until BATCH_MAX
 * of them) and cross in one message; a reply to the supervisor always flushes
 * first, so what it reads next includes every event before it.
 */
import type { Refusal, SessionEvents, SessionRecord } from "../session.ts";
import type { ForwardRule } from "../types.ts";
import type { FromWorker, RuleRef, WireEvent } from "./wire.ts";

const BATCH_MS = 10;
const BATCH_MAX = 512;

export class EventBatch implements SessionEvents {
  private events: WireEvent[] = [];
  private timer: Timer | undefined;

  constructor(
    private readonly refOf: (rule: ForwardRule) => RuleRef | undefined,
    private readonly send: (message: FromWorker) => void,
  ) {}

  denied(rule: ForwardRule, address: string, port: number, reason: Refusal): void {
    const ref = this.refOf(rule);
    if (ref !== undefined) this.push({ kind: "denied", rule: ref, address, port, reason });
  }

  started(rule: ForwardRule, offset?: number): void {
    const ref = this.refOf(rule);
    if (ref !== undefined) this.push({ kind: "started", rule: ref, offset });
  }

  ended(record: SessionRecord): void {
    const ref = this.refOf(record.rule);
    if (ref === undefined) return;
    this.push({
      kind: "ended",
      rule: ref,
      backend: record.backend,
      clientAddress: record.clientAddress,
      clientPort: record.clientPort,
      bytesIn: record.bytesIn,
      bytesOut: record.bytesOut,
      startedAt: record.startedAt,
      endedAt: record.endedAt,
      result: record.result,
      offset: record.offset,
    });
  }

  flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.events.length === 0) return;
    const events = this.events;
    this.events = [];
    this.send({ type: "events", events });
  }

  private push(event: WireEvent): void {
    this.events.push(event);
    if (this.events.length >= BATCH_MAX) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), BATCH_MS);
  }
}
