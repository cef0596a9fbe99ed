/**
 * @module The bandwidth limits of one forwarding rule at run time: the
 * buckets its connections share (`rate-rule`), those of each client
 * (`rate-client`, one pair per client as clients.ts counts them, in a
 * bounded table), and the budgets of one connection, which add its own
 * (`rate`). Each direction has its own bucket: one for the bytes clients
 * send, one for the bytes sent to them.
 *
 * A reload's new `rate-rule` and `rate-client` apply at once to every
 * connection of the rule (the buckets are shared, and follow the new rate);
 * a connection's own `rate` stays as it was when it started.
 */
import { ClientTable, clientKey } from "../clients.ts";
import type { ForwardRule } from "../types.ts";
import { Budget } from "./budget.ts";
import { TokenBucket } from "./bucket.ts";

/** The two buckets of one limit: bytes from clients, bytes to clients. */
export class BucketPair {
  readonly fromClient: TokenBucket;
  readonly toClient: TokenBucket;
  constructor(bytesPerSecond: number) {
    this.fromClient = new TokenBucket(bytesPerSecond);
    this.toClient = new TokenBucket(bytesPerSecond);
  }

  setRate(bytesPerSecond: number): void {
    this.fromClient.setRate(bytesPerSecond);
    this.toClient.setRate(bytesPerSecond);
  }

  close(): void {
    this.fromClient.close();
    this.toClient.close();
  }
}

/** One client's buckets, and how many of its connections use them (gone from the table with the last). */
class ClientBuckets extends BucketPair {
  users = 0;
  constructor(
    readonly key: string,
    bytesPerSecond: number,
  ) {
    super(bytesPerSecond);
  }
}

/** A connection's (or UDP session's) two budgets, and what to give back when it ends. */
export class ConnectionBudgets {
  /**
   * Bytes per second, each way, that a splice worker can hold the
   * connection to in place of these budgets: its own `rate`, when no shared
   * limit applies (those live in this thread's buckets); undefined otherwise.
   */
  readonly spliceRate: number | undefined;

  constructor(
    /** Bytes the client sends (towards the backend). */
    readonly fromClient: Budget,
    /** Bytes sent to the client. */
    readonly toClient: Budget,
    private readonly owner: RuleBandwidth,
    private readonly client: ClientBuckets | undefined,
    private readonly own: BucketPair | undefined,
    shared: boolean,
  ) {
    this.spliceRate = own === undefined || shared || client !== undefined ? undefined : own.fromClient.bytesPerSecond;
  }

  /** The connection ended: leave every queue, stop its own timers, and release the client's buckets. */
  close(): void {
    this.fromClient.close();
    this.toClient.close();
    this.own?.close();
    if (this.client !== undefined) this.owner.released(this.client);
  }
}

/** What of a rule sets its limits. */
export type RateLimits = Pick<ForwardRule, "rate" | "rateRule" | "rateClient">;

/** Whether `rule` limits bandwidth at all. */
export function limitsBandwidth(rule: RateLimits): boolean {
  return rule.rate !== undefined || rule.rateRule !== undefined || rule.rateClient !== undefined;
}

export class RuleBandwidth {
  private rule: BucketPair | undefined = undefined;
  private ruleRate: number | undefined = undefined;
  private clientRate: number | undefined = undefined;
  private readonly clients: ClientTable<ClientBuckets>;
  /** Every client entry in use: a reload's new rate reaches those the table has forgotten too. */
  private readonly live = new Set<ClientBuckets>();

  constructor(rule: RateLimits, maxClients?: number) {
    this.clients = new ClientTable<ClientBuckets>(maxClients);
    this.update(rule);
  }

  /** Follow the rule's limits (at start, and after each reload). */
  update(rule: RateLimits): void {
    this.ruleRate = rule.rateRule;
    if (rule.rateRule === undefined) {
      // Connections that hold the old buckets keep them; new ones go unlimited by the rule.
      this.rule = undefined;
    } else if (this.rule === undefined) {
      this.rule = new BucketPair(rule.rateRule);
    } else {
      this.rule.setRate(rule.rateRule);
    }
    const clientRate = rule.rateClient;
    if (clientRate !== this.clientRate) {
      this.clientRate = clientRate;
      if (clientRate === undefined) this.clients.clear();
      else for (const client of this.live) client.setRate(clientRate);
    }
  }

  /**
   * The budgets of a new connection of `rule` from `address`; undefined when
   * the rule limits nothing. `resumeIn` and `resumeOut` are called when a
   * direction that waited may move again.
   */
  budgetsFor(rule: RateLimits, address: string, resumeIn: () => void, resumeOut: () => void): ConnectionBudgets | undefined {
    const own = rule.rate === undefined ? undefined : new BucketPair(rule.rate);
    const client = this.clientRate === undefined ? undefined : this.clientBuckets(address, this.clientRate);
    const shared = this.rule;
    if (own === undefined && client === undefined && shared === undefined) return undefined;
    const inBuckets: TokenBucket[] = [];
    const outBuckets: TokenBucket[] = [];
    for (const pair of [own, client, shared]) {
      if (pair === undefined) continue;
      inBuckets.push(pair.fromClient);
      outBuckets.push(pair.toClient);
    }
    return new ConnectionBudgets(new Budget(inBuckets, resumeIn), new Budget(outBuckets, resumeOut), this, client, own, shared !== undefined);
  }

  private clientBuckets(address: string, bytesPerSecond: number): ClientBuckets {
    const key = clientKey(address);
    const client = this.clients.touch(key, () => new ClientBuckets(key, bytesPerSecond));
    if (client.users === 0) this.live.add(client);
    client.users++;
    return client;
  }

  /** A connection of `client` ended; with its last, the client's entry goes (a returning client starts with a full burst, as it would have after a quiet spell). */
  released(client: ClientBuckets): void {
    client.users--;
    if (client.users > 0) return;
    this.live.delete(client);
    client.close();
    if (this.clients.peek(client.key) === client) this.clients.delete(client.key);
  }
}
