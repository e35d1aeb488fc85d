/**
 * The pieces every step of the sm_90a ladder is assembled from: parameters, constants, the producer's
 * TMA issue for one k-block, the math warpgroups' k-block (wait → 4 × wgmma k32 → release → promote), the
 * two epilogues and the persistent tile order. Each piece is C text over a fixed set of variable names,
 * documented at the top of each function, so the step files read like the kernels they generate.
 *
 * Fragment map of `wgmma m64nNk32 … .f32` (PTX ISA, "wgmma register fragment D"): warp w of the
 * warpgroup owns rows 16w..16w+15; lane l (g = l/4, t = l%4) holds in acc[4i + {0,1,2,3}] the elements
 * (row 16w+g, cols 8i+2t, 8i+2t+1) and (row 16w+g+8, the same cols). So each thread needs 2 A-scales per
 * k-block (rows r0, r0+8) and 1 B-scale per 8-column chunk.
 *
 * @module
 */
import { TENSORMAP_DECL } from "../../kernel_source.ts";
import type { ParamSpec } from "../../kernel_source.ts";
import {
  SM90_BLOCK_K,
  sm90Cluster,
  type Sm90Config,
  sm90MathThreads,
  sm90Persistent,
  sm90SharedOperand,
  sm90SmemLayout,
  sm90StoreBox,
  sm90Threads,
} from "./config.ts";
import { SM90_HELPERS, wgmmaFunction, wgmmaIssue } from "./ptx.ts";

/** The kernel's parameters, in order. Names are what `ops/gemm_sm90.ts` binds arguments by. */
export function sm90Params(c: Sm90Config): ParamSpec[] {
  const p: ParamSpec[] = [
    { name: "tmA", kind: "tensormap" },
    { name: "tmB", kind: "tensormap" },
  ];
  if (c.mode === "block") p.push({ name: "tmSA", kind: "tensormap" });
  if (c.epilogue === "tma") p.push({ name: "tmD", kind: "tensormap" });
  else p.push({ name: "out", kind: "ptr", dtype: "bf16" });
  if (c.mode !== "block") p.push({ name: "sa", kind: "ptr", dtype: "f32", readonly: true });
  p.push({ name: "sb", kind: "ptr", dtype: "f32", readonly: true });
  p.push({ name: "M", kind: "i32" }, { name: "N", kind: "i32" }, { name: "K", kind: "i32" });
  if (sm90Persistent(c)) p.push({ name: "group", kind: "i32" });
  return p;
}

/** Declarations, helpers and compile-time constants (everything before the kernel signature). */
export function prelude(c: Sm90Config): string {
  const L = sm90SmemLayout(c);
  const mathThreads = sm90MathThreads(c);
  const box = sm90StoreBox(c.blockN);
  return `${TENSORMAP_DECL}
${SM90_HELPERS}
${wgmmaFunction(c.blockN)}

// enumerators, not constexpr variables: unused ones raise no warning in the steps that skip them
enum : int { BM = ${c.blockM}, BN = ${c.blockN}, BK = ${SM90_BLOCK_K}, STORE_COLS = ${box.cols} };
enum : u32 {
  STAGES = ${c.stages}, MATH_THREADS = ${mathThreads}, CLUSTER = ${sm90Cluster(c)},
  A_OFF = ${L.a}, A_STAGE = ${L.aStage}, B_OFF = ${L.b}, B_STAGE = ${L.bStage},
  D_OFF = ${L.d}, SA_OFF = ${L.sa}, SA_STAGE = ${L.saStage}, BAR_OFF = ${L.bars},
  TX_BYTES = ${L.txBytes}, STORE_SWIZZLE = ${box.swizzleBytes}
};
`;
}

/** The signature's launch bounds: one CTA per SM, all threads of the config. */
export function launchBounds(c: Sm90Config): [number, number] {
  return [sm90Threads(c), 1];
}

/**
 * The register split of the warp-specialized steps: with 384 threads ptxas caps every thread at 168
 * registers; the producer gives all but 40 back and the math warpgroups take 232 each (128·40 + 256·232
 * = 64 512 ≤ 65 536). With 256 threads (one math warpgroup) every thread already has up to 255, so
 * nothing is moved (an .inc below the launch allocation would be undefined).
 */
export function regSplit(c: Sm90Config, role: "dec" | "inc"): string {
  if (sm90Threads(c) !== 384) return "";
  return role === "dec" ? "setmaxnreg_dec40();" : "setmaxnreg_inc232();";
}

