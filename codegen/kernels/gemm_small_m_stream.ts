/**
 * Small-M scaled GEMM, version 2 ("stream"): the swap-AB mma.sync kernel of `gemm_small_m.ts` (v1) rebuilt
 * so that its fixed cost per call is one DRAM latency plus one short epilogue.
 *
 * Napkin math (H200, copy 4.1 TB/s): 2112×7168 is 15.1 MB of weights → 3.7 µs of streaming, 114.7 KB per
 * SM. v1 measured 9.3 µs (and 34.2 µs for 117 MB: ~4.1 TB/s in the steady state, ~5.5 µs fixed per call).
 * Where v1's fixed cost goes, from its SASS and pipe budgets (per SM, per clock at ~1.75 GHz, the stream
 * needs 18 weight bytes / clk):
 * - Conversion. sm_90 has no e4m3 mma.sync: every weight byte goes through `cvt.rn.f16x2.e4m3x2` (F2FP,
 *   2 bytes per lane-op). We take the conversion unit to be a 16 lanes/clk/SM pipe on Hopper (the CUDA
 *   guide's conversion rate for cc 9.0; Triton PR #4563: "Hopper has very low throughput of conversion
 *   instructions") → 32 B/clk, and v1 converts the token fragment again for every 16 weight rows (+50 % at
 *   rt=1, +100 % at nt=2): 21 B/clk, barely above the 18 B/clk the stream needs (16 B/clk at rt=1, nt=2:
 *   under it). The conversion trails the data, so the last bytes to land wait for a backlog of it, and
 *   M = 13..64 gets slower. → v2 converts the weights on the integer pipes (a bit move, below: 5 ALU ops +
 *   2 IMAD.SHL per 4 bytes in the SASS → ~51 B/clk/SM on the ALU pipe) and leaves F2FP to the token
 *   fragments (~64 B/clk of headroom at nt = 1). Per 2 KB K block of a warp v2 issues ~200 instructions
 *   (conversion, 8 HMMA, promotion, 6 loads and their addresses): ~41 B/clk/SM of issue, 2.3× the stream.
 * - Serial chains. v1 chains the 8 HMMAs of a K block into one accumulator (8 × ~33 clk per warp per
 *   K block); v2 keeps two chains (the two 64-byte halves) and sums them at the promotion.
 * - Bytes in flight. v1 double-buffers one K block (1 stage in flight while it computes the other);
 *   v2 keeps a ring of S = 2..4 K blocks per warp in registers and issues the next load as soon as a slot is
 *   converted: up to 16 warps × 3 × 2 KB = 96 KB per SM in flight from t = 0 (2112×7168: 14 warps × 3 =
 *   84 KB of its 114.7 KB per SM), above Little's law (4.1 TB/s × ~1.5 µs loaded latency / 132 ≈ 47 KB
 *   per SM) from the first load to the last.
 * - Tail. v1 launches ⌈N / rows⌉ CTAs (224 for N = 7168: 92 SMs run two, 40 run one). v2 is persistent:
 *   `ctas` = c × 132 CTAs (or one per tile when there are fewer), CTA b streams tiles b, b + ctas, … as one
 *   continuous per-warp ring, so a tile's epilogue (one barrier) never drains the loads of the next.
 * - N and K are compile-time constants: each warp's K blocks (kb = warp + W·j, j < K/128/W) and every trip
 *   count are known, so the ring is fully unrolled and addresses are immediates.
 *
 * The weight conversion: an e4m3 byte `s eeee mmm` moved right by one bit inside an f16 (`s 0eeee mmm0000000`)
 * is an f16 whose value is the e4m3 value × 2^-8 — exponent bias 15 vs 7 — for normals and denormals
 * alike (e4m3's denormal 2^-6·0.mmm lands on f16's 2^-14·0.mmm). So `(w & 0x80008000) | ((w >> 1) & 0x3f803f80)`
 * turns bytes 1 and 3 of a word into an f16x2, and the same on `w << 8` does bytes 0 and 2. The 2^-8 is
 * folded into the promotion scale (exact: a power of two, and no product comes near fp32's range limits).
 * The tokens use F2FP after a byte permute (bytes 0,2 | 1,3), so both operands share one k order. (NaN codes
 * are not preserved: quantized weights never hold them — the quantizers saturate.)
 *
 * Programmatic dependent launch (block mode, sm_90; the rule is on `KernelSource.pdl`): each warp loads
 * the weights and B scales of its ring's first S K blocks, then `launch_dependents`, then `wait`, then
 * the tokens and A scales of those blocks (coherent loads) — so in a model, where the GEMM follows the
 * group quant or the previous layer, the launch and the first DRAM round trip overlap the predecessor.
 * PDL napkin, 2112×7168 (15.1 MB: 3.7 µs at 4.1 TB/s; measured today ~6.5 µs per call in a graph, so
 * ~2.8 µs of fixed cost: ~0.6 µs graph launch gap + ~1 µs until the first weight bytes land + the last
 * tile's epilogue and the SM imbalance): the prologue prefetch is 14 warps × 3 × 2 KB × 132 CTAs =
 * 11.1 MB, 73 % of the weights, issued before the wait. After a GEMM (graph of GEMMs) a CTA can only
 * start where the previous GEMM's CTA has left its SM (registers), so PDL hides the launch gap and part of
 * the first round trip: predict ~1 µs saved per call (6.5 → ~5.5 µs, 55 → ~67 % of copy). After the group
 * quant (fp8Linear: ~1.5 µs on a handful of CTAs) the GEMM's CTAs start beside it right away and the
 * whole quant hides under the first round trip: predict quant + GEMM ≈ GEMM alone + ~0.3 µs (−1.2 µs).
 *
 * @module
 */
