/**
 * @module "How cost grows": the figures again at several sizes, after the
 * rounds. (a) New connections per second and ab's p99 request time at
 * 10, 100, 1,000 and 5,000 concurrent clients, through the running systems,
 * interleaved per point; (b) private memory per idle connection at 1,000 and
 * 9,000 idle connections (fresh instances, as the idle figure); (c) start,
 * reload and private memory with generated configs of 10, 1,000 and 10,000
 * rules (config-scale.ts); (d) oi's private memory with 1,000 and 15,000 UDP
 * sessions (udp-sessions.ts). Every point is bounded in count and time;
 * a point that cannot run here is skipped with its reason.
 */
import { median } from "../stats.ts";
import type { RunningSystem } from "../systems.ts";
import type { ConcurrencyPoint, ConfigPoint, IdlePoint, ScalingReport, SystemName, UdpSessionPoint } from "../types.ts";
import { CONFIG_FIRST_PORT, CONFIG_HOST, CONFIG_LAST_PORT, CONFIG_SYSTEMS, measureConfigPoint } from "./config-scale.ts";
import { runAb } from "./connections.ts";
import type { MeasureContext } from "./context.ts";
import { idleKiBPerConn } from "./idle-memory.ts";
import { measureUdpSessions } from "./udp-sessions.ts";

/** The peers where growing the load makes sense: oi and the other forwarders (oi-plain and oi-w2 take oi's figures to the same places), and direct. */
const PEERS: readonly SystemName[] = ["oi", "rinetd", "socat", "haproxy", "direct"];

export interface ScalingPlan {
  concurrency: number[];
  /** ab runs per point and system (the median counts). */
  runs: number;
  requests(clients: number): number;
  abSeconds: number;
  idle: number[];
  /** Systems measured at idle counts above 1,000 (undefined: all). */
  idleLarge?: SystemName[];
  config: number[];
  /** Starts (and reloads) per config point; the medians count. */
  configRuns: number;
  udpSessions: number[];
}

export function scalingPlan(quick: boolean): ScalingPlan {
  return quick
    ? {
        concurrency: [10, 100, 1000, 5000], runs: 1, requests: (c) => Math.max(2 * c, 2000), abSeconds: 10,
        idle: [1000, 9000], idleLarge: ["oi"], config: [10, 1000, 10000], configRuns: 1, udpSessions: [1000, 15000],
      }
    : {
        concurrency: [10, 100, 1000, 5000], runs: 3, requests: (c) => Math.max(4 * c, 10000), abSeconds: 20,
        idle: [1000, 9000], config: [10, 1000, 10000], configRuns: 3, udpSessions: [1000, 15000],
      };
}

function push<T>(map: Partial<Record<SystemName, T[]>>, name: SystemName, value: T): void {
  (map[name] ??= []).push(value);
}

async function concurrency(ctx: MeasureContext, plan: ScalingPlan, systems: RunningSystem[], skipped: string[]): Promise<ScalingReport["concurrency"]> {
  const result: ScalingReport["concurrency"] = { points: plan.concurrency, runs: plan.runs, systems: {} };
  if (ctx.missing.has("ab") || ctx.backends.procs.http === undefined) {
    skipped.push("concurrency: ab or nginx missing");
    return result;
  }
  for (const clients of plan.concurrency) {
    const requests = plan.requests(clients);
    const runs = new Map<SystemName, Array<Awaited<ReturnType<typeof runAb>>>>();
    // ab needs a descriptor per client, a forwarder two.
    const fits = ctx.fdLimit >= 2 * clients + 200;
    for (let round = 0; round < plan.runs && fits; round++) {
      for (const system of systems) {
        const run = await runAb(ctx, system.host, system.port("http"), clients, requests, plan.abSeconds);
        runs.set(system.name, [...(runs.get(system.name) ?? []), run]);
      }
    }
    for (const system of systems) {
      const list = runs.get(system.name) ?? [];
      const failed = list.reduce((sum, run) => sum + run.failed, 0);
      const point: ConcurrencyPoint = {
        clients,
        requests,
        conn_per_s: median(list.map((run) => run.rate)),
        p99_ms: median(list.map((run) => run.p99Ms)),
        failed: list.length === 0 ? null : failed,
        complete: list.length === 0 ? null : list.reduce((sum, run) => sum + run.complete, 0),
      };
      const errors = [...new Set(list.map((run) => run.error).filter((error) => error !== undefined))];
      if (!fits) point.note = `skipped: ${clients} clients need ${2 * clients + 200} descriptors, the limit is ${ctx.fdLimit}`;
      else if (errors.length > 0) point.note = errors.join("; ");
      push(result.systems, system.name, point);
      ctx.log(`  scaling: ${system.name} at ${clients} clients: ${point.conn_per_s?.toFixed(0) ?? "—"} conn/s, p99 ${point.p99_ms ?? "—"} ms, ${point.failed ?? "—"} failed${point.note === undefined ? "" : ` (${point.note})`}`);
    }
  }
  return result;
}

