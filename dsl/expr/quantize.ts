/**
 * `quantize(x, ...)`: symmetric absmax quantization in groups along the row, written with the IR's
 * primitive ops, so it fuses with whatever computed `x` and the interpreter gives its reference bits.
 *
 * ```
 * amax  = max(eps, max_{j in group} |x_j|)
 * s     = amax / qmax              (rounding "div")     s = amax * f32(1/qmax)  ("rcp", "sglang")
 * ue8m0:  s = 2^ceil(log2 s)
 * q     = cast(x / s)                        ("div")
 *         cast(x * m), m = qmax / amax (or 2^-e with ue8m0)   ("rcp", "sglang")
 * ```
 *
 * The cast saturates, which is the formula's `clamp(·, qmin, qmax)` for every finite value (fp8
 * satfinite, saturating integer conversion); only a NaN element differs (it stays NaN for fp8 and
 * becomes 0 for int8, where SGLang's clamp-then-convert gives qmin).
 *
 * ```
 * ```
 *
 * Rounding conventions (quant-spec §3.1):
 * - `"rcp"` (kiln's default) is SGLang's CUDA v2 / JIT kernel convention: the multiplier `qmax / amax`
 *   is one correctly rounded division per group and each element costs one multiply. It differs from a
 *   true division by at most one float32 ulp of `x / s`, which changes an fp8 code only when `x / s`
 *   lies within that ulp of a rounding midpoint (about 2^-19 of the elements). int8 rounds to nearest
 *   even (SGLang truncates: see "sglang").
 * - `"div"` is the DeepSeek reference / Triton column-major / CUDA v1 convention: `x / s` with an IEEE
 *   division per element (the stored scale is exactly the divisor).
 * - `"sglang"` reproduces SGLang's v2 kernel bit for bit: "rcp", int8 truncated toward zero, and with
 *   UE8M0 scales in the row-major layout the elements are scaled by the unrounded `qmax / amax` while the
 *   stored scale is rounded up to a power of two (as its kernel does).
 *
 * @module
 */
import type { DType } from "../dtype.ts";
import { constant, type Expr, type IntRounding } from "./node.ts";

/** Formats `quantize` produces. */
export type QuantFormat = "fp8e4m3" | "fp8e5m2" | "i8" | "int4" | "fp4e2m1";
/** The rounding conventions of {@linkcode quantize}. */
export type QuantRounding = "rcp" | "div" | "sglang";

/** Largest magnitude and most negative code of each format. */
export const QUANT_RANGE: Readonly<Record<QuantFormat, { max: number; min: number }>> = {
  fp8e4m3: { max: 448, min: -448 },
  fp8e5m2: { max: 57344, min: -57344 },
  i8: { max: 127, min: -128 },
  int4: { max: 7, min: -8 },
  fp4e2m1: { max: 6, min: -6 },
};

/** Options of {@linkcode quantize}. */
export interface QuantizeOptions {
  format: QuantFormat;
  /** Elements per scale (default: the whole row, per-token). */
  group?: number;
  /** Lower bound of amax (default 1e-10, SGLang's). Must be ≥ 1e-30. */
  eps?: number;
  /** Round scales up to powers of two (UE8M0). */
  ue8m0?: boolean;
  rounding?: QuantRounding;
  /**
   * SGLang's row-major UE8M0 quirk applies only when the scales are stored row-major (rounding
   * "sglang"). Default false (the M-major behaviour: scale elements by the rounded scale).
   */
  rowMajorScales?: boolean;
}

/** The codes and the per-group dequantization scale (x ≈ q · scale). */
export interface Quantized {
  /** `cast(format)` of the scaled values: store it with `{ dtype: format }`. */
  q: Expr;
  /** One float32 scale per group (a power of two with ue8m0). */
  scale: Expr;
}

/** The int rounding a format uses under a convention. */
export function intRounding(format: QuantFormat, rounding: QuantRounding): IntRounding {
  return rounding === "sglang" && format === "i8" ? "trunc" : "rne";
}

/**
 * Quantize `x` in groups of `group` elements.
 *
 * @example
 * ```ts
 * import { input } from "./node.ts";
 * import { quantize } from "./quantize.ts";
 * const { q, scale } = quantize(input("x", "bf16", 256).load(), { format: "fp8e4m3", group: 128 });
 * console.log(q.len, scale.len); // 256 2
 * ```
 */
export function quantize(x: Expr, opts: QuantizeOptions): Quantized {
  const group = opts.group ?? x.len;
  const eps = opts.eps ?? 1e-10;
  const rounding = opts.rounding ?? "rcp";
  const range = QUANT_RANGE[opts.format];
  if (!range) throw new TypeError(`quantize: unknown format ${opts.format}`);
  if (!(eps >= 1e-30 && eps < Infinity)) {
    throw new RangeError(`quantize: eps must be in [1e-30, inf), got ${eps}`);
  }
  const amax = x.amax(group).max(eps);
  return quantizeWithAmax(x, amax, { ...opts, eps, rounding });
}

/** Quantize `x` given its (eps-clamped) amax per group: the scale rule and the element scaling. */
export function quantizeWithAmax(x: Expr, amax: Expr, opts: QuantizeOptions): Quantized {
  const rounding = opts.rounding ?? "rcp";
  const { max } = QUANT_RANGE[opts.format];
  let scale: Expr, scaled: Expr;
  if (rounding === "div") {
    scale = amax.div(max);
    if (opts.ue8m0) scale = scale.pow2ceil();
    scaled = x.div(scale);
  } else {
    const raw = amax.mul(constant(1 / max));
    if (opts.ue8m0) {
      scale = raw.pow2ceil();
      const quirk = rounding === "sglang" && opts.rowMajorScales;
      scaled = x.mul(quirk ? constant(max).div(amax) : scale.recip());
    } else {
      scale = raw;
      scaled = x.mul(constant(max).div(amax));
    }
  }
  // The cast saturates to [min, max] (fp8 satfinite, saturating int conversion), which is the clamp of
  // the formula for every finite value; a NaN element stays NaN (fp8) or becomes 0 (int).
  const q = scaled.cast(opts.format as DType, intRounding(opts.format, rounding));
  return { q, scale };
}

/**
 * Quantize with a given scale (static per-tensor or per-token scales): `cast(clamp(x / s))`, or with
 * `"rcp"` rounding `cast(clamp(x * (1 / s)))`.
 */
export function quantizeWithScale(
  x: Expr,
  scale: Expr,
  opts: { format: QuantFormat; rounding?: QuantRounding },
): Expr {
  const rounding = opts.rounding ?? "rcp";
  const scaled = rounding === "div" ? x.div(scale) : x.mul(scale.recip());
  return scaled.cast(opts.format as DType, intRounding(opts.format, rounding));
}
