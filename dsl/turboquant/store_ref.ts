/**
 * Reference of the TurboQuant store: one (token, KV head) key and value vector → one cache slot, and
 * the scatter of a batch into the paged cache `u8[numBlocks, blockSize, Hk, slotBytesAligned]` through
 * a slot mapping (negative slots skipped).
 *
 * The float32 steps are kiln's store kernel's, in its order, so the kernel's bytes equal these bit for
 * bit. The kernel gives each vector to P lanes; lane r holds the 8-element groups r, r+P, r+2P, …
 * ({@linkcode turboQuantStoreLanes}); that decides the one order-dependent sum (the norm):
 *
 * 1. `ss_r = fma(x, x, ss_r)` over lane r's elements in order; lanes combined by an xor tree
 *    (`ss_r = ss_r + ss_{r^s}`, s = 1, 2, …); `n = sqrt(ss)`; stored as fp16(n).
 * 2. `y = FWHT(s ⊙ k)` unnormalized, float32, stages h = 1, 2, 4, … (see `fwhtF32`).
 * 3. Instead of dividing y by √D·(n + 1e-8) the thresholds are scaled once per vector:
 *    `T_i = fp32(M_i · fp32(n + 1e-8))` with `M_i = fp32(m_i·√D)`; `idx = #{i : y ≥ T_i}` — vLLM's
 *    `#{i : H·k/(‖k‖+ε) ≥ m_i}` up to float32 rounding next to a boundary. For an antisymmetric
 *    codebook the kernel compares |y| with the positive thresholds and mirrors the index on the sign
 *    bit, so an exact tie on the negative side (and −0) goes away from zero: the reference does too.
 * 4. Values: `lo = min v`, `hi = max v`, `s = max(fp32((hi − lo)/(2^b − 1)), 1e-8)`, `inv = fp32(1/s)`,
 *    `q = floor(fp32(fp32(fp32(v − lo)·inv) + 0.5))` (never above 2^b − 1 for finite inputs);
 *    fp16(s), fp16(lo) stored.
 *
 * @module
 */
import { f16Encode, fp8e4m3Encode } from "../dtype.ts";
import { fmaf32 } from "./f32.ts";
import { fwhtF32 } from "./hadamard.ts";
import { packBits } from "./pack.ts";
import type { TurboQuantLayout } from "./preset.ts";

/**
 * Lanes per vector in kiln's store kernel: the smallest power of two P with at most four 8-element
 * groups per lane that divides D/8 (D = 64 → 2, 128 → 4, 256 → 8, 96 → 4).
 */
export function turboQuantStoreLanes(headDim: number): number {
  const groups = headDim / 8;
  let best = 1;
  for (let p = 1; p <= 32 && p <= groups; p *= 2) {
    if (groups % p !== 0) break;
    best = p;
    if (groups / p <= 4) break;
  }
  return best;
}

/** The float32 constants `M_i = fp32(m_i·√D)` the store compares against (scaled by the vector norm). */
export function scaledMidpoints(layout: TurboQuantLayout): Float32Array {
  const m = layout.midpoints;
  if (!m) throw new TypeError(`${layout.preset.name} stores fp8 keys: no midpoints`);
  const r = Math.sqrt(layout.headDim);
  return Float32Array.from(m, (x) => x * r);
}

/** The fp32 sum of squares of `x` in the kernel's order (per-lane fma chains, xor tree over lanes). */
export function kernelSumSquares(x: ArrayLike<number>, lanes: number): number {
  const D = x.length, NG = D / 8 / lanes;
  const part = new Array<number>(lanes).fill(0);
  for (let r = 0; r < lanes; r++) {
    let s = 0;
    for (let j = 0; j < NG; j++) {
      for (let i = 0; i < 8; i++) {
        const v = x[8 * (r + lanes * j) + i];
        s = fmaf32(v, v, s);
      }
    }
    part[r] = s;
  }
  for (let s = 1; s < lanes; s <<= 1) {
    const prev = part.slice();
    for (let r = 0; r < lanes; r++) part[r] = Math.fround(prev[r] + prev[r ^ s]);
  }
  return part[0];
}

/** Key indices and the norm of one key vector (float32 values), the kernel's way. */
export function encodeKeyCentroids(
  layout: TurboQuantLayout,
  k: ArrayLike<number>,
  signs?: ArrayLike<number>,
): { codes: Uint8Array; norm: number; y: Float32Array; thresholds: Float32Array } {
  const D = layout.headDim;
  const lanes = turboQuantStoreLanes(D);
  const ss = kernelSumSquares(k, lanes);
  const norm = Math.fround(Math.sqrt(ss));
  const y = new Float32Array(D);
  for (let d = 0; d < D; d++) y[d] = signs && signs[d] < 0 ? -k[d] : k[d];
  fwhtF32(y);
  const nu = Math.fround(norm + Math.fround(1e-8));
  const M = scaledMidpoints(layout);
  const T = Float32Array.from(M, (x) => x * nu);
  const codes = new Uint8Array(D);
  const L = T.length + 1, half = L / 2;
  for (let d = 0; d < D; d++) {
    const yd = y[d];
    if (layout.symmetric) {
      // the kernel's fold: count positive thresholds ≤ |y|, mirror on the sign bit
      const a = Math.abs(yd);
      let c = 0;
      for (let i = half; i < T.length; i++) if (a >= T[i]) c++;
      codes[d] = yd < 0 || Object.is(yd, -0) ? half - 1 - c : half + c;
    } else {
      let c = 0;
      for (let i = 0; i < T.length; i++) if (yd >= T[i]) c++;
      codes[d] = c;
    }
  }
  return { codes, norm, y, thresholds: T };
}

