/**
 * @module The normalized configuration model. Every config format (rinetd's
 * `.conf`, oxidinetd's TOML, rinetd-uv's YAML) is parsed into these shapes;
 * the rest of `oi` only ever sees a `Config`.
 */

/** `unix` is a stream socket at a path (`host` holds the path; `@name` is Linux's abstract namespace). */
export type Transport = "tcp" | "udp" | "unix";

/**
 * How a rule moves data, by the kind of each side: `tcp` for a stream on both
 * sides (TCP or unix sockets), `udp` for datagrams on both, and the two
 * cross-protocol modes.
 */
export type RuleMode = "tcp" | "udp" | "udptotcp" | "tcptoudp";

export type SpliceMode = "off" | "on" | "auto";
/**
 * Which sockets TCP rules listen and connect with: "direct" oi's own system
 * calls (src/fd/), "bun" Bun's sockets, "auto" direct ones where they work
 * (Linux x64/arm64 with bun:ffi), else Bun's.
 */
export type SocketsMode = "auto" | "direct" | "bun";

/** With `splice auto`, a relay moves to the splice worker once it has carried this much (both ways together). */
export const SPLICE_AUTO_AFTER_BYTES = 1024 * 1024;

export type ConfigFormat = "conf" | "toml" | "yaml";

/** rinetd's tab-separated format, the web server "common log format", or JSON lines. */
export type LogFormat = "rinetd" | "common" | "json";

/** How datagrams travel on the TCP leg of a cross-protocol rule. */
export type Framing = "none" | "len16";

/** Where a piece of configuration came from, for messages that point at it. */
export interface SourceLocation {
  file: string;
  line: number;
}

/** One address:port on either side of a rule. `host` is an IP literal or a hostname (or a unix socket path, port 0). */
export interface Endpoint {
  host: string;
  /** The port; of a port range (`8000-8099`), its first. */
  port: number;
  transport: Transport;
  /**
   * The last port of a port range, inclusive (above `port`); absent: one
   * port. A range on a bind listens on every port of it; on a backend, the
   * client's port at offset i of the bind's range goes to the backend's
   * port at offset i.
   */
  portEnd?: number;
  /**
   * A connect address `srv:_service._proto.name`: `host` is the SRV name
   * (port 0), and the rule's backends are the targets its records list
   * (src/srv.ts). `transport` is UDP for a `_udp` name, else TCP.
   */
  srv?: true;
}

/** A DNS server oi asks (global `dns-servers`): an IP address and its port. */
export interface DnsServer {
  host: string;
  port: number;
}

/**
 * How to speak TLS to a backend (origination). Verification checks the
 * backend's certificate chain against `ca` and its name against `serverName`.
 */
export interface TlsClientOptions {
  /** Sent as SNI and checked against the certificate; undefined: no SNI, and the certificate must name the address dialled. */
  serverName: string | undefined;
  /** PEM text of the CAs to trust; undefined: Bun's bundled (Mozilla) CAs. */
  ca: string | undefined;
  /** Refuse a backend whose certificate does not verify; false: any certificate is accepted. */
  verify: boolean;
}

/** One backend of a rule; rinetd's rules have exactly one. */
export interface Backend {
  /** For metrics, logs and the status file: given, or `host:port`. */
  name: string;
  endpoint: Endpoint;
  /** Share of new connections relative to the other backends (1..100). */
  weight: number;
  /** Local address to connect from; undefined: the rule's. */
  sourceAddress: string | undefined;
  /** oi speaks TLS to this backend (its own setting, else its rule's `tls-connect`); undefined: plain bytes. */
  tls?: TlsClientSettings | undefined;
}

/** What a client's first bytes say, as a rule's `protocol=` names it; `silent`: nothing within the peek timeout. */
export type MatchProtocol = "tls" | "http" | "ssh" | "silent";
export const MATCH_PROTOCOLS: readonly MatchProtocol[] = ["tls", "http", "ssh", "silent"];

/**
 * How a rule among several on one bind is chosen by what the client sends
 * first. The rule matches when any of its entries does. Names are lowercase,
 * exact (`a.example.com`) or wildcards (`*.example.com`: any name below it,
 * at any depth, not the name itself).
 */
export interface RuleMatch {
  /** The server_name of the client's TLS ClientHello. */
  sni: string[];
  /** The Host of the client's first HTTP/1.x request. */
  host: string[];
  protocol: MatchProtocol[];
}

