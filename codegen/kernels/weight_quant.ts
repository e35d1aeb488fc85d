/**
 * FP8_BLOCK weight quantization on the GPU: bf16/f16 `[N, K]` → e4m3 `[N, K]` + fp32 scales
 * `[⌈N/128⌉, ⌈K/128⌉]`, one CTA per 128×128 block. Bit-exact with `quantizeWeightBlocks` in
 * `dsl/ops/block_matmul.ts`: `s = max(amax, eps)/448` (IEEE divide; ue8m0: rounded up to a power of two),
 * `q = cvt.rn.satfinite.e4m3(w / s)`. Blocks cut by the matrix edge use their real elements only.
 *
 * Napkin math: reads 2·N·K bytes, writes N·K (+ scales); 7168² = 154 MB of traffic ≈ 37 µs at
 * 4.2 TB/s. It runs once per weight at load time, so the kernel is kept simple: 256 threads, each
 * holding 8 rows × 8 columns (eight 16-byte loads) in registers between the absmax and the quantize.
 *
 * @module
 */
import { renderSignature } from "../kernel_source.ts";
import type { KernelSource, ParamSpec } from "../kernel_source.ts";

/** Options of the weight-quant kernel. */
export interface WeightQuantKernelOptions {
  /** Element type of the weight. */
  inDtype: "bf16" | "f16";
  /** Round scales up to powers of two. */
  ue8m0?: boolean;
}

/** Grid `[⌈K/128⌉, ⌈N/128⌉]`. */
export function weightQuantGrid(N: number, K: number): [number, number, number] {
  return [Math.ceil(K / 128), Math.ceil(N / 128), 1];
}

/**
 * The kernel: parameters `(w, q, scales, N, K, eps)`; K must be a multiple of 8 (16-byte rows of 8 elements).
 *
 * @example
 * ```ts
 * import { weightQuantKernel } from "./weight_quant.ts";
 * console.log(weightQuantKernel({ inDtype: "bf16" }).name); // weight_quant_bf16_fp8e4m3_b128
 * ```
 */
export function weightQuantKernel(o: WeightQuantKernelOptions): KernelSource {
  const name = `weight_quant_${o.inDtype}_fp8e4m3_b128${o.ue8m0 ? "_ue8m0" : ""}`;
  const params: ParamSpec[] = [
    { name: "w", kind: "ptr", dtype: o.inDtype, readonly: true },
    { name: "q", kind: "ptr", dtype: "fp8e4m3" },
    { name: "scales", kind: "ptr", dtype: "f32" },
    { name: "N", kind: "i32" },
    { name: "K", kind: "i32" },
    { name: "eps", kind: "f32" },
  ];
  const toF32 = o.inDtype === "bf16"
    ? "return __uint_as_float(h << 16);"
    : `float f;\n  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"((unsigned short)h));\n  return f;`;
  const source = `typedef unsigned int u32;
__device__ __forceinline__ float elem(u32 h) {
  ${toF32}
}
__device__ __forceinline__ u32 pack_e4m3x2(float lo, float hi) {
  unsigned short r;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo));
  return r;
}

${renderSignature({ entry: name, params }, { launchBounds: [256] })} {
  __shared__ float red[8];
  const int kb = blockIdx.x, nb = blockIdx.y;
  const int cg = threadIdx.x & 15, r0 = threadIdx.x >> 4;
  const int k = kb * 128 + cg * 8;
  uint4 v[8];  // raw 8 rows x 8 elements; decoded twice (absmax, then quantize) to keep registers low
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < 8; i++) {
    const int n = nb * 128 + r0 + 16 * i;
    v[i] = make_uint4(0u, 0u, 0u, 0u);
    if (n < N && k < K) v[i] = __ldg(reinterpret_cast<const uint4*>(w + (long long)n * K + k));
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const u32 word = j == 0 ? v[i].x : j == 1 ? v[i].y : j == 2 ? v[i].z : v[i].w;
      amax = fmaxf(amax, fmaxf(fabsf(elem(word & 0xffffu)), fabsf(elem(word >> 16))));
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = amax;
  __syncthreads();
  amax = red[0];
#pragma unroll
  for (int i = 1; i < 8; i++) amax = fmaxf(amax, red[i]);
  float s = fmaxf(amax, eps) / 448.f;
${
    o.ue8m0
      ? `  {  // round up to a power of two (ue8m0)
    const u32 bits = __float_as_uint(s);
    u32 e = (bits >> 23) & 0xffu;
    if (bits & 0x7fffffu) e++;
    s = __uint_as_float(min(e, 254u) << 23);
  }`
      : ""
  }
  if (threadIdx.x == 0) scales[nb * ((K + 127) >> 7) + kb] = s;
#pragma unroll
  for (int i = 0; i < 8; i++) {
    const int n = nb * 128 + r0 + 16 * i;
    if (n >= N || k >= K) continue;
    u32 p[4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const u32 word = j == 0 ? v[i].x : j == 1 ? v[i].y : j == 2 ? v[i].z : v[i].w;
      p[j] = pack_e4m3x2(elem(word & 0xffffu) / s, elem(word >> 16) / s);
    }
    uint2 o;
    o.x = p[0] | (p[1] << 16);
    o.y = p[2] | (p[3] << 16);
    *reinterpret_cast<uint2*>(q + (long long)n * K + k) = o;
  }
}
`;
  return {
    name,
    source,
    entry: name,
    params,
    block: [256, 1, 1],
    sharedBytes: 0,
    minArch: 89,
    keyParts: { family: "weight_quant" },
  };
}