/** socat forks a process per connection: past this many idle ones it is left out (pid_max here is 32768, shared with the whole machine). */
const SOCAT_IDLE_MAX = 1000;

async function idle(ctx: MeasureContext, plan: ScalingPlan, names: SystemName[], skipped: string[]): Promise<ScalingReport["idle"]> {
  const result: ScalingReport["idle"] = { points: plan.idle, systems: {} };
  if (ctx.backends.procs.hold === undefined) {
    skipped.push("idle memory: the holder backend did not start");
    return result;
  }
  for (const n of plan.idle) {
    for (const name of names) {
      const point: IdlePoint = { connections: n, kib_per_conn: null };
      if (ctx.fdLimit < 2 * n + 200) point.note = `skipped: ${n} connections need ${2 * n + 200} descriptors, the limit is ${ctx.fdLimit}`;
      else if (name === "socat" && n > SOCAT_IDLE_MAX) point.note = `skipped: socat forks a process per connection (${n} processes)`;
      else if (n > 1000 && plan.idleLarge !== undefined && !plan.idleLarge.includes(name)) point.note = `skipped: --quick measures ${n} idle connections for ${plan.idleLarge.join(", ")} only`;
      else {
        const notes: string[] = [];
        point.kib_per_conn = await idleKiBPerConn(ctx, name, n, `scaling-${name}-idle-${n}`, notes);
        if (notes.length > 0) point.note = notes.join("; ");
      }
      push(result.systems, name, point);
      ctx.log(`  scaling: ${name} with ${n} idle connections: ${point.kib_per_conn?.toFixed(2) ?? "—"} KiB/conn${point.note === undefined ? "" : ` (${point.note})`}`);
    }
  }
  return result;
}

async function config(ctx: MeasureContext, plan: ScalingPlan, names: SystemName[]): Promise<ScalingReport["config"]> {
  const result: ScalingReport["config"] = { points: plan.config, runs: plan.configRuns, ports: `${CONFIG_HOST}:${CONFIG_FIRST_PORT}-${CONFIG_LAST_PORT}`, systems: {} };
  // One untimed start per system first: the first launch after the other parts is slower (pages of the
  // program to fault in again), which would be charged to the smallest config.
  for (const name of names) await measureConfigPoint(ctx, name, plan.config[0] ?? 10);
  for (const n of plan.config) {
    for (const name of names) {
      let point: ConfigPoint;
      if (n > CONFIG_LAST_PORT - CONFIG_FIRST_PORT + 1) point = { rules: n, start_ms: null, reload_ms: null, private_kib: null, file_kib: null, note: "skipped: more rules than ports in the range" };
      else if (ctx.fdLimit < n + 200) point = { rules: n, start_ms: null, reload_ms: null, private_kib: null, file_kib: null, note: `skipped: ${n} listeners need more than the ${ctx.fdLimit} descriptors` };
      else {
        const runs: ConfigPoint[] = [];
        for (let run = 0; run < plan.configRuns; run++) runs.push(await measureConfigPoint(ctx, name, n));
        const notes = [...new Set(runs.map((each) => each.note).filter((note) => note !== undefined))];
        point = {
          rules: n,
          start_ms: median(runs.map((each) => each.start_ms)),
          reload_ms: median(runs.map((each) => each.reload_ms)),
          private_kib: median(runs.map((each) => each.private_kib)),
          file_kib: median(runs.map((each) => each.file_kib)),
          ...(notes.length > 0 ? { note: notes.join("; ") } : {}),
        };
      }
      push(result.systems, name, point);
      const f = (value: number | null) => (value === null ? "—" : value.toFixed(0));
      ctx.log(`  scaling: ${name} with ${n} rules: start ${f(point.start_ms)} ms, reload ${f(point.reload_ms)} ms, private ${f(point.private_kib)} KiB${point.note === undefined ? "" : ` (${point.note})`}`);
    }
  }
  return result;
}

