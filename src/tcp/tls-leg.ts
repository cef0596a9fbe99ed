/** @module Placeholder until the TLS legs land: termination is not wired yet. */
import type { StreamSocket } from "./stream-socket.ts";
import type { TlsServerSettings } from "../types.ts";

export function terminateTls(raw: StreamSocket<unknown>, _hello: Uint8Array | undefined, _settings: TlsServerSettings, _ended: boolean): StreamSocket<unknown> {
  throw new Error(`TLS termination is not built yet (${raw.remoteAddress})`);
}