/** TLS termination: clients speak TLS to oi, which presents this certificate; the backend gets plain bytes. */
export interface TlsServerSettings {
  certFile: string;
  keyFile: string;
  /** Protocols oi may agree to by ALPN, in its order of preference; empty: none is agreed. */
  alpn: string[];
  /** The PEM texts, read at load (so each reload reads the files again); "" until then. */
  certPem: string;
  keyPem: string;
}

/** TLS origination: oi speaks TLS to a backend. */
export interface TlsClientSettings {
  /** The name sent as SNI and checked against the certificate; undefined: the backend's host name (an IP address sends no SNI). */
  serverName: string | undefined;
  /** Trusted authorities (PEM file); undefined: the system's. */
  caFile: string | undefined;
  /** Its PEM text, read at load; undefined without caFile. */
  caPem: string | undefined;
  /** Off only when the config says so (`tls-verify=off`). */
  verify: boolean;
}

export type Algorithm = "roundrobin" | "leastconn" | "random" | "iphash";

/** How a rule with several backends spreads clients and watches backend health. */
export interface BalanceOptions {
  algorithm: Algorithm;
  /** Consecutive failed connects (or probes) that take a backend out. */
  healthThreshold: number;
  /** Seconds a backend taken out by failed connects is skipped. */
  recoveryTimeout: number;
  /** Seconds a client sticks to its backend; 0: no affinity. */
  affinityTtl: number;
  affinityMaxEntries: number;
  /** Seconds between active TCP connect probes of each backend; undefined: no probes. */
  probeInterval: number | undefined;
  /** Seconds a probe may take. */
  probeTimeout: number;
}

export type ProxyProtocolVersion = "v1" | "v2";

/**
 * A compiled allow/deny pattern. `text` is what the user wrote; the matcher
 * itself is built once at load time (see access.ts), never per connection.
 */
export interface AddressPattern {
  text: string;
  matches(address: ClientAddress): boolean;
}

/** A client's address, parsed once per connection for the access checks. */
export interface ClientAddress {
  /** Textual form as matched by globs: IPv4-mapped IPv6 is given as plain IPv4. */
  text: string;
  /** 4 bytes for IPv4 (including mapped IPv6 clients), 16 for IPv6. */
  bytes: Uint8Array;
}

export interface AccessRule {
  kind: "allow" | "deny";
  pattern: AddressPattern;
  at: SourceLocation;
}

/** rinetd semantics: non-empty `allow` means "must match one"; any `deny` match refuses. */
export interface AccessList {
  allow: AccessRule[];
  deny: AccessRule[];
}

/** `connrate-client=N/S`: at most `connections` new connections in any `seconds`. */
export interface ConnectionRate {
  connections: number;
  seconds: number;
}

