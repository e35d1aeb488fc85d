/**
 * The default-config heuristic of the sm_90a GEMM ladder: a per-step time model calibrated on measured
 * runs ({@linkcode SM90_STEP_MODEL}), the candidate set, the model's choice, and the launch geometry of
 * the persistent steps (grid, tile-group width). Pure (no device): `ops/gemm_sm90.ts` re-exports it, and
 * the autotuner uses it to pick the candidates worth timing.
 *
 * @module
 */
import {
  SM90_BLOCK_K,
  sm90Cluster,
  type Sm90Config,
  sm90ConfigProblems,
  sm90MaxStages,
  sm90Persistent,
  type Sm90ScaleMode,
  sm90SharedOperand,
  type Sm90Step,
} from "./config.ts";

/** SMs assumed when no device is given (H100/H200 SXM). */
export const SM90_DEFAULT_SMS = 132;
/** Assumed L2 → SM bandwidth per SM per clock (bytes) in the heuristic's model (≈ 13.5 TB/s over 132 SMs
 * at 1.83 GHz; run 1 moved ≥ 32 B/clk/SM without L2 being the limit: d's multicast did not help). */
const L2_BYTES_PER_CLK = 56;
/** Shared-memory bandwidth per SM per clock (bytes), assumed shared by wgmma operand reads and TMA writes:
 * at 128×128 a k-block moves 80 KB (640 clk, under the tensor time), at 128×64 56 KB (448 clk, above its
 * 256 tensor clocks) — narrow tiles are smem-bound. */
const SMEM_BYTES_PER_CLK = 128;

/**
 * Per-step constants of {@linkcode sm90ModelClocks}, in SM clocks (1.83 GHz basis): `colClk` per output
 * column per 128-deep k-block of a 128-row tile (the tensor core alone needs 4.0), `twoBlockClk` extra per
 * column when a tile straddles two B-scale blocks (per-chunk scale selects), `tileClk` per tile (pipeline
 * fill + epilogue not hidden; for a/b also the CTA launch). a–d are fitted to the first H200 run (every rung ≈ 7.2 clk/column: the
 * exposed per-k-block promotion, see step_e.ts); e and f are predictions until measured — update them
 * from `bench/gemm_sm90.ts` numbers (per k-block clk = µs · 1830 / (waves · K/128)).
 */
export const SM90_STEP_MODEL: Readonly<
  Record<
    Sm90Step,
    { colClk: number; twoBlockClk: number; tileClk: number; oddWidthClk?: number; twoWaveFactor?: number }
  >
> = {
  a: { colClk: 8.9, twoBlockClk: 0.3, tileClk: 5500 },
  b: { colClk: 6.9, twoBlockClk: 0.3, tileClk: 5500 },
  // c and d share g's tile structure (TMA box, wgmma widths, epilogue): the odd-width penalty measured on
  // g is assumed for them too
  c: { colClk: 7.0, twoBlockClk: 0.3, tileClk: 1200, oddWidthClk: 1.1 },
  d: { colClk: 7.15, twoBlockClk: 0.3, tileClk: 1200, oddWidthClk: 1.1 },
  // e/f were predicted at 5.3 (deferred promotion hiding the FFMA stall); run 2 on the H200 measured
  // 942–1033 clk/kb at 128×128 against c's 877–965: about 7.5% slower than c, not faster.
  e: { colClk: 7.55, twoBlockClk: 0.3, tileClk: 1200 },
  f: { colClk: 7.8, twoBlockClk: 0.3, tileClk: 1200 },
  // g (c + ping-pong math warpgroups, per-warpgroup epilogue), predicted ≈ 5.7–6.5 (step_g.ts): run 3 measured 808–888 clk/kb at 128×128
  // against c's 866–958, 7–8% faster on every bench shape.
  // oddWidthClk: extra per column when the width is not a multiple of 32. Session 2 fit of run 3's
  // measured g tiles: 112-wide 7.3 clk/column/k-block (4096×2112×7168, 128.8 µs) against 6.2–6.3 for
  // 128 (4096×4096×7168) and 192 (4096×2112×7168, 112.5 µs) — the default picked 112 there, 1.14× the
  // tuned 192.
  // twoWaveFactor: compute time of a 256-row tile (two 64-row waves per math warpgroup) against two
  // 128-row tiles. Session 4 (H200, same run): 256×128 took 1504–1642 clk/kb against 2 × 835–913 for
  // 128×128 on the five M ≥ 1024 shapes it fits, 0.90–0.913 on each (ncu: 1264 SM clocks per 256-row
  // k-block, tensor alone 1024, against 2 × 694). At 96 columns no gain: 4096×2112×7168 256×96 115.6 µs
  // = 1260 clk/kb against g 128×192's 107.3 µs.
  g: { colClk: 6.5, twoBlockClk: 0.3, tileClk: 1200, oddWidthClk: 1.1, twoWaveFactor: 0.91 },
};

