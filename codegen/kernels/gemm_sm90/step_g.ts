/**
 * Ladder step (g): (c) with its two math warpgroups decoupled.
 *
 * What the Nsight Compute profile of c (128×128 s5, 4096×4096×7168, /tmp/ncu_sm90c_run1.log) said, read
 * against c's SASS: 31 % of warp time "stalled at a CTA barrier", 0.40 issued instructions per cycle per
 * scheduler, SM (tensor) throughput 64 %, L2 69 %, DRAM 17 %, 349 K elapsed cycles = 780 per 128-deep
 * k-block of a 128×128 tile (8 waves × 56 k-blocks; the tensor core alone needs 512). But c's k-loop
 * contains no BAR at all — its only named barriers are `BAR.SYNC 0x0` once at entry and two
 * `BAR.SYNC 0x1, 0x100` (the 256 math threads, never the producer) per ~44 K-cycle tile in the epilogue,
 * ≲ 1 % of the time. On Hopper the "barrier" stall reason also counts `WARPGROUP.DEPBAR`
 * (`wgmma.wait_group`: a warp waiting for its warpgroup's wgmmas; NVIDIA's reading of HGMMA stalls:
 * GMMA stall on WARPGROUP.ARRIVE, barrier stall on WARPGROUP.DEPBAR). So the 31 % is math warps waiting
 * for their own MMAs: 1.8 cycles × ~140 issued instructions per warp and k-block ≈ 250–280 cycles.
 * The reading this step acts on: both warpgroups wait on the same `full` barrier and issue their four
 * k32 wgmmas at the same moment, the tensor core interleaves the two groups, both finish together and
 * both promote at once, leaving the tensor core idle. That lock-step model fits the total: 512 tensor
 * cycles + the post-wait work of both warpgroups on each sub-partition's one issue port (per warp 64
 * promotion FFMA + ~52 other instructions to the next QGMMA, × 2 warps, + latencies ≈ 270) ≈ 780, and
 * the issue rate (2 × ~137 + the producer's per 780 cycles ≈ 0.37–0.40). It fits the DEPBAR time less
 * well (pure lock-step waits ~450 cycles per k-block, the profile says ~280), which leaves room for a
 * second limit: shared memory (wgmma operand reads 2 × (8 + 16) KB + TMA writes 32.5 KB = 80.5 KB per
 * k-block = 103 B/clk at 780 cycles, against ~128 B/clk). `scripts/sm90_profile.sh` prints the stall
 * breakdown, the GMMA pipe and the smem bank utilization of c, g and g without ping-pong to decide.
 *
 * What g changes (same wgmma, same fp32 FFMA sequence per output, same bf16 epilogue: bit-identical to
 * c at the same tile):
 * 1. Ping-pong issue order (`pingpong`, default on with two math warpgroups): warpgroup w waits for its
 *    turn (`bar.sync 4+w, 256`) before its four wgmmas and passes the turn right after the commit
 *    (`bar.arrive 5-w, 256`) — the FlashAttention-3 scheduler barrier. The two issue streams never
 *    interleave, so the tensor core runs whole groups alternately (WG0 kb i, WG1 kb i, WG0 kb i+1, …)
 *    and each warpgroup's wait + release + promotion + next issue hides under the other's 256-cycle group.
 *    Only math warps take part (256 threads); the producer never waits on a named barrier.
 * 2. Per-warpgroup epilogue (from e/f): each warpgroup syncs its own 128 threads (`bar.sync 2+w, 128`),
 *    stmatrix-es its 64-row half and its first thread issues that half's TMA store, guarded one tile later
 *    by `cp.async.bulk.wait_group.read` — no 256-thread barrier per tile, so the warpgroups never re-align.
 * 3. A leaner k-block: ring stage/phase carried in registers (no `it % STAGES` division), the warpgroup
 *    index broadcast with `__shfl_sync` so ptxas keeps the wgmma descriptors in uniform registers (no
 *    R2UR per wgmma), a running B-scale pointer, the A-scale reads and scale products placed after the
 *    wgmma issue (in c the last wgmma waited for those loads).
 * Kept: the mbarrier wait's fast path is one `try_wait` + branch (the watchdog's timer reads sit only on
 * the slow path, after a failed try_wait: checked in the SASS by the compile tier); the producer is c's.
 *
 * Napkin math per 128×128 k-block (SM cycles): tensor 512 (2 × 256 per warpgroup group); per warpgroup
 * between its group's end and its next issue ≈ 64 FFMA + 36 other instructions + DEPBAR / bar / try_wait
 * latencies ≈ 150–200 < 256, so hidden; shared memory 80.5 KB → 630 cycles at 128 B/clk, the likely new
 * limit. Prediction: 630–730 cycles per k-block against c's 780 (1.07–1.24×), i.e. in the bench's
 * clk/kb column (1.83 GHz basis; random data runs power-capped near 1.6 GHz, c reads 877 there) ≈
 * 735–835, ~1180–1330 TFLOP/s at (4096, 4096, 7168) against c's 1120. `pingpong: false` (the bench's
 * "g nopp" row) keeps only changes 2 and 3: still lock-stepped, but its wait-to-next-issue path is 90
 * instructions per warp against c's 116 (g's is 100 with the turn wait; SASS, fast path) → ~730 cycles,
 * 0–7 % faster than c. If g ≈ g nopp ≈ c, issue order is not the limit and the profile's smem bank
 * numbers say what is.
 *
 * @module
 */
