/**
 * Scaled GEMM `out[M, N] = A[M, K] · B[N, K]ᵀ` (quant-spec §4): the op descriptor for every scale mode
 * the planner picks, its validation, and float64 references of the dequantized operands.
 *
 * | mode      | A, B        | A scales (fp32)                         | B scales (fp32)                 |
 * |-----------|-------------|-----------------------------------------|---------------------------------|
 * | `block`   | e4m3, e4m3  | one per 1×128 group, M-major `[K/128, P]`, (m, kb) at `kb·P + m`, P ≥ M | one per 128×128 block `[⌈N/128⌉, K/128]` |
 * | `tensor`  | e4m3, e4m3  | `[1]`                                   | `[1]`                           |
 * | `channel` | e4m3, e4m3  | per token `[M]` (W8A8-FP8 dynamic)      | per output channel `[N]`        |
 * | `int8`    | s8, s8      | per token `[M]`                         | per output channel `[N]`        |
 *
 * ```
 * block:  out[m,n] = Σ_kb sa[kb·P+m] · sb[⌊n/128⌋, kb] · Σ_{k∈kb} A[m,k]·B[n,k]   (+ bias[n])
 * others: out[m,n] = sa(m) · sb(n) · Σ_k A[m,k]·B[n,k]                             (+ bias[n])
 * ```
 * K is a multiple of 128; N and M are any size ≥ 1. In `block` mode the scales may be `ue8m0` bytes
 * (2^(b−127)) instead of fp32, in the same layouts. Kernels accumulate in fp32 (s32 for int8) and promote
 * the fp32 partial of every 128-wide K block once (DeepSeek-V3 §3.5.2); the reference here sums in float64.
 *
 * Also here: host quantizers that build operands (per-token-group, per-row, per-tensor) and the FP8_BLOCK
 * weight quantizer (bf16 `[N, K]` → e4m3 + fp32 scales per 128×128 block, DeepSeek style: a block cut by
 * the matrix edge takes its scale from the elements it has, as if zero-padded to 128, and the pad is dropped).
 *
 * @example
 * ```ts
 * import { blockMatmulReference, quantizeGroups, quantizeWeightBlocks } from "./block_matmul.ts";
 * const [M, N, K] = [2, 3, 128];
 * const x = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i));
 * const w = Float32Array.from({ length: N * K }, (_, i) => Math.cos(i));
 * const a = quantizeGroups(x, M, K);
 * const b = quantizeWeightBlocks(w, N, K);
 * const y = blockMatmulReference({ mode: "block", M, N, K, a: a.q, aScales: a.scales, b: b.q, bScales: b.scales });
 * console.log(y.length); // 6
 * ```
 * @module
 */
import {
  type DType,
  f32Bits,
  f32FromBits,
  FP8E4M3_VALUES,
  fp8e4m3Encode,
  i8Rne,
  ue8m0Decode,
} from "../dtype.ts";

/** How A and B are scaled (see the module table). */
export type ScaleMode = "block" | "tensor" | "channel" | "int8";
/** Output element types. */
export type GemmOutDType = "bf16" | "f16";
/** Storage of scales: fp32 values, or ue8m0 power-of-two bytes (`block` mode only). */
export type GemmScaleDType = "f32" | "ue8m0";
/** Element types a bias may have. */
export type GemmBiasDType = "f32" | "bf16" | "f16";

/** K block (and weight row block) of the `block` mode's scales. */
export const SCALE_BLOCK = 128;
/** All scale modes, in a stable order. */
export const SCALE_MODES: readonly ScaleMode[] = ["block", "tensor", "channel", "int8"];

/** The compile-time description of one scaled GEMM: everything but M (and the pointers). */
export interface BlockMatmulOp {
  readonly mode: ScaleMode;
  readonly N: number;
  readonly K: number;
  readonly outDtype: GemmOutDType;
  readonly aScaleDtype: GemmScaleDType;
  readonly bScaleDtype: GemmScaleDType;
  /** Bias element type, or undefined for no bias. */
  readonly bias?: GemmBiasDType;
}

/** A validation failure, in the shape of an ArgumentError: which argument, what was expected, what came. */
export interface BlockMatmulProblem {
  readonly argument: string;
  readonly expected: string;
  readonly got: string;
}

/** Options for {@linkcode blockMatmulOp}; unset fields take the `block`/bf16/fp32-scale defaults. */
export interface BlockMatmulOpOptions {
  mode?: ScaleMode;
  N: number;
  K: number;
  outDtype?: GemmOutDType;
  aScaleDtype?: GemmScaleDType;
  bScaleDtype?: GemmScaleDType;
  bias?: GemmBiasDType;
}

