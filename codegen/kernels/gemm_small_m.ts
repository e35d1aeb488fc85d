/**
 * Small-M scaled GEMM (M ≤ 64, decode): swap-AB mma.sync that streams the weights at memory speed.
 *
 * Napkin math (H200, copy ≈ 4.2 TB/s read+write; a read-only stream gets about the same): at M ≤ 16 the
 * op is N·K weight bytes (+ N/128·K/128·4 scale bytes, + M·K + 2·M·N, both < 1 %). Floors at 4.2 TB/s:
 *
 * | N × K        | weights  | floor   | peer (torch._scaled_mm, M=4) |
 * |--------------|----------|---------|------------------------------|
 * | 4096 × 7168  | 29.4 MB  | 7.0 µs  | 20.4 µs                      |
 * | 7168 × 2048  | 14.7 MB  | 3.5 µs  |                              |
 * | 24576 × 1536 | 37.7 MB  | 9.0 µs  | 21.3 µs                      |
 * | 2112 × 7168  | 15.1 MB  | 3.6 µs  |                              |
 * | 7168 × 16384 | 117.4 MB | 28.0 µs |                              |
 * | 256 × 512    | 0.13 MB  | launch-bound (~2–3 µs)                 |
 *
 * Little's law: 4.2 TB/s × ~600 ns ≈ 2.5 MB in flight ≈ 19 KB per SM. So every SM needs a few tens of KB of
 * loads outstanding, and the conversion work must hide under the loads.
 *
 * Design (why each choice is faster than the obvious one):
 * - Swap-AB: compute outᵀ = B·Aᵀ. Weight rows fill the m16 side of `mma.m16n8k32`, tokens the n8 side, so
 *   no tensor-core work is spent on padding rows (a plain 16-row A tile at M=1 is 94 % padding).
 * - No shared memory for weights: each thread loads its A fragments straight from global with 16-byte
 *   loads. mma wants row g's k ∈ {4t..4t+3} ∪ {16+4t..16+4t+3} in one register pair; a dot product does not
 *   care about the order of k, so thread t takes 16 *contiguous* bytes (16t + 64c of a 128-wide K block)
 *   and the token fragment is read from the *same* byte offsets of the token row. A warp load instruction
 *   then covers 8 rows × 64 contiguous bytes (full 32-byte sectors), two of them a full 128-byte line.
 * - Split-K inside the CTA: the CTA owns 16·RT weight rows; its WK warps take K blocks kb = w, w+WK, …
 *   (so at any time the CTA reads WK·128 contiguous bytes of each row) and reduce through shared memory
 *   at the end. No workspace, no second launch, no atomics: deterministic.
 * - Programmatic dependent launch (block mode, sm_90, see `KernelSource.pdl`): the first two K blocks'
 *   weights are loaded, then `launch_dependents`, then `wait`, then the tokens: the launch and the first
 *   DRAM round trip overlap the kernel before (fp8Linear's group quant). At 2112×7168 that prefetch is
 *   132 CTAs × 16 warps × 2 × 2 KB = 8.6 MB (57 % of the weights) in flight before the wait; predicted
 *   saving ~1 µs per call after another GEMM (launch gap + part of the first round trip; 6.5 → ~5.5 µs)
 *   and ~1.2 µs after the quant (the quant hides under the GEMM's first loads).
 * - Register double buffer: the loads of the next K block are issued before the current one is
 *   converted and multiplied, so each warp keeps 2–4 KB in flight; 16 warps per SM give ~32–64 KB.
 * - Promotion once per 128-wide K block: the block's fp32 partial (4 k32 steps) is multiplied by
 *   sa(token)·sb(row block) and added to the accumulator, as the scale has to be applied there anyway.
 *
 * @module
 */