import { type KernelSource, renderSignature } from "../../kernel_source.ts";
import {
  assertSm90Config,
  type Sm90Config,
  sm90ConfigName,
  sm90PingPong,
  sm90SmemLayout,
  sm90Threads,
} from "./config.ts";
import {
  directEpilogue,
  entry,
  epilogueScale,
  launchBounds,
  mathTileSetup,
  persistentProducer,
  persistentWalk,
  prelude,
  regSplit,
  sm90Params,
  TILE_ORDER,
  watchdogPoison,
  wgmmaGroup,
} from "./parts.ts";
import { deferredTmaEpilogue } from "./parts_e.ts";

/** Named barrier ids of step g: 0 = entry `__syncthreads`, 2/3 = per-warpgroup epilogue, 4/5 = turns. */
export const SM90_G_TURN_BARRIER = 4;

/** Device helpers only step g uses (kept out of SM90_HELPERS so steps a–f stay byte-identical). */
export const SM90_G_HELPERS = String.raw`
// Named barrier 'id' over 'threads' threads: arrive without waiting (the other side waits with bar.sync).
__device__ __forceinline__ void named_bar_arrive(u32 id, u32 threads) {
  asm volatile("bar.arrive %0, %1;" :: "r"(id), "r"(threads) : "memory");
}
`;

/**
 * One k-block of a math warpgroup in step g. Variables: s and ph (the ring stage and its phase,
 * carried by the caller), wg (warp-uniform), r0, lane, acc, fin (+ in block mode sbL, sbH: running
 * pointers to this k-block's B-scales, and split), base, sm. With ping-pong: waits for its turn before
 * the wgmmas, passes it right after the commit.
 */
