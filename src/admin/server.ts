/**
 * @module The admin HTTP server (`admin ADDRESS`): on a unix socket (file
 * created with `admin-mode`, 0600 by default, through the umask so it is
 * never wider, not even for an instant) or on TCP. It serves `/healthz`,
 * `/readyz`, `/metrics` and the JSON API under `/api/v1/`; what the API
 * does lives in the daemon (AdminApi), this module only routes, checks the
 * token and turns every failure into a JSON error, never a crash.
 */
import type { Server as HttpServer } from "bun";
import { consola } from "consola";
import { formatHostPort } from "../ip.ts";
import { clearStaleSocket } from "../tcp/unix-socket.ts";
import type { AdminAddress, AdminSettings } from "../types.ts";
import { DASHBOARD_CSP, DASHBOARD_FILES } from "./dashboard/assets.ts";
import { type ApiAnswer, answer, checkBearer, errorResponse, HttpError, json, MAX_BODY_BYTES, readBody } from "./http.ts";

/** A backend's administrative state: `drain` takes no new connections, `maint` also stops its health probes. */
export type BackendState = "ready" | "drain" | "maint";

/** What the admin server asks of the running oi. */
export interface AdminApi {
  /** Prometheus text, as the metrics endpoint serves it. */
  metrics(): Promise<string>;
  /** The status file's JSON document, made now. */
  status(): Promise<string>;
  /** Every rule listens and no shutdown has begun. */
  ready(): boolean;
  rules(): Promise<ApiAnswer>;
  rule(name: string): Promise<ApiAnswer>;
  reload(): Promise<ApiAnswer>;
  setBackend(rule: string, backend: string, body: string): Promise<ApiAnswer>;
  putRule(name: string, body: string, contentType: string): Promise<ApiAnswer>;
  deleteRule(name: string): Promise<ApiAnswer>;
  config(format: string): Promise<ApiAnswer>;
  /** The last connections that did not end well (see recent-errors.ts). */
  errors(): ApiAnswer;
  /** Each rule's counters every 2 s over the last minutes (see history.ts); `since`: only samples after that time (ms). */
  history(since: string | null): ApiAnswer;
}

export function describeAdminAddress(address: AdminAddress): string {
  return address.transport === "unix" ? `unix:${address.path}` : `http://${formatHostPort(address.host, address.port)}`;
}

export function sameAdminAddress(a: AdminSettings | undefined, b: AdminSettings | undefined): boolean {
  const x = a?.address;
  const y = b?.address;
  if (x === undefined || y === undefined) return x === y;
  if (x.transport === "unix" || y.transport === "unix") return x.transport === y.transport && (x as { path: string }).path === (y as { path: string }).path && a?.socketMode === b?.socketMode;
  return x.host === y.host && x.port === y.port;
}

type Handler = (request: Request, params: string[], url: URL) => Promise<Response> | Response;

interface Route {
  pattern: RegExp;
  /** GET routes that `admin-read open` leaves open; every other method needs the token. */
  methods: Partial<Record<string, Handler>>;
  /** Outside the API (probes, metrics): never behind the token. */
  open?: boolean;
}

const TEXT = { "content-type": "text/plain; charset=utf-8" };
const PROMETHEUS = { "content-type": "text/plain; version=0.0.4; charset=utf-8" };

function segment(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new HttpError(400, `bad percent-encoding in '${text}'`);
  }
}

export class AdminServer {
  private server: HttpServer<undefined> | undefined;
  private readonly routes: Route[];