/**
 * Build and check an op descriptor. Throws a RangeError naming the first bad field.
 *
 * @example
 * ```ts
 * import { blockMatmulOp } from "./block_matmul.ts";
 * const op = blockMatmulOp({ N: 2112, K: 7168 }); // block mode, bf16 out, fp32 scales
 * console.log(op.mode, op.outDtype); // block bf16
 * ```
 */
export function blockMatmulOp(o: BlockMatmulOpOptions): BlockMatmulOp {
  const op: BlockMatmulOp = {
    mode: o.mode ?? "block",
    N: o.N,
    K: o.K,
    outDtype: o.outDtype ?? "bf16",
    aScaleDtype: o.aScaleDtype ?? "f32",
    bScaleDtype: o.bScaleDtype ?? "f32",
    ...(o.bias ? { bias: o.bias } : {}),
  };
  const p = checkBlockMatmulOp(op);
  if (p.length) throw new RangeError(`${p[0].argument}: expected ${p[0].expected}, got ${p[0].got}`);
  return op;
}

/** Every problem with an op descriptor (empty when it is valid). */
export function checkBlockMatmulOp(op: BlockMatmulOp): BlockMatmulProblem[] {
  const out: BlockMatmulProblem[] = [];
  const bad = (argument: string, expected: string, got: unknown) =>
    out.push({ argument, expected, got: String(got) });
  if (!SCALE_MODES.includes(op.mode)) bad("mode", SCALE_MODES.join(" | "), op.mode);
  if (!Number.isSafeInteger(op.N) || op.N < 1) bad("N", "an integer ≥ 1", op.N);
  if (!Number.isSafeInteger(op.K) || op.K < SCALE_BLOCK || op.K % SCALE_BLOCK) {
    bad("K", `a positive multiple of ${SCALE_BLOCK}`, op.K);
  }
  if (op.outDtype !== "bf16" && op.outDtype !== "f16") bad("outDtype", "bf16 | f16", op.outDtype);
  for (const [name, d] of [["aScaleDtype", op.aScaleDtype], ["bScaleDtype", op.bScaleDtype]] as const) {
    if (d !== "f32" && d !== "ue8m0") bad(name, "f32 | ue8m0", d);
    else if (d === "ue8m0" && op.mode !== "block") {
      bad(name, `f32 (ue8m0 scales exist only in block mode)`, d);
    }
  }
  if (op.bias !== undefined && !["f32", "bf16", "f16"].includes(op.bias)) {
    bad("bias", "f32 | bf16 | f16", op.bias);
  }
  return out;
}

/** Element type of A and B in `mode`. */
export function operandDtype(mode: ScaleMode): DType {
  return mode === "int8" ? "i8" : "fp8e4m3";
}

/** Number of 128-wide K blocks. */
export function kBlocks(K: number): number {
  return Math.ceil(K / SCALE_BLOCK);
}

/** Shape of B's scale tensor in `mode`. */
export function bScaleShape(mode: ScaleMode, N: number, K: number): number[] {
  if (mode === "block") return [Math.ceil(N / SCALE_BLOCK), kBlocks(K)];
  return mode === "tensor" ? [1] : [N];
}

/** Shape of A's (physical) scale tensor in `mode`; `stride` is the M-major row length P ≥ M (block mode). */
export function aScaleShape(mode: ScaleMode, M: number, K: number, stride = M): number[] {
  if (mode === "block") return [kBlocks(K), stride];
  return mode === "tensor" ? [1] : [M];
}

/** The operands of one GEMM on the host: raw codes and decoded scales, in the layouts of the table above. */
export interface BlockMatmulData {
  mode: ScaleMode;
  M: number;
  N: number;
  K: number;
  /** A codes (e4m3 bytes, or s8 as raw bytes or an Int8Array); row m starts at `m * lda`. */
  a: Uint8Array | Int8Array;
  /** Row stride of A in elements (default K). */
  lda?: number;
  /** A scales as values (decode ue8m0 bytes with {@linkcode decodeScales} first). */
  aScales: Float32Array;
  /** Block mode: the M-major stride P of `aScales` (default M). */
  aScaleStride?: number;
  /** B codes `[N, K]`. */
  b: Uint8Array | Int8Array;
  bScales: Float32Array;
  /** Bias values `[N]`. */
  bias?: ArrayLike<number>;
}

