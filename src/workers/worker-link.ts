/**
 * @module The supervisor's end of one worker thread: requests that resolve
 * with the worker's reply, the worker's unprompted messages handed on, and
 * its death reported once. Workers are created once for the life of the
 * process and never restarted: Bun's Workers are not reliable when
 * terminated and created again.
 */
import { WORKER_ENTRY } from "../engine.ts";
import type { FromWorker, Notice, Reply, Request, WorkerInit } from "./wire.ts";

/** A request without its number (the link numbers them). */
type RequestBody = Request extends infer R ? (R extends { request: number } ? Omit<R, "request"> : never) : never;

export interface LinkHandlers {
  notice(id: number, notice: Notice): void;
  died(id: number, reason: string): void;
}

export class WorkerLink {
  private readonly worker: Worker;
  private nextRequest = 1;
  private readonly pending = new Map<number, (reply: Reply) => void>();
  private dead = false;

  constructor(
    readonly id: number,
    init: Omit<WorkerInit, "type" | "id">,
    private readonly handlers: LinkHandlers,
  ) {
    this.worker = new Worker(WORKER_ENTRY);
    this.worker.onmessage = (event: MessageEvent<FromWorker>) => this.received(event.data);
    this.worker.addEventListener("error", (event) => this.die(event.message));
    this.worker.addEventListener("close", () => this.die("the thread ended"));
    const message: WorkerInit = { type: "init", id, ...init };
    this.worker.postMessage(message);
  }

  /** Ask; resolves with the reply, or with a failure when the worker is dead or dies first. */
  request(body: RequestBody): Promise<Reply> {
    if (this.dead) return Promise.resolve({ type: "reply", request: 0, ok: false, message: `worker ${this.id} is not running` });
    const request = this.nextRequest++;
    return new Promise((resolve) => {
      this.pending.set(request, resolve);
      this.worker.postMessage({ ...body, request });
    });
  }

  private received(message: FromWorker): void {
    if (message.type !== "reply") {
      this.handlers.notice(this.id, message);
      return;
    }
    const resolve = this.pending.get(message.request);
    this.pending.delete(message.request);
    resolve?.(message);
  }

  private die(reason: string): void {
    if (this.dead) return;
    this.dead = true;
    for (const [request, resolve] of this.pending) resolve({ type: "reply", request, ok: false, message: `worker ${this.id} stopped: ${reason}` });
    this.pending.clear();
    this.handlers.died(this.id, reason);
  }
}
