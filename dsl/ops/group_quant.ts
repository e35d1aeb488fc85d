/**
 * The per-token-group quantization family (DeepSeek-style FP8 activations, quant-spec §3) as row
 * programs of the expression DSL: option validation, the buffer geometry the GEMM consumes, and one
 * program per variant.
 *
 * Layouts (x is `[M, K]`, S = K / G groups per row, M_pad = ceil(M / rowAlign) · rowAlign):
 * - q: `[M_pad, K]` codes; rows `[M, M_pad)` are zero (row padding, sglang PR #27896 / #28715).
 * - scales "row": `[M_pad, S]` f32, row-major.
 * - scales "mmajor": the physical `[S, M_pad]` f32 buffer; (row r, group g) at `g · M_pad + r`. With
 *   rowAlign 4 the column stride is TMA-aligned (16 bytes), as DeepGEMM on SM90 wants.
 * - packUe8m0: `[ceil(S/4), M_pad]` i32 words, byte j of word p is group 4p + j's exponent (SM100).
 * - masked (`[E, T_pad, K]` inputs, rows t < maskedM[e] computed, others untouched): q `[E, T_pad, K]`,
 *   scales "row" `[E, T_pad, S]`, "mmajor" `[E, S, T_pad]`, packed `[E, ceil(S/4), T_pad]`.
 *
 * @module
 */
import type { DType } from "../dtype.ts";
import { type Expr, input } from "../expr/node.ts";
import { type QuantFormat, quantize, type QuantRounding } from "../expr/quantize.ts";
import { type Program, RowProgram } from "../expr/program.ts";

/** Output formats of the family. */
export type GroupQuantDtype = "fp8e4m3" | "fp8e5m2" | "i8";
/** Scale layouts. */
export type ScaleLayout = "row" | "mmajor";

/** Options of the family (the public API's, minus runtime tensors). */
export interface GroupQuantOptions {
  /** Elements per scale: a power of two dividing K, or K itself (per-token). Default 128. */
  groupSize?: number;
  dtype?: GroupQuantDtype;
  /** Lower bound of each group's amax. Default 1e-10. */
  eps?: number;
  /** Rows of q and scales are padded to a multiple of this (tail rows zero). Default 1. */
  rowAlign?: number;
  scaleLayout?: ScaleLayout;
  /** Power-of-two scales. */
  ue8m0?: boolean;
  /** UE8M0 exponents packed four per int32 (needs ue8m0 and scaleLayout "mmajor"). */
  packUe8m0?: boolean;
  /** Input `[..., 2H]`: quantize `silu(x[:, :H]) * x[:, H:]` (each product rounded to the input dtype). */
  fuseSiluMul?: boolean;
  /** Rounding convention (see dsl/expr/quantize.ts). Default "rcp" (SGLang CUDA v2's for fp8). */
  rounding?: QuantRounding;
}

/** Fully resolved options for one kernel. */
export interface GroupQuantSpec {
  /** Columns of the quantized output (H when fused; the input then has 2H). */
  readonly K: number;
  readonly inDtype: "bf16" | "f16";
  readonly groupSize: number;
  readonly dtype: GroupQuantDtype;
  readonly eps: number;
  readonly rowAlign: number;
  readonly scaleLayout: ScaleLayout;
  readonly ue8m0: boolean;
  readonly packUe8m0: boolean;
  readonly fuseSiluMul: boolean;
  readonly masked: boolean;
  readonly rounding: QuantRounding;
}

/** A problem with the options, naming the option. */
export class GroupQuantOptionError extends RangeError {
  override name = "GroupQuantOptionError";
  constructor(readonly option: string, readonly expected: string, readonly got: string) {
    super(`${option}: expected ${expected}, got ${got}`);
  }
}

const pow2 = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/**
 * Validate and complete options for an output width K.
 *
 * @example
 * ```ts
 * import { resolveGroupQuant } from "./group_quant.ts";
 * const spec = resolveGroupQuant(7168, "bf16", { rowAlign: 4, scaleLayout: "mmajor" });
 * console.log(spec.groupSize, spec.dtype); // 128 "fp8e4m3"
 * ```
 */
