/**
 * @module What forwarders and the relay use of a stream socket and its
 * listener, written so that two socket layers fit: Bun's own sockets
 * (Bun.listen, Bun.connect) and oi's direct sockets (src/fd/, system calls
 * through bun:ffi). Both follow Bun's contract, which the relay relies on:
 * `write` returns what the kernel took and keeps nothing, `pause` stops
 * reading at the kernel, `shutdown` sends a FIN and keeps reading, `end` is a
 * full close whose `close` handler runs inside it, `terminate` resets. A
 * chunk handed to `data` is the handler's to keep, unless the socket
 * `lendsChunks`: then it is a view of the layer's read buffer, valid only
 * during the call, and a handler that keeps bytes copies them.
 */

export interface StreamSocket<Data> {
  data: Data;
  /** Chunks are views of a buffer the next read reuses (direct sockets); absent: each chunk is a fresh copy (Bun's). */
  readonly lendsChunks?: boolean;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  write(bytes: Uint8Array, offset?: number, length?: number): number;
  pause(): void;
  resume(): void;
  shutdown(): void;
  end(): void;
  terminate(): void;
  setKeepAlive(enable: boolean, initialDelayMs: number): boolean;
  /** Serve this socket's events with other handlers from now on. */
  reload(options: { socket: StreamHandlers<Data> }): void;
}

/** The events of a stream socket, as Bun's socket handlers name them. */
export interface StreamHandlers<Data> {
  /** Chunks come as Uint8Array (Bun's sockets are told so; direct sockets always hand those). */
  binaryType?: "uint8array";
  open?(socket: StreamSocket<Data>): void;
  connectError?(socket: StreamSocket<Data>, error: Error): void;
  data(socket: StreamSocket<Data>, chunk: Uint8Array): void;
  drain(socket: StreamSocket<Data>): void;
  end(socket: StreamSocket<Data>): void;
  error(socket: StreamSocket<Data>, error: Error): void;
  close(socket: StreamSocket<Data>, error?: Error): void;
}

/** A listening socket, as the forwarders use one once it listens (Bun's SocketListener has this shape). */
export interface StreamListener {
  /** Stop accepting; with `false`, connections already accepted carry on. */
  stop(closeActiveConnections?: boolean): void;
  /** New connections (and, on Bun's listeners, open ones too) are served by these handlers from now on. */
  reload(options: { socket: object }): void;
}
