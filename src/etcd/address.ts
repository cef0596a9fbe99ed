/**
 * @module `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` (`etcds://` for TLS):
 * which etcd members to ask and under which key prefix the config lives.
 * The prefix is the path without its leading slash (`/oi` reads the keys
 * `oi/global` and `oi/rules/NAME`; `//oi` reads `/oi/global`, ...).
 */

export const DEFAULT_ETCD_PORT = 2379;
const SCHEMES = { "etcd:": "http:", "etcds:": "https:" } as const;

export interface EtcdAddress {
  /** The members' base URLs (`http://127.0.0.1:2379`), in the order given. */
  endpoints: string[];
  tls: boolean;
  /** Keys start with this and a slash (nothing: keys start at the root). */
  prefix: string;
  /** `etcd://h1:2379,h2:2379`: how the members are named in messages. */
  origin: string;
}

export function isEtcdAddress(text: string): boolean {
  return /^etcds?:\/\//i.test(text);
}

/** The address, or why it is not one. */
export function parseEtcdAddress(text: string): EtcdAddress | string {
  const match = /^(etcds?:)\/\/([^/]*)(?:\/(.*))?$/i.exec(text);
  if (match === null) return `'${text}' is not an etcd address (etcd://HOST:PORT/PREFIX or etcds://...)`;
  const scheme = match[1]!.toLowerCase() as keyof typeof SCHEMES;
  const hosts = match[2]!.split(",").map((host) => host.trim());
  if (hosts.some((host) => host === "")) return `${text}: give at least one HOST[:PORT], several separated by commas`;
  const endpoints: string[] = [];
  for (const host of hosts) {
    const hostPort = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d+))?$/.exec(host);
    const port = hostPort?.[2] === undefined ? DEFAULT_ETCD_PORT : Number(hostPort[2]);
    if (hostPort === null || !(port >= 1 && port <= 65535)) return `${text}: '${host}' is not HOST[:PORT] (an IPv6 address in brackets)`;
    endpoints.push(`${SCHEMES[scheme]}//${hostPort[1]}:${port}`);
  }
  const prefix = (match[3] ?? "").replace(/\/+$/, "");
  return { endpoints, tls: scheme === "etcds:", prefix, origin: `${scheme}//${hosts.join(",")}` };
}

/** The key `name` (`global`, `rules/web`) under the address's prefix. */
export function keyOf(address: EtcdAddress, name: string): string {
  return address.prefix === "" ? name : `${address.prefix}/${name}`;
}

/** How a key is named in messages: `etcd://127.0.0.1:2379/oi/rules/web`. */
export function keyLabel(address: EtcdAddress, key: string): string {
  return `${address.origin}/${key}`;
}