export interface ForwardRule {
  /** Position in the config, from 0. */
  index: number;
  /**
   * For metrics and the status file: a YAML rule's `name`, else the bind
   * endpoint. Binds of one YAML rule share the name and their backends' state.
   */
  name: string;
  at: SourceLocation;
  mode: RuleMode;
  bind: Endpoint;
  /** At least one; all of one kind (stream or datagram). */
  backends: Backend[];
  balance: BalanceOptions;
  /** UDP session idle timeout in seconds (rinetd's `[timeout=N]`, default 72). */
  timeout: number;
  /** Seconds to wait for the backend's TCP handshake before giving up on a client. */
  connectTimeout: number;
  /** Local address the upstream socket binds to (rinetd's `[src=ADDR]`). */
  sourceAddress: string | undefined;
  /** Concurrent connections (or UDP sessions) this rule carries at most; undefined: only the global bound. */
  maxConnections: number | undefined;
  /** Connections (or UDP sessions) open at once per client of this rule (src/client-limits.ts); undefined: no bound. */
  maxConnectionsPerClient: number | undefined;
  /** New connections (or UDP sessions) per client of this rule in any window of `seconds`; undefined: no bound. */
  connectionRatePerClient: ConnectionRate | undefined;
  /** Clients without open connections a rule's per-client limits remember at most (global `client-table-size`). */
  clientTableSize: number;
  /** TCP: seconds without a byte either way before a connection is closed; undefined: never. */
  idleTimeout: number | undefined;
  /** UDP: sessions (client address:port) tracked at most; the least recently used is evicted past it. */
  maxSessions: number;
  /** Cross-protocol rules: `len16` puts a 16-bit big-endian length before each datagram on the TCP leg. */
  framing: Framing;
  /** Largest datagram sent towards a UDP peer; longer TCP data is split (unframed rules). */
  maxDatagram: number;
  /**
   * rinetd-uv's `buffersize`: the largest datagram received from a UDP client
   * or backend that is forwarded; a longer one would not have fitted
   * rinetd-uv's buffer whole, and is dropped (and counted) rather than cut.
   * TCP is not affected: Bun reads streams into buffers of its own.
   */
  bufferSize: number;
  /** Send a PROXY protocol header with the client's address to the backend. */
  proxyProtocol: ProxyProtocolVersion | undefined;
  /** Read (and strip) a PROXY header from each client, and take the client's address from it. */
  acceptProxy: boolean;
  /**
   * `proxy-from=`: the networks whose PROXY headers are trusted; a client
   * connecting from elsewhere is reset before its header is read. Undefined:
   * every peer may send one (as before `proxy-from` existed).
   */
  proxyFrom?: AddressPattern[] | undefined;
  /** TCP keepalive: seconds of silence before the first probe; undefined: off. */
  keepalive: number | undefined;
  /** Permissions of a unix socket file this rule listens on; undefined: as the umask gives. */
  socketMode: number | undefined;
  /** Seconds a backend host name's addresses are kept at most (also bounded by their DNS TTL); 0: every connection. */
  dnsRefresh: number;
  /** With `dnsSpread`: which addresses of a backend host name become backends (IPv4 only, IPv6 only, or both). */
  dnsFamily: "ipv4" | "ipv6" | "any";
  /**
   * rinetd-uv's dns-multi-ip-expand: a backend host name with several
   * addresses becomes one backend per address (`NAME[0]`, `NAME[1]`...),
   * of the family `dnsFamily` allows, kept in step with each DNS refresh.
   * Off: the name is one backend whose addresses are tried in order.
   */
  dnsSpread: boolean;
  /** The DNS servers every lookup of the rule's names goes to (global `dns-servers`); undefined: the system's resolver. */
  dnsServers?: readonly DnsServer[] | undefined;
  access: AccessList;
  /** Set on a rule that shares its bind with others: what the client sends first must match it; undefined: the bind's default. */
  match: RuleMatch | undefined;
  /** Seconds a shared bind waits for the first bytes that choose a rule; undefined: the default (5). */
  peekTimeout: number | undefined;
  /** Terminate TLS from clients with this certificate. */
  tls: TlsServerSettings | undefined;
  /** Speak TLS to every backend that has no setting of its own; each backend carries the setting that applies to it. */
  tlsConnect: TlsClientSettings | undefined;
  /** Bytes per second each connection (or UDP session) may move, each direction apart (`rate=`); undefined: no limit. */
  rate: number | undefined;
  /** Bytes per second all connections of the rule share, each direction apart (`rate-rule=`). */
  rateRule: number | undefined;
  /** Bytes per second all connections of one client (clients.ts clientKey) on the rule share, each direction apart (`rate-client=`). */
  rateClient: number | undefined;
  /**
   * Set on a TCP listener on `::` when another rule listens on `0.0.0.0` on
   * the same port (rinetd-uv's fan-in example binds both): `::` then takes
   * IPv6 clients only, so both can be bound. Otherwise `::` is dual-stack.
   */
  bindIpv6Only?: true;
}

/** The subset of a rule that per-rule options set, shared by every config format. */
export type RuleOptions = Pick<
  ForwardRule,
  | "timeout"
  | "connectTimeout"
  | "sourceAddress"
  | "maxConnections"
  | "maxConnectionsPerClient"
  | "connectionRatePerClient"
  | "clientTableSize"
  | "idleTimeout"
  | "maxSessions"
  | "framing"
  | "maxDatagram"
  | "bufferSize"
  | "proxyProtocol"
  | "acceptProxy"
  | "proxyFrom"
  | "keepalive"
  | "socketMode"
  | "dnsRefresh"
  | "dnsFamily"
  | "dnsSpread"
  | "dnsServers"
  | "match"
  | "peekTimeout"
  | "tls"
  | "tlsConnect"
  | "rate"
  | "rateRule"
  | "rateClient"
> & { balance: BalanceOptions };

/** Where the Prometheus endpoint listens. */
export interface MetricsAddress {
  host: string;
  port: number;
}

/** Where the admin HTTP server (src/admin/) listens: `HOST:PORT`, or a unix socket path. */
export type AdminAddress = { transport: "tcp"; host: string; port: number } | { transport: "unix"; path: string };

