/**
 * Ladder steps (e) and (f): deferred promotion.
 *
 * What the first H200 run said about (b)–(d): every rung spends ~7.2 SM clocks per output column per
 * 128-deep k-block on a 128-row tile, against 4.0 for the tensor core alone (55 %), and that ratio does
 * not move with the tile width (128, 160, 192) nor with B multicast (d ≈ c). An L2- or smem-bandwidth
 * limit would favour wider tiles and multicast; a fixed exposed phase per k-block proportional to the
 * promotion work would not — so the loss is the per-k-block `wgmma.wait_group 0` → release → promotion
 * (BN/2 FFMA per thread, both math warpgroups at once: they wait on the same `full` barrier and stay in
 * phase) → scale loads → next issue, during which the tensor core has nothing queued: ≈ 400 of ≈ 920
 * clocks per 128×128 k-block.
 *
 * (e) = (c) with two wgmma temp accumulators per math warpgroup: k-block i+1's four wgmmas are queued into
 * the other temp *before* k-block i is waited for (`wgmma.wait_group 1`) and promoted, so each warpgroup
 * alone keeps the tensor core fed through its own promotion, whatever the phase of the other. The cursor
 * runs across tiles: the next tile's first k-block is queued before this tile's epilogue, and each
 * warpgroup stores its own 64-row half (own named barrier, own TMA-store thread), so epilogues hide under
 * queued MMAs too. Cost: 3·BN/2 accumulator registers (BN ≤ 128 within setmaxnreg 232; ptxas: 128×128
 * uses up to R229, 0 spills), a ring one stage shallower in effect (each warpgroup holds ≤ 2 stages), and
 * code size (the k-loop is unrolled into chunks, see `chunk`: ~3.6 K SASS instructions vs ~0.7 K for c).
 * Why chunks: ptxas keeps wgmmas asynchronous only if no wgmma group is pending across a loop back-edge
 * while non-wgmma instructions read accumulators — a rolling two-slot loop (or one whose issue sits
 * behind an `if`) gets every wgmma serialized (C7514 + an injected wait, C7517, checked in the compile
 * tier). So the loop body is a drained chunk of 4 k-blocks (2 for warpgroup 1's first one, which offsets
 * its drains from warpgroup 0's), and past the last k-block a chunk issues discarded dummy groups
 * (≤ 3 per warpgroup per CTA lifetime, ~0.2 µs) so that every path has the same wgmma shape.
 * (f) = (e) + 2-CTA clusters with the B tile multicast to both CTAs of an M pair (as d over c): halves
 * B's L2→SM traffic, which matters once (e) runs at ≥ 1.5× c's rate (64 B/clk/SM of L2 reads at 128×128).
 *
 * Napkin math per 128×128 k-block (SM clocks): tensor 512; promotion 64 FFMA × 2 warps per SM
 * sub-partition = 128 issue slots, now overlapped; smem: wgmma reads 2·(8 + 16) KB + TMA writes 32 KB
 * = 80 KB → 625 clk if both share 128 B/clk (the likely ceiling: ~80 % of peak). Prediction: ~560–640
 * clk per k-block → 0.70–0.78 of the 1979 TFLOP/s peak before wave quantization, i.e. on the bench
 * shapes (tile, waves → TFLOP/s): 4096×4096×7168 (128, 7.76→8) ≈ 1350–1450; 4096×7168×2048 (128) ≈
 * 1250–1350; 4096×24576×1536 (128) ≈ 1250–1350; 1024×4096×7168 (128, 1.94→2) ≈ 1300–1400;
 * 1024×7168×2048 (112, 3.88→4) ≈ 1000–1150; 4096×2112×7168 (112, 4.6→5) ≈ 1200–1300;
 * 4096×7168×16384 (128) ≈ 1400–1500. (f): +0–8 % over (e) where L2 binds (K = 1536/2048), else ≈ (e).
 *
 * @module
 */
import { type KernelSource, renderSignature } from "../../kernel_source.ts";
import {
  assertSm90Config,
  sm90Chunk,
  sm90Cluster,
  type Sm90Config,
  sm90ConfigName,
  sm90Deferred,
  sm90SmemLayout,
  sm90Threads,
} from "./config.ts";
import {
  directEpilogue,
  entry,
  epilogueScale,
  launchBounds,
  persistentProducer,
  persistentWalk,
  prelude,
  regSplit,
  sm90Params,
  TILE_ORDER,
  watchdogPoison,
} from "./parts.ts";
import {
  deferredIssue,
  deferredPromote,
  deferredRelease,
  deferredState,
  deferredTmaEpilogue,
  SM90_DEFERRED_HELPERS,
} from "./parts_e.ts";

