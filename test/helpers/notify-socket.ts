/**
 * A stand-in for systemd's notification socket: a unix datagram socket bound
 * to a temporary path (Bun has no unix datagram sockets, so through libc with
 * bun:ffi), whose messages a test collects in order.
 */
import { dlopen, FFIType as T } from "bun:ffi";
import { join } from "node:path";
import { tempDir } from "./oi-process.ts";

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;

const { symbols: c } = dlopen("libc.so.6", {
  socket: { args: [T.i32, T.i32, T.i32], returns: T.i32 },
  bind: { args: [T.i32, T.ptr, T.u32], returns: T.i32 },
  recv: { args: [T.i32, T.ptr, T.u64, T.i32], returns: T.i64 },
  close: { args: [T.i32], returns: T.i32 },
});

export class NotifySocket {
  readonly path: string;
  readonly messages: string[] = [];
  private readonly fd: number;
  private readonly buffer = new Uint8Array(4096);
  private readonly timer: Timer;

  /** On a fresh path, or with `abstract` on a name in Linux's abstract namespace (`@name`, as NOTIFY_SOCKET writes it). */
  constructor(abstract = false) {
    const name = abstract ? `oi-test-notify-${process.pid}-${Math.random().toString(36).slice(2)}` : join(tempDir(), "notify.sock");
    this.path = abstract ? `@${name}` : name;
    this.fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const address = new Uint8Array(110);
    new DataView(address.buffer).setUint16(0, AF_UNIX, true);
    // An abstract name follows a NUL byte; a path ends with one.
    address.set(new TextEncoder().encode(name), abstract ? 3 : 2);
    if (this.fd < 0 || c.bind(this.fd, address, 2 + name.length + 1) !== 0) throw new Error(`cannot bind ${this.path}`);
    this.timer = setInterval(() => this.drain(), 5);
  }

  private drain(): void {
    for (;;) {
      const length = Number(c.recv(this.fd, this.buffer, this.buffer.length, MSG_DONTWAIT));
      if (length < 0) return;
      this.messages.push(new TextDecoder().decode(this.buffer.subarray(0, length)));
    }
  }

  /** Every message so far whose first line is `first` (READY=1, STOPPING=1, ...). */
  withLine(line: string): string[] {
    this.drain();
    return this.messages.filter((message) => message.split("\n").includes(line));
  }

  close(): void {
    clearInterval(this.timer);
    c.close(this.fd);
  }
}