export function leanKBlock(c: Sm90Config): string {
  const block = c.mode === "block";
  const two = block && 128 % c.blockN !== 0;
  const pp = sm90PingPong(c);
  const promote = block
    ? `#pragma unroll
        for (int i = 0; i < BN / 8; ++i) {
          ${two ? "const bool lo = 8 * i < split;" : ""}
          const float sr0 = ${two ? "lo ? s00 : s01" : "s00"}, sr1 = ${two ? "lo ? s10 : s11" : "s10"};
          fin[4 * i + 0] += sr0 * acc[4 * i + 0];
          fin[4 * i + 1] += sr0 * acc[4 * i + 1];
          fin[4 * i + 2] += sr1 * acc[4 * i + 2];
          fin[4 * i + 3] += sr1 * acc[4 * i + 3];
        }`
    : `#pragma unroll
        for (int j = 0; j < BN / 2; ++j) fin[j] += acc[j];`;
  return `{
        ${block ? `const float bLo = __ldg(sbL++)${two ? ", bHi = __ldg(sbH++)" : ""};` : ""}
        mbar_wait(FULL(s), ph, STUCK);
        ${
    pp ? "named_bar_sync(TURN + wg, 256u); // my turn: the other warpgroup's group is queued ahead" : ""
  }
        ${wgmmaGroup(c, "acc")}
        ${pp ? "named_bar_arrive(TURN + (wg ^ 1u), 256u); // the other warpgroup may issue behind mine" : ""}
        ${
    block
      ? `const float* sas = (const float*)(sm + SA_OFF + s * SA_STAGE); // read before the stage is released
        const float a0 = sas[r0], a1 = sas[r0 + 8];
        const float s00 = a0 * bLo, s10 = a1 * bLo;
        ${two ? "const float s01 = a0 * bHi, s11 = a1 * bHi;" : ""}`
      : ""
  }
        wgmma_wait0();
        if (lane == 0) mbar_arrive(EMPTY(s));
        ${promote}
        if (++s == STAGES) {
          s = 0;
          ph ^= 1u;
        }
      }`;
}

/** Step (g) kernel source for `c` (c.step must be "g"). */
export function gemmSm90StepG(c: Sm90Config): KernelSource {
  assertSm90Config(c);
  if (c.step !== "g") throw new RangeError(`gemmSm90StepG builds step g, got step ${c.step}`);
  const name = sm90ConfigName(c);
  const params = sm90Params(c);
  const sig = renderSignature({ entry: name, params }, { launchBounds: launchBounds(c) });
  const pp = sm90PingPong(c);
  const epilogue = c.epilogue === "tma" ? deferredTmaEpilogue() : directEpilogue();
  const source = `${prelude(c)}
${SM90_G_HELPERS}
enum : u32 { TURN = ${SM90_G_TURN_BARRIER} }; // named barriers TURN + w: warpgroup w may issue its wgmmas
${TILE_ORDER}
${sig} {
${entry(c)}
  ${persistentWalk(c)}
  if (threadIdx.x >= MATH_THREADS) {
    ${regSplit(c, "dec")}
    ${persistentProducer(c)}
  } else {
    ${regSplit(c, "inc")}
    // warp-uniform to the compiler (a shuffle from lane 0), so descriptor math stays in uniform registers
    const u32 wg = __shfl_sync(0xffffffffu, threadIdx.x / 128u, 0);
    const u32 r0 = wg * 64u + (warp & 3u) * 16u + lane / 4u;
    float acc[BN / 2];
    u32 s = 0, ph = 0; // ring stage and phase of the next k-block, carried across tiles
    ${pp ? "if (wg == 1u) named_bar_arrive(TURN + 0u, 256u); // warpgroup 0 issues first" : ""}
    for (int t = tileStart; t < numTiles; t += tileStep) {
      int mb, nb;
      TILE_OF(t, mb, nb);
      const int m0 = mb * BM, n0 = nb * BN;
      ${mathTileSetup(c)}
      ${
    c.mode === "block"
      ? `const float* sbL = sbLo;${128 % c.blockN !== 0 ? " const float* sbH = sbHi;" : ""}`
      : ""
  }
      for (int kb = 0; kb < nK; ++kb) {
        ${leanKBlock(c)}
      }
      ${epilogueScale(c)}
      ${watchdogPoison()}
      ${epilogue}
    }
    ${
    pp
      ? "if (wg == 0u) named_bar_sync(TURN + 0u, 256u); // take warpgroup 1's last turn: no arrival left over"
      : ""
  }
    ${c.epilogue === "tma" ? "if ((threadIdx.x & 127u) == 0u) tma_store_wait_all();" : ""}
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