async function udpSessions(ctx: MeasureContext, plan: ScalingPlan): Promise<ScalingReport["udp_sessions"]> {
  const result: ScalingReport["udp_sessions"] = { points: plan.udpSessions, systems: {} };
  for (const n of plan.udpSessions) {
    let point: UdpSessionPoint;
    if (ctx.fdLimit < n + 200) point = { sessions: n, answered: null, private_kib: null, kib_per_session: null, note: `skipped: ${n} sessions need more than the ${ctx.fdLimit} descriptors` };
    else point = await measureUdpSessions(ctx, n);
    push(result.systems, "oi", point);
    ctx.log(`  scaling: oi with ${n} UDP sessions: ${point.private_kib ?? "—"} KiB private, ${point.kib_per_session?.toFixed(2) ?? "—"} KiB/session${point.note === undefined ? "" : ` (${point.note})`}`);
  }
  return result;
}

export async function measureScaling(ctx: MeasureContext, running: RunningSystem[]): Promise<ScalingReport> {
  const started = Date.now();
  const plan = scalingPlan(ctx.options.quick);
  const skipped: string[] = [];
  const systems = running.filter((system) => PEERS.includes(system.name));
  const left = running.filter((system) => !PEERS.includes(system.name)).map((system) => system.name);
  if (left.length > 0) skipped.push(`${left.join(", ")}: not in this section (oi-plain and oi-w2 are oi with other settings; dnat is the kernel)`);
  const names = systems.map((system) => system.name);
  ctx.log(`scaling: concurrency ${plan.concurrency.join(", ")} (${plan.runs} run${plan.runs > 1 ? "s" : ""} each) through ${names.join(", ")}`);
  const concurrencyResult = await concurrency(ctx, plan, systems, skipped);
  ctx.log(`scaling: idle memory at ${plan.idle.join(", ")} connections`);
  const idleResult = await idle(ctx, plan, names, skipped);
  const configNames = CONFIG_SYSTEMS.filter((name) => ctx.options.systems.includes(name) && !ctx.missing.has(name === "oi" ? "bun" : name));
  ctx.log(`scaling: configs of ${plan.config.join(", ")} rules for ${configNames.join(", ")}`);
  const configResult = await config(ctx, plan, configNames);
  let udpResult: ScalingReport["udp_sessions"] = { points: plan.udpSessions, systems: {} };
  if (ctx.options.systems.includes("oi")) {
    ctx.log(`scaling: oi with ${plan.udpSessions.join(", ")} UDP sessions`);
    udpResult = await udpSessions(ctx, plan);
  } else skipped.push("UDP sessions: oi is not among the systems");
  return {
    concurrency: concurrencyResult,
    idle: idleResult,
    config: configResult,
    udp_sessions: udpResult,
    skipped,
    wall_seconds: (Date.now() - started) / 1000,
  };
}
