/**
 * The shapes of the v2 small-M kernel (`gemm_small_m_stream.ts`): the config type, the register budget of
 * each (rows, token tiles, ring depth) measured with ptxas, a time model and the chooser built on it.
 *
 * @module
 */

/** Compile-time shape of the v2 small-M kernel (N and K come from the op). */
export interface SmallMStreamConfig {
  /** m16 weight-row tiles per CTA tile (16·rt rows). */
  readonly rt: 1 | 2;
  /** n8 token tiles: serves M ≤ 8·nt. */
  readonly nt: 1 | 2 | 4;
  /** Warps per CTA, splitting the K blocks of a tile (must divide K/128). */
  readonly wk: number;
  /** K blocks per warp in flight (register ring depth). */
  readonly stages: 2 | 3 | 4;
  /** Resident CTAs per SM the register cap is set for (`__launch_bounds__` min blocks). */
  readonly perSm: number;
  /** Grid size (persistent): CTA b serves tiles b, b + ctas, b + 2·ctas, … */
  readonly ctas: number;
}

/** Largest M the v2 kernel serves (nt = 4). */
export const SMALL_M_STREAM_MAX = 32;

/**
 * Registers per thread ptxas gives each (rt, nt, stages) on sm_90a in block mode without a cap (the
 * other modes use as many or fewer); the chooser only picks a shape whose count fits the cap its
 * `__launch_bounds__` implies, so the ring never spills (the compile tier checks the chosen shapes).
 */
const REGS: Record<string, number> = {
  "1x1x2": 95,
  "1x1x3": 123,
  "1x1x4": 153,
  "2x1x2": 135,
  "1x2x2": 114,
  "1x2x3": 155,
  "2x2x2": 178,
  "1x4x2": 146,
  "1x4x3": 170,
};

/** Register cap per thread for `warps` resident warps per SM (allocation in 4-warp, 8-register steps). */
function regCap(warps: number): number {
  return Math.min(255, Math.floor(65536 / (Math.ceil(warps / 4) * 4 * 32) / 8) * 8);
}

/** Weight rows per CTA tile. */
export function streamTileRows(cfg: Pick<SmallMStreamConfig, "rt">): number {
  return 16 * cfg.rt;
}

/** Tiles of `N` weight rows. */
export function streamTiles(N: number, cfg: Pick<SmallMStreamConfig, "rt">): number {
  return Math.ceil(N / streamTileRows(cfg));
}

/**
 * Model time (µs) of a v2 shape on an (N, K) problem: one DRAM latency (1 µs) + the longest of (a) the
 * weight bytes at 4 TB/s, slowed in proportion when fewer than 4 TB/s × 1.2 µs are in flight, (b) the
 * busiest SM's bytes at 60 GB/s, (c) its issue work (~150·rt + 60·nt + 50 warp instructions per K block
 * of a warp, 4 per clock at 1.75 GHz), + 0.1 µs per tile epilogue. CTAs are assumed placed breadth-first.
 */
export function smallMStreamModelUs(N: number, K: number, cfg: SmallMStreamConfig, smCount = 132): number {
  const tiles = streamTiles(N, cfg), kbn = K / 128;
  const perSm = new Array<number>(Math.min(smCount, cfg.ctas)).fill(0);
  for (let b = 0; b < cfg.ctas; b++) perSm[b % smCount] += Math.ceil((tiles - b) / cfg.ctas);
  const busiestTiles = Math.max(...perSm);
  const tileBytes = 16 * cfg.rt * K;
  const ctasOnSm = Math.ceil(cfg.ctas / smCount);
  const chunksPerWarp = Math.ceil(tiles / cfg.ctas) * (kbn / cfg.wk);
  const inFlightSm = ctasOnSm * cfg.wk * Math.min(cfg.stages, chunksPerWarp) * 2048 * cfg.rt;
  const inFlight = Math.min(N * K, inFlightSm * perSm.length);
  const stream = ((N * K) / 4e6) * Math.max(1, 4.8e6 / inFlight);
  const ingest = (busiestTiles * tileBytes) / 60e3;
  const compute = (busiestTiles * kbn * (150 * cfg.rt + 60 * cfg.nt + 50)) / 4 / 1750;
  return 1 + Math.max(stream, ingest, compute) + 0.1 * Math.ceil(tiles / cfg.ctas);
}

/**
 * Pick the v2 shape for (M, N, K) on `smCount` SMs: the lowest {@linkcode smallMStreamModelUs} over rows per
 * tile, warps (dividing K/128), ring depth and CTAs per SM that fit the register file (≤ 16 warps per
 * SM); ties go to a larger share of the bytes in flight at the start, then to more CTAs and more warps
 * (shorter per-warp chains: what counts when the shape is latency-bound).
 *
 * @example
 * ```ts
 * import { smallMStreamConfig } from "./gemm_small_m_stream_config.ts";
 * console.log(smallMStreamConfig(4, 2112, 7168)); // 132 CTAs of 16 rows, all K in flight early
 * ```
 */
export function smallMStreamConfig(M: number, N: number, K: number, smCount = 132): SmallMStreamConfig {
  const nt = M <= 8 ? 1 : M <= 16 ? 2 : 4;
  const kbn = K / 128;
  let best: { cfg: SmallMStreamConfig; key: number[] } | undefined;
  for (const rt of [1, 2] as const) {
    const tiles = streamTiles(N, { rt });
    for (const stages of [2, 3, 4] as const) {
      const regs = REGS[`${rt}x${nt}x${stages}`];
      if (!regs) continue;
      for (let wk = 1; wk <= 16; wk++) {
        if (kbn % wk) continue;
        for (let perSm = 1; perSm * wk <= 16; perSm++) {
          if (regs > regCap(perSm * wk)) continue;
          const cfg: SmallMStreamConfig = {
            rt,
            nt,
            wk,
            stages,
            perSm,
            ctas: Math.min(tiles, perSm * smCount),
          };
          const t = smallMStreamModelUs(N, K, cfg, smCount);
          // the share of the busiest SM's bytes in flight at the start
          const early = Math.min(
            1,
            (Math.min(perSm, Math.ceil(cfg.ctas / smCount)) * wk * stages * 2048 * rt) /
              (Math.ceil(tiles / smCount) * 16 * rt * K),
          );
          const key = [-t, early, cfg.ctas, wk];
          const better = !best ||
            key.some((_, i) =>
              key.slice(0, i).every((x, j) => Math.abs(x - best!.key[j]) <= 1e-3) &&
              key[i] > best!.key[i] + 1e-3
            );
          if (better) best = { cfg, key };
        }
      }
    }
  }
  return best!.cfg;
}

/** Dynamic shared memory: two buffers (tile parity) of the split-K partials of every warp. */
export function smallMStreamSharedBytes(cfg: SmallMStreamConfig): number {
  return 2 * cfg.wk * cfg.rt * cfg.nt * 4 * 32 * 4;
}
