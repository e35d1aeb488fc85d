/**
 * The float32 semantics of the expression IR, as plain functions. Each function performs the same
 * sequence of correctly rounded float32 operations as the CUDA kiln generates (codegen/expr/prelude.ts,
 * compiled with `--fmad=false` so no multiply-add is contracted), which is why the interpreter is
 * bit-exact against the GPU: a double-precision result of one +, −, ×, ÷ or √ of float32 operands,
 * rounded once to float32, is the correctly rounded float32 result.
 *
 * `exp` is kiln's own: Cody–Waite range reduction, a degree-7 Taylor polynomial in Horner form with
 * fused multiply-adds (emulated exactly here by {@linkcode fmaf}), and an exact scaling by 2^k. It is
 * within 2 ulp of the true exponential and, unlike a libm, the same on both sides. `silu` has its own
 * cheaper sequence (no division: {@linkcode ksilu}).
 *
 * @module
 */
import {
  bf16Decode,
  bf16Encode,
  type DType,
  f16Decode,
  f16Encode,
  f32Bits,
  f32FromBits,
  fp4e2m1Decode,
  fp4e2m1Encode,
  fp8e4m3Decode,
  fp8e5m2Decode,
  roundHalfEven,
} from "../dtype.ts";
import type { IntRounding } from "./node.ts";

const f = Math.fround;

/** CUDA `fmaxf`: the larger operand, ignoring one NaN. */
export function fmaxf(a: number, b: number): number {
  if (Number.isNaN(a)) return b;
  if (Number.isNaN(b)) return a;
  if (a === 0 && b === 0) return Object.is(a, -0) ? b : a; // +0 wins, as on the GPU
  return a > b ? a : b;
}

/** CUDA `fminf`: the smaller operand, ignoring one NaN. */
export function fminf(a: number, b: number): number {
  if (Number.isNaN(a)) return b;
  if (Number.isNaN(b)) return a;
  if (a === 0 && b === 0) return Object.is(a, -0) ? a : b; // -0 wins
  return a < b ? a : b;
}

/**
 * Constants of kiln's exp, as float32 values. The CUDA prelude is generated from these numbers (as hex
 * float literals), so both sides use the same bits.
 */
export const EXP_CONSTANTS: Readonly<{
  lo: number;
  hi: number;
  log2e: number;
  ln2hi: number;
  ln2lo: number;
  poly: readonly number[];
}> = Object.freeze({
  lo: f(-104),
  hi: f(88.72),
  log2e: f(1.4426950408889634),
  ln2hi: f(0.693359375), // 355/512: k * ln2hi is exact for |k| < 2^15
  ln2lo: f(-2.12194440e-4),
  poly: Object.freeze([1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 0.5, 1, 1].map(f)),
});
const { lo: EXP_LO, hi: EXP_HI, log2e: LOG2E, ln2hi: LN2_HI, ln2lo: LN2_LO, poly: C } = EXP_CONSTANTS;

/** The float32 next to `r` in the direction of `toward` (r is a float32, toward ≠ r). */
function nextF32(r: number, toward: number): number {
  if (r === 0) return toward > 0 ? 2 ** -149 : -(2 ** -149);
  const b = f32Bits(r);
  // away from zero when moving in r's direction, else toward zero
  return f32FromBits((toward > r) === (r > 0) ? b + 1 : b - 1);
}

/**
 * Fused multiply-add of float32 values with one rounding, as `fma.rn.f32`: the product is exact in
 * double; the double sum's rounding error is recovered exactly (TwoSum) and only decides the result
 * when the double sum lands exactly on a float32 midpoint.
 */
export function fmaf(a: number, b: number, c: number): number {
  const p = a * b, s = p + c;
  const r = f(s);
  if (!Number.isFinite(s) || r === s) return r;
  const bb = s - p;
  const e = (p - (s - bb)) + (c - bb);
  if (e === 0) return r;
  const other = nextF32(r, s);
  if ((r + other) / 2 !== s) return r; // not a tie: s and the exact sum round alike
  const up = e > 0; // the exact sum lies on this side of the midpoint
  return up === (other > r) ? other : r;
}

