/**
 * Microbenchmark (sm_90): FFMA batches beside a running wgmma stream. 132 CTAs × 384 threads: warpgroup 1
 * runs back-to-back m64n128k32 groups (or idles), warpgroups 0 and 2 run batches of 64 independent FFMAs,
 * or warpgroup 0 runs its own group → wait → 64-FFMA promotion loop (modes 8, 9). Prints clocks per group
 * and per batch. Findings: bench/RESULTS.md, session 4.   deno run -A scripts/sm90_ffma_probe.ts
 *
 * @module
 */
import { Device, jit, Tensor } from "../mod.ts";
import { SM90_HELPERS, wgmmaFunction, wgmmaIssue } from "../codegen/kernels/gemm_sm90/ptx.ts";

/** One 64×128×128 group into `acc` over descriptors `da`, `db` (4 k32 steps, 64 accumulator floats). */
const GROUP = wgmmaIssue(128, "acc", "64", "4");
/** The same group accumulating into `acc` (the stream's groups must not be dead code to ptxas). */
const GROUP_ACC = wgmmaIssue(128, "acc", "64", "4", "1u");
import { TENSORMAP_DECL } from "../codegen/kernel_source.ts";
const src = `${TENSORMAP_DECL}
${SM90_HELPERS}
${wgmmaFunction(128)}
extern "C" __global__ void __launch_bounds__(384, 1) ffma_probe(float* out, int mode, int iters) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* sm = smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u);
  const u32 base = smem_addr(sm);
  const u32 wg = threadIdx.x / 128, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = threadIdx.x; i < 24576 / 4; i += blockDim.x) ((u32*)sm)[i] = 0x38383838u ^ (i * 2654435761u);
  __syncthreads();
  unsigned long long t0 = clock64(), t1 = t0;
  const bool mma = (mode & 1) && wg == 1;
  const bool ff0 = (mode & 2) && wg == 0, ff2 = (mode & 4) && wg == 2;
  if (mma) {
    float acc[64];
    #pragma unroll
    for (int j = 0; j < 64; ++j) acc[j] = 0.f;
    const u64 da = desc_sw128(base), db = desc_sw128(base + 8192);
    for (int it = 0; it < iters * 2; ++it) {
      ${GROUP_ACC}
      wgmma_wait0();
    }
    t1 = clock64();
    float s = 0.f;
    #pragma unroll
    for (int j = 0; j < 64; ++j) s += acc[j];
    if (s == 1.2345f) out[0] = s;
  } else if ((mode & 8) && wg == 0) {
    // the kernel's pattern: own wgmma group -> wait -> promote its accumulators (64 FFMA) -> next group
    float acc[64], fin[64];
    #pragma unroll
    for (int j = 0; j < 64; ++j) { acc[j] = 0.f; fin[j] = 0.f; }
    const u64 da = desc_sw128(base), db = desc_sw128(base + 8192);
    const float sc = 0.999f + lane * 1e-6f;
    unsigned long long tw = 0, tp = 0;
    for (int it = 0; it < iters; ++it) {
      ${GROUP}
      const unsigned long long a = clock64();
      wgmma_wait0();
      const unsigned long long b = clock64();
      #pragma unroll
      for (int j = 0; j < 64; ++j) fin[j] += sc * acc[j];
      #pragma unroll
      for (int j = 0; j < 64; ++j) fence_reg(fin[j]);
      const unsigned long long c2 = clock64();
      tw += b - a; tp += c2 - b;
    }
    t1 = clock64();
    float s = 0.f;
    #pragma unroll
    for (int j = 0; j < 64; ++j) s += fin[j];
    if (s == 1.2345f) out[0] = s;
    if (lane == 0) { ((unsigned long long*)out)[132 * 12 + blockIdx.x * 8 + warp * 2] = tw; ((unsigned long long*)out)[132 * 12 + blockIdx.x * 8 + warp * 2 + 1] = tp; }
  } else if (ff0 || ff2) {
    float f[64], x[64];
    #pragma unroll
    for (int j = 0; j < 64; ++j) { f[j] = j * 0.001f + lane; x[j] = 1.0f + j * 1e-3f; }
    const float sc = 0.999f + lane * 1e-6f;
    for (int it = 0; it < iters; ++it) {
      #pragma unroll
      for (int j = 0; j < 64; ++j) f[j] = fmaf(sc, x[j], f[j]);
      #pragma unroll
      for (int j = 0; j < 64; ++j) x[j] = fmaf(sc, f[j], x[j]);
    }
    t1 = clock64();
    float s = 0.f;
    #pragma unroll
    for (int j = 0; j < 64; ++j) s += f[j] + x[j];
    if (s == 1.2345f) out[1] = s;
  }
  if (lane == 0) ((unsigned long long*)out)[blockIdx.x * 12 + warp] = t1 - t0;
}
`;
const dev = Device.get();
const k = await jit(src, {
  entry: "ffma_probe",
  params: [{ name: "out", kind: "ptr", dtype: "f32" }, { name: "mode", kind: "i32" }, {
    name: "iters",
    kind: "i32",
  }],
  block: [384, 1, 1],
  sharedBytes: 24576 + 1024,
  archSpecific: true,
  device: dev,
});
const iters = 200;
using out = Tensor.empty("f32", [132 * 24 + 132 * 16]);
const names: Record<number, string> = {
  8: "wgmma+promote alone",
  9: "wgmma+promote beside a wgmma stream",
  1: "wgmma alone",
  2: "FFMA 1 warp/SMSP alone",
  6: "FFMA 2 warps/SMSP alone",
  3: "FFMA 1 warp/SMSP + wgmma",
  7: "FFMA 2 warps/SMSP + wgmma",
};
for (const mode of [1, 2, 6, 3, 7, 8, 9]) {
  for (let r = 0; r < 2; r++) k.launch([132, 1, 1], [out, mode, iters]);
  dev.synchronize();
  const all = new BigUint64Array((out.toHost() as Float32Array).buffer.slice(0, (132 * 12 + 132 * 8) * 8));
  const v = all.subarray(0, 132 * 12);
  const w = (i: number) => Number(v[i]);
  const ff = [0, 1, 2, 3].map(w), mm = [4, 5, 6, 7].map(w), ff2 = [8, 9, 10, 11].map(w);
  const avg = (a: number[]) => a.reduce((x, y) => x + y) / a.length;
  const line = [`mode ${mode} (${names[mode]}):`];
  if (mode & 1) line.push(`wgmma group (4 x k32, 64 x 128) ${(avg(mm) / (iters * 2)).toFixed(0)} clk`);
  if (mode & 2) line.push(`64 FFMA per warp ${(avg(ff) / (iters * 2)).toFixed(0)} clk`);
  if (mode & 4) line.push(`(2nd warp ${(avg(ff2) / (iters * 2)).toFixed(0)} clk)`);
  if (mode & 8) {
    const tw = [0, 1, 2, 3].map((q) => Number(all[132 * 12 + q * 2])),
      tp = [0, 1, 2, 3].map((q) => Number(all[132 * 12 + q * 2 + 1]));
    line.push(
      `own group: iteration ${(avg(ff) / iters).toFixed(0)} clk, wait ${
        (avg(tw) / iters).toFixed(0)
      }, promote (64 FFMA) ${(avg(tp) / iters).toFixed(0)}`,
    );
  }
  console.log(line.join("  "));
}
