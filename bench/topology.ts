/**
 * @module The network paths the bench measures. Loopback: everything on
 * 127.0.0.1. --netns (root only): the seed's real-routing setup, a client
 * namespace and a server namespace joined to the host by veth pairs, so a
 * forwarded byte crosses two real TCP legs through the kernel's routing; the
 * bench creates them, checks that its addresses route only into them, and
 * removes them when it ends. Forwarding is switched on for the bench's two
 * host-side veths only (their per-device `forwarding`), never machine-wide,
 * and goes away with them.
 */
import { writeFileSync } from "node:fs";
import { onCleanup, runBounded } from "./procs.ts";
import type { Topology } from "./types.ts";

export function loopbackTopology(): Topology {
  return { kind: "loopback", forwardHost: "127.0.0.1", backendHost: "127.0.0.1", clientPrefix: [], serverPrefix: [] };
}

const CLIENT_NS = "oibench_client";
const SERVER_NS = "oibench_server";
/** Client side: host 10.201.1.1 <-> namespace 10.201.1.2. Server side: host 10.201.2.1 <-> namespace 10.201.2.2. */
const NET = {
  hostClient: "10.201.1.1",
  nsClient: "10.201.1.2",
  hostServer: "10.201.2.1",
  nsServer: "10.201.2.2",
  clientNet: "10.201.1.0/24",
  serverNet: "10.201.2.0/24",
};
/** The host's end of the client-side veth pair (the dnat system matches packets arriving on it). */
export const HOST_CLIENT_LINK = "oib_c";
const HOST_SERVER_LINK = "oib_s";

async function ip(args: string[]): Promise<void> {
  const result = await runBounded(["ip", ...args], 15_000);
  if (result.code !== 0) throw new Error(`ip ${args.join(" ")}: ${result.stderr.trim()}`);
}

async function removeNetns(): Promise<void> {
  // Deleting a namespace removes the veth ends inside it, and so their peers on the host.
  for (const ns of [CLIENT_NS, SERVER_NS]) await runBounded(["ip", "netns", "del", ns], 15_000);
  for (const link of ["oib_c", "oib_s"]) await runBounded(["ip", "link", "del", link], 15_000);
}

/** `ip route get` must answer with our own veth for every address the bench sends to. */
async function checkRoute(prefix: string[], address: string, device: string): Promise<void> {
  const result = await runBounded([...prefix, "ip", "route", "get", address], 15_000);
  if (!result.stdout.includes(`dev ${device}`)) {
    throw new Error(`refusing to run: ${address} does not route through ${device} (${result.stdout.trim()})`);
  }
}

export async function createNetnsTopology(log: (line: string) => void): Promise<Topology> {
  await removeNetns(); // leftovers of an interrupted run
  onCleanup(async () => {
    await removeNetns();
    log("netns: namespaces and veth pairs removed (their forwarding with them)");
  });
  const inClient = ["ip", "netns", "exec", CLIENT_NS];
  const inServer = ["ip", "netns", "exec", SERVER_NS];
  await ip(["netns", "add", CLIENT_NS]);
  await ip(["netns", "add", SERVER_NS]);
  await ip(["link", "add", "oib_c", "type", "veth", "peer", "name", "oib_c_ns"]);
  await ip(["link", "set", "oib_c_ns", "netns", CLIENT_NS]);
  await ip(["link", "add", "oib_s", "type", "veth", "peer", "name", "oib_s_ns"]);
  await ip(["link", "set", "oib_s_ns", "netns", SERVER_NS]);
  await ip(["addr", "add", `${NET.hostClient}/24`, "dev", "oib_c"]);
  await ip(["link", "set", "oib_c", "up"]);
  await ip(["addr", "add", `${NET.hostServer}/24`, "dev", "oib_s"]);
  await ip(["link", "set", "oib_s", "up"]);
  await ip(["-n", CLIENT_NS, "addr", "add", `${NET.nsClient}/24`, "dev", "oib_c_ns"]);
  await ip(["-n", CLIENT_NS, "link", "set", "oib_c_ns", "up"]);
  await ip(["-n", CLIENT_NS, "link", "set", "lo", "up"]);
  await ip(["-n", SERVER_NS, "addr", "add", `${NET.nsServer}/24`, "dev", "oib_s_ns"]);
  await ip(["-n", SERVER_NS, "link", "set", "oib_s_ns", "up"]);
  await ip(["-n", SERVER_NS, "link", "set", "lo", "up"]);
  // `direct` goes client namespace -> host (routing) -> server namespace.
  await ip(["-n", CLIENT_NS, "route", "add", NET.serverNet, "via", NET.hostClient]);
  await ip(["-n", SERVER_NS, "route", "add", NET.clientNet, "via", NET.hostServer]);
  // Routing between the two veths (direct, dnat) needs forwarding on the device a packet comes in by: those two only.
  for (const link of [HOST_CLIENT_LINK, HOST_SERVER_LINK]) writeFileSync(`/proc/sys/net/ipv4/conf/${link}/forwarding`, "1\n");
  // Every destination must stay inside the bench's own namespaces.
  await checkRoute(inClient, NET.hostClient, "oib_c_ns");
  await checkRoute(inClient, NET.nsServer, "oib_c_ns");
  await checkRoute([], NET.nsServer, "oib_s");
  await checkRoute(inServer, NET.hostServer, "oib_s_ns");
  log(`netns: ${CLIENT_NS} (${NET.nsClient}) -> host ${NET.hostClient} | host ${NET.hostServer} -> ${SERVER_NS} (${NET.nsServer})`);
  return {
    kind: "netns",
    forwardHost: NET.hostClient,
    backendHost: NET.nsServer,
    clientPrefix: inClient,
    serverPrefix: inServer,
  };
}
