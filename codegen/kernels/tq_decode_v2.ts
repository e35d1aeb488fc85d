/**
 * TurboQuant decode attention on tensor cores, versions 2 and 3 (one generator; `tq_decode.ts` is
 * version 1, kept selectable for comparison). Same math and contract as version 1 — one warp per KV
 * head, all G query heads of it as the N side of `mma.sync` m16n8k16, scores `K̃·q'ᵀ` from centroid
 * pairs, `Oᵀ += code·P'ᵀ` for the values — with the per-tile overheads cut:
 *
 * - version 2: every warp runs its own cp.async pipeline over its own slot (16 rows, one 16-byte chunk
 *   run per row, fixed per-lane offsets), so the loop has no CTA barrier; a row's lead-in (slot address
 *   mod 16) depends only on the row, so fragment offsets are loop-invariant; rows are an odd number of
 *   16-byte chunks apart: the fragment reads are bank-conflict-free. Version 3 ({@linkcode
 *   tqDecodeV3Kernel}, sm_90, the default) moves whole tiles with one bulk copy instead.
 * - key centroids by table: a 2-code → f16x2 table in shared memory, 32 copies so lane l reads bank l
 *   (`kpair`: 4 loads, one shift + one LOP3 each, per 8 codes; version 1's PRMT arithmetic was ~20
 *   ALU ops per 8 codes plus the 3-bit → nibble spreading, and the ALU pipe was the busiest).
 * - block-table entries come 32 pages at a time (one per lane) and are shuffled out per tile: no
 *   dependent global load in front of every tile's copies.
 * - the query is requested first and rotated while the first tiles load.
 * - value operands straight from the packed bytes: code i of a group sits at bit `bits·i`; one PRMT
 *   puts a 16-bit window of two tokens' groups into the two halves of a register and one AND makes
 *   the f16 subnormal `code·2^(p−24)` (zero exponent: exact, and no offset for the accumulators to
 *   carry — the `1024 + code` magic number used until session 2 left 1024·ΣP' in them, ~1.4% of the
 *   output's rms lost over 500 tokens) — no 3-bit → nibble spreading, one instruction per A register;
 *   the epilogue scales row by row by 2^(24−p).
 * - `ex2.approx.ftz` / `rsqrt.approx.ftz` (no denormal fix-ups around every exponential).
 * - the split-KV merge runs in the kernel: the last warp of a (sequence, KV head) to finish (an atomic
 *   counter per pair, reset by that warp) merges the S partials of all G heads at once — no second
 *   launch (`counters` param).
 *
 * Napkin math per 16-token tile per warp (D 128, G 4; SASS of the loop, static): version 2 before the
 * key table 353 (k8v4) / 570 (4bit_nc) / 625 (k3v4_nc) / 636 (3bit_nc), after it 487 / 493 / 503 for
 * the centroid presets (version 1: 441 / 652 / 724 / 785). B 16 × 8k, 4bit_nc: 65.5k warp-tiles × ~490
 * / (132 SMs × 4 schedulers) ≈ 61k issue cycles ≈ 33 µs at 1.85 GHz, at the 34 µs memory floor of the
 * 140 MB cache. Measured (H200, ncu): version 2 83–95 µs — ALU-pipe throttled, L2 at 78% for DRAM at
 * 40% (chunk over-fetch), late data; version 3 66 µs (DRAM 44%, full-barrier waits 5% of samples,
 * prologue + merge ~15%).
 *
 * @module
 */
import { renderSignature } from "../kernel_source.ts";
import type { KernelSource } from "../kernel_source.ts";
import { cFloat } from "../../dsl/turboquant/f32.ts";
import { TQ_PRELUDE, tqTag, unpackPair } from "./tq_common.ts";
import {
  centroidScoreLoop,
  fp8Helpers,
  groupStart,
  onlineSoftmaxTile,
  queryFragments,
  TQ_MMA_HELPERS,
} from "./tq_decode_parts.ts";
import { f16Encode } from "../../dsl/dtype.ts";
import { MBAR_HELPERS } from "./gemm_sm90/ptx.ts";
import { TQ_SPLIT_HELPERS, tqCheckDecodeGeometry, type TqDecodeKernelOptions } from "./tq_decode_simple.ts";
import { tqDecodeMmaProblem } from "./tq_decode.ts";
import {
  BULK_HELPERS,
  fp8ScoreLoop4,
  keyPairSource,
  keyTableFill,
  mergeSource,
  rawGroupLoader,
  TQ_DECODE2_ROW_OFF,
  TQ_V2_HELPERS,
  type TqDecodeV2Geometry,
  tqDecodeV2Geometry,
  tqDecodeV2Params,
  tqDecodeV3Geometry,
  tqDecodeV3Problem,
  valueFields,
  valueLoop,
} from "./tq_decode_v2_parts.ts";