import { renderSignature } from "../kernel_source.ts";
import type { KernelSource } from "../kernel_source.ts";
import type { BlockMatmulOp } from "../../dsl/ops/block_matmul.ts";
import { gemmParams, gemmPrelude, opTag } from "./_gemm_common.ts";
import { GEMM_PDL_WAIT, gemmActivationLoads, PDL_PRELUDE } from "./_pdl.ts";
import {
  type SmallMStreamConfig,
  smallMStreamSharedBytes,
  streamTiles,
} from "./gemm_small_m_stream_config.ts";

export * from "./gemm_small_m_stream_config.ts";

/**
 * The v2 small-M kernel for `op` (its N and K are baked in) and `cfg`. Launch on `cfg.ctas` CTAs of
 * `32·cfg.wk` threads with the family's parameters (`a, sa, b, sb, [bias], out, M, N, K, lda, sas, ldc`;
 * N and K must equal the op's); correct for any 1 ≤ M ≤ 8·nt.
 *
 * @example
 * ```ts
 * import { smallMStreamConfig, smallMStreamKernel } from "./gemm_small_m_stream.ts";
 * import { blockMatmulOp } from "../../dsl/ops/block_matmul.ts";
 * const op = blockMatmulOp({ N: 2112, K: 7168 });
 * const ks = smallMStreamKernel(op, smallMStreamConfig(1, op.N, op.K));
 * console.log(ks.name); // gemm_smallm2_block_bf16_n2112_k7168_rt1_nt1_w14_s3_c132
 * ```
 */