/**
 * Kernel-entry code: aligned smem base, barrier addresses, barrier init by thread 0, tensor-map prefetch.
 * Defines `sm` (generic pointer to the 1024-aligned base), `base` (its shared address), `FULL(s)`,
 * `EMPTY(s)`, `STUCK`. Ends with a block-wide (or cluster-wide) barrier so every barrier is initialised before use.
 */
export function entry(c: Sm90Config): string {
  const emptyCount = (sm90MathThreads(c) / 32) * sm90Cluster(c); // one arrival per math warp, of every CTA sharing the stage
  const prefetch = [
    "tmA",
    "tmB",
    ...(c.mode === "block" ? ["tmSA"] : []),
    ...(c.epilogue === "tma" ? ["tmD"] : []),
  ]
    .map((m) => `tma_prefetch(&${m});`).join(" ");
  return `  extern __shared__ __align__(1024) unsigned char smem_raw[];
  unsigned char* sm = smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u);
  const u32 base = smem_addr(sm);
#define FULL(s) (base + BAR_OFF + 8u * (s))
#define EMPTY(s) (base + BAR_OFF + 8u * (STAGES + (s)))
#define STUCK (base + BAR_OFF + 16u * STAGES) // the watchdog's flag (see mbar_wait)
  const u32 warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int nK = K / BK;
  if (threadIdx.x == 0) {
    ${prefetch}
    for (u32 s = 0; s < STAGES; ++s) {
      mbar_init(FULL(s), 1);
      mbar_init(EMPTY(s), ${emptyCount});
    }
    *(volatile u32*)(sm + BAR_OFF + 16u * STAGES) = 0u;
    mbar_init_fence();
  }
  ${sm90Cluster(c) > 1 ? "cluster_sync();" : "__syncthreads();"}
`;
}

/**
 * The persistent producer (steps c–g): one thread walks the CTA's tiles (`tileStart`, `tileStep` from
 * {@linkcode persistentWalk}) and issues every k-block into the ring, slot `it` counted across tiles.
 */
export function persistentProducer(c: Sm90Config): string {
  return `if (threadIdx.x == MATH_THREADS) {
      u32 it = 0;
      for (int t = tileStart; t < numTiles; t += tileStep) {
        int mb, nb;
        TILE_OF(t, mb, nb);
        const int m0 = mb * BM, n0 = nb * BN;
        for (int kb = 0; kb < nK; ++kb, ++it) {
          ${produceKBlock(c, true)}
        }
      }
    }`;
}

/**
 * Producer: issue the loads of k-block `kb` of tile (m0, n0) into ring slot `it` (stage it % STAGES),
 * after the slot's previous contents were released. Variables: it, kb, m0, n0. In step d the B tile is
 * split in two halves, each CTA loads one and multicasts it to both.
 */
export function produceKBlock(c: Sm90Config, waitEmpty = true): string {
  const shared = sm90SharedOperand(c);
  const bLoad = shared === "b"
    ? `tma_load_2d_multicast(base + B_OFF + s * B_STAGE + crank * (BN / 2) * BK, &tmB, kb * BK, nB, FULL(s), (unsigned short)3);`
    : `tma_load_2d(base + B_OFF + s * B_STAGE, &tmB, kb * BK, ${shared === "a" ? "nB" : "n0"}, FULL(s));`;
  const aLoad = shared === "a"
    ? `tma_load_2d_multicast(base + A_OFF + s * A_STAGE + crank * (BM / 2) * BK, &tmA, kb * BK, mH, FULL(s), (unsigned short)3);`
    : `tma_load_2d(base + A_OFF + s * A_STAGE, &tmA, kb * BK, mA, FULL(s));`;
  // Step d can meet boxes wholly outside the tensor (the dummy partner of an odd last M tile, the upper
  // half of a last N tile narrower than BN/2): point those loads at in-bounds rows instead — their smem
  // rows only feed outputs that are never stored — so no TMA box ever lies entirely out of bounds.
  // Step g's N pairs likewise: the dummy partner of an odd last N tile loads B rows from inside the
  // tensor, and the half of A a CTA multicasts, when wholly past M, is read from row 0.
  const coords = shared === "b"
    ? `const int mA = m0 < M ? m0 : 0;
        const int nB = n0 + (int)crank * (BN / 2) < N ? n0 + (int)crank * (BN / 2) : n0;`
    : shared === "a"
    ? `const int mA = m0;
        const int mH = m0 + (int)crank * (BM / 2) < M ? m0 + (int)crank * (BM / 2) : 0;
        const int nB = n0 < N ? n0 : 0;`
    : "const int mA = m0;";
  return `{
        const u32 s = it % STAGES, ph = (it / STAGES) & 1u;
        ${coords}
        ${waitEmpty ? "mbar_wait(EMPTY(s), ph ^ 1u, STUCK);" : "(void)ph;"}
        mbar_expect_tx(FULL(s), TX_BYTES);
        ${aLoad}
        ${bLoad}
        ${c.mode === "block" ? "tma_load_2d(base + SA_OFF + s * SA_STAGE, &tmSA, mA, kb, FULL(s));" : ""}
      }`;
}