/** The admin server's directives (`admin`, `admin-token`, `admin-mode`, `admin-read`). */
export interface AdminSettings {
  /** Never undefined in a config that loaded (an `admin-*` directive without `admin` is an error). */
  address: AdminAddress | undefined;
  /** The line of `admin`, for the checks that span the directives. */
  at: SourceLocation;
  /** File holding the bearer token every API call must present; undefined: no token. */
  tokenFile: string | undefined;
  /** Its text (trimmed), read at load, so a reload reads it again; "" until then. */
  token: string;
  /** Permissions of the unix socket file (default 0600: owner only). */
  socketMode: number;
  /** `admin-read open`: GET endpoints need no token. */
  readOpen: boolean;
}

export interface Config {
  file: string;
  format: ConfigFormat;
  rules: ForwardRule[];
  /** Global `dns-servers` (each rule also carries it, as `dnsServers`); undefined: the system's resolver. */
  dnsServers?: readonly DnsServer[] | undefined;
  globalAccess: AccessList;
  logFile: string | undefined;
  pidFile: string | undefined;
  logFormat: LogFormat;
  /** Concurrent connections across all rules; undefined: derived from the descriptor limit at start. */
  maxConnections: number | undefined;
  metrics: MetricsAddress | undefined;
  /** The admin HTTP server; undefined: none. */
  admin?: AdminSettings | undefined;
  /** A JSON or text file rewritten every `interval` seconds with the counters (rinetd-uv's status file). */
  status: StatusFileOptions | undefined;
  /** Seconds between one-line summaries in the console log; 0: none. */
  statsLogInterval: number;
  /**
   * Move established TCP relays' bytes with splice(2) in a worker thread
   * (Linux): "on" every relay once connected, "auto" a relay once it has
   * carried SPLICE_AUTO_AFTER_BYTES, "off" none (the plain relay).
   */
  splice: SpliceMode;
  sockets: SocketsMode;
  /** Pending connections the kernel queues per TCP listener (rinetd-uv's listen-backlog); undefined: oi's default. Direct sockets only. */
  listenBacklog: number | undefined;
  /** Forwarding worker threads (src/workers/); undefined: one, in the main thread. `--workers` overrides it. */
  workers: number | undefined;
  /** Reload when the config file or a file it includes changes (`watch`; `--watch` sets it from the command line). */
  watch?: boolean;
  /** `user NAME|ID` as written; resolved into `privilege` when the config loads. */
  user?: AccountSetting | undefined;
  /** `group NAME|ID` as written. */
  group?: AccountSetting | undefined;
  /** Whom oi runs as once every listener is bound and its files are open (src/privilege.ts); undefined: it stays as started. */
  privilege?: PrivilegeTarget | undefined;
}

/** A `user` or `group` directive: the name or number given, and where. */
export interface AccountSetting {
  name: string;
  at: SourceLocation;
}

/** The ids a privilege drop switches to, with names for the messages. */
export interface PrivilegeTarget {
  uid: number;
  gid: number;
  /** `nobody`, or the number when /etc/passwd has no name for it. */
  user: string;
  group: string;
}

export interface StatusFileOptions {
  path: string;
  interval: number;
  format: "json" | "text";
}

/** A problem found while loading a config: printed as `file:line: reason`. */
export interface ConfigIssue {
  file: string;
  /** 0 when the problem concerns the whole file (missing, unreadable). */
  line: number;
  reason: string;
}

/**
 * What loading a config gives: a config only when there are no errors.
 * Warnings (e.g. rinetd's surprising "an unsuffixed port is TCP") never stop a load.
 */
export interface LoadResult {
  config: Config | undefined;
  errors: ConfigIssue[];
  warnings: ConfigIssue[];
  /** Every file the load read (the config, then its includes), whether or not it loaded cleanly: what `--watch` watches. */
  files: string[];
}

export const DEFAULT_UDP_TIMEOUT_SECONDS = 72;
export const DEFAULT_CONNECT_TIMEOUT_SECONDS = 10;
/** Per rule, as rinetd-uv's max-udp-connections. */
export const DEFAULT_MAX_UDP_SESSIONS = 5000;
/** The largest UDP payload over IPv4. */
export const MAX_UDP_PAYLOAD = 65507;
export const DEFAULT_DNS_REFRESH_SECONDS = 600;
/** rinetd-uv's default buffersize: every UDP payload fits. */
export const DEFAULT_BUFFER_SIZE = 65536;
/** Seconds a shared bind waits for a client's first bytes before choosing (`silent`, the default, or none). */
export const DEFAULT_PEEK_TIMEOUT_SECONDS = 5;