export function smallMStreamKernel(
  op: BlockMatmulOp,
  cfg: SmallMStreamConfig,
  opts: { pdl?: boolean } = {},
): KernelSource {
  const pdl = op.mode === "block" && opts.pdl !== false;
  const kbn = op.K / 128;
  if (!Number.isInteger(kbn) || kbn % cfg.wk !== 0) {
    throw new RangeError(`wk ${cfg.wk} must divide K/128 = ${kbn}`);
  }
  const tiles = streamTiles(op.N, cfg);
  if (!(cfg.ctas >= 1 && cfg.ctas <= tiles)) throw new RangeError(`ctas ${cfg.ctas} must be in 1..${tiles}`);
  const name = `gemm_smallm2_${
    opTag(op)
  }_n${op.N}_k${op.K}_rt${cfg.rt}_nt${cfg.nt}_w${cfg.wk}_s${cfg.stages}_c${cfg.ctas}${
    op.mode === "block" && !pdl ? "_nopdl" : ""
  }`;
  const params = gemmParams(op);
  const sig = renderSignature({ entry: name, params }, { launchBounds: [cfg.wk * 32, cfg.perSm] });
  const bias = op.bias ? "bias" : "nullptr";
  const source = `${gemmPrelude(op)}${pdl ? PDL_PRELUDE : ""}${gemmActivationLoads(pdl, op.aScaleDtype)}
#define PDL ${pdl ? 1 : 0}
#define RT ${cfg.rt}
#define NT ${cfg.nt}
#define W ${cfg.wk}
#define S ${cfg.stages}
#define KN ${op.N}
#define KK ${op.K}
#define KBN ${kbn}
#define IT (KBN / W)          // K blocks of one tile per warp
#define TILES ${tiles}
#define G ${cfg.ctas}
#define ROWS (16 * RT)
#define NFRAG (RT * NT * 4)
// Tokens ride in the ring while they are few; with 4 token tiles they are read when used (L1 hits after
// the first tile: every tile of the CTA reads the same K blocks of the same tokens) to keep the registers.
#define XRING (NT <= 2)
// Independent accumulator chains per K block: two (the 64-byte halves) when one fragment is all there is.
#define CH (RT * NT == 1 ? 2 : 1)
#if !FP8_NATIVE && MODE != 3
#define CVT_INT 1             // weights converted on the integer pipes, values x 2^-8
#define WSCALE 256.f
#else
#define CVT_INT 0             // raw e4m3 (Ada QMMA) or s8 (IMMA) fragments
#define WSCALE 1.f
#endif

// Bytes 0,2 and 1,3 of four e4m3 -> two f16x2, each value x 2^-8 (see the module comment).
__device__ __forceinline__ void e4m3x4_to_f16_int(u32 w, u32& even, u32& odd) {
  even = ((w << 8) & 0x80008000u) | ((w << 7) & 0x3f803f80u);
  odd = (w & 0x80008000u) | ((w >> 1) & 0x3f803f80u);
}
// The same pairing through the conversion unit, exact values: permute to bytes (0,2,1,3), then F2FP.
__device__ __forceinline__ void e4m3x4_to_f16_perm(u32 w, u32& even, u32& odd) {
  u32 p;
  asm("prmt.b32 %0, %1, 0, 0x3120;" : "=r"(p) : "r"(w));
  e4m3x4_to_f16(p, even, odd);
}
__device__ __forceinline__ void hmma16(float* d, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// One K block (128 bytes of k) of this thread's operands: a slot of the register ring.
struct Slot {
  uint4 w[RT][2][2];  // weight rows (g, g+8) of each m16 tile, 16-byte chunks c = 0, 1 at 16t + 64c
#if XRING
  uint4 x[NT][2];     // token row g of each n8 tile, same byte offsets
#endif
#if MODE == 0
  float sb;           // B scale of the tile's 128-row block
  float sa[NT][2];    // A scales of tokens 8nt+2t, 8nt+2t+1
#endif
};

${sig} {
  extern __shared__ float smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int Q = ((TILES - 1 - (int)blockIdx.x) / G + 1) * IT;  // K blocks this warp streams
  // Tokens past M are clamped to the last real one, rows past N to the last row: never stored.
  const unsigned char* xp[NT];  // set after the PDL wait
#if MODE == 0
  int tok[NT][2];  // A-scale columns of tokens 8nt+2t, 8nt+2t+1
#pragma unroll
  for (int nt = 0; nt < NT; nt++)
#pragma unroll
    for (int e = 0; e < 2; e++) tok[nt][e] = min(8 * nt + 2 * t + e, M - 1);
#endif
  // Weight rows (g, g+8) of each m16 tile of the tile being loaded, at byte 16t of K block 0.
  const unsigned char* wrow[RT][2];
  auto rows_of = [&](int tile) {
#pragma unroll
    for (int r = 0; r < RT; r++)
#pragma unroll
      for (int h = 0; h < 2; h++)
        wrow[r][h] = (const unsigned char*)b + (long long)min(tile * ROWS + 16 * r + 8 * h + g, KN - 1) * KK + 16 * t;
  };

  // The tokens of K block kb (and their A scales): the previous kernel's output, read after the PDL wait.
  auto loadX = [&](Slot& s, int kb) {
    const int off = kb * 128;
#if XRING
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int c = 0; c < 2; c++) s.x[nt][c] = ld_act16(xp[nt] + off + 64 * c);
#endif
#if MODE == 0
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int e = 0; e < 2; e++) s.sa[nt][e] = ld_act_sa(sa + (long long)kb * sas + tok[nt][e]);
#endif
    (void)s;
    (void)off;
  };
  // The next K block of the ring into s: its weights and B scale (constants), its tokens when withX.
  // Returns the K block (-1 past the warp's last).
  int lq = 0, lTile = blockIdx.x, lJ = 0;
  rows_of(lTile);
  auto load = [&](Slot& s, bool withX) {
    int kb = -1;
    if (lq < Q) {
      kb = warp + W * lJ;
      const int off = kb * 128;
#pragma unroll
      for (int r = 0; r < RT; r++)
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
          for (int c = 0; c < 2; c++) s.w[r][h][c] = ld_stream16(wrow[r][h] + off + 64 * c);
#if MODE == 0
      s.sb = load_sb(sb + (lTile * ROWS >> 7) * KBN + kb) * WSCALE;
#endif
      if (withX) loadX(s, kb);
      if (++lJ == IT) {
        lJ = 0;
        lTile += G;
        rows_of(lTile);
      }
    }
    lq++;
    return kb;
  };

  acc_t acc[RT][NT][4];
#pragma unroll
  for (int i = 0; i < NFRAG; i++) (&acc[0][0][0])[i] = 0;

  // One K block: two independent accumulator chains (chunk c), then the promotion.
  int cOff = warp * 128;  // byte offset of the K block being computed (for tokens read when used)
  auto compute = [&](const Slot& s) {
#if XRING
#define XW(nt, c) s.x[nt][c]
#else
    uint4 xs[NT][2];
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
      for (int c = 0; c < 2; c++) xs[nt][c] = ld_act16(xp[nt] + cOff + 64 * c);
#define XW(nt, c) xs[nt][c]
#endif
    acc_t tmp[CH][RT][NT][4];
#pragma unroll
    for (int i = 0; i < CH * NFRAG; i++) (&tmp[0][0][0][0])[i] = 0;
#pragma unroll
    for (int c = 0; c < 2; c++) {
#if CVT_INT
#pragma unroll
      for (int j = 0; j < 4; j++) {
        u32 ev[RT][2], od[RT][2];
#pragma unroll
        for (int r = 0; r < RT; r++)
#pragma unroll
          for (int h = 0; h < 2; h++) e4m3x4_to_f16_int(word_of(s.w[r][h][c], j), ev[r][h], od[r][h]);
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
          u32 be, bo;
          e4m3x4_to_f16_perm(word_of(XW(nt, c), j), be, bo);
#pragma unroll
          for (int r = 0; r < RT; r++) hmma16(tmp[c % CH][r][nt], ev[r][0], ev[r][1], od[r][0], od[r][1], be, bo);
        }
      }
#else
#pragma unroll
      for (int jj = 0; jj < 2; jj++) {
        FragA fa[RT];
#pragma unroll
        for (int r = 0; r < RT; r++)
          fa[r] = prep_a(word_of(s.w[r][0][c], 2 * jj), word_of(s.w[r][1][c], 2 * jj),
                         word_of(s.w[r][0][c], 2 * jj + 1), word_of(s.w[r][1][c], 2 * jj + 1));
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
          const FragB fb = prep_b(word_of(XW(nt, c), 2 * jj), word_of(XW(nt, c), 2 * jj + 1));
#pragma unroll
          for (int r = 0; r < RT; r++) mma_k32(tmp[c % CH][r][nt], fa[r], fb);
        }
      }
#endif
    }
#undef XW
#if MODE == 0
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
      const float s0 = s.sb * s.sa[nt][0], s1 = s.sb * s.sa[nt][1];
#pragma unroll
      for (int r = 0; r < RT; r++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
          const acc_t v = CH == 2 ? tmp[0][r][nt][j] + tmp[CH - 1][r][nt][j] : tmp[0][r][nt][j];
          acc[r][nt][j] += v * (j & 1 ? s1 : s0);
        }
    }
#else
#pragma unroll
    for (int i = 0; i < NFRAG; i++) {
      (&acc[0][0][0])[i] += (&tmp[0][0][0][0])[i];
      if (CH == 2) (&acc[0][0][0])[i] += (&tmp[CH - 1][0][0][0])[i];
    }
#endif
  };

  // A tile is done: split-K partials [W][NFRAG][32] into the buffer of this tile's parity, one barrier,
  // then every thread sums (in warp order: deterministic) and stores pairs of outputs along n. The next
  // tile writes the other buffer, and its barrier orders this tile's reads before that buffer's reuse.
  int cTile = blockIdx.x, cJ = 0, buf = 0;
  auto epilogue = [&]() {
    acc_t* red = reinterpret_cast<acc_t*>(smem) + buf * (W * NFRAG * 32);
#pragma unroll
    for (int i = 0; i < NFRAG; i++) {
      red[(warp * NFRAG + i) * 32 + lane] = (&acc[0][0][0])[i];
      (&acc[0][0][0])[i] = 0;
    }
    __syncthreads();
    const int n0 = cTile * ROWS;
    for (int e = threadIdx.x; e < 8 * NT * (ROWS / 2); e += W * 32) {
      const int m = e / (ROWS / 2), row = 2 * (e % (ROWS / 2)), n = n0 + row;
      if (m < M && n < KN) {
        // fragment coordinates of (row, token m): acc[r][nt][j] of lane (g, t)
        const int r = row >> 4, gg = row & 7, jh = (row >> 3) & 1, nt = m >> 3, tt = (m & 7) >> 1, jl = m & 1;
        const int i0 = ((r * NT + nt) << 2) | (jh << 1) | jl, ln0 = (gg << 2) | tt;
        acc_t v0 = 0, v1 = 0;
#pragma unroll
        for (int w = 0; w < W; w++) {
          v0 += red[(w * NFRAG + i0) * 32 + ln0];
          v1 += red[(w * NFRAG + i0) * 32 + ln0 + 4];  // row + 1: g + 1
        }
#if MODE == 0
        const float f0 = (float)v0, f1 = (float)v1;
#else
        const float f0 = (float)v0 * WSCALE, f1 = (float)v1 * WSCALE;
#endif
        store_pair(out, ldc, m, n, KN, finish(f0, sa, sb, ${bias}, m, n),
                   n + 1 < KN ? finish(f1, sa, sb, ${bias}, m, n + 1) : 0.f);
      }
    }
    buf ^= 1;
    cTile += G;
  };

  // The ring's first S K blocks: weights before the PDL wait (launch_dependents after their loads: ptxas
  // keeps loads issued before it above the wait), tokens after it.
  Slot ring[S];
  int kb0[S];
#pragma unroll
  for (int s = 0; s < S; s++) kb0[s] = load(ring[s], false);
${GEMM_PDL_WAIT}#pragma unroll
  for (int nt = 0; nt < NT; nt++) xp[nt] = (const unsigned char*)a + (long long)min(8 * nt + g, M - 1) * lda + 16 * t;
#pragma unroll
  for (int s = 0; s < S; s++)
    if (kb0[s] >= 0) loadX(ring[s], kb0[s]);
  for (int q0 = 0; q0 < Q; q0 += S) {
#pragma unroll
    for (int s = 0; s < S; s++) {
      if (q0 + s < Q) {
        compute(ring[s]);
        load(ring[s], true);  // K block q0 + s + S into the slot just consumed
        cOff += W * 128;
        if (++cJ == IT) {
          cJ = 0;
          cOff = warp * 128;
          epilogue();
        }
      }
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
    sharedBytes: smallMStreamSharedBytes(cfg),
    minArch: op.mode === "int8" ? 80 : 89,
    ...(pdl ? { pdl: true } : {}),
    keyParts: {
      family: "gemm_smallm2",
      pdl,
      N: op.N,
      K: op.K,
      rt: cfg.rt,
      nt: cfg.nt,
      wk: cfg.wk,
      stages: cfg.stages,
      perSm: cfg.perSm,
      ctas: cfg.ctas,
    },
  };
}
