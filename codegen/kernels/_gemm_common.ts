/**
 * What kiln's mma.sync GEMM kernels share: the parameter list (one for every kernel of the family, so
 * one launcher packs them all), the name tag of an op, and the CUDA prelude (loads, fragment
 * conversion, mma wrappers, scale decoding, the epilogue's scale/bias/convert).
 *
 * FP8 on mma.sync: sm_89 has a native `mma.m16n8k32.e4m3`; on sm_90 the same instruction is emulated
 * (ptxas emits 6 F2FP + 2 HMMA per mma). The prelude does that conversion itself, once per fragment,
 * so a weight fragment used against several token tiles is converted once: `cvt.rn.f16x2.e4m3x2`
 * (exact: every e4m3 value is an f16 value) and two `mma.m16n8k16.f16` with fp32 accumulation.
 *
 * @module
 */
import type { ParamSpec } from "../kernel_source.ts";
import { type BlockMatmulOp, operandDtype } from "../../dsl/ops/block_matmul.ts";

/**
 * The parameters of every kernel of the family, in order:
 * `a, aScales, b, bScales, [bias], out, M, N, K, lda, aScaleStride, ldc`.
 * `lda`/`ldc` are row strides in elements; `aScaleStride` is P of the M-major `[K/128, P]` A scales.
 */
export function gemmParams(op: BlockMatmulOp): ParamSpec[] {
  const q = operandDtype(op.mode);
  return [
    { name: "a", kind: "ptr", dtype: q, readonly: true },
    { name: "sa", kind: "ptr", dtype: op.aScaleDtype, readonly: true },
    { name: "b", kind: "ptr", dtype: q, readonly: true },
    { name: "sb", kind: "ptr", dtype: op.bScaleDtype, readonly: true },
    ...(op.bias ? [{ name: "bias", kind: "ptr", dtype: op.bias, readonly: true } as const] : []),
    { name: "out", kind: "ptr", dtype: op.outDtype },
    { name: "M", kind: "i32" },
    { name: "N", kind: "i32" },
    { name: "K", kind: "i32" },
    { name: "lda", kind: "i32" },
    { name: "sas", kind: "i32" },
    { name: "ldc", kind: "i32" },
  ];
}

/** Short tag of everything in `op` that changes the binary, e.g. `block_bf16` or `block_ue8m0ab_f16_biasf32`. */
export function opTag(op: BlockMatmulOp): string {
  const sc = op.aScaleDtype === "ue8m0" || op.bScaleDtype === "ue8m0"
    ? `_ue8m0${op.aScaleDtype === "ue8m0" ? "a" : ""}${op.bScaleDtype === "ue8m0" ? "b" : ""}`
    : "";
  return `${op.mode}${sc}_${op.outDtype}${op.bias ? `_bias${op.bias}` : ""}`;
}

