/**
 * @module The 32-bit string hash behind `iphash`: FNV-1a over UTF-16 code
 * units, finished with MurmurHash3's avalanche step. Written here rather
 * than taken from Bun.hash because its default (wyhash) returns a bigint
 * (an allocation per call), and because a seed lets the balancer hash
 * "client under backend b" without building the concatenated string.
 * Deterministic across runs and machines, so a restart keeps every client
 * on its backend.
 */

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * FNV-1a of `text` starting from `seed` (the standard offset basis by
 * default). Code units above 0xff are folded in as two bytes, so any string
 * hashes, though addresses and names are ASCII.
 */
export function fnv1a32(text: string, seed = FNV_OFFSET_BASIS): number {
  let hash = seed >>> 0;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit > 0xff) {
      hash = Math.imul(hash ^ (unit >>> 8), FNV_PRIME);
    }
    hash = Math.imul(hash ^ (unit & 0xff), FNV_PRIME);
  }
  return hash >>> 0;
}

/**
 * MurmurHash3's finalizer: every input bit flips each output bit with
 * probability about 1/2. FNV-1a alone mixes its last bytes poorly, and
 * addresses that differ only in their last digits are the common case.
 */
export function fmix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A well-mixed 32-bit hash of `text` under `seed`: what `iphash` ranks backends by. */
export function hash32(text: string, seed = FNV_OFFSET_BASIS): number {
  return fmix32(fnv1a32(text, seed));
}

const TWO_TO_32 = 4294967296;

/**
 * Weighted rendezvous (highest random weight) score of one backend for one
 * client: `-weight / ln(u)` with `u` the hash mapped into (0, 1). The
 * backend with the highest score wins, and backend i wins with probability
 * weight_i / sum(weights). Adding a backend only takes the clients for
 * which it now scores highest; removing one only moves the clients it had.
 */
export function rendezvousScore(hash: number, weight: number): number {
  const unit = (hash + 0.5) / TWO_TO_32;
  return -weight / Math.log(unit);
}
