/**
 * @module The listening sockets of one bind, one per port: a single port,
 * or each port of a range (`0.0.0.0:8000-8099`). They are kept by port, so
 * that a reload which widens, narrows or shifts a range keeps the sockets of
 * the ports that stay (and the connections they accepted), opens the new
 * ones first, and closes the removed ones only once the whole reload has
 * succeeded. Opening is all or nothing: when one port cannot be bound, the
 * ports that call opened are closed again and the error names the port.
 */
import { formatEndpoint, portAt, portCount } from "./endpoint.ts";
import type { Endpoint } from "./types.ts";

/** A port of a bind that could not be listened on: `message` is why, `port` which. */
export class PortBindError extends Error {
  constructor(
    readonly endpoint: Endpoint,
    reason: string,
  ) {
    super(reason);
  }

  /** `0.0.0.0:8050/tcp`: the one port that failed. */
  get where(): string {
    return formatEndpoint(this.endpoint);
  }
}

/** An error's message with its code when the message does not say it (Bun's "Failed to listen at 127.0.0.1"). */
function reasonOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" && !error.message.includes(code) ? `${error.message} (${code})` : error.message;
}

export class PortListeners<Listener> {
  private readonly byPort = new Map<number, Listener>();
  /** Ports `open` added that the committed range does not have yet: `abandon` closes them, `commit` keeps them. */
  private added: number[] = [];

  constructor(
    /** Listen on one port (`endpoint` has no range); throws an Error saying why it cannot. */
    private readonly listen: (endpoint: Endpoint) => Listener | Promise<Listener>,
    private readonly close: (listener: Listener) => void,
  ) {}

  /** Sockets listening now. */
  get size(): number {
    return this.byPort.size;
  }

  /** The listeners with their ports. */
  entries(): IterableIterator<[number, Listener]> {
    return this.byPort.entries();
  }

  get(port: number): Listener | undefined {
    return this.byPort.get(port);
  }

  /**
   * Listen on every port of `bind` not listened on yet. On failure every port
   * this call opened is closed again and a PortBindError names the port.
   */
  async open(bind: Endpoint): Promise<void> {
    const opened: number[] = [];
    const count = portCount(bind);
    for (let offset = 0; offset < count; offset++) {
      const port = bind.port + offset;
      if (this.byPort.has(port)) continue;
      const endpoint = portAt(bind, offset);
      try {
        this.byPort.set(port, await this.listen(endpoint));
      } catch (error) {
        for (const each of opened) this.closePort(each);
        throw new PortBindError(endpoint, reasonOf(error));
      }
      opened.push(port);
    }
    this.added.push(...opened);
  }

  /** A failed reload: close the ports `open` added since the last commit. */
  abandon(): void {
    for (const port of this.added) this.closePort(port);
    this.added = [];
  }

  /** The reload went through: `bind` is the range now, and the ports outside it close (their connections carry on). */
  commit(bind: Endpoint): void {
    this.added = [];
    const last = bind.portEnd ?? bind.port;
    for (const port of [...this.byPort.keys()]) if (port < bind.port || port > last) this.closePort(port);
  }

  /** Stop listening on every port. */
  closeAll(): void {
    for (const port of [...this.byPort.keys()]) this.closePort(port);
    this.added = [];
  }

  private closePort(port: number): void {
    const listener = this.byPort.get(port);
    if (listener === undefined) return;
    this.byPort.delete(port);
    this.close(listener);
  }
}