import { renderSignature } from "../kernel_source.ts";
import type { KernelSource } from "../kernel_source.ts";
import type { BlockMatmulOp } from "../../dsl/ops/block_matmul.ts";
import { gemmParams, gemmPrelude, opTag } from "./_gemm_common.ts";
import { GEMM_PDL_WAIT, gemmActivationLoads, PDL_PRELUDE } from "./_pdl.ts";

/** Compile-time shape of the small-M kernel. */
export interface SmallMConfig {
  /** m16 weight-row tiles per CTA (16·rt rows). */
  readonly rt: 1 | 2;
  /** n8 token tiles: the kernel serves M ≤ 8·nt. */
  readonly nt: 1 | 2 | 4 | 8;
  /** Warps per CTA, splitting K. */
  readonly wk: 2 | 4 | 8 | 16;
}

/** Largest M the small-M kernel serves. */
export const SMALL_M_MAX = 64;

/** Token tiles needed for M rows. */
export function smallMTokenTiles(M: number): 1 | 2 | 4 | 8 {
  if (M <= 8) return 1;
  if (M <= 16) return 2;
  return M <= 32 ? 4 : 8;
}

/** Registers per thread ptxas gives each shape on sm_90a (block mode; the other modes use fewer). */
const REGS: Record<string, number> = {
  "1x1": 80,
  "2x1": 120,
  "1x2": 112,
  "2x2": 168,
  "1x4": 128,
  "1x8": 256,
};

/**
 * Pick the tile shape for (M, N, K) on a device with `smCount` SMs. The kernel is memory-bound, so score
 * each (rows per CTA, warps per CTA) by SM coverage × wave efficiency (all CTAs co-resident counts as
 * one wave, as DRAM then shares its bandwidth among them) × bytes in flight per SM (≥ 24 KB wanted, 32 KB
 * with one token tile: a warp keeps at least one 128-wide K block of its rows in flight; measured on the
 * H200 with PDL, 4096×7168 at M ≤ 4: 32 rows × 16 warps 8.27–8.43 µs vs 16 rows × 8 warps ×
 * 2 CTAs 8.69–8.84 µs, while two token tiles keep 24 KB: 7168×2048 at M 16 ran 6.15 µs at 4 warps vs 7.35
 * at 8), prefer 32 rows per CTA (the token
 * conversion is shared by twice the weight rows), and keep WK ≤ the number of K blocks.
 */
export function smallMConfig(M: number, N: number, K: number, smCount = 132): SmallMConfig {
  const nt = smallMTokenTiles(M);
  const kb = Math.ceil(K / 128);
  let best: { cfg: SmallMConfig; score: number } | undefined;
  for (const rt of nt <= 2 ? [2, 1] as const : [1] as const) {
    const regs = REGS[`${rt}x${nt}`];
    const wks = ([16, 8, 4, 2] as const).filter((w) => (w <= kb || w === 2) && (w < 16 || regs <= 128));
    for (const wk of wks) {
      const cfg: SmallMConfig = { rt, nt, wk };
      const perSm = Math.min(Math.floor(65536 / (regs * 32 * wk)), Math.floor(64 / wk), 32);
      const tiles = smallMGrid(N, cfg), slots = perSm * smCount;
      const waves = tiles / slots;
      const inFlight = Math.min(perSm, tiles / smCount) * wk * 2048 * rt, wanted = nt === 1 ? 32768 : 24576;
      const score = Math.min(1, tiles / smCount) * (waves <= 1 ? 1 : waves / Math.ceil(waves)) *
        Math.min(1, inFlight / wanted) * (rt === 2 ? 1 : 0.97) * (wk === 8 ? 1 : 0.99);
      if (!best || score > best.score) best = { cfg, score };
    }
  }
  return best!.cfg;
}

/** CTAs for N weight rows. */
export function smallMGrid(N: number, cfg: SmallMConfig): number {
  return Math.ceil(N / (16 * cfg.rt));
}

