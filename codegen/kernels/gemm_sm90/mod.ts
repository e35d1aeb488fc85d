/**
 * The sm_90a blockwise-FP8 GEMM ladder (issue 6), each step kept beside the others:
 *
 * | step | what it adds | predicted (4096, 4096, 7168) |
 * | --- | --- | --- |
 * | a | TMA + mbarrier ring + wgmma (QGMMA), thread 0 produces in-line, register epilogue | ~650 TFLOP/s |
 * | b | producer warpgroup + 2 math warpgroups, setmaxnreg 40/232 | ~900 TFLOP/s |
 * | c | persistent grid, grouped tile order, stmatrix + TMA-store epilogue overlapped | ~1150 TFLOP/s |
 * | d | 2-CTA clusters, B tile multicast to both CTAs of an M pair | ~1250 TFLOP/s |
 * | e | c + deferred promotion (2 temp accumulators), per-warpgroup epilogue under queued MMAs | ~1350–1450 TFLOP/s |
 * | f | e + 2-CTA clusters with B multicast | ≈ e, +0–8 % on the K = 1536/2048 shapes |
 * | g | c + ping-pong issue order of the 2 math warpgroups, per-warpgroup epilogue, leaner k-block | ~1180–1330 TFLOP/s |
 * | g 256 | g on 256×128 tiles: each math warpgroup runs two 64-row waves through one temp accumulator, the next tile's first wave issued before the epilogue | ~1300–1400 TFLOP/s |
 *
 * Measured on H200 (first run, TFLOP/s at 4096×4096×7168): a 860, b 1033, c 968 (128×160), d 949 —
 * every rung near 55 % tensor efficiency per k-block, which is what (e) attacks (see step_e.ts). Run 2: c
 * (128×128) 1120, e/f 5–8 % slower than c; the profile of c points at lock-stepped math warpgroups (step_g.ts).
 * Run 3: g 1213. Session 4: g 256×128 1343–1354 (ncu: 1264 SM clocks per 256-row k-block against 2 × 694
 * for g 128×128; the tensor core alone needs 1024), 1.02–1.09× cuBLASLt on the bench shapes (step_g.ts).
 *
 * @example
 * ```ts
 * import { gemmSm90Kernel } from "./mod.ts";
 * const ks = gemmSm90Kernel({ step: "c", mode: "block", blockM: 128, blockN: 128, stages: 5, epilogue: "tma" });
 * console.log(ks.name, ks.block, ks.sharedBytes);
 * ```
 * @module
 */
import type { KernelSource } from "../../kernel_source.ts";
import type { Sm90Config } from "./config.ts";
import { gemmSm90StepA } from "./step_a.ts";
import { gemmSm90StepB } from "./step_b.ts";
import { gemmSm90StepCD } from "./step_c.ts";
import { gemmSm90StepEF } from "./step_e.ts";
import { gemmSm90StepG } from "./step_g.ts";

export * from "./config.ts";
export * from "./heuristic.ts";
export { sm90Params } from "./parts.ts";
export { gemmSm90StepA } from "./step_a.ts";
export { gemmSm90StepB } from "./step_b.ts";
export { gemmSm90StepCD } from "./step_c.ts";
export { gemmSm90StepEF } from "./step_e.ts";
export { gemmSm90StepG, SM90_G_TURN_BARRIER } from "./step_g.ts";

/**
 * The KernelSource of one ladder kernel. Pure and deterministic (snapshot-testable).
 *
 * @example
 * ```ts
 * import { gemmSm90Kernel } from "./mod.ts";
 * const ks = gemmSm90Kernel({ step: "a", mode: "block", blockM: 128, blockN: 128, stages: 4, epilogue: "direct" });
 * console.log(ks.entry); // gemm_sm90a_fp8e4m3_bf16_block_128x128x128_s4_direct
 * ```
 */
export function gemmSm90Kernel(c: Sm90Config): KernelSource {
  switch (c.step) {
    case "a":
      return gemmSm90StepA(c);
    case "b":
      return gemmSm90StepB(c);
    case "c":
    case "d":
      return gemmSm90StepCD(c);
    case "e":
    case "f":
      return gemmSm90StepEF(c);
    case "g":
      return gemmSm90StepG(c);
  }
  throw new RangeError(`unknown sm90 GEMM step ${(c as Sm90Config).step}`);
}
