/**
 * Reference of TurboQuant decode attention over the paged cache, plus slot dequantization and a
 * full-precision attention to measure each preset's error against.
 *
 * For one query token per sequence b and query head hq (KV head `hq / G`, G = Hq/Hk):
 * `q' = H·(s ⊙ q)/√D` (rotated keys) or q (fp8 keys); for each cached token t < seqLens[b], found at
 * `blockTables[b][t / blockSize]`, position `t % blockSize`:
 * - fp8 keys: `score = scale · Σ q_d · fp8(k_d)`;
 * - centroid keys: `c = C[idx]`, with norm correction `ĉ = c/‖c‖`, `score = scale · fp16(n) · ⟨q', ĉ⟩`;
 * - value: `v_d = code_d · fp16(s) + fp16(lo)`;
 * then `out = Σ_t softmax(score)_t · v_t`, already in the original basis (values are not rotated).
 * Everything after the stored bytes is float64: this is the exact math the kernels approximate.
 *
 * @module
 */
import { f16Decode, fp8e4m3Decode } from "../dtype.ts";
import { rotateF64 } from "./hadamard.ts";
import { unpackBits } from "./pack.ts";
import type { TurboQuantLayout } from "./preset.ts";
import type { TurboQuantCacheGeometry } from "./store_ref.ts";

function readF16(b: Uint8Array, at: number): number {
  return f16Decode(b[at] | (b[at + 1] << 8));
}

/**
 * The key of the slot at `bytes[offset]` as the decode sees it: fp8 keys decoded; centroid keys in the
 * rotated basis, `fp16(n)·ĉ` (NC) or `fp16(n)·c`.
 */
export function decodeSlotKey(layout: TurboQuantLayout, bytes: Uint8Array, offset = 0): Float64Array {
  const D = layout.headDim;
  const out = new Float64Array(D);
  if (layout.keyFp8) {
    for (let d = 0; d < D; d++) out[d] = fp8e4m3Decode(bytes[offset + d]);
    return out;
  }
  const idx = unpackBits(bytes, D, layout.keyBits, offset + layout.offsets.keyCodes);
  const C = layout.centroids!;
  let ss = 0;
  for (let d = 0; d < D; d++) {
    out[d] = C[idx[d]];
    ss += out[d] * out[d];
  }
  const n = readF16(bytes, offset + layout.offsets.keyNorm);
  const f = layout.normCorrection ? n / Math.sqrt(ss + 1e-16) : n;
  for (let d = 0; d < D; d++) out[d] *= f;
  return out;
}

/** The value of the slot at `bytes[offset]`: `code·fp16(scale) + fp16(min)`. */
export function decodeSlotValue(layout: TurboQuantLayout, bytes: Uint8Array, offset = 0): Float64Array {
  const D = layout.headDim, o = layout.offsets;
  const codes = unpackBits(bytes, D, layout.valueBits, offset + o.valueCodes);
  const s = readF16(bytes, offset + o.valueScale), lo = readF16(bytes, offset + o.valueZero);
  return Float64Array.from(codes, (c) => c * s + lo);
}

/** Key and value reconstructed in the original basis (the key rotated back): for reconstruction error. */
export function dequantizeSlot(
  layout: TurboQuantLayout,
  bytes: Uint8Array,
  offset = 0,
  signs?: ArrayLike<number>,
): { k: Float64Array; v: Float64Array } {
  let k = decodeSlotKey(layout, bytes, offset);
  if (layout.rotate) {
    k = rotateF64(k); // H is its own inverse
    if (signs) { for (let d = 0; d < k.length; d++) k[d] *= signs[d]; }
  }
  return { k, v: decodeSlotValue(layout, bytes, offset) };
}

/** Inputs of {@linkcode decodeReference}. */
export interface TurboQuantDecodeInputs {
  /** Queries `[B, Hq, D]` (float values of the bf16/f16 query). */
  q: ArrayLike<number>;
  numHeads: number;
  cache: Uint8Array;
  geom: TurboQuantCacheGeometry;
  /** `[B, blockTableStride]` block ids. */
  blockTables: ArrayLike<number>;
  blockTableStride: number;
  seqLens: ArrayLike<number>;
  /** Softmax scale (default 1/√D). */
  scale?: number;
  signs?: ArrayLike<number>;
}

