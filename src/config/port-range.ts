/**
 * @module Port ranges, as every config format writes them: `8000-8099` in
 * place of a port, on a bind (listen on each port of it) or on a backend
 * (the client's port at offset i goes to the backend's port at offset i; a
 * backend with one port takes every port of the bind's range). The checks
 * that span a rule (widths) live here; those that span rules (overlaps) are
 * findDuplicateBinds's in validate.ts.
 */
import { formatPorts, portCount } from "../endpoint.ts";
import type { ConfigIssue, ForwardRule } from "../types.ts";
import type { Checked, RuleLabel } from "./validate.ts";

const MAX_PORT = 65535;
const RANGE = /^(\d+)-(\d+)$/;

/** The ports of a range: `port` is the first, `portEnd` the last (absent when the range is one port, `8000-8000`). */
export interface PortSpan {
  port: number;
  portEnd?: number;
}

/** Whether `text` is written as a range (`8000-8099`), right or wrong. */
export function isPortRange(text: string): boolean {
  return RANGE.test(text.trim());
}

/** `8000-8099` as a span; `role` names the field in the reason ("bind port", "connect port"). */
export function parsePortRange(text: string, role: string): Checked<PortSpan> {
  const match = RANGE.exec(text.trim());
  if (match === null) return { ok: false, reason: `${role} '${text}' is not a port range (write FIRST-LAST, such as 8000-8099)` };
  const first = Number(match[1]);
  const last = Number(match[2]);
  for (const port of [first, last]) {
    if (port === 0) return { ok: false, reason: `${role} range '${text}': port 0 cannot be part of a range (ports are 1..${MAX_PORT})` };
    if (port > MAX_PORT) return { ok: false, reason: `${role} range '${text}': ${port} is past the last port, ${MAX_PORT}` };
  }
  if (last < first) return { ok: false, reason: `${role} range '${text}' ends before it starts (write the lower port first)` };
  return { ok: true, value: last === first ? { port: first } : { port: first, portEnd: last } };
}

/**
 * A backend's port range must be exactly as wide as its rule's bind range
 * (port i to port i); a backend of one port takes every port of the range.
 * A backend range under a bind of one port says nothing sensible either.
 */
export function findRangeMismatches(rules: ForwardRule[], label: RuleLabel): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const rule of rules) {
    const width = portCount(rule.bind);
    for (const backend of rule.backends) {
      const endpoint = backend.endpoint;
      if (endpoint.portEnd === undefined) continue;
      const backendWidth = portCount(endpoint);
      let reason: string | undefined;
      if (rule.bind.portEnd === undefined) {
        reason = `connect port range ${formatPorts(endpoint)} needs a bind port range of the same width; the bind is one port, ${formatPorts(rule.bind)}`;
      } else if (backendWidth !== width) {
        reason =
          `ranges of unequal width: connect ports ${formatPorts(endpoint)} are ${backendWidth} ports, bind ports ${formatPorts(rule.bind)} are ${width} ` +
          `(a backend range must be as wide as the bind range, or be one port that takes them all)`;
      }
      if (reason !== undefined) issues.push({ file: rule.at.file, line: rule.at.line, reason: label(rule) + reason });
    }
  }
  return issues;
}
