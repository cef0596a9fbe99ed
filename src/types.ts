/**
 * @module The normalized configuration model. Every config format (rinetd's
 * `.conf`, oxidinetd's TOML) is parsed into these shapes; the rest of `oi`
 * only ever sees a `Config`.
 */

export type Transport = "tcp" | "udp";

/** How a rule moves data: the bind side's transport, then the connect side's. */
export type RuleMode = "tcp" | "udp" | "udptotcp" | "tcptoudp";

export type ConfigFormat = "conf" | "toml";

/** rinetd's tab-separated format, the web server "common log format", or JSON lines. */
export type LogFormat = "rinetd" | "common" | "json";

/** How datagrams travel on the TCP leg of a cross-protocol rule. */
export type Framing = "none" | "len16";

/** Where a piece of configuration came from, for messages that point at it. */
export interface SourceLocation {
  file: string;
  line: number;
}

/** One address:port on either side of a rule. `host` is an IP literal or a hostname. */
export interface Endpoint {
  host: string;
  port: number;
  transport: Transport;
}

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

export interface ForwardRule {
  /** Position in the config, from 0; stable name for logs: `bind.host:bind.port`. */
  index: number;
  at: SourceLocation;
  mode: RuleMode;
  bind: Endpoint;
  connect: Endpoint;
  /** UDP session idle timeout in seconds (rinetd's `[timeout=N]`, default 72). */
  timeout: number;
  /** Seconds to wait for the backend's TCP handshake before giving up on a client. */
  connectTimeout: number;
  /** Local address the upstream socket binds to (rinetd's `[src=ADDR]`). */
  sourceAddress: string | undefined;
  /** Concurrent connections (or UDP sessions) this rule carries at most; undefined: only the global bound. */
  maxConnections: number | undefined;
  /** TCP: seconds without a byte either way before a connection is closed; undefined: never. */
  idleTimeout: number | undefined;
  /** UDP: sessions (client address:port) tracked at most; the least recently used is evicted past it. */
  maxSessions: number;
  /** Cross-protocol rules: `len16` puts a 16-bit big-endian length before each datagram on the TCP leg. */
  framing: Framing;
  /** Largest datagram sent towards a UDP peer; longer TCP data is split (unframed rules). */
  maxDatagram: number;
  access: AccessList;
}

/** The subset of a rule that per-rule options set, shared by every config format. */
export type RuleOptions = Pick<
  ForwardRule,
  "timeout" | "connectTimeout" | "sourceAddress" | "maxConnections" | "idleTimeout" | "maxSessions" | "framing" | "maxDatagram"
>;

/** Where the Prometheus endpoint listens. */
export interface MetricsAddress {
  host: string;
  port: number;
}

export interface Config {
  file: string;
  format: ConfigFormat;
  rules: ForwardRule[];
  globalAccess: AccessList;
  logFile: string | undefined;
  pidFile: string | undefined;
  logFormat: LogFormat;
  /** Concurrent connections across all rules; undefined: derived from the descriptor limit at start. */
  maxConnections: number | undefined;
  metrics: MetricsAddress | undefined;
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
}

export const DEFAULT_UDP_TIMEOUT_SECONDS = 72;
export const DEFAULT_CONNECT_TIMEOUT_SECONDS = 10;
/** Per rule, as rinetd-uv's max-udp-connections. */
export const DEFAULT_MAX_UDP_SESSIONS = 5000;
/** The largest UDP payload over IPv4. */
export const MAX_UDP_PAYLOAD = 65507;
