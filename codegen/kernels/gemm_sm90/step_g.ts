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
 * 4. (session 4) 256-row tiles (`blockM: 256`, DeepGEMM PR #81's accumulator reuse): each math warpgroup
 *    owns 128 rows and runs them as two 64-row waves per k-block through the one temp accumulator (wave 1's
 *    wgmmas overwrite it after wave 0's promotion; registers: 2 × 64 promoted + 64 temp). Per 256×128
 *    k-block the CTA loads A 32 KB + B 16 KB once instead of two 128-row tiles' 2 × 32 KB, so shared
 *    memory moves 145 KB per 1024 tensor cycles (wgmma operands 96 KB + TMA 49 KB) against 2 × 80.5 KB.
 *    Measured (H200, ncu at 4096×4096×7168): 1264 SM clocks per 256-row k-block against 2 × 694 (−9 %);
 *    bench 1343–1354 TFLOP/s against 1176–1179 for 128×128. Ping-pong stays on (without: 6–9 % slower).
 *    Only 3 stages fit next to the 64 KB output tile; narrower 256-row tiles (96, 112) measured no
 *    faster than 128-row ones, so the heuristic offers 256×128 only.
 * 5. (session 4) `overlap` (default on for 256-row tiles): wave 0 of the next tile's first k-block is
 *    issued before this tile's epilogue, so the tensor core works through it while the warpgroup
 *    converts and stores (the first k-block of each tile is peeled; past the last tile a dummy group keeps
 *    the issue unconditional). Measured +0.4–3 % on 256-row tiles (most at K = 1536), −6 % on 128×192.
 * 6. (session 4) `multicast` (default off): 2-CTA clusters along N, each CTA loads half the A tile and
 *    multicasts it (L2 reads per 256×128 k-block 48 → 32 KB per CTA). Why try: a source-patched probe
 *    (no TMA loads at all) ran at 1.79 GHz against 1.54 under ncu — the operand traffic costs clock under
 *    the 700 W cap — while dropping ¾ of the promotion FFMAs cut 9 % of the cycles at the same clock.
 *    Measured: 1.5–3 % slower than without on every 256-row shape, 10 % on 128×192 (the pair waits for
 *    its slower CTA; step d's B multicast measured the same way on c). Kept as an option, tested.
 * 7. (session 4, measured, not changed) Where the 256-row tile's remaining ~220 clocks per k-block go: a
 *    clock64 probe (`scripts/sm90_clock_probe.ts`: warps 0 and 4 of CTA 0, k-blocks 8–23) read per wave ~100 clocks
 *    from the turn to the committed group, ~259 from the issue to the wgmma wait returning (the group's
 *    own 256: the wait is not coupled to the other warpgroup's group), then ~370–390 clocks for the 64
 *    promotion FFMAs, which the SASS issues back to back (stall 1, the alternating yield bits DeepGEMM
 *    once patched in). 380 > the 256 clocks the other warpgroup's group covers, so ~130 clocks per wave
 *    are exposed — consistent with cutting ¾ of the FFMAs saving 117 clocks per k-block. Why the FFMAs
 *    are that slow is not pinned down: a microbenchmark of this k-loop alone (`scripts/sm90_pingpong_probe.ts`: 2 or 3 warpgroups taking
 *    turns, one or two waves, 64 promotion FFMAs, no TMA or mbarriers) runs at 256–261 clocks per group,
 *    the tensor peak, while in this kernel cutting ¾ of the FFMAs still saves 8–9 %; moving the A-scale
 *    loads (1–2 %) or the TMA loads (2 % of the cycles) explains little of it. Suspects left: register
 *    pressure at 232 registers, the producer warp, the TMA writes into shared memory (bench/RESULTS.md).
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
  sm90Cluster,
  type Sm90Config,
  sm90ConfigName,
  sm90Overlap,
  sm90PingPong,
  sm90SmemLayout,
  sm90Threads,
  sm90Waves,
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
 * carried by the caller), wg (warp-uniform), r0, lane, acc, fin (+ fin1 with two waves; in block mode
 * sbL, sbH: running pointers to this k-block's B-scales, and split), base, sm. With ping-pong: waits for
 * its turn before each wave's wgmmas, passes it right after the commit. With 256-row tiles the
 * warpgroup runs its two 64-row waves one after the other through the one temp accumulator `acc`: wave
 * 1's wgmmas overwrite it once wave 0's promotion has read it (the register fences in the wgmma group
 * order the two), and the stage is released after wave 1, its last reader.
 */
export function leanKBlock(c: Sm90Config, ahead = false): string {
  const block = c.mode === "block";
  const two = block && 128 % c.blockN !== 0;
  const waves = sm90Waves(c);
  const promote = (fin: string, x: string) =>
    block
      ? `#pragma unroll
        for (int i = 0; i < BN / 8; ++i) {
          ${two ? "const bool lo = 8 * i < split;" : ""}
          const float sr0 = ${two ? `lo ? s0${x} : h0${x}` : `s0${x}`}, sr1 = ${
        two ? `lo ? s1${x} : h1${x}` : `s1${x}`
      };
          ${fin}[4 * i + 0] += sr0 * acc[4 * i + 0];
          ${fin}[4 * i + 1] += sr0 * acc[4 * i + 1];
          ${fin}[4 * i + 2] += sr1 * acc[4 * i + 2];
          ${fin}[4 * i + 3] += sr1 * acc[4 * i + 3];
        }`
      : `#pragma unroll
        for (int j = 0; j < BN / 2; ++j) ${fin}[j] += acc[j];`;
  // the rest of one wave after its issue: its A-scales (read before the stage is released), wgmma wait,
  // [release], promotion into `fin`
  const finish = (w: number, fin: string, release: boolean) => {
    const x = waves === 1 ? "0" : `${w}`; // scale-product suffix (wave 0 keeps g's names: s00, s10, …)
    const r = w === 0 ? "r0" : `r0 + ${64 * w}u`;
    const scales = block
      ? `const float a0${x} = sas[${r}], a1${x} = sas[${r} + 8];
        const float s0${x} = a0${x} * bLo, s1${x} = a1${x} * bLo;
        ${two ? `const float h0${x} = a0${x} * bHi, h1${x} = a1${x} * bHi;` : ""}`
      : "";
    return `${scales}
        wgmma_wait0();
        ${release ? releaseStage(c) : ""}
        ${promote(fin, x)}`;
  };
  const wave0 = `${
    ahead ? "// wave 0's wgmmas were issued before the previous tile's epilogue" : waveIssue(c, 0)
  }
        ${finish(0, "fin", waves === 1)}`;
  const body = waves === 1 ? wave0 : `{ // wave 0: rows 0–63 of this warpgroup's 128
        ${wave0}
        }
        { // wave 1: rows 64–127, through the same temp accumulator
        ${waveIssue(c, 1)}
        ${finish(1, "fin1", true)}
        }`;
  return `{
        ${block ? `const float bLo = __ldg(sbL++)${two ? ", bHi = __ldg(sbH++)" : ""};` : ""}
        ${ahead ? "" : "mbar_wait(FULL(s), ph, STUCK);"}
        ${block ? "const float* sas = (const float*)(sm + SA_OFF + s * SA_STAGE);" : ""}
        ${body}
        if (++s == STAGES) {
          s = 0;
          ph ^= 1u;
        }
      }`;
}

/** Release stage s: one arrival per math warp, on both CTAs' barriers in a cluster (both write the stage). */
function releaseStage(c: Sm90Config): string {
  return sm90Cluster(c) > 1
    ? "if (lane == 0) { mbar_arrive_cluster(EMPTY(s), 0); mbar_arrive_cluster(EMPTY(s), 1); }"
    : "if (lane == 0) mbar_arrive(EMPTY(s));";
}

/**
 * The issue of wave w of a k-block in stage s: [turn wait], 4 wgmmas over the wave's 64 A rows into
 * `acc`, commit, [turn pass]. Variables: s, wg, base, acc.
 */
export function waveIssue(c: Sm90Config, w: number): string {
  const pp = sm90PingPong(c);
  const rows = sm90Waves(c) === 1 ? "wg * 64u" : w === 0 ? "wg * 128u" : `wg * 128u + ${64 * w}u`;
  return `${
    pp ? "named_bar_sync(TURN + wg, 256u); // my turn: the other warpgroup's group is queued ahead" : ""
  }
        ${wgmmaGroup(c, "acc", rows)}
        ${
    pp ? "named_bar_arrive(TURN + (wg ^ 1u), 256u); // the other warpgroup may issue behind mine" : ""
  }`;
}

/**
 * With `overlap`: issue wave 0 of the first k-block of tile `next` (stage s) ahead — before the
 * epilogue of the tile just finished, so the tensor core works through it while the warpgroup converts
 * and stores. Past the last tile the same wgmmas run as a dummy over the stage's stale contents (no TMA
 * writes are pending then; the result is never read): the issue stays unconditional, since ptxas
 * serializes wgmmas it finds on a conditional path. Variables: s, ph, wg, base, acc, numTiles.
 */
function issueAhead(c: Sm90Config, next: string): string {
  return `{
        if (${next} < numTiles) mbar_wait(FULL(s), ph, STUCK);
        ${waveIssue(c, 0)}
      }`;
}

/**
 * The epilogue code before the store (non-block scales, the watchdog's poison) for every wave: wave 1
 * runs the same text over `fin1` and rows r0 + 64 through a reference alias.
 */
function perWave(c: Sm90Config, code: string): string {
  if (sm90Waves(c) === 1 || code.trim() === "") return code;
  return `${code}
      {
        const u32 r0w1 = r0 + 64u;
        {
          const u32 r0 = r0w1; // wave 1's rows
          float(&fin)[BN / 2] = fin1;
          ${code}
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
  const ov = sm90Overlap(c);
  const waves = sm90Waves(c);
  const epilogue = c.epilogue === "tma" ? deferredTmaEpilogue(waves) : perWave(c, directEpilogue());
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
    const u32 r0 = wg * ${64 * waves}u + (warp & 3u) * 16u + lane / 4u; // wave 0's row${
    waves > 1 ? "; wave 1: r0 + 64" : ""
  }
    float acc[BN / 2];
    u32 s = 0, ph = 0; // ring stage and phase of the next k-block, carried across tiles
    ${pp ? "if (wg == 1u) named_bar_arrive(TURN + 0u, 256u); // warpgroup 0 issues first" : ""}
    ${ov ? issueAhead(c, "tileStart") : ""}
    for (int t = tileStart; t < numTiles; t += tileStep) {
      int mb, nb;
      TILE_OF(t, mb, nb);
      const int m0 = mb * BM, n0 = nb * BN;
      ${mathTileSetup(c)}
      ${
    waves > 1
      ? `float fin1[BN / 2];
      #pragma unroll
      for (int j = 0; j < BN / 2; ++j) fin1[j] = 0.f;`
      : ""
  }
      ${
    c.mode === "block"
      ? `const float* sbL = sbLo;${128 % c.blockN !== 0 ? " const float* sbH = sbHi;" : ""}`
      : ""
  }
      ${
    ov
      ? `${leanKBlock(c, true)}
      for (int kb = 1; kb < nK; ++kb) {
        ${leanKBlock(c)}
      }
      ${issueAhead(c, "t + tileStep")}`
      : `for (int kb = 0; kb < nK; ++kb) {
        ${leanKBlock(c)}
      }`
  }
      ${
    perWave(
      c,
      `${epilogueScale(c)}
      ${watchdogPoison()}`,
    )
  }
      ${epilogue}
    }
    ${
    pp
      ? "if (wg == 0u) named_bar_sync(TURN + 0u, 256u); // take warpgroup 1's last turn: no arrival left over"
      : ""
  }
    ${ov ? "wgmma_wait0(); // the dummy group issued past the last tile" : ""}
    ${c.epilogue === "tma" ? "if ((threadIdx.x & 127u) == 0u) tma_store_wait_all();" : ""}
  }
  ${
    sm90Cluster(c) > 1
      ? "__syncwarp();\n  cluster_sync(); // no CTA leaves while its peer may still arrive on or multicast into it"
      : ""
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
    cluster: sm90Cluster(c) > 1 ? [2, 1, 1] : undefined,
    minArch: 90,
    archSpecific: true,
    keyParts: { family: "gemm_sm90", step: c.step, codegen: 1 },
  };
}
