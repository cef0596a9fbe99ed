/**
 * @module The few bytes of the DNS wire format (RFC 1035, RFC 2782) that an
 * SRV lookup needs: a query for one name and type, and the SRV records of
 * an answer with their TTLs. node:dns's `resolveSrv` gives no TTL, and SRV
 * sets are refreshed at theirs, so oi asks for them itself (see srv.ts).
 *
 * Answers come from the network: the parser trusts nothing in them. Every
 * read is bounds-checked, compression pointers must point strictly backwards
 * (so they cannot loop) and a name is at most 255 bytes; a malformed answer
 * is a `WireError`, never an exception of another kind, a hang or a huge
 * allocation.
 */

export const TYPE_SRV = 33;
const CLASS_IN = 1;
const HEADER_BYTES = 12;
const MAX_NAME_BYTES = 255;
const MAX_LABEL_BYTES = 63;
/** More records than this in one answer are ignored (a balancer holds 32 backends at most anyway). */
const MAX_RECORDS = 256;
const DECODER = new TextDecoder();

export class WireError extends Error {
  constructor(reason: string) {
    super(`malformed DNS answer: ${reason}`);
    this.name = "WireError";
  }
}

export interface SrvRecord {
  priority: number;
  weight: number;
  port: number;
  /** The target host name, lowercase, without the trailing dot; "" for the root (RFC 2782: "service not available here"). */
  target: string;
  /** Seconds; Infinity when the source gives none (see srv.ts). */
  ttl: number;
}

export interface ParsedAnswer {
  /** The response code: 0 no error, 2 server failure, 3 no such name, 5 refused... */
  rcode: number;
  /** The server cut the answer short (TC bit): it did not fit a UDP datagram. */
  truncated: boolean;
  /** The SRV records of the answer section (other types, a CNAME say, are skipped). */
  records: SrvRecord[];
}

/** A query for `name` of type `type`, with recursion desired. Throws RangeError for a name that cannot be written. */
export function encodeQuery(id: number, name: string, type: number): Uint8Array {
  const labels = name.replace(/\.$/, "").split(".");
  const nameBytes = labels.reduce((sum, label) => sum + 1 + Buffer.byteLength(label), 1);
  if (nameBytes > MAX_NAME_BYTES) throw new RangeError(`DNS name '${name}' is longer than ${MAX_NAME_BYTES} bytes`);
  const out = new Uint8Array(HEADER_BYTES + nameBytes + 4);
  const view = new DataView(out.buffer);
  view.setUint16(0, id);
  view.setUint16(2, 0x0100); // RD
  view.setUint16(4, 1); // QDCOUNT
  let at = HEADER_BYTES;
  for (const label of labels) {
    const bytes = Buffer.from(label);
    if (bytes.length === 0 || bytes.length > MAX_LABEL_BYTES) throw new RangeError(`DNS name '${name}' has an empty or over-long label`);
    out[at++] = bytes.length;
    out.set(bytes, at);
    at += bytes.length;
  }
  out[at++] = 0;
  view.setUint16(at, type);
  view.setUint16(at + 2, CLASS_IN);
  return out;
}

/** The message's ID (to match an answer with its query); undefined when shorter than a header. */
export function messageId(message: Uint8Array): number | undefined {
  return message.length < HEADER_BYTES ? undefined : (message[0]! << 8) | message[1]!;
}

/**
 * The SRV records of `message`, an answer to a query of `id`. Throws a
 * WireError when the message is not a well-formed answer to it.
 */
export function decodeSrvAnswer(message: Uint8Array, id: number): ParsedAnswer {
  const reader = new Reader(message);
  if (reader.u16() !== id) throw new WireError("ID does not match the query");
  const flags = reader.u16();
  if ((flags & 0x8000) === 0) throw new WireError("not a response");
  const questions = reader.u16();
  const answers = reader.u16();
  reader.skip(4); // NSCOUNT, ARCOUNT: authority and additional sections are not read.
  const rcode = flags & 0x000f;
  const truncated = (flags & 0x0200) !== 0;
  for (let i = 0; i < questions; i++) {
    reader.name();
    reader.skip(4);
  }
  const records: SrvRecord[] = [];
  for (let i = 0; i < answers && i < MAX_RECORDS; i++) {
    reader.name();
    const type = reader.u16();
    const klass = reader.u16();
    const ttl = reader.u32();
    const length = reader.u16();
    const end = reader.offset + length;
    if (end > message.length) throw new WireError("record runs past the end");
    if (type === TYPE_SRV && klass === CLASS_IN) {
      const priority = reader.u16();
      const weight = reader.u16();
      const port = reader.u16();
      const target = reader.name();
      if (reader.offset !== end) throw new WireError("SRV record length does not match its contents");
      // RFC 2181: a TTL with the top bit set is read as 0.
      records.push({ priority, weight, port, target, ttl: ttl > 0x7fffffff ? 0 : ttl });
    }
    reader.offset = end;
  }
  return { rcode, truncated, records };
}

/** Bounds-checked reads over one message. */
class Reader {
  offset = 0;
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private need(count: number, at = this.offset): void {
    if (at + count > this.bytes.length) throw new WireError("message ends early");
  }

  u16(): number {
    this.need(2);
    const value = this.view.getUint16(this.offset);
    this.offset += 2;
    return value;
  }

  u32(): number {
    this.need(4);
    const value = this.view.getUint32(this.offset);
    this.offset += 4;
    return value;
  }

  skip(count: number): void {
    this.need(count);
    this.offset += count;
  }

  /** A possibly compressed name at the offset, which moves past it (past the first pointer when there is one). */
  name(): string {
    const labels: string[] = [];
    let at = this.offset;
    let resumeAt: number | undefined;
    let total = 1;
    for (;;) {
      this.need(1, at);
      const length = this.bytes[at]!;
      if ((length & 0xc0) === 0xc0) {
        this.need(2, at);
        const target = ((length & 0x3f) << 8) | this.bytes[at + 1]!;
        // Only backwards: a pointer can then never lead to itself, so following them ends.
        if (target >= at) throw new WireError("compression pointer does not point backwards");
        resumeAt ??= at + 2;
        at = target;
        continue;
      }
      if ((length & 0xc0) !== 0) throw new WireError("unknown label type");
      if (length === 0) {
        at += 1;
        break;
      }
      total += 1 + length;
      if (total > MAX_NAME_BYTES) throw new WireError("name longer than 255 bytes");
      this.need(1 + length, at);
      labels.push(DECODER.decode(this.bytes.subarray(at + 1, at + 1 + length)).toLowerCase());
      at += 1 + length;
    }
    this.offset = resumeAt ?? at;
    return labels.join(".");
  }
}
