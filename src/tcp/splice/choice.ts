/**
 * @module The `splice` setting at run time, shared by every TCP forwarder of
 * a server (and updated in place by a reload): whether relays may move to
 * the splice worker, after how many bytes, and the engine once it runs. With
 * `splice auto` the worker thread is only started when a first relay turns
 * out to carry bulk, so a forwarder that never sees one never has it.
 */
import { SPLICE_AUTO_AFTER_BYTES, type SpliceMode } from "../../types.ts";
import { type SpliceEngine, spliceEngine } from "./engine.ts";

export class SpliceChoice {
  mode: SpliceMode = "off";
  /** The running engine; undefined until started (or where splicing cannot work). */
  engine: SpliceEngine | undefined = undefined;
  private starting = false;

  /** Bytes (both ways together) a relay carries on the plain path before it may move. */
  get afterBytes(): number {
    return this.mode === "auto" ? SPLICE_AUTO_AFTER_BYTES : 0;
  }

  /** Follow the config: `splice on` starts the engine now, so the first relays already move. */
  async configure(mode: SpliceMode): Promise<void> {
    this.mode = mode;
    if (mode === "on") await this.start();
  }

  /** The engine for a relay ready to move; undefined while it starts (the relay retries later) or when off. */
  engineForHandoff(): SpliceEngine | undefined {
    if (this.mode === "off") return undefined;
    if (this.engine === undefined) void this.start();
    return this.engine;
  }

  private async start(): Promise<void> {
    if (this.engine !== undefined || this.starting) return;
    this.starting = true;
    this.engine = await spliceEngine();
  }
}
