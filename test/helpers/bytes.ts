/** Byte arrays for parser tests, written as text or put together from parts. */

/** The bytes of `text`, one a character (latin1): `"\xe9"` is the one byte 0xe9. */
export function ascii(text: string): Uint8Array {
  return Uint8Array.from(text, (char) => char.charCodeAt(0) & 0xff);
}

export function concat(...parts: Array<Uint8Array | number[]>): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