/** The exact float32 2^k for an integer k in [-149, 127]. */
export function pow2(k: number): number {
  return k >= -126 ? f32FromBits((k + 127) << 23) : f32FromBits(1 << (k + 149));
}

/** kiln's float32 exp (bit-exact with `kiln_exp` in the generated CUDA). */
export function kexp(x: number): number {
  if (Number.isNaN(x)) return x;
  const xc = fminf(fmaxf(x, EXP_LO), EXP_HI);
  const k = roundHalfEven(f(xc * LOG2E));
  const r = fmaf(-k, LN2_LO, fmaf(-k, LN2_HI, xc));
  let p = C[0];
  for (let i = 1; i < C.length; i++) p = fmaf(p, r, C[i]);
  const k1 = Math.trunc(k / 2), k2 = k - k1; // both in [-75, 64]: normal powers of two
  return f(f(p * pow2(k1)) * pow2(k2));
}

/**
 * Constants of kiln's silu (float32 values; the CUDA prelude is generated from them). The exponential
 * is only ever taken of `-|x|` clamped to `lo`, so `k ∈ [-125, 0]`, the scaling by 2^k is an exact
 * integer add to the exponent field, and `d = 1 + e^-|x|` lies in (1, 2], where a quadratic seed and
 * two Newton steps give its reciprocal: no division, no `FRND`/`F2I`/`MUFU`, no branch.
 */
export const SILU_CONSTANTS: Readonly<{
  lo: number;
  magic: number;
  rcp: readonly number[];
}> = Object.freeze({
  lo: f(-86.5),
  magic: 12582912, // 1.5 · 2^23: adding it rounds |v| < 2^22 to an integer (ties to even), exactly
  // 1/d ≈ (32 d² − 144 d + 210) / 99 on [1, 2]: 1 − d·q(d) = −T3(2d − 3) / 99, relative error ≤ 1/99
  rcp: Object.freeze([32 / 99, -144 / 99, 210 / 99].map(f)),
});
const S = SILU_CONSTANTS;

/**
 * kiln's silu, `x · sigmoid(x)` (bit-exact with `kiln_silu` in the generated CUDA):
 *
 * ```
 * t   = exp(max(-|x|, -86.5))       exp's Cody–Waite reduction and polynomial; k = rint(n·log2e) as
 *                                   fma(n, log2e, 1.5·2^23) − 1.5·2^23; 2^k as an exponent-bits add
 * y   ≈ 1 / (1 + t)                 quadratic seed, two Newton steps y += y·(1 − d·y) with FMA
 * sig = x ≥ 0 ? y : t · y           (e^-|x| / (1 + e^-|x|) = sigmoid(x) for x < 0)
 * out = x · sig
 * ```
 *
 * Within 3 ulp of the exact silu for x ≥ -86.5 (sampled; 2 ulp more with a degree-6 polynomial).
 * Below, `t` stays at e^-86.5 (≈ 2.72e-38), so the result is a tiny negative (|out| < |x| · 2.72e-38)
 * rather than the true, even tinier one. NaN stays NaN;
 * silu(+inf) = +inf, silu(-inf) = -inf.
 */
export function ksilu(x: number): number {
  const n = fmaxf(-Math.abs(x), S.lo);
  const sm = fmaf(n, LOG2E, S.magic); // n·log2e rounded once, to an integer (ties to even)
  const k = sm - S.magic; // exact: an integer in [-125, 0]
  const r = fmaf(-k, LN2_LO, fmaf(-k, LN2_HI, n));
  let p = C[0];
  for (let i = 1; i < C.length; i++) p = fmaf(p, r, C[i]);
  const t = f32FromBits(f32Bits(p) + k * 2 ** 23); // p · 2^k, a normal float: exact
  const d = f(1 + t);
  let y = fmaf(fmaf(S.rcp[0], d, S.rcp[1]), d, S.rcp[2]);
  for (let i = 0; i < 2; i++) y = fmaf(y, fmaf(-d, y, 1), y); // error (1/99)^4 ≈ 1e-8
  return f(x * (x >= 0 ? y : f(t * y)));
}

