/**
 * @module Which sockets TCP forwarders listen and connect with: Bun's own
 * (Bun.listen, Bun.connect) or oi's direct sockets (src/fd/: system calls
 * through bun:ffi on an epoll loop of oi's own), per the `sockets` setting.
 * One choice per server, shared by its forwarders and followed by reloads
 * for new listeners and connections; a listener or connection keeps the
 * layer it was opened on. Direct sockets serve TCP with IP addresses on both
 * sides; a unix socket, or a listener on a host name, uses Bun's.
 */
import { consola } from "consola";
import type { DialTarget } from "../backends.ts";
import { formatEndpoint } from "../endpoint.ts";
import { isIpLiteral } from "../ip.ts";
import { connectStream } from "../stream-connect.ts";
import { connectTls } from "../tls/client-leg.ts";
import type { Endpoint, SocketsMode } from "../types.ts";
import { type FdLoop, fdLoop } from "../fd/loop.ts";
import { fdConnect, FdListener, LISTEN_BACKLOG } from "../fd/socket.ts";
import type { StreamHandlers, StreamListener, StreamSocket } from "./stream-socket.ts";
import { adoptUnix, listenUnix } from "./unix-socket.ts";
import { type InheritedSocket, takeInherited } from "../systemd/inherited.ts";

export interface ListenOptions {
  ipv6Only: boolean;
  reusePort: boolean;
  /** Permissions of a unix socket file. */
  socketMode: number | undefined;
}

export class SocketLayer {
  private mode: SocketsMode = "bun";
  private backlog: number | undefined;
  private loop: FdLoop | undefined;
  private warned = false;
  private backlogWarned = false;

  /**
   * Follow the config; direct sockets get their loop here. Where they cannot
   * work, `auto` uses Bun's sockets quietly; `direct` says so once, as a warning.
   */
  async configure(mode: SocketsMode, backlog: number | undefined): Promise<void> {
    this.mode = mode;
    this.backlog = backlog;
    if (mode === "bun" || this.loop !== undefined) return;
    const loop = await fdLoop();
    if (typeof loop !== "string") this.loop = loop;
    else if (mode === "direct" && !this.warned) {
      this.warned = true;
      consola.warn(`sockets direct: not available (${loop}); using Bun's sockets`);
    }
  }

  /** The loop direct sockets run on, when they are in use. */
  private direct(): FdLoop | undefined {
    return this.mode === "bun" ? undefined : this.loop;
  }

  /** Listen on `bind`; throws an Error saying why it cannot. */
  async listen(bind: Endpoint, options: ListenOptions, handlers: object): Promise<StreamListener> {
    const inherited = takeInherited(bind);
    if (inherited !== undefined) return this.adopt(inherited, bind, handlers);
    if (bind.transport === "unix") {
      return listenUnix(bind.host, handlers, options.socketMode);
    }
    const loop = this.direct();
    if (loop !== undefined && isIpLiteral(bind.host)) {
      const listenOptions = { host: bind.host, port: bind.port, ipv6Only: options.ipv6Only, reusePort: options.reusePort, backlog: this.backlog ?? LISTEN_BACKLOG };
      return FdListener.open(loop, listenOptions, handlers as StreamHandlers<unknown>);
    }
    if (this.backlog !== undefined && !this.backlogWarned) {
      this.backlogWarned = true;
      consola.warn(`listen-backlog ${this.backlog} has no effect on Bun's sockets (they listen with a backlog of 512): ${formatEndpoint(bind)} uses them`);
    }
    // ipv6Only and reusePort are honoured by Bun's listen though its types leave them out (hence the typed variable).
    const bunOptions: Bun.TCPSocketListenOptions<unknown> & { ipv6Only: boolean; reusePort: boolean } = {
      hostname: bind.host,
      port: bind.port,
      // Without allowHalfOpen (and an `end` handler) a client's FIN would close both directions.
      allowHalfOpen: true,
      ipv6Only: options.ipv6Only,
      socket: handlers,
      reusePort: options.reusePort,
    };
    return Bun.listen<unknown>(bunOptions);
  }

  /** Serve on a listening socket inherited from systemd or from the oi before an upgrade (systemd/inherited.ts). */
  private adopt({ fd, fromOi }: InheritedSocket, bind: Endpoint, handlers: object): StreamListener {
    // A socket file systemd made is systemd's; one the oi before an upgrade made is this oi's to remove at its end.
    if (bind.transport === "unix") return adoptUnix(fd, fromOi && !bind.host.startsWith("@") ? bind.host : undefined, handlers);
    const loop = this.direct();
    if (loop !== undefined && isIpLiteral(bind.host)) return FdListener.adopt(loop, fd, handlers as StreamHandlers<unknown>);
    // Bun's listen takes a descriptor though its types leave `fd` out; given an address too, it would bind that instead.
    const bunOptions = { fd, allowHalfOpen: true, socket: handlers } as unknown as Bun.TCPSocketListenOptions<unknown>;
    return Bun.listen<unknown>(bunOptions);
  }

  /**
   * Connect to `target`, the socket carrying `data` and served by `handlers`
   * (outcomes through `open` and `connectError`): the connecting socket when
   * it is a direct one (which can be abandoned before it connects), true when
   * Bun's took it (which cannot), undefined when the target was refused
   * outright (a malformed address), so the caller moves on. A TLS target
   * always uses Bun's sockets (direct ones have no TLS); its socket is
   * returned too, and can be given up while it connects or shakes hands.
   * `tlsCleartext` goes to a TLS target in clear before its handshake (a
   * PROXY header for a backend that reads one before TLS).
   */
  connect<Data>(target: DialTarget, data: Data, handlers: StreamHandlers<Data>, tlsCleartext?: Uint8Array): StreamSocket<Data> | true | undefined {
    const tls = target.tls;
    if (tls !== undefined) return connectTls({ ...target, tls }, data, handlers, true, tlsCleartext);
    const loop = this.direct();
    if (loop !== undefined && target.address !== undefined && target.unix === undefined) {
      const socket = fdConnect(loop, target.address, target.port, target.localAddress, data, handlers);
      if (socket !== undefined) return socket;
    }
    return connectStream(target, data, handlers as Parameters<typeof connectStream<Data>>[2], true) ? true : undefined;
  }
}