export {
  TQ_DECODE2_ROW_OFF,
  type TqDecodeV2Geometry,
  tqDecodeV2Geometry,
  tqDecodeV3Geometry,
  tqDecodeV3Problem,
} from "./tq_decode_v2_parts.ts";

/**
 * The version-2 tensor-core decode kernel. Grid `[S, headGroups, B]` ({@linkcode tqDecodeV2Geometry}),
 * block `32·headsPerCta`, dynamic shared memory `sharedBytes`; parameters and split contract as
 * version 1 (`tqDecodeParams`, `tq_decode_simple.ts`).
 *
 * @example
 * ```ts
 * import { turboQuantLayout } from "../../dsl/turboquant/preset.ts";
 * import { tqDecodeV2Kernel } from "./tq_decode_v2.ts";
 * const ks = tqDecodeV2Kernel({ layout: turboQuantLayout("turboquant_3bit_nc", 128), inDtype: "bf16", numHeads: 32, numKvHeads: 8, blockSize: 16 });
 * console.log(ks.name, ks.block); // tq_decode_mma2_3bit_nc_d128_bf16_g4_hk8_bs16 [ 256, 1, 1 ]
 * ```
 */
export function tqDecodeV2Kernel(o: TqDecodeKernelOptions): KernelSource {
  return decodeMma(o, false);
}

/**
 * The version-3 decode kernel (sm_90): version 2 with the tile copies done by the bulk-copy engine. Per
 * 16-token tile, lanes 0–15 of warp 0 each issue one `cp.async.bulk` of the CTA's heads of a token row
 * (HG·SLOT contiguous bytes, 16-aligned) into a stage shared by the CTA's warps, completing bytes on the
 * stage's `full` mbarrier; the last warp done with a stage (a shared counter per stage) refills it with
 * the tile STAGES further on. Why: version 2's per-warp 16-byte `cp.async` chunks start wherever the
 * slot starts, so each row costs ~7.5 L2 sectors for 4.2 sectors of data — ncu on 4bit_nc B 64 × 8k:
 * L2 at 78 % of its throughput with DRAM at 40 % — plus 5 LDGSTS per lane per tile on the MIO queue
 * (mio_throttle the top stall). Rows of the CTA are contiguous: no over-fetch, one instruction per tile,
 * and the stage (16 rows × HG·SLOT, no per-warp lead-in) is smaller, so 4 stages fit beside the 32 KB key
 * table at two CTAs per SM. Tail rows past the sequence are not zero-filled: their scale and zero are
 * masked like their scores. Needs HG·SLOT ≡ 0 (mod 16) ({@linkcode tqDecodeV3Problem}).
 */
export function tqDecodeV3Kernel(o: TqDecodeKernelOptions): KernelSource {
  const problem = tqDecodeV3Problem(o);
  if (problem) throw new RangeError(problem);
  return decodeMma(o, true);
}

