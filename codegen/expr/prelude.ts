/**
 * Device helpers every generated row kernel starts with: header-free conversions (inline PTX), vector
 * loads, and kiln's float32 math. Each helper performs the operations its TypeScript twin in
 * dsl/expr/math.ts performs, in the same order; kernels compile with `--fmad=false` so no multiply and
 * add are contracted into an FMA behind our back.
 *
 * @module
 */

import { EXP_CONSTANTS, SILU_CONSTANTS } from "../../dsl/expr/math.ts";
import { f32Bits } from "../../dsl/dtype.ts";

/** A float32 as an exact C hex-float literal (`0x1.8p+1f`), or INFINITY/NAN spelled by bits. */
export function hexf(v: number): string {
  const b = f32Bits(v);
  const sign = b >>> 31 ? "-" : "";
  const e = (b >>> 23) & 0xff, m = b & 0x7fffff;
  if (e === 0xff) return m ? "KILN_NAN" : `${sign}KILN_INF`;
  if (e === 0 && m === 0) return `${sign}0.0f`;
  const mant = (m << 1).toString(16).padStart(6, "0");
  return e === 0 ? `${sign}0x0.${mant}p-126f` : `${sign}0x1.${mant}p${e - 127 >= 0 ? "+" : ""}${e - 127}f`;
}

const X = EXP_CONSTANTS, S = SILU_CONSTANTS;
const horner = X.poly.slice(1).map((c) => `  p = __fmaf_rn(p, r, ${hexf(c)});`).join("\n");
const MAGIC = hexf(S.magic);

