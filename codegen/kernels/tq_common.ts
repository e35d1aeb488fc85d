/**
 * Pieces shared by the TurboQuant kernels (store, decode, merge): headers-free CUDA helpers, the kernel
 * name of a preset, and how a preset's tables become CUDA constants.
 *
 * @module
 */
import { cFloat } from "../../dsl/turboquant/f32.ts";
import type { TurboQuantLayout } from "../../dsl/turboquant/preset.ts";

/** Element type of K, V, Q and the attention output. */
export type TqInDtype = "bf16" | "f16";

/** A short, readable tag for a layout: `4bit_nc_d128`, `k8v4_d96`, or a user preset's name. */
export function tqTag(layout: TurboQuantLayout): string {
  const n = layout.preset.name.replace(/^turboquant_/, "");
  return `${n}_d${layout.headDim}`;
}

/** `float NAME[] = {…}` initializer text of a float32 table (exact hex literals). */
export function cFloatList(xs: ArrayLike<number>): string {
  return Array.from(xs, (x) => cFloat(x)).join(", ");
}

/** Integer types and conversions every TurboQuant kernel uses (no headers: NVRTC gets no include path). */
export const TQ_PRELUDE = `typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned long long u64;
#define FULL 0xffffffffu
__device__ __forceinline__ float bf16_lo(u32 w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(u32 w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ float f16_to_f32(u16 h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ float f16_lo(u32 w) { return f16_to_f32((u16)(w & 0xffffu)); }
__device__ __forceinline__ float f16_hi(u32 w) { return f16_to_f32((u16)(w >> 16)); }
__device__ __forceinline__ u16 f32_to_f16(float x) { u16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x)); return h; }
__device__ __forceinline__ u16 f32_to_bf16(float x) { u16 h; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(x)); return h; }
__device__ __forceinline__ uint4 ldg_stream(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
`;

/** CUDA expression converting the two elements of a 32-bit word of `dtype` to float (`lo`, `hi`). */
export function unpackPair(dtype: TqInDtype): { lo: (w: string) => string; hi: (w: string) => string } {
  return dtype === "bf16"
    ? { lo: (w) => `bf16_lo(${w})`, hi: (w) => `bf16_hi(${w})` }
    : { lo: (w) => `f16_lo(${w})`, hi: (w) => `f16_hi(${w})` };
}
