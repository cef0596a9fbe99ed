/**
 * @module The admin server's HTTP edges: JSON answers, errors as
 * `{"error": "..."}`, a request body read up to a bound, and the bearer
 * token check (constant time, so the answer's timing tells nothing about
 * how much of a guess was right).
 */
import { createHash, timingSafeEqual } from "node:crypto";

/** Request bodies larger than this are refused with 413: a rule is a few hundred bytes. */
export const MAX_BODY_BYTES = 1024 * 1024;

const JSON_TYPE = { "content-type": "application/json; charset=utf-8" };

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(`${JSON.stringify(body, null, 2)}\n`, { status, headers: { ...JSON_TYPE, ...headers } });
}

export function errorResponse(status: number, message: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}): Response {
  return json({ error: message, ...extra }, status, headers);
}

/** An answer the handlers build without knowing about Response (status, JSON body). */
export interface ApiAnswer {
  status: number;
  body: unknown;
}

/** A JSON answer; a string body is sent as it is, as YAML (the config export). */
export function answer(result: ApiAnswer): Response {
  if (typeof result.body === "string") return new Response(result.body, { status: result.status, headers: { "content-type": "application/yaml; charset=utf-8" } });
  return json(result.body, result.status);
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The body as text, or an HttpError 413 past MAX_BODY_BYTES (announced or actual). */
export async function readBody(request: Request): Promise<string> {
  const announced = Number(request.headers.get("content-length") ?? "0");
  if (announced > MAX_BODY_BYTES) throw new HttpError(413, `request body of ${announced} bytes is over the limit of ${MAX_BODY_BYTES}`);
  if (request.body === null) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_BODY_BYTES) {
      void reader.cancel();
      throw new HttpError(413, `request body is over the limit of ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(value);
  }
  const decoder = new TextDecoder("utf-8", { fatal: true });
  try {
    return decoder.decode(Buffer.concat(chunks));
  } catch {
    throw new HttpError(400, "request body is not valid UTF-8");
  }
}

const digest = (text: string) => createHash("sha256").update(text).digest();

/**
 * Whether `request` carries `Authorization: Bearer <token>`: "missing" (401)
 * or "wrong" (403). Both sides are hashed first so the comparison is of
 * equal lengths and in constant time whatever was sent.
 */
export function checkBearer(request: Request, token: string): "ok" | "missing" | "wrong" {
  const header = request.headers.get("authorization");
  const match = header === null ? null : /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (match === null) return "missing";
  return timingSafeEqual(digest(match[1] ?? ""), digest(token)) ? "ok" : "wrong";
}