/** Helpers that need nothing newer than sm_80. */
export const PRELUDE: string = String.raw`
#define KILN_INF __int_as_float(0x7f800000)
#define KILN_NAN __int_as_float(0x7fffffff)
__device__ __forceinline__ float kiln_bf16_f32(unsigned int h) { return __uint_as_float(h << 16); }
__device__ __forceinline__ float kiln_f16_f32(unsigned int h) {
  float f; unsigned short s = (unsigned short)h; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(s)); return f;
}
__device__ __forceinline__ unsigned int kiln_f32_bf16(float f) {
  unsigned short h; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
__device__ __forceinline__ unsigned int kiln_f32_f16(float f) {
  unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
// two floats -> packed bf16x2 / f16x2 (lo in the low half), one F2FP on the ALU pipe
__device__ __forceinline__ unsigned int kiln_f32x2_bf16(float lo, float hi) {
  unsigned int r; asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}
__device__ __forceinline__ unsigned int kiln_f32x2_f16(float lo, float hi) {
  unsigned int r; asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}
// fp8 code -> float, exactly: the 7 magnitude bits placed under a float32 exponent, scaled by 2^(127-bias).
__device__ __forceinline__ float kiln_e4m3_f32(unsigned int b) {
  float v = __uint_as_float((b & 0x7fu) << 20) * 0x1p120f;
  v = __uint_as_float(__float_as_uint(v) | ((b & 0x80u) << 24));
  return (b & 0x7fu) == 0x7fu ? KILN_NAN : v;
}
__device__ __forceinline__ float kiln_e5m2_f32(unsigned int b) {
  const unsigned int mag = b & 0x7fu;
  float v = __uint_as_float(mag << 21) * 0x1p112f;
  if (mag >= 0x7cu) v = mag == 0x7cu ? KILN_INF : KILN_NAN; // IEEE-like: inf and NaNs
  return __uint_as_float(__float_as_uint(v) | ((b & 0x80u) << 24));
}
__device__ __forceinline__ int kiln_sat_int(float x, int lo, int hi, bool trunc) {
  int v = trunc ? __float2int_rz(x) : __float2int_rn(x);
  return max(lo, min(hi, v));
}
// fp4 e2m1, round to nearest even, saturating; NaN -> +6 (code 7) as kiln's host codec.
__device__ __forceinline__ unsigned int kiln_e2m1(float x) {
  if (x != x) return 7u;
  float a = fabsf(x);
  unsigned int c = (a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) + (a >= 3.5f) + (a > 5.0f);
  return c | ((__float_as_uint(x) >> 28) & 8u);
}
__device__ __forceinline__ float kiln_pow2ceil(float v) {
  if (!(v > 0.0f)) return v;
  unsigned int b = __float_as_uint(v);
  int e = (int)(b >> 23) + ((b & 0x7fffffu) != 0u);
  e = max(1, min(254, e));
  return __uint_as_float((unsigned int)e << 23);
}
// kiln's exp: Cody-Waite reduction, degree-7 Horner polynomial with FMA, exact scaling (dsl/expr/math.ts).
// k = rint(x log2e) by adding 1.5*2^23 (round to nearest even, exact for |v| < 2^22): FADDs, not FRND + F2I.
__device__ __forceinline__ float kiln_exp(float x) {
  if (x != x) return x;
  float xc = fminf(fmaxf(x, ${hexf(X.lo)}), ${hexf(X.hi)});
  const float km = __fadd_rn(__fmul_rn(xc, ${hexf(X.log2e)}), ${MAGIC});
  const float k = __fsub_rn(km, ${MAGIC});
  float r = __fmaf_rn(-k, ${hexf(X.ln2lo)}, __fmaf_rn(-k, ${hexf(X.ln2hi)}, xc));
  float p = ${hexf(X.poly[0])};
${horner}
  const int ki = (int)(__float_as_uint(km) - __float_as_uint(${MAGIC}));
  const int k1 = ki / 2, k2 = ki - k1; // both in [-75, 64]: normal powers of two
  return (p * __uint_as_float((unsigned int)(k1 + 127) << 23)) * __uint_as_float((unsigned int)(k2 + 127) << 23);
}
// kiln's silu (dsl/expr/math.ts ksilu): t = exp(max(-|x|, lo)) with 2^k an exponent add (k in [-125, 0]),
// 1/(1+t) on (1, 2] from a quadratic seed and two Newton steps; x * (x >= 0 ? y : t * y). No division.
__device__ __forceinline__ float kiln_silu(float x) {
  const float n = fmaxf(-fabsf(x), ${hexf(S.lo)});
  const float km = __fmaf_rn(n, ${hexf(X.log2e)}, ${MAGIC});
  const float k = __fsub_rn(km, ${MAGIC});
  float r = __fmaf_rn(-k, ${hexf(X.ln2lo)}, __fmaf_rn(-k, ${hexf(X.ln2hi)}, n));
  float p = ${hexf(X.poly[0])};
${horner}
  const float t = __uint_as_float(__float_as_uint(p) + (__float_as_uint(km) << 23));
  const float d = __fadd_rn(1.0f, t);
  float y = __fmaf_rn(__fmaf_rn(${hexf(S.rcp[0])}, d, ${hexf(S.rcp[1])}), d, ${hexf(S.rcp[2])});
  y = __fmaf_rn(y, __fmaf_rn(-d, y, 1.0f), y);
  y = __fmaf_rn(y, __fmaf_rn(-d, y, 1.0f), y);
  return __fmul_rn(x, x >= 0.0f ? y : __fmul_rn(t, y));
}
__device__ __forceinline__ uint4 kiln_ld_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
__device__ __forceinline__ uint2 kiln_ld_stream2(const void* p) {
  uint2 v;
  asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
  return v;
}
__device__ __forceinline__ unsigned int kiln_ld_stream1(const void* p) {
  unsigned int v;
  asm volatile("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}
`;

/** fp8 encoders (cvt ... e4m3x2 / e5m2x2 need sm_89). `lo` lands in the low byte. */
export const PRELUDE_FP8: string = String.raw`
__device__ __forceinline__ unsigned int kiln_e4m3x2(float lo, float hi) {
  unsigned short r; asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo)); return r;
}
__device__ __forceinline__ unsigned int kiln_e5m2x2(float lo, float hi) {
  unsigned short r; asm("cvt.rn.satfinite.e5m2x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo)); return r;
}
`;