/**
 * Decode attention over the paged cache in float64: `[B, Hq, D]` outputs. A sequence of length 0
 * gives zeros.
 */
export function decodeReference(layout: TurboQuantLayout, x: TurboQuantDecodeInputs): Float64Array {
  const D = layout.headDim, Hq = x.numHeads, Hk = x.geom.numKvHeads, BS = x.geom.blockSize;
  const S = layout.slotBytesAligned;
  const B = x.seqLens.length;
  if (Hq % Hk !== 0) throw new RangeError(`${Hq} query heads are not a multiple of ${Hk} KV heads`);
  const G = Hq / Hk;
  const scale = x.scale ?? 1 / Math.sqrt(D);
  const out = new Float64Array(B * Hq * D);
  for (let b = 0; b < B; b++) {
    const L = x.seqLens[b];
    for (let h = 0; h < Hk; h++) {
      const keys: Float64Array[] = [], vals: Float64Array[] = [];
      for (let t = 0; t < L; t++) {
        const blk = x.blockTables[b * x.blockTableStride + Math.floor(t / BS)];
        const off = ((blk * BS + (t % BS)) * Hk + h) * S;
        keys.push(decodeSlotKey(layout, x.cache, off));
        vals.push(decodeSlotValue(layout, x.cache, off));
      }
      for (let g = 0; g < G; g++) {
        const hq = h * G + g;
        const qv = Array.from({ length: D }, (_, d) => x.q[(b * Hq + hq) * D + d]);
        const qr = layout.rotate ? rotateF64(qv, x.signs) : Float64Array.from(qv);
        const o = attend(qr, keys, vals, scale, D);
        out.set(o, (b * Hq + hq) * D);
      }
    }
  }
  return out;
}

function attend(
  q: ArrayLike<number>,
  keys: ArrayLike<number>[],
  vals: ArrayLike<number>[],
  scale: number,
  D: number,
): Float64Array {
  const o = new Float64Array(D);
  if (keys.length === 0) return o;
  const s = keys.map((k) => {
    let acc = 0;
    for (let d = 0; d < D; d++) acc += q[d] * k[d];
    return acc * scale;
  });
  const m = Math.max(...s);
  let l = 0;
  for (let t = 0; t < s.length; t++) {
    const p = Math.exp(s[t] - m);
    l += p;
    for (let d = 0; d < D; d++) o[d] += p * vals[t][d];
  }
  for (let d = 0; d < D; d++) o[d] /= l;
  return o;
}

/**
 * Full-precision decode attention from dense K/V: `q [B, Hq, D]`, `k[b]`, `v[b]` as `[seqLen_b, Hk, D]`.
 * The yardstick for each preset's attention error.
 */
export function attentionReference(
  q: ArrayLike<number>,
  k: readonly ArrayLike<number>[],
  v: readonly ArrayLike<number>[],
  dims: { numHeads: number; numKvHeads: number; headDim: number; scale?: number },
): Float64Array {
  const { numHeads: Hq, numKvHeads: Hk, headDim: D } = dims;
  const G = Hq / Hk, B = k.length;
  const scale = dims.scale ?? 1 / Math.sqrt(D);
  const out = new Float64Array(B * Hq * D);
  for (let b = 0; b < B; b++) {
    const L = k[b].length / (Hk * D);
    for (let hq = 0; hq < Hq; hq++) {
      const h = Math.floor(hq / G);
      const keys = Array.from({ length: L }, (_, t) => sub(k[b], (t * Hk + h) * D, D));
      const vals = Array.from({ length: L }, (_, t) => sub(v[b], (t * Hk + h) * D, D));
      const qv = sub(q, (b * Hq + hq) * D, D);
      out.set(attend(qv, keys, vals, scale, D), (b * Hq + hq) * D);
    }
  }
  return out;
}

function sub(a: ArrayLike<number>, at: number, n: number): Float64Array {
  const o = new Float64Array(n);
  for (let i = 0; i < n; i++) o[i] = a[at + i];
  return o;
}

/** Cosine similarity of two vectors (float64). */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}
