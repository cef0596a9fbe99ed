/**
 * @module sd_notify: telling systemd (or whatever set `NOTIFY_SOCKET`) how
 * the service is doing, as one datagram per message on the unix socket that
 * variable names (a path, or `@name` for an abstract socket). READY=1 once
 * every rule listens, RELOADING=1 then READY=1 around a reload, STOPPING=1 at
 * shutdown, STATUS= lines, MAINPID= across an upgrade and WATCHDOG=1 at half
 * of `WATCHDOG_USEC`. Bun has no unix datagram sockets, so the datagram goes
 * out through libc (bun:ffi). Nothing here may stop oi: a notification that
 * cannot be sent is logged once and dropped.
 */
import { consola } from "consola";
import { encodeUnixAddress } from "../fd/address.ts";
import { AF_UNIX, type Libc, loadLibc, MSG_NOSIGNAL, O_CLOEXEC, O_NONBLOCK, SOCK_DGRAM } from "../libc.ts";

/** The socket address of `NOTIFY_SOCKET`'s value, or why it cannot be used. */
export function notifyAddress(value: string): { bytes: Uint8Array; length: number } | string {
  if (!value.startsWith("@") && !value.startsWith("/")) return `NOTIFY_SOCKET=${value}: neither an absolute path nor @name`;
  return encodeUnixAddress(value) ?? `NOTIFY_SOCKET=${value}: longer than a unix socket address holds`;
}

export class Notifier {
  private warned = false;
  private watchdog: Timer | undefined;

  private constructor(
    private readonly libc: Libc,
    private readonly fd: number,
    private readonly address: { bytes: Uint8Array; length: number },
    private readonly where: string,
  ) {}

  /** A notifier for `NOTIFY_SOCKET`, or undefined when it is unset or cannot be used (said once as a warning). */
  static async fromEnvironment(env: NodeJS.ProcessEnv = process.env): Promise<Notifier | undefined> {
    const value = env.NOTIFY_SOCKET;
    if (value === undefined || value === "") return undefined;
    const address = notifyAddress(value);
    if (typeof address === "string") {
      consola.warn(`${address}; not notifying systemd`);
      return undefined;
    }
    const loaded = await loadLibc();
    if ("unavailable" in loaded) {
      consola.warn(`NOTIFY_SOCKET is set but oi cannot send to it (${loaded.unavailable}); not notifying systemd`);
      return undefined;
    }
    const fd = loaded.libc.socket(AF_UNIX, SOCK_DGRAM | O_CLOEXEC | O_NONBLOCK, 0);
    if (fd < 0) {
      consola.warn(`NOTIFY_SOCKET=${value}: cannot open a datagram socket (errno ${loaded.libc.errno()}); not notifying systemd`);
      return undefined;
    }
    return new Notifier(loaded.libc, fd, address, value);
  }

  /** Send one message (newline-separated KEY=VALUE lines); false when it could not be sent. */
  send(message: string): boolean {
    const bytes = new TextEncoder().encode(message);
    const sent = this.libc.sendto(this.fd, bytes, bytes.length, MSG_NOSIGNAL, this.address.bytes, this.address.length);
    if (sent === bytes.length) return true;
    if (!this.warned) {
      this.warned = true;
      consola.warn(`cannot notify systemd on ${this.where} (errno ${this.libc.errno()}); carrying on without (said once)`);
    }
    return false;
  }

  ready(status: string): void {
    this.send(`READY=1\nSTATUS=${status}`);
  }

  /** A reload starts: systemd wants the monotonic clock's time with it (Type=notify-reload checks it). */
  reloading(): void {
    this.send(`RELOADING=1\nMONOTONIC_USEC=${this.libc.monotonicMicros()}\nSTATUS=reloading`);
  }

  stopping(status: string): void {
    this.stopWatchdog();
    this.send(`STOPPING=1\nSTATUS=${status}`);
  }

  status(status: string): void {
    this.send(`STATUS=${status}`);
  }

  /** After an upgrade: this process is the service's main process now. */
  mainPid(pid: number, status: string): void {
    this.send(`MAINPID=${pid}\nREADY=1\nSTATUS=${status}`);
  }

  /**
   * Ping the watchdog at half of `WATCHDOG_USEC` when it is set for this
   * process (WATCHDOG_PID unset or ours); `status` is sent along, fresh.
   */
  startWatchdog(status: () => string, env: NodeJS.ProcessEnv = process.env): void {
    const usec = Number(env.WATCHDOG_USEC);
    if (!Number.isFinite(usec) || usec <= 0) return;
    const pid = env.WATCHDOG_PID;
    if (pid !== undefined && pid !== "" && Number(pid) !== process.pid) return;
    const everyMs = Math.max(1, Math.floor(usec / 2000));
    this.stopWatchdog();
    this.watchdog = setInterval(() => this.send(`WATCHDOG=1\nSTATUS=${status()}`), everyMs);
    // The watchdog alone must not keep a stopping process up.
    this.watchdog.unref();
  }

  stopWatchdog(): void {
    if (this.watchdog !== undefined) clearInterval(this.watchdog);
    this.watchdog = undefined;
  }
}
