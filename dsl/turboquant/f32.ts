/**
 * float32 arithmetic the GPU kernels perform, reproduced exactly on the host: a correctly rounded fused
 * multiply-add (`__fmaf_rn`), the neighbours of a float32, and exact float32 literals for generated code.
 * `Math.fround(a op b)` is already exact for one `+ − × ÷ √` of two float32 values (float64 carries more
 * than 2·24 + 2 bits); only the three-operand fma needs care.
 *
 * @module
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The next float32 above `x` (x a finite float32). */
export function nextUp32(x: number): number {
  if (x === 0) return 1.401298464324817e-45;
  f32[0] = x;
  u32[0] += x > 0 ? 1 : -1;
  return f32[0];
}

/** The next float32 below `x` (x a finite float32). */
export function nextDown32(x: number): number {
  return -nextUp32(-x);
}

/**
 * `fmaf(a, b, c)` rounded once to float32, as `__fmaf_rn` / FFMA computes it (a, b, c float32 values).
 *
 * a·b is exact in float64 (48 significant bits); the float64 sum s = fl(a·b + c) carries an exact error
 * e (TwoSum). The float32 rounding of the exact value s + e equals that of s unless s lies exactly
 * halfway between two float32 values (any other float32 midpoint is at least one float64 ulp away from
 * s, farther than |e|); then the sign of e decides.
 *
 * @example
 * ```ts
 * import { fmaf32 } from "./f32.ts";
 * console.log(fmaf32(3, 0.5, 1)); // 2.5
 * ```
 */
export function fmaf32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = Math.fround(s);
  if (r === s || !Number.isFinite(s)) return r;
  const bv = s - p;
  const e = (p - (s - bv)) + (c - bv);
  if (e === 0) return r;
  const other = s > r ? nextUp32(r) : nextDown32(r);
  if ((r + other) / 2 !== s) return r; // not a tie: s and s + e round alike
  const hi = Math.max(r, other), lo = Math.min(r, other);
  return e > 0 ? hi : lo;
}

/** A float32 as a CUDA C hexadecimal literal (`0x1.8p-3f`), exact and locale-free; for generated code. */
export function cFloat(x: number): string {
  const v = Math.fround(x);
  if (Number.isNaN(v)) return "__int_as_float(0x7fffffff)";
  if (!Number.isFinite(v)) return v > 0 ? "__int_as_float(0x7f800000)" : "__int_as_float(0xff800000)";
  if (v === 0) return Object.is(v, -0) ? "-0.0f" : "0.0f";
  f32[0] = v;
  const bits = u32[0];
  const sign = bits >>> 31 ? "-" : "";
  const exp = (bits >>> 23) & 0xff;
  const man = bits & 0x7fffff;
  // normal: 1.m × 2^(e−127); subnormal: 0.m × 2^−126. 23 mantissa bits → 6 hex digits after shifting by 1.
  const lead = exp === 0 ? 0 : 1;
  const e = exp === 0 ? -126 : exp - 127;
  const hex = (man << 1).toString(16).padStart(6, "0");
  return `${sign}0x${lead}.${hex}p${e}f`;
}
