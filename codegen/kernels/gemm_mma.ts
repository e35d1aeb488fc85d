/**
 * Tiled scaled GEMM on mma.sync: correct for every M, the family's general path (sm_89+, int8 on sm_80+).
 *
 * Napkin math (M = 4096, N = K = 7168): 421 GFLOP, 29 MB (A) + 51 MB (B) + 59 MB (out) → compute-bound.
 * On sm_90 mma.sync fp8 runs as f16 HMMA after a conversion (half the fp8 wgmma rate at best), so
 * expect 150–300 TFLOPS; part 2 (wgmma + TMA, `codegen/kernels/gemm_sm90/`) is the fast path for big M
 * on Hopper. This kernel is the reference-grade baseline and the Ada / int8 path.
 *
 * Why each piece is there:
 * - CTA tile BM × 128 × 128 (one scale block of K per stage), 8 warps of (BM/2) × 32, `cp.async.cg`
 *   16-byte copies into a STAGES-deep ring (loads of stage kb+2 fly while kb is multiplied);
 *   rows past M / N are zero-filled by the copy (src-size 0), so no masks in the inner loop.
 * - Shared row pitch 144 B (128 + 16): `ldmatrix` reads 8 rows × 16 B per phase; with a 144-byte pitch the
 *   8 rows start on banks 0, 4, …, 28 — conflict-free.
 * - `ldmatrix.x4` yields exactly the m16n8k32 fp8 fragment (one b16 pair = 4 e4m3 of one row), so no
 *   shuffles; on sm_90 each fragment is converted to f16 once and used by all its mmas.
 * - fp32 promotion once per 128-wide K block: tmp (this block's partial) × sa[row]·sb[block] added to acc.
 *
 * @module
 */
import { renderSignature } from "../kernel_source.ts";
import type { KernelSource } from "../kernel_source.ts";
import type { BlockMatmulOp } from "../../dsl/ops/block_matmul.ts";
import { gemmParams, gemmPrelude, opTag } from "./_gemm_common.ts";

/** Compile-time shape of the tiled kernel. */
export interface TiledConfig {
  /** Rows of A (tokens) per CTA. */
  readonly bm: 32 | 64 | 128;
  /** Pipeline depth (K blocks in flight). */
  readonly stages: 2 | 3 | 4;
}

/** Columns of B (weight rows) per CTA. */
export const TILED_BN = 128;
const PITCH = 144;
const WARPS_N = 4;

/** Shared memory of one configuration. */
export function tiledSharedBytes(cfg: TiledConfig): number {
  return cfg.stages * (cfg.bm + TILED_BN) * PITCH;
}

/** Grid `[N tiles, M tiles]` (x walks N so CTAs that run together share their A tile). */
export function tiledGrid(M: number, N: number, cfg: TiledConfig): [number, number, number] {
  return [Math.ceil(N / TILED_BN), Math.ceil(M / cfg.bm), 1];
}

/** The tile height for M rows on `smCount` SMs: the largest that still gives ≥ one CTA per SM. */
export function tiledConfig(M: number, N: number, smCount = 132): TiledConfig {
  const nTiles = Math.ceil(N / TILED_BN);
  for (const bm of [128, 64] as const) if (nTiles * Math.ceil(M / bm) >= smCount) return { bm, stages: 3 };
  return { bm: M <= 32 ? 32 : 64, stages: 4 };
}

/**
 * The tiled kernel for `op` and `cfg`, launched on {@linkcode tiledGrid} with the family's parameters.
 *
 * @example
 * ```ts
 * import { tiledKernel } from "./gemm_mma.ts";
 * import { blockMatmulOp } from "../../dsl/ops/block_matmul.ts";
 * console.log(tiledKernel(blockMatmulOp({ N: 4096, K: 7168 }), { bm: 128, stages: 3 }).name);
 * // gemm_mma_block_bf16_bm128_s3
 * ```
 */
