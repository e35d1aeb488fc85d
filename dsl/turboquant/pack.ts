/**
 * TurboQuant's code packing: a little-endian, LSB-first bit stream — element `d` occupies bits
 * `[b·d, b·d + b)` of the byte array. For b = 4 that is nibble packing (element 2j in the low nibble of
 * byte j); for b = 3 it is vLLM's 8-codes-in-3-bytes layout; for b = 8 plain bytes. Every group of 8
 * elements fills exactly b whole bytes, which is what lets the kernels pack per 8-element group.
 *
 * @module
 */

/** Bytes that `count` codes of `bits` bits take: ⌈count·bits/8⌉. */
export function packedBytes(count: number, bits: number): number {
  return Math.ceil((count * bits) / 8);
}

/**
 * Pack `codes` (each `< 2^bits`) into `out` starting at byte `offset` (the covered bytes are
 * overwritten). Returns `out`.
 *
 * @example
 * ```ts
 * import { packBits } from "./pack.ts";
 * console.log(packBits([1, 2, 3, 4, 5, 6, 7, 0], 3)); // Uint8Array [209, 88, 31]
 * ```
 */
export function packBits(
  codes: ArrayLike<number>,
  bits: number,
  out: Uint8Array = new Uint8Array(packedBytes(codes.length, bits)),
  offset = 0,
): Uint8Array {
  if (!Number.isInteger(bits) || bits < 1 || bits > 8) throw new RangeError(`bits must be 1..8, got ${bits}`);
  const n = packedBytes(codes.length, bits);
  out.fill(0, offset, offset + n);
  const mask = (1 << bits) - 1;
  for (let d = 0; d < codes.length; d++) {
    const c = codes[d];
    if (!Number.isInteger(c) || c < 0 || c > mask) {
      throw new RangeError(`code ${c} at ${d} does not fit in ${bits} bits`);
    }
    const bit = d * bits;
    const w = c << (bit & 7);
    out[offset + (bit >> 3)] |= w & 0xff;
    if ((bit & 7) + bits > 8) out[offset + (bit >> 3) + 1] |= w >> 8;
  }
  return out;
}

/** Unpack `count` codes of `bits` bits from `bytes` starting at byte `offset`. */
export function unpackBits(bytes: Uint8Array, count: number, bits: number, offset = 0): Uint8Array {
  const out = new Uint8Array(count);
  const mask = (1 << bits) - 1;
  for (let d = 0; d < count; d++) {
    const bit = d * bits;
    const at = offset + (bit >> 3);
    const w = bytes[at] | ((bit & 7) + bits > 8 ? bytes[at + 1] << 8 : 0);
    out[d] = (w >> (bit & 7)) & mask;
  }
  return out;
}