/** Scale values of raw `dtype` storage (fp32 passes through; ue8m0 bytes become 2^(b−127)). */
export function decodeScales(dtype: GemmScaleDType, raw: Float32Array | Uint8Array): Float32Array {
  if (dtype === "f32") return raw as Float32Array;
  return Float32Array.from(raw as Uint8Array, (b) => ue8m0Decode(b));
}

/**
 * float64 reference of `out[m, n]` for the rows `rows` (default all) and columns `cols` (default all),
 * from the dequantized operands. Returns `rows.length × cols.length` values, row-major. Work is
 * N·K decodes plus rows·cols·K multiply-adds, so sample rows/columns for big shapes.
 */
export function blockMatmulReference(
  d: BlockMatmulData,
  opts: { rows?: readonly number[]; cols?: readonly number[] } = {},
): Float64Array {
  const { mode, M, N, K } = d;
  const KB = kBlocks(K), lda = d.lda ?? K, P = d.aScaleStride ?? M;
  const rows = opts.rows ?? Array.from({ length: M }, (_, i) => i);
  const cols = opts.cols ?? Array.from({ length: N }, (_, i) => i);
  const lut = mode === "int8" ? null : FP8E4M3_VALUES;
  const decodeRow = (src: Uint8Array | Int8Array, off: number, dst: Float64Array) => {
    if (lut) { for (let k = 0; k < K; k++) dst[k] = lut[src[off + k]]; }
    else for (let k = 0; k < K; k++) dst[k] = (src[off + k] << 24) >> 24; // s8 from raw bytes
  };
  const aRows = rows.map((m) => {
    const r = new Float64Array(K);
    decodeRow(d.a, m * lda, r);
    return r;
  });
  const out = new Float64Array(rows.length * cols.length);
  const bRow = new Float64Array(K);
  for (let j = 0; j < cols.length; j++) {
    const n = cols[j];
    decodeRow(d.b, n * K, bRow);
    const bias = d.bias ? d.bias[n] : 0;
    for (let i = 0; i < rows.length; i++) {
      const m = rows[i], ar = aRows[i];
      let acc = 0;
      if (mode === "block") {
        const nb = Math.floor(n / SCALE_BLOCK);
        for (let kb = 0; kb < KB; kb++) {
          let dot = 0;
          for (let k = kb * SCALE_BLOCK, e = k + SCALE_BLOCK; k < e; k++) dot += ar[k] * bRow[k];
          acc += d.aScales[kb * P + m] * d.bScales[nb * KB + kb] * dot;
        }
      } else {
        for (let k = 0; k < K; k++) acc += ar[k] * bRow[k];
        acc *= mode === "tensor" ? d.aScales[0] * d.bScales[0] : d.aScales[m] * d.bScales[n];
      }
      out[i * cols.length + j] = acc + bias;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Host quantizers (build operands for tests, examples and benchmarks).

/** Largest finite value of the operand type. */
function qmax(dtype: "fp8e4m3" | "i8"): number {
  return dtype === "i8" ? 127 : 448;
}

/** fp32 scale `max(amax, eps) / qmax`, optionally rounded up to a power of two (ue8m0). */
export function scaleFor(amax: number, qMax: number, eps: number, ue8m0 = false): number {
  const s = Math.fround(Math.fround(Math.max(Math.fround(amax), Math.fround(eps))) / qMax);
  if (!ue8m0) return s;
  const bits = f32Bits(s);
  let e = (bits >>> 23) & 0xff;
  if (bits & 0x7fffff) e++;
  return f32FromBits(Math.min(e, 254) << 23);
}

/** One code: e4m3 of the fp32 quotient x / s (as `cvt.rn.satfinite.e4m3x2.f32` after an IEEE divide), or s8 RNE. */
function quantOne(x: number, s: number, dtype: "fp8e4m3" | "i8"): number {
  const q = Math.fround(Math.fround(x) / s);
  return dtype === "i8" ? i8Rne(q) & 0xff : fp8e4m3Encode(q);
}

/**
 * Per-token-group fp8 quantization (group 128): `x [M, K]` → codes `[P, K]` and M-major scales
 * `[K/128, P]` with P = `stride` ≥ M (rows M..P−1 zero, like a row-padded groupQuant).
 */
export function quantizeGroups(
  x: ArrayLike<number>,
  M: number,
  K: number,
  opts: { stride?: number; ue8m0?: boolean; eps?: number } = {},
): { q: Uint8Array; scales: Float32Array; stride: number } {
  const P = opts.stride ?? M, eps = opts.eps ?? 1e-10, KB = kBlocks(K);
  const q = new Uint8Array(P * K), scales = new Float32Array(KB * P);
  for (let m = 0; m < M; m++) {
    for (let kb = 0; kb < KB; kb++) {
      const k0 = kb * SCALE_BLOCK, k1 = Math.min(K, k0 + SCALE_BLOCK);
      let amax = 0;
      for (let k = k0; k < k1; k++) amax = Math.max(amax, Math.abs(x[m * K + k]));
      const s = scaleFor(amax, 448, eps, opts.ue8m0);
      scales[kb * P + m] = s;
      for (let k = k0; k < k1; k++) q[m * K + k] = quantOne(x[m * K + k], s, "fp8e4m3");
    }
  }
  return { q, scales, stride: P };
}

/** Per-row quantization (per token for A, per output channel for B): `x [R, K]` → codes and `[R]` scales. */
export function quantizeRows(
  x: ArrayLike<number>,
  R: number,
  K: number,
  dtype: "fp8e4m3" | "i8" = "fp8e4m3",
  eps = 1e-10,
): { q: Uint8Array; scales: Float32Array } {
  const q = new Uint8Array(R * K), scales = new Float32Array(R);
  for (let r = 0; r < R; r++) {
    let amax = 0;
    for (let k = 0; k < K; k++) amax = Math.max(amax, Math.abs(x[r * K + k]));
    const s = scales[r] = scaleFor(amax, qmax(dtype), eps);
    for (let k = 0; k < K; k++) q[r * K + k] = quantOne(x[r * K + k], s, dtype);
  }
  return { q, scales };
}

/** Per-tensor quantization: one scale for all of `x`. */
export function quantizeTensor(
  x: ArrayLike<number>,
  dtype: "fp8e4m3" | "i8" = "fp8e4m3",
  eps = 1e-10,
): { q: Uint8Array; scales: Float32Array } {
  let amax = 0;
  for (let i = 0; i < x.length; i++) amax = Math.max(amax, Math.abs(x[i]));
  const s = scaleFor(amax, qmax(dtype), eps);
  return {
    q: Uint8Array.from({ length: x.length }, (_, i) => quantOne(x[i], s, dtype)),
    scales: Float32Array.of(s),
  };
}

/** Options of the FP8_BLOCK weight quantizer. */
export interface WeightBlockQuantOptions {
  /** Floor of a block's absmax before dividing by 448 (DeepSeek / sglang `per_block_cast_to_fp8`: 1e-4). */
  eps?: number;
  /** Round each scale up to a power of two (ue8m0-compatible scales). */
  ue8m0?: boolean;
}

/**
 * FP8_BLOCK weight quantization reference: `w [N, K]` (float values, e.g. decoded bf16) → e4m3 codes
 * `[N, K]` and fp32 scales `[⌈N/128⌉, ⌈K/128⌉]`, `s = max(amax, eps)/448` per 128×128 block and
 * `q = e4m3(w / s)`. Edge blocks use only their real elements (zero padding leaves amax unchanged).
 * The GPU kernel (`codegen/kernels/weight_quant.ts`) matches this bit for bit.
 */
export function quantizeWeightBlocks(
  w: ArrayLike<number>,
  N: number,
  K: number,
  opts: WeightBlockQuantOptions = {},
): { q: Uint8Array; scales: Float32Array } {
  const eps = opts.eps ?? 1e-4, NB = Math.ceil(N / SCALE_BLOCK), KB = kBlocks(K);
  const q = new Uint8Array(N * K), scales = new Float32Array(NB * KB);
  for (let nb = 0; nb < NB; nb++) {
    const n0 = nb * SCALE_BLOCK, n1 = Math.min(N, n0 + SCALE_BLOCK);
    for (let kb = 0; kb < KB; kb++) {
      const k0 = kb * SCALE_BLOCK, k1 = Math.min(K, k0 + SCALE_BLOCK);
      let amax = 0;
      for (let n = n0; n < n1; n++) {
        for (let k = k0; k < k1; k++) amax = Math.max(amax, Math.abs(w[n * K + k]));
      }
      const s = scales[nb * KB + kb] = scaleFor(amax, 448, eps, opts.ue8m0);
      for (let n = n0; n < n1; n++) {
        for (let k = k0; k < k1; k++) q[n * K + k] = quantOne(w[n * K + k], s, "fp8e4m3");
      }
    }
  }
  return { q, scales };
}
