/**
 * Configuration of the sm_90a blockwise-FP8 GEMM ladder: which step, tile shape, pipeline depth, scale
 * mode and epilogue; validation; and the shared-memory layout every step derives from the same numbers.
 *
 * Operand contract (quant-spec §4, shared with part 1): A e4m3 `[M_pad, K]` row-major (M_pad = M rounded
 * up to 4), B e4m3 `[N, K]` row-major, out bf16 `[M, N]`, K a multiple of 128, fp32 accumulation promoted
 * once per 128-wide K block. Scale modes:
 * - `block`:   sa f32 `[K/128, M_pad]` (one per 1×128 group, M-major), sb f32 `[ceil(N/128), K/128]`;
 * - `tensor`:  sa f32 `[1]`, sb f32 `[1]` (device scalars, so dynamic quant can write them);
 * - `channel`: sa f32 `[M_pad]` per token, sb f32 `[N]` per output channel.
 *
 * @module
 */

/**
 * The ladder step: (a) TMA+wgmma, (b) + warp specialization, (c) + persistent + TMA store, (d) + 2-CTA
 * multicast, (e) = (c) with deferred promotion (two temp accumulators, the next k-block's wgmmas run while
 * the previous one is promoted; per-warpgroup epilogue overlapped with the next tile), (f) = (e) + 2-CTA
 * multicast, (g) = (c) with the two math warpgroups decoupled: per-warpgroup epilogue (no 256-thread barrier),
 * ping-pong issue order (one warpgroup's promotion under the other's MMAs) and a leaner k-block.
 */
export type Sm90Step = "a" | "b" | "c" | "d" | "e" | "f" | "g";
/** Every step, in ladder order. */
export const SM90_STEPS: readonly Sm90Step[] = ["a", "b", "c", "d", "e", "f", "g"];
/** How A and B are scaled. */
export type Sm90ScaleMode = "block" | "tensor" | "channel";
/** Epilogue: bf16x2 stores straight from registers, or stmatrix → swizzled smem → TMA store. */
export type Sm90Epilogue = "direct" | "tma";

/** Everything that changes the generated kernel. M, N, K and the tile-group width are run-time arguments. */
export interface Sm90Config {
  step: Sm90Step;
  mode: Sm90ScaleMode;
  /**
   * Rows per CTA tile: 64 (one math warpgroup) or 128 (two); step g also takes 256 — two math warpgroups
   * of 128 rows each, run as two 64-row waves that share one wgmma temp accumulator (DeepGEMM PR #81).
   */
  blockM: 64 | 128 | 256;
  /** Columns per CTA tile (= the wgmma N): a multiple of 16 in 16..256 that spans ≤ 2 scale blocks. */
  blockN: number;
  /** Depth of the TMA → wgmma shared-memory ring. */
  stages: number;
  epilogue: Sm90Epilogue;
  /**
   * Steps e/f only: k-blocks per drained chunk of the math loop (default {@linkcode SM90_DEFERRED_CHUNK}).
   * Longer chunks expose fewer drains but unroll more code (one epilogue copy per k-block of a chunk).
   */
  chunk?: number;
  /**
   * Step g only: the two math warpgroups take turns issuing their k-block's wgmmas (named barriers
   * 4/5, 256 threads, never the producer) so the tensor core runs whole groups alternately and one
   * warpgroup promotes while the other's MMAs run. Default true; false keeps only g's other changes.
   */
  pingpong?: boolean;
  /**
   * Step g only: issue the first wave of the next tile's first k-block before this tile's epilogue, so
   * the tensor core runs under the conversion and store. Default: on for 256-row tiles (measured 0.4–3 %
   * faster), off for 128-row ones (128×192 without ping-pong measured 6 % slower with it).
   */
  overlap?: boolean;
  /**
   * Step g only: 2-CTA clusters along N — the two CTAs of a cluster take the same M tile and adjacent N
   * tiles, and each loads half of the A tile and multicasts it to both, so A leaves L2 once per pair
   * (per 256×128 k-block 32 KB of L2 reads per CTA instead of 48 KB). Default false.
   */
  multicast?: boolean;
}

