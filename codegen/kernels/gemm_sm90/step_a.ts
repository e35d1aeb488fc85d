/**
 * Ladder step (a): the first tensor-core kernel on Hopper — TMA loads into a 128-byte-swizzled smem ring
 * guarded by full/empty mbarriers, `wgmma m64nNk32 e4m3` from shared memory (QGMMA in SASS), per-128-K
 * promotion into fp32 registers, bf16 stores straight from registers.
 *
 * What it changes over part 1's mma.sync kernel: the tensor-core instruction itself (mma.sync e4m3 is
 * emulated through the f16 path on sm_90; wgmma runs at the full 8192 FP8 FLOP/clk/SM) and the load path
 * (one thread issues a whole 16 KB tile per TMA instruction, no address math or ldmatrix per warp).
 * Not yet: no warp specialization — thread 0 is also the producer and refills a stage only after every
 * warp released it, so its warp stalls once per k-block; one tile per CTA, so each CTA pays the
 * pipeline fill (~1–2 µs) and its epilogue without overlap.
 *
 * Napkin math (M=N=4096-class, K=7168, tile 128×128): per k-block the CTA does 128·128·128·2 = 4.2 MFLOP
 * = 512 tensor clocks at 8192 FLOP/clk, moves 32.5 KB into smem (64 B/clk at 1.8 GHz ≈ 115 GB/s per SM,
 * 15 TB/s over 132 SMs from L2 — fine), and each math thread runs 64 promotion FFMAs. Fill + epilogue
 * ≈ 2 µs per 16 µs tile. Prediction before measuring: ~600–700 TFLOP/s at (4096, 4096, 7168).
 *
 * @module
 */
import { type KernelSource, renderSignature } from "../../kernel_source.ts";
import { assertSm90Config, type Sm90Config, sm90ConfigName, sm90SmemLayout, sm90Threads } from "./config.ts";
import {
  directEpilogue,
  entry,
  epilogueScale,
  launchBounds,
  mathKBlock,
  mathTileSetup,
  prelude,
  produceKBlock,
  sm90Params,
  watchdogPoison,
} from "./parts.ts";

/** Step (a) kernel source for `c` (c.step must be "a"). */
export function gemmSm90StepA(c: Sm90Config): KernelSource {
  assertSm90Config(c);
  if (c.step !== "a") throw new RangeError(`gemmSm90StepA builds step a, got step ${c.step}`);
  const name = sm90ConfigName(c);
  const params = sm90Params(c);
  const sig = renderSignature({ entry: name, params }, { launchBounds: launchBounds(c) });
  const source = `${prelude(c)}
${sig} {
${entry(c)}
  // one tile per CTA; blockIdx.x walks M fastest so CTAs running together share B tiles
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  const u32 wg = threadIdx.x / 128, r0 = wg * 64u + (warp & 3u) * 16u + lane / 4u;
  // prologue: thread 0 fills the whole ring (fresh slots need no empty wait)
  if (threadIdx.x == 0) {
    for (int kb = 0; kb < nK && kb < (int)STAGES; ++kb) {
      const u32 it = (u32)kb;
      ${produceKBlock(c, false)}
    }
  }
  __syncwarp();
  float acc[BN / 2];
  ${mathTileSetup(c)}
  for (int kb = 0; kb < nK; ++kb) {
    const u32 it = (u32)kb;
    ${mathKBlock(c)}
    // thread 0 refills this slot with k-block kb + STAGES once all math warps released it
    if (threadIdx.x == 0 && kb + (int)STAGES < nK) {
      const int kb2 = kb + (int)STAGES;
      {
        const int kb = kb2;
        const u32 it = (u32)kb2;
        ${produceKBlock(c, true)}
      }
    }
    __syncwarp();
  }
  ${epilogueScale(c)}
      ${watchdogPoison()}
  ${directEpilogue()}
}
`;
  return {
    name,
    source,
    entry: name,
    params,
    block: [sm90Threads(c), 1, 1],
    sharedBytes: sm90SmemLayout(c).request,
    minArch: 90,
    archSpecific: true,
    keyParts: { family: "gemm_sm90", step: c.step, codegen: 1 },
  };
}