/**
 * Math-thread declarations for one tile: accumulators and, in block mode, the tile's B-scale pointers.
 * Needs: wg (math warpgroup index), warp, lane, m0, n0, N, nK. Defines r0 (fragment row in the tile),
 * acc[BN/2] (wgmma temp), fin[BN/2] (promoted fp32), and the B-scale split.
 */
export function mathTileSetup(c: Sm90Config): string {
  // a dummy N tile (step g's N pairs: n0 ≥ N) reads the last scale row; it stores nothing
  const nS = sm90SharedOperand(c) === "a" ? "min(n0, N - 1)" : "n0";
  const sbSetup = c.mode === "block"
    ? (128 % c.blockN === 0
      ? `const float* sbLo = sb + (size_t)(${nS} / 128) * nK; // the tile lies inside one 128-column scale block`
      : `const int nb0 = ${nS} / 128, nbHi = min(nb0 + 1, (N - 1) / 128);
      const float* sbLo = sb + (size_t)nb0 * nK;
      const float* sbHi = sb + (size_t)nbHi * nK;
      const int split = 128 - n0 % 128; // tile columns [0, split) use scale block nb0, the rest nb0 + 1`)
    : "";
  return `float fin[BN / 2];
      #pragma unroll
      for (int j = 0; j < BN / 2; ++j) fin[j] = 0.f;
      ${sbSetup}`;
}

/**
 * One k-block for a math warpgroup: wait for the stage, 4 × wgmma k32 into acc (the first overwrites),
 * wait for them, release the stage (one arrival per warp; to both CTAs in step d), then promote:
 * fin += (sa·sb)·acc in block mode, fin += acc otherwise (the scales are applied in the epilogue).
 * Variables: it, kb, wg, r0, lane, acc, fin (+ sbLo, sbHi, split in block mode).
 */
/**
 * One k-block's wgmma group of a math warpgroup into accumulator array `acc`: shared-memory descriptors
 * of stage `s`, register fences around the group, BK/32 async m64nNk32 wgmmas, one commit. The caller
 * waits for it (wgmma_wait) where its schedule wants to. `rows`: the first A row of the group's 64 in the
 * tile. Shared by steps c–g.
 */
export function wgmmaGroup(c: Sm90Config, acc: string, rows = "wg * 64u"): string {
  return `const u64 da = desc_sw128(base + A_OFF + s * A_STAGE + (${rows}) * BK);
        const u64 db = desc_sw128(base + B_OFF + s * B_STAGE);
        ${wgmmaIssue(c.blockN, acc, "BN / 2", "BK / 32")}`;
}

