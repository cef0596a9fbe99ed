/**
 * A loopback listener that never accepts, built on libc through bun:ffi
 * because Bun.listen always accepts. With a backlog of 0 the kernel queues one
 * handshake; once that slot is taken, further SYNs are dropped, so a connect
 * to this port hangs like one to an unresponsive host, without sending
 * anything off the machine.
 */
import { dlopen, FFIType, ptr } from "bun:ffi";
import { connectPeer } from "./peers.ts";

const AF_INET = 2;
const SOCK_STREAM = 1;

const libc = dlopen("libc.so.6", {
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  bind: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  listen: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  getsockname: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
});

export interface Blackhole {
  port: number;
  close(): void;
}

export async function startBlackhole(): Promise<Blackhole> {
  const fd = libc.symbols.socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw new Error("socket() failed");
  // struct sockaddr_in for 127.0.0.1, port 0 (the kernel picks one).
  const address = new Uint8Array(16);
  address[0] = AF_INET;
  address.set([127, 0, 0, 1], 4);
  if (libc.symbols.bind(fd, ptr(address), 16) !== 0) throw new Error("bind() failed");
  if (libc.symbols.listen(fd, 0) !== 0) throw new Error("listen() failed");
  const length = new Uint32Array([16]);
  libc.symbols.getsockname(fd, ptr(address), ptr(length));
  const port = (address[2]! << 8) | address[3]!;
  // Take the one queue slot, so the next handshake goes unanswered.
  const filler = await connectPeer("127.0.0.1", port);
  return {
    port,
    close() {
      filler.socket?.terminate();
      libc.symbols.close(fd);
    },
  };
}
