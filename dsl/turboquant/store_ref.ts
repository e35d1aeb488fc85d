/**
 * Reference of the TurboQuant store: one (token, KV head) key and value vector → one cache slot, and
 * the scatter of a batch into the paged cache `u8[numBlocks, blockSize, Hk, slotBytesAligned]` through
 * a slot mapping (negative slots skipped).
 *
 * The float32 steps are kiln's store kernel's, in its order, so the kernel's bytes equal these bit for
 * bit. The kernel gives each vector to P lanes; lane r holds the 8-element groups r, r+P, r+2P, …
 * ({@linkcode turboQuantStoreLanes}); that decides the order-dependent steps:
 *
 * 1. `ss_r = fma(x, x, ss_r)` over lane r's elements in order; lanes combined by an xor tree
 *    (`ss_r = ss_r + ss_{r^s}`, s = 1, 2, …); `n = sqrt(ss)`; stored as fp16(n).
 * 2. `y = FWHT(s ⊙ k)` unnormalized, float32, one stage per index bit in the order of
 *    {@linkcode turboQuantStoreStageOrder}: the bits a lane holds (element bits, then its groups'),
 *    then — after a transpose through shared memory gives each lane D/P contiguous elements — the lane
 *    bits now in registers, then any left across lanes (shuffles).
 * 3. Centroid index without dividing y by √D·(n + 1e-8): with ν = fp32(n + 1e-8) and the affine map of
 *    {@linkcode turboQuantKeyQuantizer}, `z = sat(fma(y, fp32(A/ν), B))` ∈ [0, 1] and
 *    `idx = #{i : z ≥ W_i}`, `W_i = fp32(B + A·m_i·√D)` — vLLM's `#{i : H·k/(‖k‖+ε) ≥ m_i}` up to float32
 *    rounding next to a boundary (≈1e-7 of a standard deviation). The kernel finds the count with one
 *    table lookup: `[0, 1]` is cut into cells that each hold at most one W_i.
 * 4. Values: `lo = min v`, `hi = max v`, `s = max(fp32((hi − lo)/(2^b − 1)), 1e-8)`, `inv = fp32(1/s)`,
 *    `lo' = fp32(lo − s/2)`, `q = floor(fp32(v − lo')·inv)` (= round-half-up of (v − lo)/s up to float32
 *    rounding; never above 2^b − 1 for finite bf16/f16 inputs); fp16(s), fp16(lo) stored.
 *
 * @module
 */
import { f16Encode, fp8e4m3Encode } from "../dtype.ts";
import { fmaf32, nextDown32 } from "./f32.ts";
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

/** The float32 constants `M_i = fp32(m_i·√D)`: the boundaries on the unnormalized `y/ν`. */
export function scaledMidpoints(layout: TurboQuantLayout): Float32Array {
  const m = layout.midpoints;
  if (!m) throw new TypeError(`${layout.preset.name} stores fp8 keys: no midpoints`);
  const r = Math.sqrt(layout.headDim);
  return Float32Array.from(m, (x) => x * r);
}

/** How the store turns a rotated coordinate into a centroid index (see the module doc, step 3). */
export interface TurboQuantKeyQuantizer {
  /** float32 scale: `z = sat(fma(y, fp32(A/ν), B))`. */
  readonly A: number;
  /** float32 offset (0.5 for an antisymmetric codebook). */
  readonly B: number;
  /** Sorted float32 thresholds in z: `idx = #{i : z ≥ W_i}`. */
  readonly W: Float32Array;
  /** Uniform cells of [0, 1] (cell = ⌊z·fp32⁻(cells)⌋) holding at most one W_i each; 0 if none ≤ 64 do. */
  readonly cells: number;
}

const quantizers = new WeakMap<TurboQuantLayout, TurboQuantKeyQuantizer>();

/**
 * The affine map of `y/ν` onto [0, 1] and the thresholds in it, for a centroid-key layout. The range
 * `[M_0 − δ, M_last + δ]` is the first δ (in steps of 0.1% of the span) and cell count (from L − 1 up)
 * for which a uniform grid separates the thresholds — 17 cells for 4-bit Lloyd–Max, 8 for 3-bit.
 */