export function mathKBlock(c: Sm90Config): string {
  const block = c.mode === "block";
  const twoBlocks = block && 128 % c.blockN !== 0;
  const release = sm90Cluster(c) > 1
    ? "if (lane == 0) { mbar_arrive_cluster(EMPTY(s), 0); mbar_arrive_cluster(EMPTY(s), 1); }"
    : "if (lane == 0) mbar_arrive(EMPTY(s));";
  const promote = block
    ? `const float s00 = a0 * bLo, s10 = a1 * bLo;
        ${twoBlocks ? "const float s01 = a0 * bHi, s11 = a1 * bHi;" : ""}
        #pragma unroll
        for (int i = 0; i < BN / 8; ++i) {
          ${twoBlocks ? "const bool lo = 8 * i < split;" : ""}
          const float sr0 = ${twoBlocks ? "lo ? s00 : s01" : "s00"}, sr1 = ${
      twoBlocks ? "lo ? s10 : s11" : "s10"
    };
          fin[4 * i + 0] += sr0 * acc[4 * i + 0];
          fin[4 * i + 1] += sr0 * acc[4 * i + 1];
          fin[4 * i + 2] += sr1 * acc[4 * i + 2];
          fin[4 * i + 3] += sr1 * acc[4 * i + 3];
        }`
    : `#pragma unroll
        for (int j = 0; j < BN / 2; ++j) fin[j] += acc[j];`;
  return `{
        const u32 s = it % STAGES, ph = (it / STAGES) & 1u;
        ${block ? `const float bLo = __ldg(sbLo + kb)${twoBlocks ? ", bHi = __ldg(sbHi + kb)" : ""};` : ""}
        mbar_wait(FULL(s), ph, STUCK);
        ${
    block
      ? `const float* sas = (const float*)(sm + SA_OFF + s * SA_STAGE);
        const float a0 = sas[r0], a1 = sas[r0 + 8];`
      : ""
  }
        ${wgmmaGroup(c, "acc")}
        wgmma_wait0();
        ${release}
        ${promote}
      }`;
}

/**
 * If the CTA's mbarrier watchdog fired (see `mbar_wait` in ptx.ts) the tile's values are meaningless:
 * store NaN (bf16 0x7FFF) so a test can tell a protocol hang from a numerical error. One shared load per tile.
 */
export function watchdogPoison(): string {
  return `{
        u32 stuck;
        asm volatile("ld.volatile.shared.u32 %0, [%1];" : "=r"(stuck) : "r"(STUCK) : "memory");
        if (stuck) {
          #pragma unroll
          for (int j = 0; j < BN / 2; ++j) fin[j] = __int_as_float(0x7fffffff);
        }
      }`;
}

/**
 * Epilogue scaling for the non-block modes: tensor → fin *= sa[0]·sb[0]; channel → fin *= sa[row]·sb[col].
 * Variables: m0, n0, r0, lane, M, N, fin, sa, sb.
 */
export function epilogueScale(c: Sm90Config): string {
  if (c.mode === "tensor") {
    return `{
        const float st = __ldg(sa) * __ldg(sb);
        #pragma unroll
        for (int j = 0; j < BN / 2; ++j) fin[j] *= st;
      }`;
  }
  if (c.mode === "channel") {
    return `{
        const int ra = m0 + (int)r0, rb = ra + 8;
        const float sa0 = ra < M ? __ldg(sa + ra) : 0.f, sa1 = rb < M ? __ldg(sa + rb) : 0.f;
        #pragma unroll
        for (int i = 0; i < BN / 8; ++i) {
          const int col = n0 + 8 * i + 2 * (int)(lane & 3);
          const float b0 = col < N ? __ldg(sb + col) : 0.f, b1 = col + 1 < N ? __ldg(sb + col + 1) : 0.f;
          fin[4 * i + 0] *= sa0 * b0;
          fin[4 * i + 1] *= sa0 * b1;
          fin[4 * i + 2] *= sa1 * b0;
          fin[4 * i + 3] *= sa1 * b1;
        }
      }`;
  }
  return "";
}

/**
 * Direct epilogue: bf16x2 stores from registers, masked to rows < M and columns < N (scalar stores when
 * N is odd, where a pair would be misaligned). Variables: m0, n0, r0, lane, M, N, fin, out.
 */
export function directEpilogue(): string {
  return `{
        #pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int row = m0 + (int)r0 + 8 * h;
          if (row < M) {
            unsigned short* orow = out + (size_t)row * N;
            #pragma unroll
            for (int i = 0; i < BN / 8; ++i) {
              const int col = n0 + 8 * i + 2 * (int)(lane & 3);
              const u32 v = pack_bf16x2(fin[4 * i + 2 * h], fin[4 * i + 2 * h + 1]);
              if ((N & 1) == 0) {
                if (col < N) *(u32*)(orow + col) = v;
              } else {
                if (col < N) orow[col] = (unsigned short)(v & 0xFFFFu);
                if (col + 1 < N) orow[col + 1] = (unsigned short)(v >> 16);
              }
            }
          }
        }
      }`;
}

/**
 * TMA-store epilogue over the math threads (named barrier 1): wait until the previous tile's store has
 * read the smem tile, stmatrix the bf16 tile into swizzled boxes of STORE_COLS columns, fence the async
 * proxy, then thread 0 stores every box and commits (its completion is awaited one tile later, so the
 * store overlaps the next tile's mainloop). Variables: m0, n0, wg, warp, lane, fin, base, tmD.
 */
