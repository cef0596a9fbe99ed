/**
 * @module Command line of the bench (`npm run bench -- [flags]`) and its help
 * text; the settings of the full and the quick suite.
 */
import { ALL_SYSTEMS, DEFAULT_SYSTEMS, type BenchOptions, type SystemName, TLS_SYSTEMS } from "./types.ts";

export const HELP = `oi bench: oi (its defaults, splice auto; and oi-plain: \`splice off\`; oi-w2: \`--workers 2\`, on request)
side by side with rinetd, socat, haproxy (TCP mode), direct (no forwarder) and, with --netns, dnat
(kernel forwarding through an nftables DNAT rule)

usage: npm run bench -- [--quick] [--netns] [--profile] [--tls] [--runs N] [--systems LIST] [--oi-rev REV]
                        [--no-scaling] [--no-install]

  (no flag)        full suite on loopback: 5 interleaved runs per figure, iperf3 8 s, dnsperf 10 s,
                   2000 idle connections, then the "how cost grows" section (about 35 minutes on 2 cores)
  --quick          short suite: 3 runs, iperf3 2 s, dnsperf 3 s, 500 idle connections, and a reduced
                   "how cost grows" section (one ab run per point; 9,000 idle connections for oi only)
  --netns          measure over the seed's real-routing path instead of loopback: client and
                   server network namespaces joined to the host by veth pairs (root only;
                   created and removed by the bench; forwarding on those veths only); adds dnat
  --profile        oi alone: flamegraph SVG of an iperf3 run (perf record, JIT frames named
                   from Bun's JIT dump) and the strace -c table, saved in bench/results/
  --tls            the TLS section alone, on loopback: oi, haproxy (TCP mode) and direct in front of one
                   nginx serving a.test and b.test over TLS (and the same files over plain HTTP):
                   SNI routing, TLS termination, memory of connections waiting in the peek (below);
                   with --quick: 3 runs, ab 3 s, a 64 MiB bulk file (otherwise ab 10 s, 256 MiB)
  --runs N         runs per figure (at least 3)
  --systems LIST   comma-separated subset of ${ALL_SYSTEMS.join(",")}
                   (dnat with --netns only; with --tls: of ${TLS_SYSTEMS.join(",")})
  --oi-rev REV     run oi as committed at git revision REV (default: the working tree);
                   either way oi runs from a copy of src/ taken when the bench starts
  --no-scaling     leave out the "how cost grows" section
  --no-install     do not apt-get install missing tools even as root
  -h, --help       this text

Figures per system (medians of the runs; systems interleaved A B C A B C ...):
  throughput_gbps.P1/P8     iperf3 -P 1 and -P 8 through the system, Gbit/s
  latency_us.p50/p99        sockperf ping-pong, 32-byte messages, full round trip, µs
  conn_per_s                ab without keep-alive, 50 concurrent, nginx behind the system
  conn_per_s_1000           the same with 1,000 concurrent (conn_1000_failed: failed requests)
  udp.gbps, loss_percent    iperf3 -u -l 1400 -b 2G through the system: rate received, share of bytes lost
  dns.qps, lost_percent     dnsperf against dnsmasq (local host records) through the system
                            (UDP: not haproxy, which has no UDP forwarding, nor oi-plain, whose UDP path is oi's)
  idle_kib_per_conn         anonymous resident memory (Pss_Anon) the system gains per idle connection
  startup_ms                launch to the first request answered through it (oi: the compiled binary)
  syscalls_per_gib          strace -c -f on the system during an iperf3 -P 1 run
  context_switches_per_gib  perf stat during the iperf3 -P 1 run (also cpu_migrations_per_gib,
                            and instructions/cycles where the machine has hardware counters)
  cpu_s_per_gib             user + system CPU seconds (from /proc) per GiB forwarded
  private_kib.idle/end      private memory (Pss_Anon over the system's processes) at start and at the end;
                            rss_anon_kib (RssAnon) and file_kib (RssFile: file-backed, shared) beside it
For direct, the cost and memory figures are those of the backend itself (iperf3 -s, the holder);
dnat has no process: its CPU, memory and start-up figures are n/a.

How cost grows (scaling in the JSON, its own table and chart):
  ab at 10, 100, 1,000, 5,000 clients: conn/s and p99 request time (oi, rinetd, socat, haproxy, direct);
  private memory per idle connection at 1,000 and 9,000 (socat: 1,000 only, a process per connection);
  start, reload (SIGHUP; haproxy -W: SIGUSR2) and private memory of oi, rinetd, haproxy with
  10, 1,000, 10,000 generated rules on 127.0.0.3:40000-49999 (a point whose ports are taken is skipped);
  oi's private memory with 1,000 and 15,000 UDP sessions (a socket per session, echoed datagrams).

The TLS section (--tls; ab and curl verify the server's certificate against the bench's own CA):
  sni_conn_per_s            ab -c 50 over https (a full handshake per request; its Host header is the SNI
                            name) through an SNI-routed bind (a.test and *.b.test|b.test to two nginx sites)
  plain_conn_per_s          the same through a plain rule to the same site; CPU µs per connection of each
  handshakes_per_s          ab -c 50 over https to a TLS-terminating rule (a.test's certificate), plain
                            HTTP to nginx behind it; direct: nginx terminating itself
  bulk_gbps, cpu_s_per_gib  curl downloading a file of random bytes through that rule
  waiting_kib_per_conn      a fresh instance, 2,000 clients that send the first half of openssl's ClientHello
                            and hold: growth of its private memory (Pss_Anon) per connection
  A system whose revision refuses the config (oi before SNI routing and TLS landed) is reported as
  "not supported by this revision" with its own error; the others are measured all the same.
  Output: bench/results/tls-latest.json and tls-latest.md.

Output: bench/results/latest.json, latest.md, latest.svg, latest-scaling.svg (latest-netns.* with
--netns), and a dated copy of the JSON in bench/results/history/. Raw files: bench/results/tmp/.
Root installs what is missing (iperf3 sockperf rinetd socat haproxy nginx-light apache2-utils
strace linux-perf dnsmasq-base dnsperf nftables openssl curl); otherwise what needs a missing tool is
skipped and named.`;

