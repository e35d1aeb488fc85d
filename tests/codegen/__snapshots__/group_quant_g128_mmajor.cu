// kiln row program group_quant_bf16_fp8e4m3_g128_mmajor_rcp: q <- fp8e4m3(mul(x, div(448, max(amax/128(x), 1.000000013351432e-10)))); s <- mul(max(amax/128(x), 1.000000013351432e-10), 0.0022321429569274187)
// schedule: vec 8, lanes 4, chunks 4, threads 256; tile 128 of 7168

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
  float xc = fminf(fmaxf(x, -0x1.a00000p+6f), 0x1.62e148p+6f);
  const float km = __fadd_rn(__fmul_rn(xc, 0x1.715476p+0f), 0x1.800000p+23f);
  const float k = __fsub_rn(km, 0x1.800000p+23f);
  float r = __fmaf_rn(-k, -0x1.bd0106p-13f, __fmaf_rn(-k, 0x1.630000p-1f, xc));
  float p = 0x1.a01a02p-13f;
  p = __fmaf_rn(p, r, 0x1.6c16c2p-10f);
  p = __fmaf_rn(p, r, 0x1.111112p-7f);
  p = __fmaf_rn(p, r, 0x1.555556p-5f);
  p = __fmaf_rn(p, r, 0x1.555556p-3f);
  p = __fmaf_rn(p, r, 0x1.000000p-1f);
  p = __fmaf_rn(p, r, 0x1.000000p+0f);
  p = __fmaf_rn(p, r, 0x1.000000p+0f);
  const int ki = (int)(__float_as_uint(km) - __float_as_uint(0x1.800000p+23f));
  const int k1 = ki / 2, k2 = ki - k1; // both in [-75, 64]: normal powers of two
  return (p * __uint_as_float((unsigned int)(k1 + 127) << 23)) * __uint_as_float((unsigned int)(k2 + 127) << 23);
}
// kiln's silu (dsl/expr/math.ts ksilu): t = exp(max(-|x|, lo)) with 2^k an exponent add (k in [-125, 0]),
// 1/(1+t) on (1, 2] from a quadratic seed and two Newton steps; x * (x >= 0 ? y : t * y). No division.
__device__ __forceinline__ float kiln_silu(float x) {
  const float n = fmaxf(-fabsf(x), -0x1.5a0000p+6f);
  const float km = __fmaf_rn(n, 0x1.715476p+0f, 0x1.800000p+23f);
  const float k = __fsub_rn(km, 0x1.800000p+23f);
  float r = __fmaf_rn(-k, -0x1.bd0106p-13f, __fmaf_rn(-k, 0x1.630000p-1f, n));
  float p = 0x1.a01a02p-13f;
  p = __fmaf_rn(p, r, 0x1.6c16c2p-10f);
  p = __fmaf_rn(p, r, 0x1.111112p-7f);
  p = __fmaf_rn(p, r, 0x1.555556p-5f);
  p = __fmaf_rn(p, r, 0x1.555556p-3f);
  p = __fmaf_rn(p, r, 0x1.000000p-1f);
  p = __fmaf_rn(p, r, 0x1.000000p+0f);
  p = __fmaf_rn(p, r, 0x1.000000p+0f);
  const float t = __uint_as_float(__float_as_uint(p) + (__float_as_uint(km) << 23));
  const float d = __fadd_rn(1.0f, t);
  float y = __fmaf_rn(__fmaf_rn(0x1.4afd6ap-2f, d, -0x1.745d18p+0f), d, 0x1.0f83e0p+1f);
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


__device__ __forceinline__ unsigned int kiln_e4m3x2(float lo, float hi) {
  unsigned short r; asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo)); return r;
}
__device__ __forceinline__ unsigned int kiln_e5m2x2(float lo, float hi) {
  unsigned short r; asm("cvt.rn.satfinite.e5m2x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo)); return r;
}

extern "C" __global__ void __launch_bounds__(256) group_quant_bf16_fp8e4m3_g128_mmajor_rcp_v8l4c4t256r8(const unsigned short* __restrict__ i_x, long long i_x_ld, unsigned char* __restrict__ o_q, long long o_q_ld, float* __restrict__ o_s, long long o_s_ld, int m, int rows) {
  const int lane = threadIdx.x & 3;
  const int team = threadIdx.x / 4;
  const long long tile_id = (long long)blockIdx.x * 64 + team;
  const long long rest = tile_id / 8;
  const int ct = (int)(rest % 56);
  const long long row = (rest / 56) * 8 + (int)(tile_id % 8);
  const unsigned int col0 = ct * 128;
  const bool inrow = row < rows;
  const bool live = row < m;
  unsigned int ec[4]; bool okc[4];
  #pragma unroll
  for (int c = 0; c < 4; ++c) { ec[c] = col0 + (c * 4 + lane) * 8; okc[c] = true; }
  unsigned int raw0[4][4];
  #pragma unroll
  for (int c = 0; c < 4; ++c) {
    const char* ptr = (const char*)((i_x + row * i_x_ld + 0) + ec[c]);
    if (live && okc[c]) {
      { const uint4 t = kiln_ld_stream(ptr + 0); raw0[c][0] = t.x; raw0[c][1] = t.y; raw0[c][2] = t.z; raw0[c][3] = t.w; }
    } else {
      #pragma unroll
      for (int w = 0; w < 4; ++w) raw0[c][w] = 0u;
    }
  }
  float n0[32];
  #pragma unroll
  for (int c = 0; c < 4; ++c) {
    #pragma unroll
    for (int i = 0; i < 8; i += 1) { n0[(c) * 8 + (i)] = kiln_bf16_f32(((raw0[c][(i) >> 1] >> (((i) & 1) * 16)) & 0xffffu)); }
  }
  float n2;
  float n2_p[1];
  #pragma unroll
  for (int g = 0; g < 1; ++g) {
    float p = 0.0f;
    #pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int c = g * 4 + r;
      { float q = 0.0f;
        #pragma unroll
        for (int i = 0; i < 8; ++i) q = fmaxf(q, fabsf(n0[(c) * 8 + (i)]));
        p = fmaxf(p, q); }
    }
    p = fmaxf(p, __shfl_xor_sync(0xffffffffu, p, 2));
    p = fmaxf(p, __shfl_xor_sync(0xffffffffu, p, 1));
    n2_p[g] = p;
  }
  n2 = n2_p[0];
  float n4;
  n4 = fmaxf(n2, 0x1.b7cdfep-34f);
  float n9;
  n9 = __fmul_rn(n4, 0x1.24924ap-9f);
  float n5;
  n5 = __fdiv_rn(0x1.c00000p+8f, n4);
  float n6[32];
  #pragma unroll
  for (int c = 0; c < 4; ++c) {
    #pragma unroll
    for (int i = 0; i < 8; i += 1) { n6[(c) * 8 + (i)] = __fmul_rn(n0[(c) * 8 + (i)], n5); }
  }
  { // store q
  if (live) {
    const long long orow = row;
    #pragma unroll
    for (int c = 0; c < 4; ++c) {
      if (true && okc[c]) {
        char* dst = (char*)o_q + ((orow * o_q_ld + 0 + ec[c]) * 8) / 8;
        { uint2 t; t.x = (kiln_e4m3x2(n6[(c) * 8 + (0)], n6[(c) * 8 + (1)]) << 0) | (kiln_e4m3x2(n6[(c) * 8 + (2)], n6[(c) * 8 + (3)]) << 16); t.y = (kiln_e4m3x2(n6[(c) * 8 + (4)], n6[(c) * 8 + (5)]) << 0) | (kiln_e4m3x2(n6[(c) * 8 + (6)], n6[(c) * 8 + (7)]) << 16); *(uint2*)(dst) = t; }
      }
    }
  } else if (inrow) {
    const long long orow = row;
    #pragma unroll
    for (int c = 0; c < 4; ++c) {
      if (true && okc[c]) {
        char* dst = (char*)o_q + ((orow * o_q_ld + 0 + ec[c]) * 8) / 8;
        { uint2 t; t.x = 0u; t.y = 0u; *(uint2*)(dst) = t; }
      }
    }
  }
  }
  { // store s
  if (live) {
    {
      if (true && lane == 0 && (col0 % 128) == 0) o_s[(long long)(0 + col0 / 128) * o_s_ld + (int)row] = n9;
    }
  } else if (inrow) {
    {
      if (true && lane == 0 && (col0 % 128) == 0) o_s[(long long)(0 + col0 / 128) * o_s_ld + (int)row] = 0.0f;
    }
  }
  }
}