export function tmaEpilogue(): string {
  return `{
        if (threadIdx.x == 0) tma_store_wait_read();
        named_bar_sync(1, MATH_THREADS);
        constexpr u32 SW = STORE_SWIZZLE, SWMASK = SW / 16 - 1;
        const u32 mat = lane >> 3;
        const u32 row = wg * 64u + (warp & 3u) * 16u + (lane & 7u) + ((mat & 1u) << 3);
        #pragma unroll
        for (int ip = 0; ip < BN / 16; ++ip) {
          const u32 col = (u32)(2 * ip + (int)(mat >> 1)) * 8u;
          const u32 box = col / STORE_COLS, chunk = (col % STORE_COLS) / 8u;
          const u32 addr = base + D_OFF + box * (u32)BM * SW + row * SW + ((chunk ^ ((row * SW >> 7) & SWMASK)) << 4);
          stmatrix_x4(addr, pack_bf16x2(fin[8 * ip + 0], fin[8 * ip + 1]), pack_bf16x2(fin[8 * ip + 2], fin[8 * ip + 3]),
                      pack_bf16x2(fin[8 * ip + 4], fin[8 * ip + 5]), pack_bf16x2(fin[8 * ip + 6], fin[8 * ip + 7]));
        }
        fence_async_shared();
        named_bar_sync(1, MATH_THREADS);
        if (threadIdx.x == 0) {
          #pragma unroll
          for (int b = 0; b < BN / STORE_COLS; ++b) {
            // boxes wholly past N or M (ragged last tiles, step d's dummy tiles) are not issued at all
            if (n0 + b * STORE_COLS < N && m0 < M) tma_store_2d(&tmD, n0 + b * STORE_COLS, m0, base + D_OFF + (u32)b * BM * SW);
          }
          tma_store_commit();
        }
      }`;
}

/**
 * The persistent tile walk (steps c–f), shared by producer and math threads so both see the same sequence:
 * defines numM, numN, numTiles, tileStart, tileStep (+ pairsM, crank with clusters) and `TILE_OF(t, mb, nb)`.
 * With 2-CTA clusters the walk is over M pairs: both CTAs of a cluster take the same pair index and sit on
 * M tiles 2·mp and 2·mp + 1 of the same N tile (steps d/f), or over N pairs: N tiles 2·np and 2·np + 1 of
 * the same M tile (step g with multicast; `group` then counts pairs).
 */
export function persistentWalk(c: Sm90Config): string {
  if (sm90SharedOperand(c) === "a") {
    return `const int numM = (M + BM - 1) / BM, numN = (N + BN - 1) / BN, pairsN = (numN + 1) / 2;
  const int numTiles = numM * pairsN, tileStart = blockIdx.x / 2, tileStep = gridDim.x / 2;
  const u32 crank = cluster_rank();
#define TILE_OF(t, mb, nb) { int np_; tile_coords(t, numM, pairsN, group, mb, np_); nb = 2 * np_ + (int)crank; }`;
  }
  return sm90Cluster(c) > 1
    ? `const int numM = (M + BM - 1) / BM, numN = (N + BN - 1) / BN, pairsM = (numM + 1) / 2;
  const int numTiles = pairsM * numN, tileStart = blockIdx.x / 2, tileStep = gridDim.x / 2;
  const u32 crank = cluster_rank();
#define TILE_OF(t, mb, nb) { int mp_; tile_coords(t, pairsM, numN, group, mp_, nb); mb = 2 * mp_ + (int)crank; }`
    : `const int numM = (M + BM - 1) / BM, numN = (N + BN - 1) / BN;
  const int numTiles = numM * numN, tileStart = blockIdx.x, tileStep = gridDim.x;
#define TILE_OF(t, mb, nb) tile_coords(t, numM, numN, group, mb, nb)`;
}

/** Persistent tile order: groups of `group` consecutive N-tiles, M walked inside a group, so a group's
 * B tiles stay in L2 while A streams. Tile t → (mb, nb). */
export const TILE_ORDER = `
__device__ __forceinline__ void tile_coords(int t, int numM, int numN, int group, int& mb, int& nb) {
  const int per = group * numM;
  const int g = t / per, first = g * group;
  const int w = min(group, numN - first);
  const int local = t - g * per;
  mb = local / w;
  nb = first + local % w;
}
`;