/** Value codes, scale and minimum of one value vector (float32 values), the kernel's way. */
export function encodeValueCodes(
  bits: number,
  v: ArrayLike<number>,
): { codes: Uint8Array; scale: number; min: number } {
  let lo = Infinity, hi = -Infinity;
  for (let d = 0; d < v.length; d++) {
    lo = fminf(lo, v[d]);
    hi = fmaxf(hi, v[d]);
  }
  const Q = 2 ** bits - 1;
  const scale = Math.max(Math.fround(Math.fround(hi - lo) / Q), Math.fround(1e-8));
  const inv = Math.fround(1 / scale);
  const codes = new Uint8Array(v.length);
  for (let d = 0; d < v.length; d++) {
    const z = Math.fround(Math.fround(v[d] - lo) * inv);
    codes[d] = Math.floor(Math.fround(z + 0.5));
  }
  return { codes, scale, min: lo };
}

/**
 * Encode one (token, head) into `out[offset, offset + slotBytes)` (the padding byte is left alone).
 * `k`, `v` are the float32 values of the bf16/f16 inputs.
 *
 * @example
 * ```ts
 * import { turboQuantLayout } from "./preset.ts";
 * import { encodeSlot } from "./store_ref.ts";
 * const l = turboQuantLayout("turboquant_4bit_nc", 64);
 * const slot = encodeSlot(l, new Float32Array(64).fill(0.5), new Float32Array(64).map((_, i) => i));
 * console.log(slot.length); // 70
 * ```
 */
export function encodeSlot(
  layout: TurboQuantLayout,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  opts: { signs?: ArrayLike<number>; out?: Uint8Array; offset?: number } = {},
): Uint8Array {
  const out = opts.out ?? new Uint8Array(layout.slotBytesAligned);
  const o = opts.offset ?? 0, off = layout.offsets;
  if (layout.keyFp8) {
    for (let d = 0; d < layout.headDim; d++) out[o + d] = fp8e4m3Encode(k[d]);
  } else {
    const { codes, norm } = encodeKeyCentroids(layout, k, opts.signs);
    packBits(codes, layout.keyBits, out, o + off.keyCodes);
    writeF16(out, o + off.keyNorm, norm);
  }
  const val = encodeValueCodes(layout.valueBits, v);
  packBits(val.codes, layout.valueBits, out, o + off.valueCodes);
  writeF16(out, o + off.valueScale, val.scale);
  writeF16(out, o + off.valueZero, val.min);
  return out;
}

function writeF16(out: Uint8Array, at: number, x: number): void {
  const h = f16Encode(x);
  out[at] = h & 0xff;
  out[at + 1] = h >> 8;
}

/** CUDA `fminf` / `fmaxf`: a NaN operand loses to a number. */
function fminf(a: number, b: number): number {
  return Number.isNaN(a) ? b : Number.isNaN(b) ? a : a < b ? a : b;
}
function fmaxf(a: number, b: number): number {
  return Number.isNaN(a) ? b : Number.isNaN(b) ? a : a > b ? a : b;
}

/** Geometry of a paged TurboQuant cache. */
export interface TurboQuantCacheGeometry {
  numBlocks: number;
  blockSize: number;
  numKvHeads: number;
}

/**
 * Scatter a batch into a host cache: `k`, `v` are float32 `[T, Hk, D]` (the decoded bf16/f16 inputs),
 * `slotMapping[t]` the slot (block·blockSize + position) of token t, negative to skip. The cache is
 * `u8[numBlocks, blockSize, Hk, slotBytesAligned]`, contiguous. Throws on a slot past the cache.
 */
export function storeReference(
  layout: TurboQuantLayout,
  geom: TurboQuantCacheGeometry,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  slotMapping: ArrayLike<number>,
  cache: Uint8Array,
  signs?: ArrayLike<number>,
): Uint8Array {
  const { numBlocks, blockSize, numKvHeads: Hk } = geom;
  const D = layout.headDim, S = layout.slotBytesAligned;
  if (cache.length !== numBlocks * blockSize * Hk * S) {
    throw new RangeError(`cache has ${cache.length} bytes, expected ${numBlocks * blockSize * Hk * S}`);
  }
  const T = slotMapping.length;
  if (k.length !== T * Hk * D || v.length !== T * Hk * D) {
    throw new RangeError(`k and v need ${T}·${Hk}·${D} values`);
  }
  for (let t = 0; t < T; t++) {
    const slot = slotMapping[t];
    if (slot < 0) continue;
    if (slot >= numBlocks * blockSize) {
      throw new RangeError(`slotMapping[${t}] = ${slot} is past the cache (${numBlocks * blockSize} slots)`);
    }
    for (let h = 0; h < Hk; h++) {
      const at = (t * Hk + h) * D;
      encodeSlot(layout, sub(k, at, D), sub(v, at, D), { signs, out: cache, offset: (slot * Hk + h) * S });
    }
  }
  return cache;
}

function sub(a: ArrayLike<number>, at: number, n: number): ArrayLike<number> {
  if (a instanceof Float32Array || a instanceof Float64Array) return a.subarray(at, at + n);
  return Array.from({ length: n }, (_, i) => a[at + i]);
}
