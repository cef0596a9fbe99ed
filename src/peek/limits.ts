/**
 * @module Bounds shared by the first-bytes parsers (tls-hello.ts,
 * http-request.ts): how much of a client's stream a peek may hold before it
 * must decide. The forwarder reads at most this much before choosing a
 * backend, so a parse that would need more is refused rather than waited on.
 */

/** The most bytes a peek reads from a client; a ClientHello or request head longer than this is invalid. */
export const MAX_PEEK_BYTES = 16 * 1024;
