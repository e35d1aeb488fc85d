/**
 * Ladder step (b): warp specialization. A producer warpgroup (one elected thread issues every TMA) runs
 * up to STAGES k-blocks ahead of two math warpgroups; `setmaxnreg` moves registers from the producer
 * (40) to the math warpgroups (232), which hold BN/2 wgmma + BN/2 promoted fp32 registers each.
 *
 * What it changes over (a): no math warp ever waits for a refill — the ring is kept full by a thread
 * that does nothing else, so the tensor core sees back-to-back k-blocks; the two math warpgroups
 * ping-pong naturally (one promotes on the FMA pipes while the other's wgmmas run). Still one tile per
 * CTA (fill and epilogue not overlapped across tiles) and register stores (sector-inefficient: 16 B
 * per row segment).
 *
 * Napkin math: tensor time per 128×128 k-block 512 clk; promotion 64 FFMA × 8 warps / 4 schedulers
 * = 128 issue clk, hidden behind the other warpgroup's wgmma. Remaining losses: ~1.5 µs fill + epilogue
 * per ~16 µs tile and the tail wave (13.6 waves at 4096×7168 → 14). Prediction: ~850–950 TFLOP/s at
 * (4096, 4096, 7168).
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
  regSplit,
  sm90Params,
  watchdogPoison,
} from "./parts.ts";

/** Step (b) kernel source for `c` (c.step must be "b"). */
export function gemmSm90StepB(c: Sm90Config): KernelSource {
  assertSm90Config(c);
  if (c.step !== "b") throw new RangeError(`gemmSm90StepB builds step b, got step ${c.step}`);
  const name = sm90ConfigName(c);
  const params = sm90Params(c);
  const sig = renderSignature({ entry: name, params }, { launchBounds: launchBounds(c) });
  const source = `${prelude(c)}
${sig} {
${entry(c)}
  const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
  if (threadIdx.x >= MATH_THREADS) {
    // producer warpgroup: give registers away, one thread issues every load
    ${regSplit(c, "dec")}
    if (threadIdx.x == MATH_THREADS) {
      for (int kb = 0; kb < nK; ++kb) {
        const u32 it = (u32)kb;
        ${produceKBlock(c, true)}
      }
    }
  } else {
    ${regSplit(c, "inc")}
    const u32 wg = threadIdx.x / 128, r0 = wg * 64u + (warp & 3u) * 16u + lane / 4u;
    float acc[BN / 2];
    ${mathTileSetup(c)}
    for (int kb = 0; kb < nK; ++kb) {
      const u32 it = (u32)kb;
      ${mathKBlock(c)}
    }
    ${epilogueScale(c)}
      ${watchdogPoison()}
    ${directEpilogue()}
  }
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