export function turboQuantKeyQuantizer(layout: TurboQuantLayout): TurboQuantKeyQuantizer {
  const hit = quantizers.get(layout);
  if (hit) return hit;
  const M = Array.from(scaledMidpoints(layout));
  const mn = M[0], mx = M[M.length - 1], span = Math.max(mx - mn, 1e-3);
  const make = (delta: number) => {
    const lo = mn - delta, hi = mx + delta;
    const A = Math.fround(1 / (hi - lo)), B = Math.fround(-lo / (hi - lo)) || 0; // never −0
    return { A, B, W: Float32Array.from(M, (m) => B + m * A) };
  };
  let q: TurboQuantKeyQuantizer | undefined;
  search: for (let cells = M.length; cells <= 64; cells++) {
    const ncs = nextDown32(cells);
    for (let t = 0; t < 400; t++) {
      const c = make(span * (0.0005 + 0.001 * t));
      const cs = Array.from(c.W, (w) => Math.floor(w * ncs));
      if (new Set(cs).size === cs.length && c.W.every((w, i) => i === 0 || w > c.W[i - 1])) {
        q = { ...c, cells };
        break search;
      }
    }
  }
  q ??= { ...make(span * 0.01), cells: 0 };
  Object.freeze(q);
  quantizers.set(layout, q);
  return q;
}

/**
 * The FWHT stage order (index bits) of kiln's store kernel at head dim D (a power of two ≥ 16), with
 * P = {@linkcode turboQuantStoreLanes} lanes of NG = D/8/P groups: first the bits lane r holds as
 * groups r + P·j (0–2, then the group bits from 3 + log P), then, once the transpose gives lane r the
 * groups NG·r + j, the lane bits that became register bits (from 3), then those still across lanes.
 *
 * @example
 * ```ts
 * import { turboQuantStoreStageOrder } from "./store_ref.ts";
 * console.log(turboQuantStoreStageOrder(128)); // [0, 1, 2, 5, 6, 3, 4]
 * ```
 */
export function turboQuantStoreStageOrder(headDim: number): number[] {
  const P = turboQuantStoreLanes(headDim), NG = headDim / 8 / P;
  const lp = Math.log2(P), lg = Math.log2(NG);
  const range = (a: number, b: number) => Array.from({ length: Math.max(0, b - a) }, (_, i) => a + i);
  if (P === 1) return range(0, 3 + lg);
  return [
    ...range(0, 3),
    ...range(3 + lp, 3 + lp + lg),
    ...range(3, 3 + Math.min(lg, lp)),
    ...range(3 + lg, 3 + lp),
  ];
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

/** `sat(x)` of PTX `.sat`: clamp to [0, 1], NaN → +0. */
function sat(x: number): number {
  return x > 0 ? (x < 1 ? x : 1) : 0;
}

/** Key indices and the norm of one key vector (float32 values), the kernel's way. */
export function encodeKeyCentroids(
  layout: TurboQuantLayout,
  k: ArrayLike<number>,
  signs?: ArrayLike<number>,
): { codes: Uint8Array; norm: number; y: Float32Array; z: Float32Array } {
  const D = layout.headDim;
  const ss = kernelSumSquares(k, turboQuantStoreLanes(D));
  const norm = Math.fround(Math.sqrt(ss));
  const y = new Float32Array(D);
  for (let d = 0; d < D; d++) y[d] = signs && signs[d] < 0 ? -k[d] : k[d];
  fwhtF32(y, turboQuantStoreStageOrder(D));
  const nu = Math.fround(norm + Math.fround(1e-8));
  const { A, B, W } = turboQuantKeyQuantizer(layout);
  const rv = Math.fround(A / nu);
  const z = Float32Array.from(y, (yd) => sat(fmaf32(yd, rv, B)));
  const codes = new Uint8Array(D);
  for (let d = 0; d < D; d++) {
    let c = 0;
    while (c < W.length && z[d] >= W[c]) c++;
    codes[d] = c;
  }
  return { codes, norm, y, z };
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
  const lo2 = fmaf32(-0.5, scale, lo);
  const codes = new Uint8Array(v.length);
  for (let d = 0; d < v.length; d++) codes[d] = Math.floor(Math.fround(v[d] - lo2) * inv);
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
