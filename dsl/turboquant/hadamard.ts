/**
 * The rotation TurboQuant applies to keys (at store) and queries (at decode): the Sylvester
 * Walsh–Hadamard matrix normalized by 1/√D, optionally after a per-layer ±1 sign flip,
 * `y = H·(s ⊙ x) / √D`. {@linkcode fwhtF32} is the fast transform in float32 with the exact stage
 * order and roundings of kiln's store kernel; {@linkcode hadamardMatrix} / {@linkcode rotateF64} are
 * the dense matrix product (vLLM's cuBLAS path) used to measure how often the two disagree.
 *
 * @module
 */

/** True when `n` is a power of two ≥ 1. */
export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0;
}

/**
 * In-place unnormalized fast Walsh–Hadamard transform of `x` (length a power of two) in float32:
 * one stage per index bit, h = 2^bit, in `order` (default 0, 1, 2, …); each butterfly writes
 * `fp32(a + b)`, `fp32(a − b)`. The stages commute in exact arithmetic; in float32 the order decides
 * the roundings — kiln's store kernel passes its own (`turboQuantStoreStageOrder`) and matches bit for bit.
 *
 * @example
 * ```ts
 * import { fwhtF32 } from "./hadamard.ts";
 * console.log(fwhtF32(new Float32Array([1, 0, 0, 0]))); // Float32Array [1, 1, 1, 1]
 * ```
 */
export function fwhtF32(x: Float32Array, order?: readonly number[]): Float32Array {
  const n = x.length;
  if (!isPowerOfTwo(n)) throw new RangeError(`FWHT length must be a power of two, got ${n}`);
  const bits = Math.log2(n);
  const stages = order ?? Array.from({ length: bits }, (_, b) => b);
  if (stages.length !== bits || [...stages].sort((a, b) => a - b).some((b, i) => b !== i)) {
    throw new RangeError(`FWHT stage order must be a permutation of 0..${bits - 1}, got [${stages}]`);
  }
  for (const bit of stages) {
    const h = 1 << bit;
    for (let i = 0; i < n; i += h << 1) {
      for (let j = i; j < i + h; j++) {
        const a = x[j], b = x[j + h];
        x[j] = a + b; // Float32Array stores round to float32
        x[j + h] = a - b;
      }
    }
  }
  return x;
}

/** The same transform in float64 (no rounding to speak of), normalized by 1/√n when `normalize`. */
export function fwhtF64(x: Float64Array, normalize = false): Float64Array {
  const n = x.length;
  if (!isPowerOfTwo(n)) throw new RangeError(`FWHT length must be a power of two, got ${n}`);
  for (let h = 1; h < n; h <<= 1) {
    for (let i = 0; i < n; i += h << 1) {
      for (let j = i; j < i + h; j++) {
        const a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
  if (normalize) {
    const s = 1 / Math.sqrt(n);
    for (let i = 0; i < n; i++) x[i] *= s;
  }
  return x;
}

/** The normalized Sylvester Hadamard matrix `H/√n` (row-major, float64): symmetric and orthonormal. */
export function hadamardMatrix(n: number): Float64Array {
  if (!isPowerOfTwo(n)) throw new RangeError(`Hadamard size must be a power of two, got ${n}`);
  const h = new Float64Array(n * n);
  const s = 1 / Math.sqrt(n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      // H[i][j] = (−1)^popcount(i & j)
      let b = i & j, p = 0;
      while (b) {
        p ^= 1;
        b &= b - 1;
      }
      h[i * n + j] = p ? -s : s;
    }
  }
  return h;
}

/** `y = H·(s ⊙ x)/√n` by the dense matrix product in float64 (the "matrix" reference rotation). */
export function rotateF64(x: ArrayLike<number>, signs?: ArrayLike<number>): Float64Array {
  const n = x.length;
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = signs ? x[i] * signs[i] : x[i];
  return fwhtF64(v, true);
}

/**
 * A reproducible ±1 sign vector for a layer (mulberry32 from `seed`), for the optional per-layer sign
 * flip. vLLM's merge-era signs came from torch's CPU generator and cannot be reproduced without torch;
 * current vLLM uses no signs (all +1), which is kiln's default too.
 */
export function randomSigns(n: number, seed: number): Int8Array {
  let s = seed >>> 0;
  const out = new Int8Array(n);
  for (let i = 0; i < n; i++) {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((t ^ (t >>> 14)) >>> 0) & 1 ? -1 : 1;
  }
  return out;
}

/** Check a sign vector: length n, every entry ±1. Returns it as an Int8Array. */
export function checkSigns(signs: ArrayLike<number>, n: number): Int8Array {
  if (signs.length !== n) throw new RangeError(`sign vector needs ${n} entries, got ${signs.length}`);
  const out = new Int8Array(n);
  for (let i = 0; i < n; i++) {
    if (signs[i] !== 1 && signs[i] !== -1) {
      throw new RangeError(`sign vector entries must be ±1 (entry ${i} is ${signs[i]})`);
    }
    out[i] = signs[i];
  }
  return out;
}

/** Pack a ±1 sign vector into bits (1 = flip), 32 per word, LSB first: the kernels' sign-mask format. */
export function signMaskWords(signs: ArrayLike<number>): Uint32Array {
  const w = new Uint32Array(Math.ceil(signs.length / 32));
  for (let i = 0; i < signs.length; i++) if (signs[i] < 0) w[i >> 5] |= 1 << (i & 31);
  return w;
}
