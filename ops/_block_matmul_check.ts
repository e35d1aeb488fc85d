/**
 * Argument checks of the scaled GEMM, run before any launch. They take anything tensor-shaped
 * ({@linkcode GemmTensorLike}), so the pure test tier exercises them without a GPU. Every failure is an
 * ArgumentError naming the argument, what was expected and what came.
 *
 * @module
 */
import { ArgumentError } from "../runtime/errors.ts";
import type { DType } from "../dsl/dtype.ts";
import { type BlockMatmulOp, kBlocks, operandDtype, SCALE_BLOCK } from "../dsl/ops/block_matmul.ts";

/** What the checks read of a tensor (a {@linkcode Tensor} is one). */
export interface GemmTensorLike {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly ptr: bigint;
}

/** The checked inputs: real rows M, A row stride, A-scale stride P (block mode; else 0). */
export interface GemmInputs {
  readonly M: number;
  readonly lda: number;
  readonly aScaleStride: number;
}

const fmt = (t: GemmTensorLike) => `${t.dtype}[${t.shape.join(", ")}] strides [${t.strides.join(", ")}]`;
const numel = (t: GemmTensorLike) => t.shape.reduce((x, y) => x * y, 1);

function dtypeIs(t: GemmTensorLike, what: string, dtype: DType): void {
  if (t.dtype !== dtype) throw new ArgumentError(what, `a ${dtype} tensor`, `a ${t.dtype} tensor`);
}

function aligned(t: GemmTensorLike, what: string, bytes: number): void {
  if (t.ptr % BigInt(bytes) !== 0n) {
    throw new ArgumentError(what, `a ${bytes}-byte aligned address`, `0x${t.ptr.toString(16)}`);
  }
}

/** A rank-1 (or [n, 1]) contiguous vector of at least `n` elements; returns nothing. */
function vector(t: GemmTensorLike, what: string, n: number, exact: boolean): void {
  const ok = (t.shape.length === 1 && (t.shape[0] <= 1 || t.strides[0] === 1)) ||
    (t.shape.length === 2 && t.shape[1] === 1 && (t.shape[0] <= 1 || t.strides[0] === 1));
  const len = numel(t);
  if (!ok || (exact ? len !== n : len < n)) {
    throw new ArgumentError(what, `a contiguous vector of ${exact ? "" : "≥ "}${n} elements`, fmt(t));
  }
}

/** Row stride of a rank-2 row-major tensor whose rows hold `cols` contiguous elements (throws otherwise). */
function rowStride(t: GemmTensorLike, what: string, cols: number): number {
  if (t.shape.length !== 2 || t.shape[1] !== cols || (cols > 1 && t.strides[1] !== 1)) {
    throw new ArgumentError(what, `a row-major [rows, ${cols}] tensor`, fmt(t));
  }
  const ld = t.shape[0] <= 1 ? cols : t.strides[0];
  if (ld < cols) throw new ArgumentError(what, `a row stride ≥ ${cols}`, fmt(t));
  return ld;
}

/**
 * Check A, its scales, B, its scales and the bias against `op`, with `m` real rows (default
 * `a.shape[0]`). Block mode accepts A scales as the physical M-major `[K/128, P]` (P ≥ m) or its
 * transposed view `[R ≥ m, K/128]` with strides `[1, P]`.
 */
export function checkGemmInputs(
  op: BlockMatmulOp,
  t: {
    a: GemmTensorLike;
    aScales: GemmTensorLike;
    b: GemmTensorLike;
    bScales: GemmTensorLike;
    bias?: GemmTensorLike;
  },
  m?: number,
): GemmInputs {
  const { N, K, mode } = op, KB = kBlocks(K), q = operandDtype(mode);
  const { a, aScales, b, bScales } = t;
  dtypeIs(a, "a", q);
  const lda = rowStride(a, "a", K);
  if (lda % 16) throw new ArgumentError("a", "a row stride that is a multiple of 16 bytes", fmt(a));
  aligned(a, "a", 16);
  const M = m ?? a.shape[0];
  if (!Number.isSafeInteger(M) || M < 1) throw new ArgumentError("m", "M ≥ 1 rows", String(M));
  if (M > a.shape[0]) throw new ArgumentError("m", `M ≤ ${a.shape[0]} (the rows of a)`, String(M));

  dtypeIs(b, "b", q);
  if (rowStride(b, "b", K) !== K || b.shape[0] !== N) {
    throw new ArgumentError("b", `a contiguous [${N}, ${K}] tensor`, fmt(b));
  }
  aligned(b, "b", 16);

  dtypeIs(aScales, "aScales", op.aScaleDtype);
  dtypeIs(bScales, "bScales", op.bScaleDtype);
  let aScaleStride = 0;
  if (mode === "block") {
    const s = aScales;
    if (
      s.shape.length === 2 && s.shape[0] === KB && (KB === 1 || s.strides[0] >= s.shape[1]) &&
      s.strides[1] === 1
    ) {
      aScaleStride = KB === 1 ? s.shape[1] : s.strides[0];
      if (s.shape[1] < M) aScaleStride = -1;
    } else if (s.shape.length === 2 && s.shape[1] === KB && s.strides[0] === 1 && s.shape[0] >= M) {
      aScaleStride = KB === 1 ? s.shape[0] : s.strides[1];
    } else aScaleStride = -1;
    if (aScaleStride < M) {
      throw new ArgumentError(
        "aScales",
        `M-major 1x${SCALE_BLOCK} scales: [${KB}, P ≥ ${M}] (or its [P, ${KB}] view with strides [1, P])`,
        fmt(s),
      );
    }
    const nb = Math.ceil(N / SCALE_BLOCK);
    if (
      bScales.shape.length !== 2 || bScales.shape[0] !== nb || bScales.shape[1] !== KB ||
      numel(bScales) !== nb * KB ||
      (KB > 1 && bScales.strides[1] !== 1) || (nb > 1 && bScales.strides[0] !== KB)
    ) {
      throw new ArgumentError("bScales", `contiguous 128x128 block scales [${nb}, ${KB}]`, fmt(bScales));
    }
  } else if (mode === "tensor") {
    if (numel(aScales) !== 1) throw new ArgumentError("aScales", "one per-tensor scale ([1])", fmt(aScales));
    if (numel(bScales) !== 1) throw new ArgumentError("bScales", "one per-tensor scale ([1])", fmt(bScales));
  } else {
    vector(aScales, "aScales", M, false);
    vector(bScales, "bScales", N, true);
  }
  if (op.bias) {
    if (!t.bias) {
      throw new ArgumentError(
        "bias",
        `a ${op.bias} [${N}] tensor (this GEMM was prepared with a bias)`,
        "none",
      );
    }
    dtypeIs(t.bias, "bias", op.bias);
    vector(t.bias, "bias", N, true);
  } else if (t.bias) {
    throw new ArgumentError("bias", "no bias (prepare the GEMM with `bias: dtype` to add one)", fmt(t.bias));
  }
  return { M, lda, aScaleStride };
}

/** Check the output `[M, N]` (row stride ≥ N allowed) and return its row stride. */
export function checkGemmOut(op: BlockMatmulOp, out: GemmTensorLike, M: number): number {
  dtypeIs(out, "out", op.outDtype);
  if (out.shape.length !== 2 || out.shape[0] !== M) {
    throw new ArgumentError("out", `an ${op.outDtype} [${M}, ${op.N}] tensor`, fmt(out));
  }
  const ldc = rowStride(out, "out", op.N);
  aligned(out, "out", 2);
  return ldc;
}