/** Dynamic shared memory: the split-K partials of every warp plus the reduced [tokens × rows] tile. */
export function smallMSharedBytes(cfg: SmallMConfig): number {
  const frag = cfg.rt * cfg.nt * 4 * 32;
  return 4 * (cfg.wk * frag + 8 * cfg.nt * (16 * cfg.rt + 1));
}

/**
 * The small-M kernel for `op` and `cfg`. Launch on {@linkcode smallMGrid} CTAs with the family's
 * parameters (`a, sa, b, sb, [bias], out, M, N, K, lda, sas, ldc`); correct for any 1 ≤ M ≤ 8·nt.
 *
 * Block mode is a PDL kernel (`pdl: true`; `opts.pdl = false` renders the plain one, named `_nopdl`):
 * each warp issues the weight loads of its first two K blocks (and their B scales), then
 * `launch_dependents`, then `wait`, then reads A and its scales (coherent loads) and, at the end,
 * writes `out`. The other modes read activation scales in the epilogue's `finish` (non-coherent
 * `__ldg`, which ptxas may move above the wait) and stay plain kernels.
 *
 * @example
 * ```ts
 * import { smallMKernel } from "./gemm_small_m.ts";
 * import { blockMatmulOp } from "../../dsl/ops/block_matmul.ts";
 * const ks = smallMKernel(blockMatmulOp({ N: 7168, K: 7168 }), { rt: 1, nt: 1, wk: 8 });
 * console.log(ks.name); // gemm_smallm_block_bf16_rt1_nt1_wk8
 * ```
 */