function decodeMma(o: TqDecodeKernelOptions, bulk: boolean): KernelSource {
  tqCheckDecodeGeometry(o);
  const problem = tqDecodeMmaProblem(o);
  if (problem) throw new RangeError(problem);
  const L = o.layout, D = L.headDim, HK = o.numKvHeads, G = o.numHeads / HK;
  const geo: TqDecodeV2Geometry & { barOffset?: number } = bulk
    ? tqDecodeV3Geometry(o)
    : tqDecodeV2Geometry(o);
  const HG = geo.headsPerCta, NT = geo.nTiles, off = L.offsets, vb = L.valueBits, kb = L.keyBits;
  const name = `tq_decode_mma${bulk ? 3 : 2}_${tqTag(L)}_${o.inDtype}_g${G}_hk${HK}_bs${o.blockSize}${
    o.signs ? "_signs" : ""
  }`;
  const params = tqDecodeV2Params(o);
  const up = unpackPair(o.inDtype);
  const toOut = o.inDtype === "bf16" ? "f32_to_bf16" : "f32_to_f16";
  const kcent = L.keyFp8 ? [] : Array.from(L.centroids!, (x) => f16Encode(x * Math.sqrt(D)));
  const TB = geo.tableBytes;
  const factor = (n: string, nacc: string) =>
    L.keyFp8
      ? "scale_log2"
      : L.normCorrection
      ? `${n} * rsq(${nacc}) * scale_log2`
      : `${n} * ${cFloat(1 / Math.sqrt(D))} * scale_log2`;
  const keyDims = L.keyFp8 ? "4 * (c + 4 * kk)" : "8 * (c + 4 * (kk >> 1)) + 4 * (kk & 1)";
  const vf = valueFields(vb);
  const rowScale = (j: number, e: number) => cFloat(2 ** (24 - vf[2 * j + e].p));
  const PREFETCH = bulk
    ? `  if (warp == 0) {
    for (int i = 0; i < STAGES - 1 && i < ntiles; ++i) load_tile(i, i);
  }
`
    : `#pragma unroll
  for (int i = 0; i < STAGES - 1; ++i) {
    if (i < ntiles) load_tile(i, i);
    cp_commit();
  }
`;
  const cpl = Math.ceil(geo.maxChunks / 2), minK = Math.floor(Math.ceil(L.slotBytesAligned / 16) / 2);

  const V2_SETUP =
    `  // ---- this warp's pipeline: stage s = 16 rows of its slot at smem + TB + (s·HG + warp)·WST (after the key table)
  const long long rowbytes = (long long)HK * SLOT;
  unsigned char* wsm = smem + TB + warp * WST;
  const int lr = lane >> 1, lj = lane & 1;    // 2 lanes per row, alternate 16-byte chunks
  const int lrow = lr * (int)rowbytes + h * SLOT;   // < 2^31: 16 rows of HK slots
  const int lmis = lrow & 15, lnch = (lmis + SLOT + 15) >> 4;
  const unsigned char* lsrc = cache + (lrow - lmis + 16 * lj);
  const u32 ldst = smem_u32(wsm) + lr * RPW + 16 * lj;
  const int lt1 = t1 - t0 - lr;               // row lr of tile i is a token when 16·i < lt1
  // block-table entries of 32 pages at a time, one per lane
  const int* bt = block_tables + (long long)b * bt_stride;
  const int npages = (L + BS - 1) / BS;
  int pbase = (u32)t0 / BS;
  int ptab = pbase + lane < npages ? __ldg(bt + pbase + lane) : 0;
  auto load_tile = [&](int i, int s) {
    const int tb = t0 + 16 * i, pi = (u32)tb / BS;
    if (pi >= pbase + 32) {                   // warp-uniform: next batch of pages
      pbase += 32;
      ptab = pbase + lane < npages ? __ldg(bt + pbase + lane) : 0;
    }
    const int page = __shfl_sync(FULL, ptab, pi - pbase);
    const unsigned char* from = lsrc + (long long)page * (BS * rowbytes)${
      o.blockSize === 16 ? "" : " + (long long)((u32)tb % BS) * rowbytes"
    };
    const u32 to = ldst + s * (HG * WST);
    const int bytes = 16 * i < lt1 ? 16 : 0;
#pragma unroll
    for (int k = 0; k < ${cpl}; ++k)        // the first ${minK} chunk pairs exist in every row
      if (k < ${minK} || lj + 2 * k < lnch) cp_async16(to + 32 * k, from + 32 * k, bytes);
  };
`;
  const V3_SETUP =
    `  // ---- the CTA's pipeline: stage s = 16 token rows × the CTA's HG slots at smem + TB + s·STG, row pitch RPW
  const long long rowbytes = (long long)HK * SLOT;
  unsigned char* wsm = smem + TB;
  // row (lane & 15) of a tile: the CTA's HG slots of it (lanes 0-15 copy one row each)
  const unsigned char* lsrc = cache + (long long)(lane & 15) * rowbytes + hgrp * (HG * SLOT);
  const u32 ldst = smem_u32(wsm) + (lane & 15) * RPW;
  // block-table entries of 32 pages from pbase, one per lane (any warp may issue a tile's copies)
  const int* bt = block_tables + (long long)b * bt_stride;
  const int npages = (L + BS - 1) / BS;
  int pbase = (u32)t0 / BS;
  int ptab = pbase + lane < npages ? __ldg(bt + pbase + lane) : 0;
  auto load_tile = [&](int i, int s) {      // one warp, all lanes; i grows from call to call
    const int tb = t0 + 16 * i, pi = (u32)tb / BS;
    if (pi >= pbase + 32) {                   // warp-uniform: a new window starting at this page
      pbase = pi;
      ptab = pbase + lane < npages ? __ldg(bt + pbase + lane) : 0;
    }
    const int page = __shfl_sync(FULL, ptab, pi - pbase);
    const unsigned char* from = lsrc + (long long)page * (BS * rowbytes)${
      o.blockSize === 16 ? "" : " + (long long)((u32)tb % BS) * rowbytes"
    };
${
      HG === HK
        ? `    if (lane == 0) {                          // the tile: 16 contiguous rows of the page
      mbar_expect_tx(FULLB(s), 16 * HG * SLOT);
      bulk_load(ldst + s * STG, from, 16 * HG * SLOT, FULLB(s));
    }`
        : `    if (lane == 0) mbar_expect_tx(FULLB(s), 16 * HG * SLOT);
    __syncwarp();
    if (lane < 16) bulk_load(ldst + s * STG, from, HG * SLOT, FULLB(s));`
    }
  };
`;
  const source = `${TQ_PRELUDE}${TQ_SPLIT_HELPERS}
#define D ${D}
#define NK ${D / 16}
#define NGV ${D / 64}
#define G ${G}
#define NT ${NT}
#define HG ${HG}
#define HK ${HK}
#define BS ${o.blockSize}
#define SLOT ${L.slotBytesAligned}
#define TB ${TB}
#define RPW ${geo.rowPitch}
#define WST ${geo.warpStage}${
    bulk ? `\n#define STG ${geo.warpStage * HG}\n#define BAROFF ${geo.barOffset}` : ""
  }
