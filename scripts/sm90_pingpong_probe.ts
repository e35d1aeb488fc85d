/**
 * Microbenchmark (sm_90): step g's k-loop without TMA or mbarriers. W math warpgroups take turns over named
 * barriers; each issues one 64×128×128 wgmma group (256 tensor clocks) into its accumulator, waits for it
 * and promotes it (16 or 64 FFMAs, one or two waves through one accumulator) before its next turn. Prints
 * clocks per group (256 = the tensor peak). Findings: bench/RESULTS.md, session 4.
 *   deno run -A scripts/sm90_pingpong_probe.ts
 *
 * @module
 */
import { Device, jit, Tensor } from "../mod.ts";
import { SM90_HELPERS, wgmmaFunction, wgmmaIssue } from "../codegen/kernels/gemm_sm90/ptx.ts";

/** One 64×128×128 group into `acc` over descriptors `da`, `db` (4 k32 steps, 64 accumulator floats). */
const GROUP = wgmmaIssue(128, "acc", "64", "4");
import { TENSORMAP_DECL } from "../codegen/kernel_source.ts";
const src = (W: number, promote: number, waves = 1) =>
  `${TENSORMAP_DECL}
${SM90_HELPERS}
${wgmmaFunction(128)}
__device__ __forceinline__ void bar_arrive(u32 id, u32 n) { asm volatile("bar.arrive %0, %1;" :: "r"(id), "r"(n) : "memory"); }
extern "C" __global__ void __launch_bounds__(${128 * W}, 1) pp_probe(float* out, int iters) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* sm = smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u);
  const u32 base = smem_addr(sm);
  const u32 wg = __shfl_sync(0xffffffffu, threadIdx.x / 128u, 0), warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = threadIdx.x; i < 24576 / 4; i += blockDim.x) ((u32*)sm)[i] = 0x38383838u ^ (i * 2654435761u);
  __syncthreads();
  float acc[64], fin[64], fin1[64];
  #pragma unroll
  for (int j = 0; j < 64; ++j) { acc[j] = 0.f; fin[j] = 0.f; fin1[j] = 0.f; }
  const u64 da = desc_sw128(base), db = desc_sw128(base + 8192);
  const float sc = 0.999f + lane * 1e-6f;
  const u32 next = (wg + 1u) % ${W}u;
  if (wg == ${W - 1}u) bar_arrive(1u, 256u); // the first turn goes to warpgroup 0
  const unsigned long long t0 = clock64();
  for (int it = 0; it < iters; ++it) {
    named_bar_sync(1u + wg, 256u);
    ${GROUP}
    bar_arrive(1u + next, 256u);
    wgmma_wait0();
    ${
    waves === 2
      ? `if (it & 1) {
      #pragma unroll
      for (int j = 0; j < ${promote}; ++j) fin1[j] += sc * acc[j];
    } else {
      #pragma unroll
      for (int j = 0; j < ${promote}; ++j) fin[j] += sc * acc[j];
    }`
      : `#pragma unroll
    for (int j = 0; j < ${promote}; ++j) fin[j] += sc * acc[j];`
  }
  }
  if (wg == 0u) named_bar_sync(1u, 256u); // the last turn, left over
  const unsigned long long t1 = clock64();
  float s = 0.f;
  #pragma unroll
  for (int j = 0; j < 64; ++j) s += fin[j] + fin1[j];
  if (s == 1.2345f) out[1] = s;
  if (threadIdx.x == 0) ((unsigned long long*)out)[blockIdx.x] = t1 - t0;
}
`;
const dev = Device.get();
const iters = 400;
using out = Tensor.empty("f32", [264]);
for (const [W, waves] of [[2, 1], [2, 2], [3, 1]]) {
  for (const promote of [16, 64]) {
    const k = await jit(src(W, promote, waves), {
      entry: "pp_probe",
      params: [{ name: "out", kind: "ptr", dtype: "f32" }, { name: "iters", kind: "i32" }],
      block: [128 * W, 1, 1],
      sharedBytes: 24576 + 1024,
      archSpecific: true,
      device: dev,
    });
    for (let r = 0; r < 2; r++) k.launch([132, 1, 1], [out, iters]);
    dev.synchronize();
    const v = new BigUint64Array((out.toHost() as Float32Array).buffer.slice(0, 132 * 8));
    const avg = Number(v.reduce((x, y) => x + y, 0n)) / 132;
    console.log(
      `${W} warpgroups x ${waves} wave(s), promote ${promote} FFMA: ${
        (avg / (iters * W)).toFixed(0)
      } clk per 64x128x128 group (tensor alone 256)`,
    );
  }
}