/** `#define`s for the op and the helper functions every GEMM kernel of the family uses. */
export function gemmPrelude(op: BlockMatmulOp): string {
  const modeId = { block: 0, tensor: 1, channel: 2, int8: 3 }[op.mode];
  return `// kiln GEMM prelude: mode ${op.mode}, out ${op.outDtype}, scales ${op.aScaleDtype}/${op.bScaleDtype}, bias ${
    op.bias ?? "none"
  }
typedef unsigned int u32;
#define MODE ${modeId} // 0 block (1x128 x 128x128), 1 tensor, 2 channel (per token x per channel), 3 int8
#define OUT_BF16 ${op.outDtype === "bf16" ? 1 : 0}
#define SA_UE8M0 ${op.aScaleDtype === "ue8m0" ? 1 : 0}
#define SB_UE8M0 ${op.bScaleDtype === "ue8m0" ? 1 : 0}
#define HAS_BIAS ${op.bias ? 1 : 0}
#define BIAS_KIND ${{ f32: 0, bf16: 1, f16: 2 }[op.bias ?? "f32"]} // 0 f32, 1 bf16, 2 f16
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890 && __CUDA_ARCH__ < 900
#define FP8_NATIVE 1 // Ada: mma.m16n8k32.e4m3 runs on the tensor cores as QMMA
#else
#define FP8_NATIVE 0 // Hopper: mma.sync e4m3 is emulated; convert once per fragment ourselves
#endif
#if MODE == 3
typedef int acc_t;
#else
typedef float acc_t;
#endif

// 16 bytes that are read once (weights): skip L1, ask L2 to fetch 256 B around them.
__device__ __forceinline__ uint4 ld_stream16(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
// 16 bytes that other CTAs on this SM read too (activations): keep them in L1.
__device__ __forceinline__ uint4 ld_keep16(const void* p) {
  uint4 v;
  asm("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
__device__ __forceinline__ u32 word_of(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// A scale value: fp32, or a ue8m0 byte 2^(b-127) (0 -> 2^-127, 255 -> NaN).
__device__ __forceinline__ float ue8m0_value(u32 b) {
  return __uint_as_float(b == 0u ? 0x00400000u : b == 255u ? 0x7fc00000u : b << 23);
}
__device__ __forceinline__ float load_sa(const ${op.aScaleDtype === "ue8m0" ? "unsigned char" : "float"}* p) {
#if SA_UE8M0
  return ue8m0_value(__ldg(p));
#else
  return __ldg(p);
#endif
}
__device__ __forceinline__ float load_sb(const ${op.bScaleDtype === "ue8m0" ? "unsigned char" : "float"}* p) {
#if SB_UE8M0
  return ue8m0_value(__ldg(p));
#else
  return __ldg(p);
#endif
}

// Two e4m3 in bits [0,16) and [16,32) of w -> two f16x2 (low byte -> low half). Exact.
__device__ __forceinline__ void e4m3x4_to_f16(u32 w, u32& lo, u32& hi) {
  asm("{\\n .reg .b16 l, h;\\n mov.b32 {l, h}, %2;\\n cvt.rn.f16x2.e4m3x2 %0, l;\\n cvt.rn.f16x2.e4m3x2 %1, h;\\n}"
      : "=r"(lo), "=r"(hi) : "r"(w));
}

// m16n8k32 A fragment (4 regs of 4 e4m3: row g lo, row g+8 lo, row g hi, row g+8 hi) made ready for the
// tensor cores: raw on Ada, as the operands of two m16n8k16 f16 mmas on Hopper. Byte i of a0 and of b0 meet
// in the same k slot either way, so the k order inside the fragment is free (the swap-AB kernel uses that).
struct FragA { u32 h[8]; };
struct FragB { u32 h[4]; };
__device__ __forceinline__ FragA prep_a(u32 a0, u32 a1, u32 a2, u32 a3) {
  FragA f;
#if FP8_NATIVE || MODE == 3
  f.h[0] = a0; f.h[1] = a1; f.h[2] = a2; f.h[3] = a3;
#else
  e4m3x4_to_f16(a0, f.h[0], f.h[2]);
  e4m3x4_to_f16(a1, f.h[1], f.h[3]);
  e4m3x4_to_f16(a2, f.h[4], f.h[6]);
  e4m3x4_to_f16(a3, f.h[5], f.h[7]);
#endif
  return f;
}
__device__ __forceinline__ FragB prep_b(u32 b0, u32 b1) {
  FragB f;
#if FP8_NATIVE || MODE == 3
  f.h[0] = b0; f.h[1] = b1;
#else
  e4m3x4_to_f16(b0, f.h[0], f.h[1]);
  e4m3x4_to_f16(b1, f.h[2], f.h[3]);
#endif
  return f;
}
// d (16x8) += A (16x32) . B (32x8): one k32 step.
__device__ __forceinline__ void mma_k32(acc_t* d, const FragA& a, const FragB& b) {
#if MODE == 3
  asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]) : "r"(a.h[0]), "r"(a.h[1]), "r"(a.h[2]), "r"(a.h[3]), "r"(b.h[0]), "r"(b.h[1]));
#elif FP8_NATIVE
  asm volatile("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a.h[0]), "r"(a.h[1]), "r"(a.h[2]), "r"(a.h[3]), "r"(b.h[0]), "r"(b.h[1]));
#else
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a.h[0]), "r"(a.h[1]), "r"(a.h[2]), "r"(a.h[3]), "r"(b.h[0]), "r"(b.h[1]));
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a.h[4]), "r"(a.h[5]), "r"(a.h[6]), "r"(a.h[7]), "r"(b.h[2]), "r"(b.h[3]));
#endif
}

// Epilogue of one output element: the per-tensor / per-token x per-channel scale, the bias, the conversion.
__device__ __forceinline__ float finish(float v, const ${
    op.aScaleDtype === "ue8m0" ? "unsigned char" : "float"
  }* sa,
    const ${op.bScaleDtype === "ue8m0" ? "unsigned char" : "float"}* sb, const void* bias, int m, int n) {
#if MODE == 1
  v *= load_sa(sa) * load_sb(sb);
#elif MODE >= 2
  v *= load_sa(sa + m) * load_sb(sb + n);
#endif
#if HAS_BIAS
#if BIAS_KIND == 0
  v += __ldg((const float*)bias + n);
#elif BIAS_KIND == 1
  v += __uint_as_float((u32)__ldg((const unsigned short*)bias + n) << 16);
#else
  { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(__ldg((const unsigned short*)bias + n))); v += f; }
#endif
#endif
  return v;
}
__device__ __forceinline__ unsigned short to_out(float v) {
  unsigned short r;
#if OUT_BF16
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(v));
#else
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(v));
#endif
  return r;
}
// Store out[m][n] and, when n + 1 < N, out[m][n + 1] (one 4-byte store when aligned).
__device__ __forceinline__ void store_pair(unsigned short* out, long long ldc, int m, int n, int N, float v0, float v1) {
  unsigned short* p = out + (long long)m * ldc + n;
  if (n + 1 < N && (((unsigned long long)p) & 3ull) == 0ull) {
    *reinterpret_cast<u32*>(p) = (u32)to_out(v0) | ((u32)to_out(v1) << 16);
  } else {
    p[0] = to_out(v0);
    if (n + 1 < N) p[1] = to_out(v1);
  }
}
`;
}