#define STAGES ${geo.stages}
#define QW ${Math.ceil((G * D) / 256)}
#define NINF (-__int_as_float(0x7f800000))

${TQ_MMA_HELPERS}${TQ_V2_HELPERS}${bulk ? MBAR_HELPERS + BULK_HELPERS : ""}${
    L.keyFp8 ? fp8Helpers() : rawGroupLoader("key_group", kb)
  }
${vb === 4 ? "" : rawGroupLoader("val_group", vb)}
${L.keyFp8 ? "" : keyPairSource(kb, kcent)}

${
    renderSignature({ entry: name, params }, { launchBounds: HG === 8 && D <= 128 ? [256, 2] : [HG * 32, 1] })
  } {
  extern __shared__ __align__(16) unsigned char smem[];
  const int split = blockIdx.x, hgrp = blockIdx.y, b = blockIdx.z;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, c = lane & 3;      // mma row group, thread in group
  const int S = num_splits, Hq = HK * G;
  const int h = hgrp * HG + warp;             // this warp's KV head
  const int L = seq_lens[b];
  // the query rows, requested first: their DRAM round trip overlaps the table fill and the first copies
  uint4 qw[QW];
#pragma unroll
  for (int j = 0; j < QW; ++j) {
    const int e = lane * 8 + 256 * j;
    if (e < G * D) qw[j] = *(const uint4*)((const u16*)q + ((long long)b * Hq + h * G) * D + e);
  }
${
    TB
      ? `  // ---- the key pair table (${TB} bytes at the front of shared memory), once per CTA\n  ${
        keyTableFill(kb)
      }\n`
      : ""
  }${
    bulk
      ? `  // ---- stage barriers full[s] (1 arrival + the bytes), per-stage counters of the warps done with it, a
  // watchdog flag
  const u32 bar0 = smem_u32(smem + BAROFF);
  int* const done = (int*)(smem + BAROFF + 8 * STAGES);
#define FULLB(s) (bar0 + 8 * (s))
#define STUCK (bar0 + 12 * STAGES)
  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(FULLB(s), 1);
      done[s] = 0;
    }
    *(volatile u32*)(smem + BAROFF + 12 * STAGES) = 0u;
    mbar_init_fence();
  }
`
      : ""
  }${TB || bulk ? "  __syncthreads();\n" : ""}${TB ? "  const u32 lane4 = lane * 4;\n" : ""}  int t0, t1;
  split_range(L, S, split, t0, t1);
  const int ntiles = (t1 - t0 + 15) >> 4;
  if (ntiles == 0) {                          // empty split: zeros, lse = −inf (still counted for the merge)
    for (int e = lane; e < G * D; e += 32) {
      const long long row = (long long)b * Hq + h * G + e / D;
      if (S == 1) out[row * D + e % D] = 0;
      else part_o[(row * S + split) * D + e % D] = 0.f;
    }
    if (S > 1 && lane < G) part_lse[((long long)b * Hq + h * G + lane) * S + split] = NINF;
  } else {
${bulk ? V3_SETUP : V2_SETUP}${geo.scratchInStage ? PREFETCH : ""}
  // ---- query → scratch (${
    geo.scratchInStage ? "the warp's last stage, not loaded yet" : "the stage memory"
  }), ${L.rotate ? "rotated, " : ""}→ B fragments
  u32 bq[NT][NK][2];
  {
    float* qs = (float*)(${
    bulk
      ? (geo.scratchInStage
        ? "wsm + (STAGES - 1) * STG + warp * (G * D * 4)"
        : "smem + BAROFF - HG * (G * D * 4) + warp * (G * D * 4)")
      : geo.scratchInStage
      ? "wsm + (STAGES - 1) * (HG * WST)"
      : "smem + TB + warp * (G * D * 4)"
  });
#pragma unroll
    for (int j = 0; j < QW; ++j) {
      const int e = lane * 8 + 256 * j;
      if (e >= G * D) break;
      const u32 ws[4] = {qw[j].x, qw[j].y, qw[j].z, qw[j].w};
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        float x = (i & 1) ? ${up.hi("ws[i >> 1]")} : ${up.lo("ws[i >> 1]")};
        ${o.signs ? "const int d = (e + i) % D; if ((signmask[d >> 5] >> (d & 31)) & 1u) x = -x;" : ""}
        qs[e + i] = x;
      }
    }
    __syncwarp();
    ${queryFragments(L.rotate, D, keyDims)}
    ${
    bulk
      ? "fence_async_shared();  // the scratch becomes a bulk-copy target\n    __syncthreads();\n    if (warp == 0 && STAGES - 1 < ntiles) load_tile(STAGES - 1, STAGES - 1);"
      : geo.scratchInStage
      ? "__syncwarp();"
      : "__syncthreads();  // other warps' scratch overlaps this warp's stages"
  }
  }