export class UsageError extends Error {}

export function parseOptions(argv: string[]): BenchOptions | "help" {
  let quick = false;
  let netns = false;
  let scaling = true;
  let systemsGiven = false;
  let profile = false;
  let noInstall = false;
  let tls = false;
  let runs: number | undefined;
  let oiRev: string | undefined;
  let systems: SystemName[] = [...DEFAULT_SYSTEMS];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = (): string => {
      const next = argv[++i];
      if (next === undefined) throw new UsageError(`${arg} needs a value`);
      return next;
    };
    switch (arg) {
      case "-h":
      case "--help":
        return "help";
      case "--quick":
        quick = true;
        break;
      case "--netns":
        netns = true;
        break;
      case "--profile":
        profile = true;
        break;
      case "--oi-rev":
        oiRev = value();
        break;
      case "--no-install":
        noInstall = true;
        break;
      case "--tls":
        tls = true;
        break;
      case "--no-scaling":
        scaling = false;
        break;
      case "--runs": {
        runs = Number(value());
        if (!Number.isInteger(runs) || runs < 3) throw new UsageError("--runs must be an integer of at least 3");
        break;
      }
      case "--systems": {
        const names = value().split(",").filter((name) => name !== "");
        const unknown = names.filter((name) => !(ALL_SYSTEMS as readonly string[]).includes(name));
        if (unknown.length > 0 || names.length === 0) throw new UsageError(`unknown system(s): ${unknown.join(", ")}; known: ${ALL_SYSTEMS.join(", ")}`);
        systems = ALL_SYSTEMS.filter((name) => names.includes(name));
        systemsGiven = true;
        break;
      }
      default:
        throw new UsageError(`unknown argument: ${arg} (see --help)`);
    }
  }
  // dnat is kernel forwarding between the bench's namespaces: it exists on the --netns path only.
  if (!netns && systems.includes("dnat")) {
    if (systemsGiven) throw new UsageError("dnat is measured with --netns only (it forwards between the bench's namespaces)");
  }
  if (tls) {
    if (netns || profile) throw new UsageError("--tls runs on loopback alone: not with --netns or --profile");
    const others = systems.filter((name) => !(TLS_SYSTEMS as readonly string[]).includes(name));
    if (systemsGiven && others.length > 0) throw new UsageError(`--tls measures ${TLS_SYSTEMS.join(", ")} only, not ${others.join(", ")}`);
    if (!systemsGiven) systems = [...TLS_SYSTEMS];
  }
  if (netns && !systemsGiven) systems = ALL_SYSTEMS.filter((name) => systems.includes(name) || name === "dnat");
  const base = quick
    ? { runs: 3, iperfSeconds: 2, straceSeconds: 1, latencySeconds: 2, abRequests: 3000, abSeconds: 5, idleConnections: 500, dnsSeconds: 3 }
    : { runs: 5, iperfSeconds: 8, straceSeconds: 3, latencySeconds: 8, abRequests: 20000, abSeconds: 20, idleConnections: 2000, dnsSeconds: 10 };
  return { ...base, abHighConcurrency: 1000, runs: runs ?? base.runs, quick, netns, profile, noInstall, scaling, systems, oiRev, tls };
}