/** The smallest power of two ≥ v, clamped to [2^-126, 2^127]; NaN and v ≤ 0 pass through. */
export function pow2ceil(v: number): number {
  if (!(v > 0)) return v;
  const b = f32Bits(v);
  let e = (b >>> 23) & 0xff;
  if ((b & 0x7fffff) !== 0) e++;
  e = Math.min(254, Math.max(1, e));
  return f32FromBits(e << 23);
}

/** The UE8M0 byte of a power of two (its float32 exponent field). */
export function ue8m0Byte(v: number): number {
  return (f32Bits(v) >>> 23) & 0xff;
}

/**
 * float32 → fp8 code with round to nearest even and saturation to the largest finite value, in integer
 * arithmetic on the float32 bits (the fast path of the host codecs in dtype.ts, same results: tested).
 */
export function fp8EncodeFast(x: number, e5m2: boolean): number {
  const b = f32Bits(x);
  const a = b & 0x7fffffff;
  if (a > 0x7f800000) return 0x7f;
  const sign = (b >>> 24) & 0x80;
  const mbits = e5m2 ? 2 : 3, bias = e5m2 ? 15 : 7, maxCode = e5m2 ? 0x7b : 0x7e;
  const maxBits = e5m2 ? 0x47600000 : 0x43e00000; // 57344, 448
  if (a >= maxBits) return sign | maxCode;
  const minNormal = (127 - bias + 1) << 23;
  if (a < minNormal) {
    // subnormal: multiples of 2^(1 - bias - mbits); scaling by a power of two is exact
    return sign | roundHalfEven(f32FromBits(a) * 2 ** (bias - 1 + mbits));
  }
  const shift = 23 - mbits;
  const m = a & 0x7fffff, rem = m & ((1 << shift) - 1), half = 1 << (shift - 1);
  let code = (((a >>> 23) - 127 + bias) << mbits) | (m >>> shift);
  if (rem > half || (rem === half && code & 1)) code++;
  return sign | Math.min(code, maxCode);
}

/** float32 → int32 as `cvt.rni/rzi.s32.f32`: NaN → 0, saturating at the int32 range. */
function toInt(x: number, rounding: IntRounding): number {
  if (Number.isNaN(x)) return 0;
  const r = rounding === "trunc" ? Math.trunc(x) : roundHalfEven(x);
  return Math.max(-2147483648, Math.min(2147483647, r));
}

/**
 * The storage code of `x` in `dtype` (what a store writes): fp8 RNE + satfinite, i8/int4 saturating
 * with `rounding`, fp4 e2m1 RNE saturating, bf16/f16 RNE.
 */
export function encodeValue(dtype: DType, x: number, rounding: IntRounding = "rne"): number {
  switch (dtype) {
    case "fp8e4m3":
      return fp8EncodeFast(x, false);
    case "fp8e5m2":
      return fp8EncodeFast(x, true);
    case "fp4e2m1":
      return fp4e2m1Encode(x);
    case "bf16":
      return bf16Encode(x);
    case "f16":
      return f16Encode(x);
    case "i8":
      return Math.max(-128, Math.min(127, toInt(x, rounding))) & 0xff;
    case "int4":
      return Math.max(-8, Math.min(7, toInt(x, rounding))) & 0xf;
    case "ue8m0":
      return ue8m0Byte(x);
    default:
      throw new TypeError(`encodeValue: ${dtype} is not a code format`);
  }
}

/** The value a code of `dtype` stands for. */
export function decodeValue(dtype: DType, code: number): number {
  switch (dtype) {
    case "fp8e4m3":
      return fp8e4m3Decode(code);
    case "fp8e5m2":
      return fp8e5m2Decode(code);
    case "fp4e2m1":
      return fp4e2m1Decode(code);
    case "bf16":
      return bf16Decode(code);
    case "f16":
      return f16Decode(code);
    case "i8":
      return (code << 24) >> 24;
    case "int4":
      return (code << 28) >> 28;
    default:
      throw new TypeError(`decodeValue: ${dtype} is not a code format`);
  }
}

/** `cast(dtype)`: the nearest value of `dtype` as a float32. */
export function castValue(dtype: DType, x: number, rounding: IntRounding = "rne"): number {
  if (dtype === "f32") return f(x);
  return decodeValue(dtype, encodeValue(dtype, x, rounding));
}