${geo.scratchInStage ? "" : PREFETCH}
  // where row r of this warp's slot sits in a stage (loop-invariant: tiles start at multiples of 16)
  auto row_off = [&](int r) { return (int)(${bulk ? "r * RPW + warp * SLOT" : TQ_DECODE2_ROW_OFF}); };
  const int o_k0 = row_off(g), o_k1 = row_off(g + 8);
${
    L.keyFp8
      ? ""
      : `  ${groupStart("q0", "o_k0", `${kb} * c`, kb)}\n  ${groupStart("q1", "o_k1", `${kb} * c`, kb)}`
  }
  ${groupStart("va", `row_off(2 * c) + ${off.valueCodes}`, `${vb} * g`, vb)}
  ${groupStart("vb", `row_off(2 * c + 1) + ${off.valueCodes}`, `${vb} * g`, vb)}
  ${groupStart("vc", `row_off(2 * c + 8) + ${off.valueCodes}`, `${vb} * g`, vb)}
  ${groupStart("vd", `row_off(2 * c + 9) + ${off.valueCodes}`, `${vb} * g`, vb)}

  float oacc[NT][NK][4], mrun[NT][2], lrun[NT][2], plo[NT][2];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int mt = 0; mt < NK; ++mt) oacc[nt][mt][0] = oacc[nt][mt][1] = oacc[nt][mt][2] = oacc[nt][mt][3] = 0.f;
    mrun[nt][0] = mrun[nt][1] = NINF;
    lrun[nt][0] = lrun[nt][1] = plo[nt][0] = plo[nt][1] = 0.f;
  }

  int sc = 0;                                 // stage of tile it
${bulk ? "  u32 ph = 0;                                 // parity of the stage's fill\n" : ""}#pragma unroll 1
  for (int it = 0; it < ntiles; ++it) {
${
    bulk
      ? `    mbar_wait(FULLB(sc), ph, STUCK);
    const unsigned char* st = wsm + sc * STG;`
      : `    cp_wait<STAGES - 2>();
    __syncwarp();
    {
      const int nx = it + STAGES - 1;
      if (nx < ntiles) load_tile(nx, sc == 0 ? STAGES - 1 : sc - 1);
      cp_commit();
    }
    const unsigned char* st = wsm + sc * (HG * WST);
    sc = sc == STAGES - 1 ? 0 : sc + 1;`
  }
    const int tb = t0 + 16 * it;
    const unsigned char* k0 = st + o_k0;
    const unsigned char* k1 = st + o_k1;

    // ---- scores S[token][head] = K̃·q'ᵀ (+ ‖C̃‖² per token for norm correction)
    float sacc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) sacc[nt][0] = sacc[nt][1] = sacc[nt][2] = sacc[nt][3] = 0.f;
