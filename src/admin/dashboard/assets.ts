/**
 * @module The admin dashboard's files, served by the admin server at `/`,
 * `/dashboard.css` and `/dashboard.js`. Bun inlines them as text (in the
 * compiled binary too): the page needs nothing from outside the process,
 * and, its script and style being files of their own, runs under a strict
 * Content-Security-Policy.
 */
import page from "./index.html" with { type: "text" };
import style from "./dashboard.css" with { type: "text" };
// @ts-ignore: a browser script (no module of this program), imported as its text.
import script from "./dashboard.js" with { type: "text" };

export interface DashboardFile {
  body: string;
  type: string;
}

/** No script, style, image or connection from anywhere but the admin server itself; no inline code. */
export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/** The dashboard's files by request path. */
export const DASHBOARD_FILES: ReadonlyMap<string, DashboardFile> = new Map([
  // Bun types an .html import as an HTML bundle; with { type: "text" } it is the file's text.
  ["/", { body: page as unknown as string, type: "text/html; charset=utf-8" }],
  ["/dashboard.css", { body: style, type: "text/css; charset=utf-8" }],
  ["/dashboard.js", { body: script as string, type: "text/javascript; charset=utf-8" }],
]);