export function resolveGroupQuant(
  K: number,
  inDtype: DType,
  o: GroupQuantOptions & { masked?: boolean } = {},
): GroupQuantSpec {
  const bad = (opt: string, exp: string, got: unknown): never => {
    throw new GroupQuantOptionError(opt, exp, String(got));
  };
  if (!Number.isInteger(K) || K < 1) bad("K", "a positive integer", K);
  if (inDtype !== "bf16" && inDtype !== "f16") bad("x.dtype", "bf16 or f16", inDtype);
  const G = o.groupSize ?? 128;
  if (!(G === K || (pow2(G) && G >= 2 && K % G === 0))) {
    bad("groupSize", `a power of two ≥ 2 dividing K = ${K}, or K itself (per-token)`, G);
  }
  const dtype = o.dtype ?? "fp8e4m3";
  if (!["fp8e4m3", "fp8e5m2", "i8"].includes(dtype)) bad("dtype", `"fp8e4m3", "fp8e5m2" or "i8"`, dtype);
  const eps = o.eps ?? 1e-10;
  if (!(typeof eps === "number" && eps >= 1e-30 && eps < Infinity)) {
    bad("eps", "a number in [1e-30, inf)", eps);
  }
  const rowAlign = o.rowAlign ?? 1;
  if (!Number.isInteger(rowAlign) || rowAlign < 1 || rowAlign > 1024) {
    bad("rowAlign", "an integer in [1, 1024]", rowAlign);
  }
  const scaleLayout = o.scaleLayout ?? "row";
  if (scaleLayout !== "row" && scaleLayout !== "mmajor") bad("scaleLayout", `"row" or "mmajor"`, scaleLayout);
  const ue8m0 = o.ue8m0 ?? false, packUe8m0 = o.packUe8m0 ?? false;
  if (packUe8m0 && !ue8m0) bad("packUe8m0", "ue8m0: true as well", "ue8m0: false");
  if (packUe8m0 && scaleLayout !== "mmajor") bad("packUe8m0", `scaleLayout "mmajor"`, `"${scaleLayout}"`);
  const masked = o.masked ?? false;
  if (masked && rowAlign !== 1) bad("rowAlign", "1 with maskedM (rows are [E, T_pad])", rowAlign);
  const rounding = o.rounding ?? "rcp";
  if (!["rcp", "div", "sglang"].includes(rounding)) bad("rounding", `"rcp", "div" or "sglang"`, rounding);
  const fuseSiluMul = o.fuseSiluMul ?? false;
  const vec = 16 / 2;
  if (fuseSiluMul && K % vec !== 0) {
    bad("K", `a multiple of ${vec} with fuseSiluMul (16-byte loads of each half)`, K);
  }
  if (K % 8 !== 0) bad("K", "a multiple of 8 (16-byte rows)", K);
  return Object.freeze({
    K,
    inDtype: inDtype as "bf16" | "f16",
    groupSize: G,
    dtype,
    eps,
    rowAlign,
    scaleLayout,
    ue8m0,
    packUe8m0,
    fuseSiluMul,
    masked,
    rounding,
  });
}

/** Readable kernel-program name of a spec, e.g. `group_quant_bf16_fp8e4m3_g128_mmajor_rcp`. */
export function groupQuantName(s: GroupQuantSpec): string {
  return [
    "group_quant",
    s.inDtype,
    s.dtype,
    s.groupSize === s.K ? "token" : `g${s.groupSize}`,
    s.packUe8m0 ? "ue8m0x4" : s.ue8m0 ? `${s.scaleLayout}_ue8m0` : s.scaleLayout,
    ...(s.fuseSiluMul ? ["silu"] : []),
    ...(s.masked ? ["masked"] : []),
    s.rounding,
    ...(s.eps === 1e-10
      ? []
      : [`eps${s.eps.toExponential().replace(/[.+-]/g, (c) => ({ ".": "p", "+": "", "-": "m" })[c]!)}`]),
  ].join("_");
}

/** The value the family quantizes: the input row, or `bf16(bf16(silu(gate)) · up)` when fused. */
export function groupQuantSource(s: GroupQuantSpec): Expr {
  const x = input("x", s.inDtype, s.fuseSiluMul ? 2 * s.K : s.K);
  if (!s.fuseSiluMul) return x.load();
  const [gate, up] = x.split(2);
  return gate.silu().cast(s.inDtype).mul(up).cast(s.inDtype);
}

/** The row program of a spec: outputs `q` and `s`. */
export function groupQuantProgram(s: GroupQuantSpec): Program {
  const { q, scale } = quantize(groupQuantSource(s), {
    format: s.dtype as QuantFormat,
    group: s.groupSize,
    eps: s.eps,
    ue8m0: s.ue8m0,
    rounding: s.rounding,
    rowMajorScales: s.scaleLayout === "row",
  });
  const p = new RowProgram(groupQuantName(s), s.masked ? "masked" : "rows");
  p.store("q", q, { dtype: s.dtype });
  if (s.packUe8m0) p.store("s", scale, { layout: "mmajor_packed4", dtype: "ue8m0" });
  else p.store("s", scale, { layout: s.scaleLayout });
  return p.finish();
}

/** Padded row count: `ceil(m / rowAlign) · rowAlign`. */
export function paddedRows(m: number, rowAlign: number): number {
  return Math.ceil(m / rowAlign) * rowAlign;
}

/** Shapes and dtypes of the outputs for `m` rows (or `experts × tokensPad` when masked). */
export function groupQuantShapes(
  s: GroupQuantSpec,
  g: { m: number; experts?: number; tokensPad?: number },
): { q: { dtype: DType; shape: number[] }; scales: { dtype: DType; shape: number[] }; mPad: number } {
  const S = s.K / s.groupSize;
  const words = Math.ceil(S / 4);
  if (s.masked) {
    const E = g.experts ?? 0, T = g.tokensPad ?? 0;
    const scales = s.packUe8m0
      ? { dtype: "i32" as DType, shape: [E, words, T] }
      : { dtype: "f32" as DType, shape: s.scaleLayout === "mmajor" ? [E, S, T] : [E, T, S] };
    return { q: { dtype: s.dtype, shape: [E, T, s.K] }, scales, mPad: T };
  }
  const mPad = paddedRows(g.m, s.rowAlign);
  const scales = s.packUe8m0
    ? { dtype: "i32" as DType, shape: [words, mPad] }
    : { dtype: "f32" as DType, shape: s.scaleLayout === "mmajor" ? [S, mPad] : [mPad, S] };
  return { q: { dtype: s.dtype, shape: [mPad, s.K] }, scales, mPad };
}