/** Default k-blocks per drained chunk of the deferred steps (e, f). */
export const SM90_DEFERRED_CHUNK = 4;

/** SM90_BLOCK_K: one 128-wide scale block = one 128-byte swizzle atom of fp8. */
export const SM90_BLOCK_K = 128;
/** The opt-in shared memory limit per block on H100/H200 (bytes). */
export const SM90_MAX_SMEM = 232448;

/** Byte offsets inside the (1024-aligned) dynamic shared memory of one kernel. */
export interface Sm90SmemLayout {
  a: number;
  aStage: number;
  b: number;
  bStage: number;
  /** The bf16 output tile for the TMA-store epilogue (0 bytes otherwise). */
  d: number;
  dBytes: number;
  /** Per-stage A scales (block mode only). */
  sa: number;
  saStage: number;
  /** full[stages] then empty[stages], 8 bytes each, then the 4-byte watchdog flag. */
  bars: number;
  /** Bytes used from the aligned base. */
  used: number;
  /** Bytes to request: `used` plus the 1024-byte alignment slack. */
  request: number;
  /** Bytes the producer announces per stage (expect_tx). */
  txBytes: number;
}

const align = (x: number, a: number) => Math.ceil(x / a) * a;

/** Scale blocks a BLOCK_N-wide tile can straddle, over every tile start n0 = j·BLOCK_N. */
export function sm90ScaleBlocksSpanned(blockN: number): number {
  let worst = 0;
  for (let j = 0; j < 128; j++) {
    const n0 = j * blockN;
    worst = Math.max(worst, Math.floor((n0 + blockN - 1) / 128) - Math.floor(n0 / 128) + 1);
  }
  return worst;
}

/** Columns per TMA-store box and the smem swizzle width (bytes) for the output tile. */
export function sm90StoreBox(blockN: number): { cols: number; swizzleBytes: 32 | 64 | 128 } {
  if (blockN % 64 === 0) return { cols: 64, swizzleBytes: 128 };
  if (blockN % 32 === 0) return { cols: 32, swizzleBytes: 64 };
  return { cols: 16, swizzleBytes: 32 };
}

/** 64-row waves each math warpgroup runs per k-block: 2 for 256-row tiles (step g), else 1. */
export function sm90Waves(c: Sm90Config): 1 | 2 {
  return c.blockM === 256 ? 2 : 1;
}

/** Math threads per CTA: one warpgroup per 64 rows, at most two (256-row tiles run two waves each). */
export function sm90MathThreads(c: Sm90Config): number {
  return (c.blockM / 64 / sm90Waves(c)) * 128;
}

/** Threads per CTA: math warpgroups (+ one producer warpgroup from step b on). */
export function sm90Threads(c: Sm90Config): number {
  const math = sm90MathThreads(c);
  return c.step === "a" ? math : math + 128;
}

/** Cluster size: steps d and f pair CTAs along M and multicast the shared B tile. */
export function sm90Cluster(c: Sm90Config): 1 | 2 {
  return c.step === "d" || c.step === "f" || (c.step === "g" && c.multicast === true) ? 2 : 1;
}

/**
 * Which operand the two CTAs of a cluster share (and multicast): "b" for steps d/f (pairs along M, the
 * same N tile), "a" for step g with `multicast` (pairs along N, the same M tile); undefined without clusters.
 */
export function sm90SharedOperand(c: Sm90Config): "a" | "b" | undefined {
  if (sm90Cluster(c) === 1) return undefined;
  return c.step === "g" ? "a" : "b";
}

/** Persistent steps (grid ≤ SMs, tile loop inside the kernel, `group` argument). */
export function sm90Persistent(c: Sm90Config): boolean {
  return c.step !== "a" && c.step !== "b";
}

/** Deferred-promotion steps: two wgmma temp accumulators per math warpgroup. */
export function sm90Deferred(c: Sm90Config): boolean {
  return c.step === "e" || c.step === "f";
}