export function smallMKernel(
  op: BlockMatmulOp,
  cfg: SmallMConfig,
  opts: { pdl?: boolean } = {},
): KernelSource {
  const pdl = op.mode === "block" && opts.pdl !== false;
  const name = `gemm_smallm_${opTag(op)}_rt${cfg.rt}_nt${cfg.nt}_wk${cfg.wk}${
    op.mode === "block" && !pdl ? "_nopdl" : ""
  }`;
  const params = gemmParams(op);
  const sig = renderSignature({ entry: name, params }, { launchBounds: [cfg.wk * 32, minBlocks(cfg)] });
  const source = `${gemmPrelude(op)}${pdl ? PDL_PRELUDE : ""}${gemmActivationLoads(pdl, op.aScaleDtype)}
#define PDL ${pdl ? 1 : 0}
#define RT ${cfg.rt}
#define NT ${cfg.nt}
#define WK ${cfg.wk}
#define NFRAG (RT * NT * 4)
#define TILE_LD (16 * RT + 1)

// Tokens ride in the register double buffer while they are few (NT <= 2); with more token tiles they
// are read when used (L1 hits: every CTA on the SM reads the same few KB) to stay clear of spills.
#define XSTAGE (NT <= 2)

// One K block (128 bytes of k) of this thread's operands, in registers.
struct Stage {
  uint4 w[RT][2][2];  // weight rows (g, g+8) of each m16 tile, 16-byte chunks c = 0, 1 at 16t + 64c
  float sb[RT];       // block mode: B scale of each m16 tile's 128-row block
#if XSTAGE
  uint4 x[NT][2];     // token row g of each n8 tile, same byte offsets
  float sa[NT][2];    // block mode: A scales of tokens 8nt+2t, 8nt+2t+1
#endif
};

${sig} {
  extern __shared__ float smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int n0 = blockIdx.x * (16 * RT);
  const int KBN = K >> 7;
  // Rows past N and tokens past M are clamped to the last real one: their results are never stored.
  const unsigned char* wp[RT][2];
#pragma unroll
  for (int r = 0; r < RT; r++)
#pragma unroll
    for (int h = 0; h < 2; h++) wp[r][h] = (const unsigned char*)b + (long long)min(n0 + 16 * r + 8 * h + g, N - 1) * K + 16 * t;
  const unsigned char* xp;  // A (tokens) at byte 16t: set after the PDL wait
#define XROW(nt) (xp + (long long)min(8 * (nt) + g, M - 1) * lda)
#define TOK(nt, e) min(8 * (nt) + 2 * t + (e), M - 1)

  acc_t acc[RT][NT][4];
#pragma unroll
  for (int i = 0; i < NFRAG; i++) (&acc[0][0][0])[i] = 0;

  // This warp's K blocks: kb = warp + WK * it, it < nIt.
  const int nIt = warp < KBN ? (KBN - warp + WK - 1) / WK : 0;

  // The weights (constants: may be read before the PDL wait) and the tokens (after it) of a K block.
  auto loadW = [&](Stage& s, int it) {
    if (it >= nIt) return;
    const int kb = warp + WK * it, off = kb << 7;
#pragma unroll
    for (int r = 0; r < RT; r++)
#pragma unroll
      for (int h = 0; h < 2; h++)
#pragma unroll
        for (int c = 0; c < 2; c++) s.w[r][h][c] = ld_stream16(wp[r][h] + off + 64 * c);
#if MODE == 0
#pragma unroll
    for (int r = 0; r < RT; r++) s.sb[r] = load_sb(sb + (min(n0 + 16 * r, N - 1) >> 7) * KBN + kb);
#endif
  };
  auto loadX = [&](Stage& s, int it) {
#if XSTAGE
    if (it >= nIt) return;
    const int kb = warp + WK * it, off = kb << 7;
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int c = 0; c < 2; c++) s.x[nt][c] = ld_act16(XROW(nt) + off + 64 * c);
#if MODE == 0
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int e = 0; e < 2; e++) s.sa[nt][e] = ld_act_sa(sa + (long long)kb * sas + TOK(nt, e));
#endif
#else
    (void)s;
    (void)it;
#endif
  };
  auto load = [&](Stage& s, int it) {
    loadW(s, it);
    loadX(s, it);
  };

  auto compute = [&](const Stage& s, int it) {
    if (it >= nIt) return;
    const int kb = warp + WK * it, off = kb << 7;
#if MODE == 3
#define TMP acc
#else
    float tmp[RT][NT][4];
#pragma unroll
    for (int i = 0; i < NFRAG; i++) (&tmp[0][0][0])[i] = 0.f;
#define TMP tmp
#endif
#pragma unroll
    for (int c = 0; c < 2; c++) {
      // k32 steps 2c and 2c+1 use words {0,1} and {2,3} of chunk c: convert the weights once, reuse per token tile.
      FragA fa[2][RT];
#pragma unroll
      for (int jj = 0; jj < 2; jj++)
#pragma unroll
        for (int r = 0; r < RT; r++)
          fa[jj][r] = prep_a(word_of(s.w[r][0][c], 2 * jj), word_of(s.w[r][1][c], 2 * jj),
                             word_of(s.w[r][0][c], 2 * jj + 1), word_of(s.w[r][1][c], 2 * jj + 1));
#pragma unroll
      for (int nt = 0; nt < NT; nt++) {
#if XSTAGE
        const uint4 x = s.x[nt][c];
#else
        const uint4 x = ld_act16(XROW(nt) + off + 64 * c);
#endif
#pragma unroll
        for (int jj = 0; jj < 2; jj++) {
          const FragB fb = prep_b(word_of(x, 2 * jj), word_of(x, 2 * jj + 1));
#pragma unroll
          for (int r = 0; r < RT; r++) mma_k32(TMP[r][nt], fa[jj][r], fb);
        }
      }
    }
#undef TMP
#if MODE == 0
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
#if XSTAGE
      const float a0 = s.sa[nt][0], a1 = s.sa[nt][1];
#else
      const float a0 = ld_act_sa(sa + (long long)kb * sas + TOK(nt, 0)), a1 = ld_act_sa(sa + (long long)kb * sas + TOK(nt, 1));
#endif
#pragma unroll
      for (int r = 0; r < RT; r++) {
        const float s0 = s.sb[r] * a0, s1 = s.sb[r] * a1;
        acc[r][nt][0] += tmp[r][nt][0] * s0;
        acc[r][nt][1] += tmp[r][nt][1] * s1;
        acc[r][nt][2] += tmp[r][nt][2] * s0;
        acc[r][nt][3] += tmp[r][nt][3] * s1;
      }
    }
#elif MODE != 3
#pragma unroll
    for (int i = 0; i < NFRAG; i++) (&acc[0][0][0])[i] += (&tmp[0][0][0])[i];
#endif
    (void)off;
    (void)kb;
  };

  // Double buffer: loads of K blocks it+1.. are in flight while it is computed. The first two blocks'
  // weights go out before the PDL wait (launch_dependents after them: ptxas keeps loads issued before
  // it above the wait), their tokens after it; the loop issues the same load/compute sequence as
  // "load s0; (load s1; compute s0; load s0; compute s1)*".
  Stage s0, s1;
  loadW(s0, 0);
  loadW(s1, 1);
${GEMM_PDL_WAIT}  xp = (const unsigned char*)a + 16 * t;
  loadX(s0, 0);
  loadX(s1, 1);
  for (int it = 0; it < nIt; it += 2) {
    compute(s0, it);
    load(s0, it + 2);
    compute(s1, it + 1);
    load(s1, it + 3);
  }

  // Split-K reduction: partials [WK][NFRAG][32], summed in warp order (deterministic).
  acc_t* red = reinterpret_cast<acc_t*>(smem);
  float* tile = smem + WK * NFRAG * 32;  // [8 NT tokens][TILE_LD] fp32
#pragma unroll
  for (int i = 0; i < NFRAG; i++) red[(warp * NFRAG + i) * 32 + lane] = (&acc[0][0][0])[i];
  __syncthreads();
  for (int e = threadIdx.x; e < NFRAG * 32; e += WK * 32) {
    const int i = e >> 5, ln = e & 31;
    acc_t sum = 0;
#pragma unroll
    for (int w = 0; w < WK; w++) sum += red[(w * NFRAG + i) * 32 + ln];
    const int r = i / (NT * 4), nt = (i >> 2) % NT, j = i & 3;
    const int row = 16 * r + (ln >> 2) + 8 * (j >> 1), token = 8 * nt + 2 * (ln & 3) + (j & 1);
    tile[token * TILE_LD + row] = (float)sum;
  }
  __syncthreads();
  // Write out[m][n0 + row] for m < M, n < N: lanes walk n, two elements each.
  for (int e = threadIdx.x; e < 8 * NT * 8 * RT; e += WK * 32) {
    const int m = e / (8 * RT), row = 2 * (e % (8 * RT)), n = n0 + row;
    if (m < M && n < N) {
      const float v0 = finish(tile[m * TILE_LD + row], sa, sb, ${op.bias ? "bias" : "nullptr"}, m, n);
      const float v1 = n + 1 < N ? finish(tile[m * TILE_LD + row + 1], sa, sb, ${
    op.bias ? "bias" : "nullptr"
  }, m, n + 1) : 0.f;
      store_pair(out, ldc, m, n, N, v0, v1);
    }
  }
}
`;
  return {
    name,
    source,
    entry: name,
    params,
    block: [cfg.wk * 32, 1, 1],
    sharedBytes: smallMSharedBytes(cfg),
    minArch: op.mode === "int8" ? 80 : 89,
    ...(pdl ? { pdl: true } : {}),
    keyParts: { family: "gemm_smallm", rt: cfg.rt, nt: cfg.nt, wk: cfg.wk, pdl },
  };
}

/** `__launch_bounds__` min blocks: caps registers (65536 / (threads · blocks)) so enough warps stay resident. */
function minBlocks(cfg: SmallMConfig): number {
  const cap = cfg.nt === 4 ? 128 : 255;
  return Math.max(1, Math.floor(65536 / (cfg.wk * 32 * cap)));
}
