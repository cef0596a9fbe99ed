/**
 * @module Who `oi` was started as. Installed under the name of rinetd or
 * rinetd-uv (a link, as multi-call programs are installed), it does what that
 * program does when a service script starts it: it detaches once every rule
 * listens unless given `-f` (Debian's `rinetd.service` is `Type=forking` and
 * its init script uses `start-stop-daemon`, both waiting for the program to
 * detach), writes that program's default pid file when the config names
 * none, and reads that program's default config. Under any other name (`oi`)
 * it stays in the foreground, as oxidinetd (whose binary is also `oi`) and a
 * container's entrypoint must.
 */
import { basename } from "node:path";

export interface Personality {
  /** The program `oi` stands in for. */
  name: "oi" | "rinetd" | "rinetd-uv";
  /** Config files looked for, in this order, when no `-c` is given. */
  configPaths: string[];
  /** The pid file written when the config names none. */
  pidFile: string | undefined;
  /** Without `-f`, run in the background once listening, as a classic daemon. */
  detaches: boolean;
}

/** oi's own: its config, then rinetd-uv's defaults (in its order), then rinetd's; no pid file unless asked for. */
export const OI: Personality = {
  name: "oi",
  configPaths: ["/etc/oi/oi.conf", "/etc/rinetd-uv.yaml", "/etc/rinetd-uv.yml", "/etc/rinetd-uv.conf", "/etc/rinetd.conf"],
  pidFile: undefined,
  detaches: false,
};

/** rinetd 0.73's manual: /etc/rinetd.conf, pid in /var/run/rinetd.pid. */
const RINETD: Personality = { name: "rinetd", configPaths: ["/etc/rinetd.conf"], pidFile: "/var/run/rinetd.pid", detaches: true };

/** rinetd-uv 2.1.3's manual: its YAML or .conf file, pid in /var/run/rinetd-uv.pid. */
const RINETD_UV: Personality = {
  name: "rinetd-uv",
  configPaths: ["/etc/rinetd-uv.yaml", "/etc/rinetd-uv.yml", "/etc/rinetd-uv.conf"],
  pidFile: "/var/run/rinetd-uv.pid",
  detaches: true,
};

/**
 * The personality for the name the program was started under: argv[0] as
 * the kernel got it (`process.argv0`: a link's own name, not its target's).
 */
export function personalityOf(argv0: string): Personality {
  switch (basename(argv0)) {
    case "rinetd":
      return RINETD;
    case "rinetd-uv":
      return RINETD_UV;
    default:
      return OI;
  }
}