/** Steps whose math warpgroups each store their own 64-row half of the tile (no cross-warpgroup barrier). */
export function sm90PerWarpgroupStore(c: Sm90Config): boolean {
  return sm90Deferred(c) || c.step === "g";
}

/**
 * Rows per TMA-store box: the whole tile from steps c/d (one store after a 256-thread barrier), one
 * math warpgroup's 64 rows from steps e/f/g (each warpgroup stores its half on its own).
 */
export function sm90StoreRows(c: Sm90Config): number {
  return sm90PerWarpgroupStore(c) ? 64 : c.blockM;
}

/** Whether step g's ping-pong issue order is on (two math warpgroups and not switched off). */
export function sm90PingPong(c: Sm90Config): boolean {
  return c.step === "g" && c.blockM >= 128 && c.pingpong !== false;
}

/** Whether step g issues the next tile's first wgmmas before the epilogue (see Sm90Config.overlap). */
export function sm90Overlap(c: Sm90Config): boolean {
  return c.step === "g" && (c.overlap ?? c.blockM === 256);
}

/** The shared memory layout of `c`. */
export function sm90SmemLayout(c: Sm90Config): Sm90SmemLayout {
  const aStage = c.blockM * SM90_BLOCK_K, bStage = c.blockN * SM90_BLOCK_K;
  const a = 0;
  const b = a + c.stages * aStage;
  const d = b + c.stages * bStage; // multiples of 1024: blockM % 8 == 0, blockN % 8 == 0
  const dBytes = c.epilogue === "tma" ? c.blockM * c.blockN * 2 : 0;
  const sa = align(d + dBytes, 128);
  const saStage = c.mode === "block" ? align(c.blockM * 4, 128) : 0;
  const bars = align(sa + c.stages * saStage, 8);
  const used = bars + 2 * c.stages * 8 + 8;
  const txBytes = aStage + bStage + (c.mode === "block" ? c.blockM * 4 : 0);
  return { a, aStage, b, bStage, d, dBytes, sa, saStage, bars, used, request: used + 1024, txBytes };
}

