/**
 * @module The three log line formats, one line per finished (or refused)
 * connection or UDP session:
 *
 * - `rinetd`: rinetd's tab-separated fields: local date and time, client
 *   address, bind address, bind port, connect address, connect port, bytes
 *   from the client, bytes to the client, result.
 * - `common`: the web server "common log format", shaped as rinetd writes it
 *   so log analyzers accept it: the forwarding shows up as a GET of
 *   `/rinetd-services/BIND/PORT/CONNECT/PORT/RESULT`, status 200, bytes to
 *   the client as the size, and bytes from the client as the last field.
 * - `json`: one JSON object per line with the same fields plus the duration.
 */
import type { SessionRecord } from "../session.ts";
import type { Endpoint } from "../types.ts";
import type { LogFormat } from "../types.ts";

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function pad2(value: number): string {
  return value < 10 ? `0${value}` : String(value);
}

/** `26/Nov/2026:00:54:13`, local time, as rinetd's strftime("%d/%b/%Y:%H:%M:%S"). */
export function rinetdTime(date: Date): string {
  return `${pad2(date.getDate())}/${MONTHS[date.getMonth()]}/${date.getFullYear()}:${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())}`;
}

/** `+0100`: the local offset from UTC, as in the common log format. */
function utcOffset(date: Date): string {
  const minutes = -date.getTimezoneOffset();
  const sign = minutes < 0 ? "-" : "+";
  const absolute = Math.abs(minutes);
  return `${sign}${pad2(Math.floor(absolute / 60))}${pad2(absolute % 60)}`;
}

/** Where the session went: the backend it reached, else the rule's first backend; of a backend port range, the port it was given. */
function connectEnd(record: SessionRecord): Endpoint {
  const endpoint = (record.backend ?? record.rule.backends[0])?.endpoint ?? { host: "", port: 0, transport: "tcp" };
  if (endpoint.portEnd === undefined || !record.offset) return endpoint;
  return { host: endpoint.host, port: endpoint.port + record.offset, transport: endpoint.transport };
}

/** The port the client came to: of a bind port range, its own. */
function bindPort(record: SessionRecord): number {
  return record.rule.bind.port + (record.offset ?? 0);
}

/** A side of the session as log fields: host (or unix socket path) and port (0 for a unix socket). */
function hostOf(endpoint: Endpoint): string {
  return endpoint.transport === "unix" ? `unix:${endpoint.host}` : endpoint.host;
}

export function formatRinetd(record: SessionRecord): string {
  const { rule } = record;
  const connect = connectEnd(record);
  return [
    rinetdTime(new Date(record.endedAt)),
    record.clientAddress,
    hostOf(rule.bind),
    bindPort(record),
    hostOf(connect),
    connect.port,
    record.bytesIn,
    record.bytesOut,
    record.result,
  ].join("\t");
}

export function formatCommon(record: SessionRecord): string {
  const { rule } = record;
  const connect = connectEnd(record);
  const date = new Date(record.endedAt);
  // A space in the result ("error: client reset") would split the request field for analyzers.
  const result = record.result.replace(/[\s"]+/g, "-");
  const path = `/rinetd-services/${hostOf(rule.bind)}/${bindPort(record)}/${hostOf(connect)}/${connect.port}/${result}`;
  return `${record.clientAddress} - - [${rinetdTime(date)} ${utcOffset(date)}] "GET ${path} HTTP/1.0" 200 ${record.bytesOut} - - - ${record.bytesIn}`;
}

export function formatJson(record: SessionRecord): string {
  const { rule } = record;
  const connect = connectEnd(record);
  return JSON.stringify({
    time: new Date(record.endedAt).toISOString(),
    client: record.clientAddress,
    client_port: record.clientPort,
    protocol: rule.mode,
    rule: rule.name,
    bind_address: hostOf(rule.bind),
    bind_port: bindPort(record),
    backend: record.backend?.name ?? null,
    connect_address: hostOf(connect),
    connect_port: connect.port,
    bytes_in: record.bytesIn,
    bytes_out: record.bytesOut,
    duration_ms: record.endedAt - record.startedAt,
    result: record.result,
  });
}

export const FORMATTERS: Record<LogFormat, (record: SessionRecord) => string> = {
  rinetd: formatRinetd,
  common: formatCommon,
  json: formatJson,
};
