/**
 * @module What the admin API does, on the running daemon: views of the
 * rules and their backends (read from the same counters the metrics and the
 * status file read), reloads through the daemon's one reload path, backend
 * state changes through the engine (to every worker's backend registry), and
 * rules put or deleted as a change to the running config applied like a
 * reload.
 */
import { describeRule, formatIssue } from "../config/describe.ts";
import { formatEndpoint, formatTarget } from "../endpoint.ts";
import type { ApplyOutcome, Daemon } from "../daemon.ts";
import type { BackendFigures } from "../metrics.ts";
import { statusJson } from "../status.ts";
import type { ConfigIssue, ForwardRule } from "../types.ts";
import type { ApiAnswer } from "./http.ts";
import type { AdminApi } from "./server.ts";
import { HISTORY_INTERVAL_MS } from "./history.ts";
import { parseRuleBody } from "./rule-body.ts";
import { configYaml, ruleOptionsYaml } from "../config/yaml-writer.ts";
import type { AdminState } from "../balance/pool.ts";

const STATES: readonly AdminState[] = ["ready", "drain", "maint"];
const MAX_WEIGHT = 100;

function error(status: number, message: string, extra: Record<string, unknown> = {}): ApiAnswer {
  return { status, body: { error: message, ...extra } };
}

function issueView(issue: ConfigIssue): { file: string; line: number; reason: string; text: string } {
  return { file: issue.file, line: issue.line, reason: issue.reason, text: formatIssue(issue) };
}

function refused(outcome: Extract<ApplyOutcome, { ok: false }>): ApiAnswer {
  return error(outcome.status, outcome.message, { errors: outcome.errors.map(issueView) });
}

export class AdminControl implements AdminApi {
  constructor(private readonly daemon: Daemon) {}

  metrics(): Promise<string> {
    return this.daemon.metricsText();
  }

  async status(): Promise<string> {
    await this.refresh();
    return statusJson(this.daemon.counters.snapshot());
  }

  ready(): boolean {
    return this.daemon.ready;
  }

  async rules(): Promise<ApiAnswer> {
    await this.refresh();
    const names = [...new Set(this.daemon.running.rules.map((rule) => rule.name))];
    return { status: 200, body: { rules: names.map((name) => this.view(name)) } };
  }

  async rule(name: string): Promise<ApiAnswer> {
    await this.refresh();
    if (!this.daemon.running.rules.some((rule) => rule.name === name)) return error(404, `no rule named '${name}'`);
    return { status: 200, body: this.view(name) };
  }

  errors(): ApiAnswer {
    return { status: 200, body: { errors: this.daemon.recentErrors.list() } };
  }

  history(since: string | null): ApiAnswer {
    const after = since === null ? 0 : Number(since);
    if (!Number.isFinite(after)) return error(400, `since must be a time in ms since the epoch, not '${since}'`);
    return { status: 200, body: { interval_seconds: HISTORY_INTERVAL_MS / 1000, samples: this.daemon.history.samples(after) } };
  }

  async reload(): Promise<ApiAnswer> {
    const outcome = await this.daemon.reload("admin API");
    if (!outcome.ok) return refused(outcome);
    return { status: 200, body: { reloaded: true, listeners: outcome.summary, connections_open: outcome.active } };
  }

  async setBackend(ruleName: string, backendName: string, text: string): Promise<ApiAnswer> {
    const change = parseBackendChange(text);
    if (typeof change === "string") return error(400, change);
    if (!this.daemon.running.rules.some((rule) => rule.name === ruleName)) return error(404, `no rule named '${ruleName}'`);
    if (!(await this.daemon.forwarding.changeBackend(ruleName, backendName, change))) {
      return error(404, `rule '${ruleName}' has no backend named '${backendName}'`);
    }
    await this.refresh();
    const view = this.view(ruleName).backends.filter((backend) => backend.name === backendName || backend.name.startsWith(`${backendName}[`));
    return { status: 200, body: { rule: ruleName, backends: view } };
  }

