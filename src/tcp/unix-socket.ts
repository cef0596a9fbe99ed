/**
 * @module Listening on a unix socket path: a socket file left behind by a
 * crashed process is replaced, one that another process still listens on is
 * an error, and the file gets the rule's permissions. Abstract names
 * (`@name`, Linux) have no file.
 */
import { chmodSync, lstatSync, unlinkSync } from "node:fs";

/** Whether something accepts connections on the socket file at `path`. */
async function inUse(path: string): Promise<boolean> {
  try {
    const socket = await Bun.connect({ unix: path, socket: { data() {} } });
    socket.end();
    return true;
  } catch {
    return false;
  }
}

/** Make `path` free to listen on, or throw why it is not. */
export async function clearStaleSocket(path: string): Promise<void> {
  if (path.startsWith("@")) return;
  let stats;
  try {
    stats = lstatSync(path);
  } catch {
    return;
  }
  if (!stats.isSocket()) throw new Error(`${path} exists and is not a socket`);
  if (await inUse(path)) throw new Error(`another process is listening on ${path}`);
  unlinkSync(path);
}

/** Set the socket file's permissions (`[mode=0660]`); abstract sockets have none. */
export function applySocketMode(path: string, mode: number | undefined): void {
  if (mode === undefined || path.startsWith("@")) return;
  chmodSync(path, mode);
}