  constructor(
    /** Read at each request, so a reload's new token or `admin-read` takes effect at once. */
    private settings: AdminSettings,
    private readonly api: AdminApi,
  ) {
    const rule = "/api/v1/rules/([^/]+)";
    // The dashboard's files hold no data (the page asks the API, with the token when one is set): open, as the probes are.
    const dashboard: Route[] = [...DASHBOARD_FILES].map(([path, file]) => ({
      pattern: new RegExp(`^${path.replace(".", "\\.")}$`),
      open: true,
      methods: { GET: () => new Response(file.body, { headers: { "content-type": file.type, "content-security-policy": DASHBOARD_CSP, "cache-control": "no-cache" } }) },
    }));
    this.routes = [
      ...dashboard,
      { pattern: /^\/healthz$/, open: true, methods: { GET: () => new Response("ok\n", { headers: TEXT }) } },
      {
        pattern: /^\/readyz$/,
        open: true,
        methods: { GET: () => (api.ready() ? new Response("ready\n", { headers: TEXT }) : new Response("not ready\n", { status: 503, headers: TEXT })) },
      },
      { pattern: /^\/metrics$/, open: true, methods: { GET: async () => new Response(await api.metrics(), { headers: PROMETHEUS }) } },
      {
        pattern: /^\/api\/v1\/status$/,
        methods: { GET: async () => new Response(await api.status(), { headers: { "content-type": "application/json; charset=utf-8" } }) },
      },
      { pattern: /^\/api\/v1\/rules$/, methods: { GET: async () => answer(await api.rules()) } },
      {
        pattern: new RegExp(`^${rule}$`),
        methods: {
          GET: async (_request, [name]) => answer(await api.rule(segment(name!))),
          PUT: async (request, [name]) => answer(await api.putRule(segment(name!), await readBody(request), request.headers.get("content-type") ?? "")),
          DELETE: async (_request, [name]) => answer(await api.deleteRule(segment(name!))),
        },
      },
      {
        pattern: new RegExp(`^${rule}/backends/([^/]+)$`),
        methods: { POST: async (request, [name, backend]) => answer(await api.setBackend(segment(name!), segment(backend!), await readBody(request))) },
      },
      { pattern: /^\/api\/v1\/reload$/, methods: { POST: async () => answer(await api.reload()) } },
      { pattern: /^\/api\/v1\/errors$/, methods: { GET: () => answer(api.errors()) } },
      { pattern: /^\/api\/v1\/history$/, methods: { GET: (_request, _params, url) => answer(api.history(url.searchParams.get("since"))) } },
      { pattern: /^\/api\/v1\/config$/, methods: { GET: async (_request, _params, url) => answer(await api.config(url.searchParams.get("format") ?? "yaml")) } },
    ];
  }

  /** Listen; throws (with the reason) when the address cannot be had. */
  async start(): Promise<void> {
    const address = this.settings.address;
    if (address === undefined) throw new Error("admin server without an address");
    const common = {
      // A backstop: readBody refuses past MAX_BODY_BYTES with a JSON 413 first.
      maxRequestBodySize: MAX_BODY_BYTES * 2,
      fetch: (request: Request) => this.handle(request),
      error: (error: Error) => errorResponse(500, `internal error: ${error.message}`),
    };
    if (address.transport === "tcp") {
      this.server = Bun.serve({ ...common, hostname: address.host, port: address.port });
    } else {
      await clearStaleSocket(address.path);
      // The socket file is created by bind() with the umask applied: set it so the file is born with its mode, never wider.
      const previous = process.umask(~this.settings.socketMode & 0o777);
      try {
        this.server = Bun.serve({ ...common, unix: address.path });
      } finally {
        process.umask(previous);
      }
    }
    consola.info(`admin API at ${describeAdminAddress(address)}${this.settings.tokenFile === undefined ? "" : " (token required)"}`);
  }

  /** A reload kept the address: the token and `admin-read` may still have changed. */
  update(settings: AdminSettings): void {
    this.settings = settings;
  }

  /** Stop listening; `graceful`: requests under way (the reload that moved the server) get their answers. */
  stop(graceful = false): void {
    // Bun removes the unix socket file when it stops.
    void this.server?.stop(!graceful);
    this.server = undefined;
  }

  private async handle(request: Request): Promise<Response> {
    try {
      const url = new URL(request.url);
      for (const route of this.routes) {
        const match = route.pattern.exec(url.pathname);
        if (match === null) continue;
        const method = request.method === "HEAD" ? "GET" : request.method;
        const handler = route.methods[method];
        const allow = Object.keys(route.methods).join(", ");
        if (handler === undefined) return errorResponse(405, `${request.method} is not allowed on ${url.pathname} (allowed: ${allow})`, {}, { allow });
        const refused = route.open === true ? undefined : this.refuse(request, method);
        if (refused !== undefined) return refused;
        return await handler(request, match.slice(1), url);
      }
      return errorResponse(404, `no such endpoint: ${url.pathname}`);
    } catch (error) {
      if (error instanceof HttpError) return errorResponse(error.status, error.message);
      consola.error(`admin API: ${request.method} ${request.url}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      return errorResponse(500, `internal error: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** 401 without a token, 403 with a wrong one; undefined when the request may go on. */
  private refuse(request: Request, method: string): Response | undefined {
    const { tokenFile, token, readOpen } = this.settings;
    if (tokenFile === undefined) return undefined;
    if (readOpen && method === "GET") return undefined;
    const verdict = checkBearer(request, token);
    if (verdict === "missing") return errorResponse(401, "this endpoint needs Authorization: Bearer <token> (admin-token)", {}, { "www-authenticate": 'Bearer realm="oi"' });
    if (verdict === "wrong") return errorResponse(403, "wrong token");
    return undefined;
  }
}

export { json };