/**
 * Model time (in SM clocks) of `c` on an (M, N, K) problem: waves of tiles × (k-blocks × max(per-k-block
 * time from {@linkcode SM90_STEP_MODEL}, L2 feed, smem feed) + per-tile overhead), whole waves (equal
 * tiles, one CTA per SM: the last wave is partial for a persistent grid and a refilled one alike). L2: A + B
 * bytes per k-block (B halved by the d/f multicast); smem: wgmma operand reads + TMA writes.
 *
 * @example
 * ```ts
 * import { sm90ModelClocks } from "./heuristic.ts";
 * const c = { step: "e", mode: "block", blockM: 128, blockN: 128, stages: 5, epilogue: "tma" } as const;
 * console.log(sm90ModelClocks(c, 4096, 7168, 7168)); // SM clocks of the whole problem
 * ```
 */
export function sm90ModelClocks(
  c: Sm90Config,
  M: number,
  N: number,
  K: number,
  sms = SM90_DEFAULT_SMS,
): number {
  const m = SM90_STEP_MODEL[c.step];
  const tiles = Math.ceil(M / c.blockM) * Math.ceil(N / c.blockN);
  const waves = Math.ceil(tiles / sms); // one CTA per SM (smem); the last wave is partial either way
  const two = c.mode === "block" && 128 % c.blockN !== 0 ? m.twoBlockClk : 0;
  const odd = c.blockN % 32 !== 0 ? m.oddWidthClk ?? 0 : 0;
  // the two-wave gain was measured at 128 columns; 256×96 ran at g's 128-row rate (1260 clk/kb, model 1248)
  const rows = c.blockM / 128, waves2 = c.blockM === 256 && c.blockN === 128 ? m.twoWaveFactor ?? 1 : 1;
  const compute = c.blockN * ((m.colClk + odd) * rows * waves2 + two);
  const shared = sm90SharedOperand(c);
  const l2 = (c.blockM * SM90_BLOCK_K / (shared === "a" ? 2 : 1) +
    (c.blockN * SM90_BLOCK_K) / (shared === "b" ? 2 : 1)) / L2_BYTES_PER_CLK;
  // smem: each 64-row wgmma slice reads its A rows and all of B; TMA writes A + B once
  const smem = ((c.blockM / 64) * (64 + c.blockN) + c.blockM + c.blockN) * SM90_BLOCK_K / SMEM_BYTES_PER_CLK;
  return waves * ((K / SM90_BLOCK_K) * Math.max(compute, l2, smem) + m.tileClk * Math.max(1, rows));
}

/** Steps the default heuristic chooses from (a is the teaching rung, never faster than b). */
export const SM90_DEFAULT_STEPS: Sm90Step[] = ["b", "c", "d", "e", "f", "g"];
/**
 * Steps the default heuristic chooses among: the ones that won a measured run. On the H200 (run 2)
 * the persistent c beat e/f (deferred promotion) at every shape; in run 3 g (c with ping-pong math
 * warpgroups) beat c by 7–8% everywhere, so the default is now g. Default vs tuned (run 3): equal on
 * five shapes, 1.04× at 1024×7168×2048 (112- vs 160-wide), 1.14× at 4096×2112×7168 (112- vs 192-wide:
 * the per-column model undervalued wide tiles there, fixed in session 2 by g's `oddWidthClk`).
 */
export const SM90_HEURISTIC_STEPS: Sm90Step[] = ["b", "c", "d", "g"];

/** Candidate tile widths per step: ≤ 128 for the deferred steps (3·BN/2 accumulator registers). */
export function sm90Widths(step: Sm90Step, M: number): number[] {
  const deferred = step === "e" || step === "f";
  if (M <= 256) return deferred ? [64, 96, 128] : [64, 96, 128, 160];
  return deferred ? [64, 96, 112, 128] : [112, 128, 144, 160, 192];
}

/**
 * Every valid config the heuristic and the tuner consider for (M, N, mode), at the deepest ring that
 * fits shared memory (a 64-row tile when M ≤ 64; the TMA-store epilogue when N % 8 == 0; steps a/b
 * always store from registers; cluster steps need ≥ 2 M tiles).
 *
 * @example
 * ```ts
 * import { sm90Candidates } from "./heuristic.ts";
 * console.log(sm90Candidates(4096, 7168, "block").length);
 * ```
 */