${L.normCorrection ? "    float nacc[4] = {0.f, 0.f, 0.f, 0.f};" : ""}
${L.keyFp8 ? fp8ScoreLoop4() : centroidScoreLoop(L.normCorrection, kb, "kpair")}

    // ---- online softmax (log2 domain) per head column; P' = P·s_token → f16 → movmatrix → B of Vᵀ·P'ᵀ
${onlineSoftmaxTile(factor, off, "ex2", bulk)}
    // ---- Oᵀ[d][head] += (code·2^(p−24))[d][token] · P'ᵀ[token][head]: codes as f16 subnormals
    {
      ${valueLoop(vb)}
    }
${
    bulk
      ? `    // the last warp done with the stage refills it with tile it + STAGES: the earliest moment, and no warp
    // ever waits for another (a fixed producer refilling after its own tile left ~23% of the warp samples
    // of B 16 × 8k waiting on full barriers in ncu)
    __syncwarp();
    int last = 0;
    if (lane == 0) {
      __threadfence_block();                  // this warp's reads of the stage come first
      last = atomicAdd(done + sc, 1) == HG - 1;
      if (last) done[sc] = 0;
    }
    if (__shfl_sync(FULL, last, 0) && it + STAGES < ntiles) {
      fence_async_shared();
      load_tile(it + STAGES, sc);
    }
    if (++sc == STAGES) {
      sc = 0;
      ph ^= 1;
    }`
      : ""
  }
  }
${bulk ? "" : "  cp_wait<0>();"}

  // ---- epilogue: reduce l and Σ P·min over the 8 row groups, undo the 2^(p−24) of each row
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float l = lrun[nt][e], pz = plo[nt][e];
#pragma unroll
      for (int o = 4; o < 32; o <<= 1) {
        l += __shfl_xor_sync(FULL, l, o);
        pz += __shfl_xor_sync(FULL, pz, o);
      }
      const int col = nt * 8 + 2 * c + e;
      if (col >= G) continue;
      const long long row = (long long)b * Hq + h * G + col;
      const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
      for (int i2 = 0; i2 < NGV; ++i2) {
        float v[8];
${
    [0, 1, 2, 3].map((j) =>
      `        v[${2 * j}] = (oacc[nt][4 * i2 + ${j}][e] * ${rowScale(j, 0)} + pz) * inv;
        v[${2 * j + 1}] = (oacc[nt][4 * i2 + ${j}][2 + e] * ${rowScale(j, 1)} + pz) * inv;`
    ).join("\n")
  }
        const int d0 = 8 * (g + 8 * i2);
        if (S == 1) {
          uint4 w;
          w.x = (u32)${toOut}(v[0]) | ((u32)${toOut}(v[1]) << 16);
          w.y = (u32)${toOut}(v[2]) | ((u32)${toOut}(v[3]) << 16);
          w.z = (u32)${toOut}(v[4]) | ((u32)${toOut}(v[5]) << 16);
          w.w = (u32)${toOut}(v[6]) | ((u32)${toOut}(v[7]) << 16);
          *(uint4*)(out + row * D + d0) = w;
        } else {
          float4* po = (float4*)(part_o + (row * S + split) * D + d0);
          po[0] = make_float4(v[0], v[1], v[2], v[3]);
          po[1] = make_float4(v[4], v[5], v[6], v[7]);
        }
      }
      if (S > 1 && g == 0) part_lse[row * S + split] = l > 0.f ? mrun[nt][e] + __log2f(l) : NINF;
    }
  }
  }
  if (S == 1) return;
  // ---- split-KV merge by the last warp to finish this (sequence, KV head): no second kernel
  __threadfence();
  __syncwarp();
  int last = 0;
  if (lane == 0) last = atomicAdd(counters + (long long)b * HK + h, 1) == S - 1;
  if (!__shfl_sync(FULL, last, 0)) return;
  __threadfence();
  if (lane == 0) counters[(long long)b * HK + h] = 0;   // ready for the next launch (graph replays)
${mergeSource(D, toOut, G)}
}
`;
  return {
    name,
    source,
    entry: name,
    params,
    block: [HG * 32, 1, 1],
    sharedBytes: geo.sharedBytes,
    minArch: bulk ? 90 : 80,
    keyParts: {
      family: bulk ? "turboquant_decode_mma3" : "turboquant_decode_mma2",
      preset: L.preset.name,
      headDim: D,
      G,
      Hk: HK,
      blockSize: o.blockSize,
    },
  };
}
