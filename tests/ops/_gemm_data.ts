/**
 * Test data for the scaled-GEMM tests and the GEMM bench: fresh random operands that are fast to make at
 * DeepSeek sizes (e4m3 codes drawn from a pool of quantized normals, never zeros), float64 references of
 * sampled rows and columns, and the check of a GPU output against them.
 *
 * @module
 */
import { bf16Decode, f16Decode, fp8e4m3Encode } from "../../dsl/dtype.ts";
import {
  type BlockMatmulData,
  blockMatmulReference,
  kBlocks,
  type ScaleMode,
} from "../../dsl/ops/block_matmul.ts";
import type { Rng } from "../../testing/random.ts";
import { NumericAssertionError, relFrobenius } from "../../testing/assert.ts";

/** `n` operand codes: e4m3 of N(0, 1)·`spread` (or s8 of a rounded normal·32), from a 4096-entry pool. */
export function randomCodes(rng: Rng, n: number, mode: ScaleMode = "block", spread = 48): Uint8Array {
  const pool = new Uint8Array(4096);
  for (let i = 0; i < pool.length; i++) {
    let c: number;
    do {
      const x = rng.normal();
      c = mode === "int8"
        ? Math.max(-127, Math.min(127, Math.round(x * 32))) & 0xff
        : fp8e4m3Encode(x * spread);
    } while (c === 0 || c === 0x80);
    pool[i] = c;
  }
  const out = new Uint8Array(n);
  let s = (rng.next() * 2 ** 32) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = pool[(s >>> 0) & 4095];
  }
  return out;
}

/** `n` positive scales, log-uniform in [base/2, 2·base). */
export function randomScales(rng: Rng, n: number, base: number): Float32Array {
  return Float32Array.from({ length: n }, () => base * 2 ** (2 * rng.next() - 1));
}

/** Host operands of one (mode, N, K) problem with A rows for every M ≤ `rows`; block A scales have stride P. */
export interface HostProblem extends BlockMatmulData {
  /** A-scale stride P (block mode), a multiple of 4 ≥ rows. */
  P: number;
}

/** Random operands: A `[rows, K]`, B `[N, K]`, scales in `mode`'s layout (A scales for `rows` rows, stride P). */
export function hostProblem(rng: Rng, mode: ScaleMode, N: number, K: number, rows: number): HostProblem {
  const KB = kBlocks(K), P = Math.ceil(rows / 4) * 4;
  const a = randomCodes(rng, rows * K, mode), b = randomCodes(rng, N * K, mode);
  const [aBase, bBase] = mode === "int8" ? [2 ** -5, 2 ** -9] : [2 ** -6, 2 ** -10];
  const aScales = mode === "block"
    ? randomScales(rng, KB * P, aBase)
    : randomScales(rng, mode === "tensor" ? 1 : rows, aBase);
  const bScales = mode === "block"
    ? randomScales(rng, Math.ceil(N / 128) * KB, bBase)
    : randomScales(rng, mode === "tensor" ? 1 : N, bBase);
  return { mode, M: rows, N, K, a, aScales, aScaleStride: P, P, b, bScales };
}

/** Rows to check for M: all of them up to 16, else the first, the last and a few inside. */
export function sampleRows(M: number, rng: Rng): number[] {
  if (M <= 16) return Array.from({ length: M }, (_, i) => i);
  const s = new Set([0, 1, M - 2, M - 1]);
  while (s.size < 8) s.add(rng.int(0, M));
  return [...s].sort((x, y) => x - y);
}

/** Columns to check: all when the reference is cheap, else 1024 random ones plus the ragged tail. */
export function sampleCols(N: number, K: number, rng: Rng, budget = 16e6): number[] {
  if (N * K <= budget) return Array.from({ length: N }, (_, i) => i);
  const s = new Set<number>();
  for (let n = Math.max(0, N - 130); n < N; n++) s.add(n);
  for (let n = 0; n < 2; n++) s.add(n);
  while (s.size < 1160) s.add(rng.int(0, N));
  return [...s].sort((x, y) => x - y);
}

/** A float64 reference of `rows × cols` of a problem, indexed by (row, column). */
export class SampledReference {
  readonly #rowIndex = new Map<number, number>();
  readonly #colIndex = new Map<number, number>();
  readonly values: Float64Array;
  constructor(
    readonly p: BlockMatmulData,
    readonly rows: readonly number[],
    readonly cols: readonly number[],
  ) {
    rows.forEach((r, i) => this.#rowIndex.set(r, i));
    cols.forEach((c, j) => this.#colIndex.set(c, j));
    this.values = blockMatmulReference(p, { rows, cols });
  }
  has(row: number): boolean {
    return this.#rowIndex.has(row);
  }
  at(row: number, col: number): number {
    return this.values[this.#rowIndex.get(row)! * this.cols.length + this.#colIndex.get(col)!];
  }
}

/**
 * Check a GPU output (raw bf16/f16 codes `[M, ldc]`): every element of the M×N block written (finite:
 * poison is NaN), and ‖out − ref‖/‖ref‖ ≤ `bound` over the reference's rows < M and its columns.
 * Returns the error; throws with the seed in the message.
 */
export function checkOutput(
  raw: Uint16Array,
  dtype: "bf16" | "f16",
  M: number,
  N: number,
  ref: SampledReference,
  what: string,
  bound = 2e-3,
  ldc = N,
): number {
  const dec = dtype === "bf16" ? bf16Decode : f16Decode;
  const expMask = dtype === "bf16" ? 0x7f80 : 0x7c00; // all-ones exponent: inf or NaN (the 0xffff poison)
  for (let m = 0; m < M; m++) {
    for (let n = 0, i = m * ldc; n < N; n++, i++) {
      if ((raw[i] & expMask) === expMask) {
        throw new NumericAssertionError(`${what}: out[${m}, ${n}] = ${dec(raw[i])} (not written?)`);
      }
    }
  }
  const got: number[] = [], want: number[] = [];
  for (const r of ref.rows) {
    if (r >= M) continue;
    for (const c of ref.cols) {
      got.push(dec(raw[r * ldc + c]));
      want.push(ref.at(r, c));
    }
  }
  const e = relFrobenius(got, want);
  if (!(e <= bound)) throw new NumericAssertionError(`${what}: relative Frobenius error ${e} > ${bound}`);
  return e;
}