/** Problems with `c`, as sentences (empty when valid). */
export function sm90ConfigProblems(c: Sm90Config): string[] {
  const p: string[] = [];
  if (!SM90_STEPS.includes(c.step)) p.push(`step must be one of ${SM90_STEPS.join(", ")} (got ${c.step})`);
  if (!["block", "tensor", "channel"].includes(c.mode)) {
    p.push(`mode must be block, tensor or channel (got ${c.mode})`);
  }
  if (c.blockM === 256) {
    if (c.step !== "g") {
      p.push(`blockM 256 (two 64-row waves per math warpgroup) is a tile of step g (step ${c.step})`);
    } // two promoted accumulators (one per wave) + the shared wgmma temp: 3·blockN/2 fp32 registers
    else if (c.blockN > 128) {
      p.push(`blockM 256 keeps 3·blockN/2 accumulator registers: blockN ${c.blockN} > 128 would spill`);
    }
  } else if (c.blockM !== 64 && c.blockM !== 128) p.push(`blockM must be 64, 128 or 256 (got ${c.blockM})`);
  if (!(Number.isInteger(c.blockN) && c.blockN % 16 === 0 && c.blockN >= 16 && c.blockN <= 256)) {
    p.push(`blockN must be a multiple of 16 in 16..256 (got ${c.blockN})`);
  } else if (sm90ScaleBlocksSpanned(c.blockN) > 2) {
    p.push(
      `blockN ${c.blockN} lets a tile straddle 3 scale blocks of 128 (use 64, 96, 112, 128, 144, 160, 192, 256)`,
    );
  }
  // two-level accumulation keeps blockN/2 temp + blockN/2 promoted fp32 registers per thread
  if (c.blockN > 192) {
    p.push(`blockN ${c.blockN} needs > 192 accumulator registers per thread (spills); use ≤ 192`);
  } else if (sm90Deferred(c) && c.blockN > 128) {
    // deferred promotion keeps two temps + the promoted accumulator: 3·blockN/2 fp32 registers
    p.push(`step ${c.step} keeps 3·blockN/2 accumulator registers: blockN ${c.blockN} > 128 would spill`);
  }
  if (!(Number.isInteger(c.stages) && c.stages >= 2 && c.stages <= 16)) {
    p.push(`stages must be 2..16 (got ${c.stages})`);
  }
  if (c.chunk !== undefined) {
    if (!sm90Deferred(c)) p.push(`chunk is a setting of steps e and f (step ${c.step})`);
    else if (!(Number.isInteger(c.chunk) && c.chunk >= 2 && c.chunk <= 8)) {
      p.push(`chunk must be an integer in 2..8 (got ${c.chunk})`);
    }
  }
  if (c.pingpong !== undefined) {
    if (c.step !== "g") p.push(`pingpong is a setting of step g (step ${c.step})`);
    else if (typeof c.pingpong !== "boolean") p.push(`pingpong must be true or false (got ${c.pingpong})`);
  }
  if (c.overlap !== undefined) {
    if (c.step !== "g") p.push(`overlap is a setting of step g (step ${c.step})`);
    else if (typeof c.overlap !== "boolean") p.push(`overlap must be true or false (got ${c.overlap})`);
  }
  if (c.multicast !== undefined) {
    if (c.step !== "g") {
      p.push(`multicast is a setting of step g (steps d and f always pair CTAs; step ${c.step})`);
    } else if (typeof c.multicast !== "boolean") {
      p.push(`multicast must be true or false (got ${c.multicast})`);
    } else if (c.multicast && c.blockM < 128) {
      p.push(`multicast splits the A tile in two: blockM must be ≥ 128`);
    }
  }
  if (c.epilogue !== "direct" && c.epilogue !== "tma") {
    p.push(`epilogue must be direct or tma (got ${c.epilogue})`);
  }
  if ((c.step === "a" || c.step === "b") && c.epilogue === "tma") {
    p.push(`steps a and b store from registers (epilogue "direct"); the TMA store starts at step c`);
  }
  if (p.length === 0 && sm90SmemLayout(c).request > SM90_MAX_SMEM) {
    p.push(
      `needs ${
        sm90SmemLayout(c).request
      } B of shared memory (limit ${SM90_MAX_SMEM}): fewer stages or a smaller tile`,
    );
  }
  return p;
}

/** Throws a RangeError listing every problem of `c`. */
export function assertSm90Config(c: Sm90Config): void {
  const p = sm90ConfigProblems(c);
  if (p.length) throw new RangeError(`invalid sm90 GEMM config ${JSON.stringify(c)}: ${p.join("; ")}`);
}

/** The kernel name, which encodes every field of the config. */
export function sm90ConfigName(c: Sm90Config): string {
  const u = c.chunk !== undefined && c.chunk !== SM90_DEFERRED_CHUNK ? `_u${c.chunk}` : "";
  const pp = c.step === "g" && c.pingpong === false ? "_nopp" : "";
  const ov = c.step !== "g" || c.overlap === undefined || c.overlap === (c.blockM === 256)
    ? ""
    : c.overlap
    ? "_ov"
    : "_noov"; // only a non-default overlap is named
  const mc = c.step === "g" && c.multicast ? "_mc" : "";
  return `gemm_sm90${c.step}_fp8e4m3_bf16_${c.mode}_${c.blockM}x${c.blockN}x${SM90_BLOCK_K}_s${c.stages}_${c.epilogue}${u}${pp}${ov}${mc}`;
}

/** The chunk length a deferred config runs with. */
export function sm90Chunk(c: Sm90Config): number {
  return c.chunk ?? SM90_DEFERRED_CHUNK;
}

/** The deepest ring that fits the shared memory limit for this tile (capped at `max`). */
export function sm90MaxStages(c: Omit<Sm90Config, "stages">, max = 8): number {
  for (let s = max; s >= 2; s--) if (sm90SmemLayout({ ...c, stages: s }).request <= SM90_MAX_SMEM) return s;
  return 2;
}