export function tiledKernel(op: BlockMatmulOp, cfg: TiledConfig): KernelSource {
  const name = `gemm_mma_${opTag(op)}_bm${cfg.bm}_s${cfg.stages}`;
  const params = gemmParams(op);
  const threads = 2 * WARPS_N * 32;
  const sig = renderSignature({ entry: name, params }, { launchBounds: [threads, 1] });
  const source = `${gemmPrelude(op)}
#define BM ${cfg.bm}
#define BN ${TILED_BN}
#define STAGES ${cfg.stages}
#define PITCH ${PITCH}
#define THREADS ${threads}
#define WN ${WARPS_N}
#define MT (BM / 32)   // m16 tiles per warp (2 warps along M)
#define NTW (BN / WN / 8) // n8 tiles per warp
#define STAGE_BYTES ((BM + BN) * PITCH)

__device__ __forceinline__ void cp_async16(u32 dst, const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void ldsm_x4(u32 addr, u32& r0, u32& r1, u32& r2, u32& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
      : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
}

${sig} {
  extern __shared__ __align__(128) unsigned char smem[];
  const u32 sbase = (u32)__cvta_generic_to_shared(smem);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int wm = warp / WN, wn = warp % WN;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int KBN = K >> 7;

  // Stage kb: BM rows of A and BN rows of B, 8 chunks of 16 B each; rows past M / N are zero-filled.
  auto load_stage = [&](int kb) {
    const u32 sA = sbase + (kb % STAGES) * STAGE_BYTES, sB = sA + BM * PITCH;
#pragma unroll
    for (int i = 0; i < BM * 8 / THREADS; i++) {
      const int e = tid + THREADS * i, row = e >> 3, ch = e & 7, gm = m0 + row;
      cp_async16(sA + row * PITCH + ch * 16, (const unsigned char*)a + (long long)min(gm, M - 1) * lda + kb * 128 + ch * 16, gm < M ? 16 : 0);
    }
#pragma unroll
    for (int i = 0; i < BN * 8 / THREADS; i++) {
      const int e = tid + THREADS * i, row = e >> 3, ch = e & 7, gn = n0 + row;
      cp_async16(sB + row * PITCH + ch * 16, (const unsigned char*)b + (long long)min(gn, N - 1) * K + kb * 128 + ch * 16, gn < N ? 16 : 0);
    }
  };

  acc_t acc[MT][NTW][4];
#pragma unroll
  for (int i = 0; i < MT * NTW * 4; i++) (&acc[0][0][0])[i] = 0;

#pragma unroll
  for (int s = 0; s < STAGES - 1; s++) {
    if (s < KBN) load_stage(s);
    asm volatile("cp.async.commit_group;" ::: "memory");
  }
  // ldmatrix lane addresses: matrix q = lane / 8 supplies row lane % 8 of its 8x16-byte block.
  const int q = lane >> 3, r8 = lane & 7;
  const u32 aOff = (wm * (MT * 16) + (q & 1) * 8 + r8) * PITCH + (q >> 1) * 16;
  const u32 bOff = BM * PITCH + (wn * (NTW * 8) + (q >> 1) * 8 + r8) * PITCH + (q & 1) * 16;

  for (int kb = 0; kb < KBN; kb++) {
    asm volatile("cp.async.wait_group %0;" :: "n"(STAGES - 2) : "memory");
    __syncthreads();  // stage kb landed for everyone; stage kb-1 is free to refill
    if (kb + STAGES - 1 < KBN) load_stage(kb + STAGES - 1);
    asm volatile("cp.async.commit_group;" ::: "memory");
#if MODE == 0
    const float sbv = load_sb(sb + (n0 >> 7) * KBN + kb);
    float sav[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int h = 0; h < 2; h++) sav[mt][h] = load_sa(sa + (long long)kb * sas + min(m0 + wm * (MT * 16) + mt * 16 + g + 8 * h, M - 1));
#endif
#if MODE == 3
#define TMP acc
#else
    float tmp[MT][NTW][4];
#pragma unroll
    for (int i = 0; i < MT * NTW * 4; i++) (&tmp[0][0][0])[i] = 0.f;
#define TMP tmp
#endif
    const u32 st = sbase + (kb % STAGES) * STAGE_BYTES;
#pragma unroll
    for (int j = 0; j < 4; j++) {  // k32 steps
      FragA fa[MT];
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        u32 r0, r1, r2, r3;
        ldsm_x4(st + aOff + mt * 16 * PITCH + 32 * j, r0, r1, r2, r3);
        fa[mt] = prep_a(r0, r1, r2, r3);
      }
#pragma unroll
      for (int np = 0; np < NTW / 2; np++) {
        u32 r0, r1, r2, r3;
        ldsm_x4(st + bOff + np * 16 * PITCH + 32 * j, r0, r1, r2, r3);
        const FragB f0 = prep_b(r0, r1), f1 = prep_b(r2, r3);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
          mma_k32(TMP[mt][2 * np], fa[mt], f0);
          mma_k32(TMP[mt][2 * np + 1], fa[mt], f1);
        }
      }
    }
#undef TMP
#if MODE == 0
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
      const float s0 = sav[mt][0] * sbv, s1 = sav[mt][1] * sbv;
#pragma unroll
      for (int nt = 0; nt < NTW; nt++) {
        acc[mt][nt][0] += tmp[mt][nt][0] * s0;
        acc[mt][nt][1] += tmp[mt][nt][1] * s0;
        acc[mt][nt][2] += tmp[mt][nt][2] * s1;
        acc[mt][nt][3] += tmp[mt][nt][3] * s1;
      }
    }
#elif MODE != 3
#pragma unroll
    for (int i = 0; i < MT * NTW * 4; i++) (&acc[0][0][0])[i] += (&tmp[0][0][0])[i];
#endif
  }
  asm volatile("cp.async.wait_group 0;" ::: "memory");

  // Epilogue straight from registers: thread holds rows (g, g+8) x columns (2t, 2t+1) of each tile.
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
      const int m = m0 + wm * (MT * 16) + mt * 16 + g + 8 * h;
      if (m >= M) continue;
#pragma unroll
      for (int nt = 0; nt < NTW; nt++) {
        const int n = n0 + wn * (NTW * 8) + nt * 8 + 2 * t;
        if (n >= N) continue;
        const float v0 = finish((float)acc[mt][nt][2 * h], sa, sb, ${op.bias ? "bias" : "nullptr"}, m, n);
        const float v1 = n + 1 < N ? finish((float)acc[mt][nt][2 * h + 1], sa, sb, ${
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
    block: [threads, 1, 1],
    sharedBytes: tiledSharedBytes(cfg),
    minArch: op.mode === "int8" ? 80 : 89,
    keyParts: { family: "gemm_mma", bm: cfg.bm, stages: cfg.stages },
  };
}