  async putRule(name: string, text: string, _contentType: string): Promise<ApiAnswer> {
    const parsed = parseRuleBody(name, text);
    if (!parsed.ok) return error(parsed.status, parsed.message, parsed.errors.length === 0 ? {} : { errors: parsed.errors.map(issueView) });
    const existed = this.daemon.running.rules.some((rule) => rule.name === name);
    const outcome = await this.daemon.changeRule(name, parsed.rules);
    if (!outcome.ok) return refused(outcome);
    return { status: existed ? 200 : 201, body: { [existed ? "replaced" : "added"]: name, listeners: outcome.summary, rule: this.view(name) } };
  }

  async deleteRule(name: string): Promise<ApiAnswer> {
    if (!this.daemon.running.rules.some((rule) => rule.name === name)) return error(404, `no rule named '${name}'`);
    const outcome = await this.daemon.changeRule(name, null);
    if (!outcome.ok) return refused(outcome);
    return { status: 200, body: { deleted: name, listeners: outcome.summary, connections_open: outcome.active } };
  }

  async config(format: string): Promise<ApiAnswer> {
    if (format !== "yaml") return error(400, `format=${format}: only format=yaml is served`);
    return { status: 200, body: configYaml(this.daemon.running) };
  }

  private async refresh(): Promise<void> {
    if (this.daemon.workerCount > 1) await this.daemon.forwarding.refresh();
  }

  /** One rule (all its binds) as the API shows it. */
  private view(name: string) {
    const rules = this.daemon.running.rules.filter((rule) => rule.name === name);
    const first = rules[0] as ForwardRule;
    const snapshot = this.daemon.counters.snapshot().rules.find((rule) => rule.name === name);
    const figures: BackendFigures | undefined = this.daemon.forwarding.sources.backends().find((each) => each.rule.name === name);
    const changed = this.daemon.apiChanged.has(name);
    return {
      name,
      source: changed ? "api" : "file",
      binds: rules.map((rule) => formatEndpoint(rule.bind)),
      mode: first.mode,
      at: rules.map((rule) => `${rule.at.file}:${rule.at.line}`),
      check: rules.map(describeRule),
      options: ruleOptionsYaml(first),
      connections: { active: snapshot?.active ?? 0, total: snapshot?.total ?? 0 },
      bytes: { in: snapshot?.bytesIn ?? 0, out: snapshot?.bytesOut ?? 0 },
      backends: (figures?.statuses ?? []).map((status) => {
        const base = status.name.replace(/\[\d+\]$/, "");
        const configured = first.backends.find((backend) => backend.name === status.name || backend.name === base);
        return {
          name: status.name,
          address: configured === undefined ? undefined : formatTarget(configured.endpoint),
          weight: status.weight,
          state: status.state ?? "ready",
          health: status.healthy ? "up" : "down",
          connections: { active: status.active, total: status.totalConnections },
          failures: status.totalFailures,
          bytes: { in: status.bytesIn, out: status.bytesOut },
        };
      }),
    };
  }
}

/** `{"state": "drain"}`, `{"weight": 5}` or both; a reason when the body is not that. */
export function parseBackendChange(text: string): { state?: AdminState; weight?: number } | string {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (cause) {
    return `malformed JSON body: ${cause instanceof Error ? cause.message : String(cause)}`;
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) return 'the body must be a JSON object such as {"state": "drain"} or {"weight": 5}';
  const unknown = Object.keys(body).filter((key) => key !== "state" && key !== "weight");
  if (unknown.length > 0) return `unknown key${unknown.length > 1 ? "s" : ""} ${unknown.map((key) => `'${key}'`).join(", ")}: only state and weight`;
  const { state, weight } = body as { state?: unknown; weight?: unknown };
  if (state === undefined && weight === undefined) return "give state (ready, drain, maint) or weight (1 to 100), or both";
  const change: { state?: AdminState; weight?: number } = {};
  if (state !== undefined) {
    if (typeof state !== "string" || !STATES.includes(state as AdminState)) return `state must be one of ${STATES.join(", ")}, got ${JSON.stringify(state)}`;
    change.state = state as AdminState;
  }
  if (weight !== undefined) {
    if (typeof weight !== "number" || !Number.isInteger(weight) || weight < 1 || weight > MAX_WEIGHT) {
      return `weight must be a whole number from 1 to ${MAX_WEIGHT}, got ${JSON.stringify(weight)}`;
    }
    change.weight = weight;
  }
  return change;
}