export function sm90Candidates(
  M: number,
  N: number,
  mode: Sm90ScaleMode,
  steps: readonly Sm90Step[] = SM90_DEFAULT_STEPS,
): Sm90Config[] {
  const blockM: Sm90Config["blockM"] = M <= 64 ? 64 : 128;
  const out: Sm90Config[] = [];
  for (const step of steps) {
    if (sm90Cluster({ step } as Sm90Config) > 1 && Math.ceil(M / blockM) < 2) continue;
    const epilogue = step === "a" || step === "b" || N % 8 !== 0 ? "direct" : "tma";
    const tiles: [Sm90Config["blockM"], number][] =
      (step === "a" || step === "b" ? [128] : sm90Widths(step, M))
        .map((n) => [blockM, n]);
    // step g also runs 256-row tiles (two 64-row waves per math warpgroup) once M fills them, 128 wide:
    // narrower ones measured no faster than 128-row tiles (4096×2112×7168: 256×96 115.6 µs, 256×128
    // 131.8, 128×192 107.3; session 4)
    if (step === "g" && M > 128) tiles.push([256, 128]);
    for (const [bm, blockN] of tiles) {
      const base = { step, mode, blockM: bm, blockN, epilogue } as const;
      const c: Sm90Config = { ...base, stages: sm90MaxStages(base) };
      if (c.stages >= 3 && sm90ConfigProblems(c).length === 0) out.push(c);
    }
  }
  return out;
}

/**
 * The default configuration for an (M, N, K) problem: the candidate ({@linkcode sm90Candidates}) with
 * the lowest {@linkcode sm90ModelClocks} (ties → the earlier, simpler step and the wider tile). `steps`
 * restricts the choice (e.g. `["c"]`: the best tile for one rung of the ladder).
 *
 * @example
 * ```ts
 * import { chooseSm90Config } from "./heuristic.ts";
 * console.log(chooseSm90Config(4096, 7168, 7168, "block")); // { step: "c", blockM: 128, blockN: 128, ... }
 * ```
 */
export function chooseSm90Config(
  M: number,
  N: number,
  K: number,
  mode: Sm90ScaleMode = "block",
  device?: { info: { smCount: number } },
  steps: readonly Sm90Step[] = SM90_HEURISTIC_STEPS,
): Sm90Config {
  const sms = device?.info.smCount ?? SM90_DEFAULT_SMS;
  let best: { c: Sm90Config; t: number } | undefined;
  for (const c of sm90Candidates(M, N, mode, steps)) {
    const t = sm90ModelClocks(c, M, N, K, sms);
    if (
      !best || t < best.t * 0.995 ||
      (t <= best.t * 1.005 && c.step === best.c.step && c.blockN > best.c.blockN)
    ) {
      best = { c, t };
    }
  }
  // g's ping-pong pays at 128-wide tiles (4096×4096×7168: 1243 vs 1114 TFLOP/s without) and costs at
  // wide ones (session 2, same run: 4096×2112×7168 g192 1106 vs 1152 without; 1024×7168×2048 g160 857 vs
  // 887): two warpgroups each holding a 64×≥160 accumulator wait longer for their turn than they gain
  if (best!.c.step === "g" && best!.c.blockN >= 160) return { ...best!.c, pingpong: false };
  return best!.c;
}

/** The persistent tile-group width (in N-tiles) minimising the L2 footprint of one wave. *
 * @example
 * ```ts
 * import { chooseSm90Config, sm90TileGroup } from "./heuristic.ts";
 * const c = chooseSm90Config(4096, 7168, 7168);
 * console.log(sm90TileGroup(c, 4096, 7168)); // N-tiles per group
 * ```
 */
export function sm90TileGroup(c: Sm90Config, M: number, N: number, sms = SM90_DEFAULT_SMS): number {
  // the walk's N unit: one tile, or a pair of tiles when step g's clusters pair CTAs along N
  const nUnit = sm90SharedOperand(c) === "a" ? 2 : 1;
  const numN = Math.ceil(Math.ceil(N / c.blockN) / nUnit);
  const rowsPerCta = c.blockM * (sm90SharedOperand(c) === "b" ? 2 : 1);
  let best = 1, bestCost = Infinity;
  for (let g = 1; g <= Math.min(16, numN); g++) {
    const cost = g * c.blockN * nUnit + Math.ceil(sms / (g * sm90Cluster(c))) * rowsPerCta;
    if (cost < bestCost) [best, bestCost] = [g, cost];
  }
  void M;
  return best;
}

/** Grid of one launch: [numM, numN] for steps a/b, min(tiles, SMs) (even for clusters) for c–f. *
 * @example
 * ```ts
 * import { chooseSm90Config, sm90Grid } from "./heuristic.ts";
 * console.log(sm90Grid(chooseSm90Config(4096, 7168, 7168), 4096, 7168)); // [132, 1, 1]
 * ```
 */
export function sm90Grid(
  c: Sm90Config,
  M: number,
  N: number,
  sms = SM90_DEFAULT_SMS,
): [number, number, number] {
  const numM = Math.ceil(M / c.blockM), numN = Math.ceil(N / c.blockN);
  if (!sm90Persistent(c)) return [numM, numN, 1];
  if (sm90Cluster(c) === 1) return [Math.min(numM * numN, sms), 1, 1];
  const pairs = sm90SharedOperand(c) === "a" ? numM * Math.ceil(numN / 2) : Math.ceil(numM / 2) * numN;
  return [2 * Math.min(pairs, Math.floor(sms / 2)), 1, 1];
}
