/**
 * Ladder steps (c) and (d).
 *
 * (c) persistent + TMA-store epilogue. Grid = min(tiles, SMs); every CTA walks tiles t = blockIdx.x,
 * + gridDim.x, … in a grouped order (`group` consecutive N-tiles, M walked inside the group) so the B
 * tiles of a group stay in L2 while A streams. The ring and its phases run on across tiles, so the
 * producer starts loading tile i+1 while the math warpgroups are still in tile i's epilogue; the
 * epilogue writes bf16 through stmatrix into a 128B-swizzled smem tile and one thread TMA-stores it,
 * waiting for that store only before the next tile's epilogue (stores overlap the next mainloop).
 * What it changes over (b): no per-tile launch/fill/drain (≈ 10 % at 16 µs tiles), no tail of idle SMs
 * except the last wave, full-sector output writes, and L2-aware order (the worklog saw persistence
 * *lose* until the order was L2-aware). Napkin: 1792 tiles at (4096, 7168) → 13.6 waves of 132; output
 * 58.7 MB written by TMA in the shadow of compute. Prediction: ~1100–1200 TFLOP/s at (4096, 4096, 7168).
 *
 * (d) = (c) + 2-CTA clusters along M: the two CTAs of a cluster work on tiles (2·mp, nb) and
 * (2·mp+1, nb), each loads half of the shared B tile and multicasts it to both, so L2→SM traffic for B
 * halves (A 16 KB + B 8 KB per CTA per k-block instead of 16 + 16). Both CTAs' math warps release each
 * stage on both CTAs' `empty` barriers (count doubles); a cluster barrier after init and before exit
 * keeps remote arrivals and multicast writes inside the lifetime of both CTAs. An odd last M tile runs
 * as a dummy (zero-filled A, stores clipped). Prediction: +5–10 % over (c) where L2 bandwidth binds
 * (K=1536/2048 shapes), ~1250 TFLOP/s at (4096, 4096, 7168).
 *
 * @module
 */
import { type KernelSource, renderSignature } from "../../kernel_source.ts";
import {
  assertSm90Config,
  sm90Cluster,
  type Sm90Config,
  sm90ConfigName,
  sm90SmemLayout,
  sm90Threads,
} from "./config.ts";
import {
  directEpilogue,
  entry,
  epilogueScale,
  launchBounds,
  mathKBlock,
  mathTileSetup,
  persistentProducer,
  persistentWalk,
  prelude,
  regSplit,
  sm90Params,
  TILE_ORDER,
  tmaEpilogue,
  watchdogPoison,
} from "./parts.ts";

/** Step (c) or (d) kernel source for `c`. */
export function gemmSm90StepCD(c: Sm90Config): KernelSource {
  assertSm90Config(c);
  if (c.step !== "c" && c.step !== "d") {
    throw new RangeError(`gemmSm90StepCD builds steps c and d, got ${c.step}`);
  }
  const name = sm90ConfigName(c);
  const params = sm90Params(c);
  const sig = renderSignature({ entry: name, params }, { launchBounds: launchBounds(c) });
  const clustered = sm90Cluster(c) > 1;
  const walk = persistentWalk(c);
  const epilogue = c.epilogue === "tma" ? tmaEpilogue() : directEpilogue();
  const source = `${prelude(c)}
${TILE_ORDER}
${sig} {
${entry(c)}
  ${walk}
  if (threadIdx.x >= MATH_THREADS) {
    ${regSplit(c, "dec")}
    ${persistentProducer(c)}
  } else {
    ${regSplit(c, "inc")}
    const u32 wg = threadIdx.x / 128, r0 = wg * 64u + (warp & 3u) * 16u + lane / 4u;
    float acc[BN / 2];
    u32 it = 0;
    for (int t = tileStart; t < numTiles; t += tileStep) {
      int mb, nb;
      TILE_OF(t, mb, nb);
      const int m0 = mb * BM, n0 = nb * BN;
      ${mathTileSetup(c)}
      for (int kb = 0; kb < nK; ++kb, ++it) {
        ${mathKBlock(c)}
      }
      ${epilogueScale(c)}
      ${watchdogPoison()}
      ${epilogue}
    }
    ${c.epilogue === "tma" ? "if (threadIdx.x == 0) tma_store_wait_all();" : ""}
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