/**
 * One turn for slot p inside a chunk: queue the next k-block (or a dummy) into the other slot and wait
 * for slot p (`wait_group 1`), or, on the chunk's last turn, drain (`wait_group 0`); then release slot p's
 * stage, promote it, and run the epilogue after a tile's last k-block.
 */
function turn(c: Sm90Config, p: number, issueNext: boolean): string {
  const q = 1 - p;
  const epilogue = c.epilogue === "tma" ? deferredTmaEpilogue() : directEpilogue();
  return `{
      ${issueNext ? `${deferredIssue(c, q)}\n      wgmma_wait1();` : "wgmma_wait0();"}
      #pragma unroll
      for (int j = 0; j < BN / 2; ++j) fence_reg(t${p}[j]);
      if (mt_${p} & 1u) { // a real k-block (not a dummy)
        ${deferredRelease(c, p)}
        ${deferredPromote(c, p)}
        if (mt_${p} & 2u) { // the tile's last k-block
          int mb, nb;
          TILE_OF(tl_${p}, mb, nb);
          const int m0 = mb * BM, n0 = nb * BN;
          ${epilogueScale(c)}
          ${watchdogPoison()}
          ${epilogue}
          #pragma unroll
          for (int j = 0; j < BN / 2; ++j) fin[j] = 0.f;
        }
      }
    }`;
}

/**
 * A chunk of `u` k-blocks, straight-line: slot 0 is issued, then each turn queues the next k-block before
 * promoting the previous one (slots alternate; any u ≥ 1 works, the next chunk reissues slot 0, which
 * was promoted last or one turn before); the chunk ends drained. ptxas only keeps wgmmas asynchronous when no group
 * is pending across a loop back-edge while accumulators are read (else it serializes every wgmma, C7514),
 * hence chunks instead of a rolling loop; a chunk's final drain exposes one promotion, which the other
 * warpgroup's queued wgmmas cover because its chunk boundaries are offset by half a chunk.
 */
function chunk(c: Sm90Config, u: number): string {
  const turns = Array.from({ length: u }, (_, i) => turn(c, i % 2, i < u - 1));
  return `{
    ${deferredIssue(c, 0)}
    ${turns.join("\n    ")}
    }`;
}

/** Step (e) or (f) kernel source for `c`. */
export function gemmSm90StepEF(c: Sm90Config): KernelSource {
  assertSm90Config(c);
  if (!sm90Deferred(c)) throw new RangeError(`gemmSm90StepEF builds steps e and f, got ${c.step}`);
  const name = sm90ConfigName(c);
  const params = sm90Params(c);
  const sig = renderSignature({ entry: name, params }, { launchBounds: launchBounds(c) });
  const clustered = sm90Cluster(c) > 1;
  const source = `${prelude(c)}
${SM90_DEFERRED_HELPERS}
${TILE_ORDER}
${sig} {
${entry(c)}
  ${persistentWalk(c)}
  if (threadIdx.x >= MATH_THREADS) {
    ${regSplit(c, "dec")}
    ${persistentProducer(c)}
  } else {
    ${regSplit(c, "inc")}
    if (tileStart < numTiles) { // always (grid ≤ tiles); keeps the cursor's first issue a real k-block
    const u32 wg = threadIdx.x / 128, r0 = wg * 64u + (warp & 3u) * 16u + lane / 4u;
    float t0[BN / 2], t1[BN / 2], fin[BN / 2];
    #pragma unroll
    for (int j = 0; j < BN / 2; ++j) fin[j] = 0.f;
    ${deferredState(c)}
    ${
    c.blockM === 128
      ? `if (wg == 1u) ${
        chunk(c, Math.floor(sm90Chunk(c) / 2))
      } // warpgroup 1 runs half a chunk ahead of 0's boundaries`
      : ""
  }
    while (!done) ${chunk(c, sm90Chunk(c))}
    ${c.epilogue === "tma" ? "if ((threadIdx.x & 127u) == 0u) tma_store_wait_all();" : ""}
    }
  }
  ${
    clustered
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
    cluster: clustered ? [2, 1, 1] : undefined,
    minArch: 90,
    archSpecific: true,
    keyParts: { family: "gemm_sm90", step: c.step, codegen: 1 },
  };
}
