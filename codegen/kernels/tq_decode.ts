/**
 * TurboQuant decode attention on tensor cores (`mma.sync` m16n8k16, f16 in, f32 accumulate), sm_80+.
 *
 * One CTA per (KV split, group of HG ≤ 8 KV heads, sequence), one warp per KV head, all G query heads
 * of that KV head in the warp (GQA: every cache byte is read once). The slots of 16 consecutive tokens
 * × HG heads are contiguous in the cache, so a stage is a 16-byte-aligned `cp.async` copy (4-stage
 * pipeline, rows padded so the fragment reads below are bank-conflict-free); invalid rows are zero-filled.
 *
 * Per 16-token tile, per warp:
 * - scores `S = K·Qᵀ`: A = dequantized keys (16 tokens × 16 dims), B = the rotated query (loaded once).
 *   The contraction order of dims is free, so thread c owns the 8-code groups c, c+4, … of each key and
 *   the query is permuted to match. Centroids come from an 8-entry magnitude table held in registers
 *   (PRMT byte lookups) plus the sign bit; fp8 keys convert with `cvt.f16x2.e4m3x2`.
 * - norm correction: ‖C̃‖² per token by one more MMA of the squared fragments against ones.
 * - online softmax in f32 (log2 domain), P' = P·s_token as f16, transposed with `movmatrix` into the
 *   B operand of `Oᵀ += Vᵀ·P'ᵀ`, whose A operand is the code itself as an f16 subnormal (`code·2^-24`:
 *   the masked nibble with a zero exponent, one AND per pair; the epilogue scales by 2^24), and
 *   `Σ P·min` is accumulated in f32 on the side — values are never dequantized element by element.
 *   (Until session 2 the operand was `1024 + code` — an f16 magic number — with one more MMA against
 *   1024 to remove the offset: the accumulators then carried 1024·ΣP', and over a 500-token context
 *   the tensor core's f32 additions at that magnitude cost ~1.4% of the output's rms.)
 *
 * Why it is faster than the plain kernel (`tq_decode_simple.ts`): the G·D multiply-adds per slot move
 * to tensor cores; what stays on the CUDA cores is ~3 instructions per key code and ~1 per value code.
 *
 * Napkin math (B 16 × 8k tokens × Hk 8, D 128): bf16 K+V = 16·8192·8·512 B = 537 MB ≈ 128 µs at
 * 4.2 TB/s; 4bit_nc slots 134 B → 140 MB ≈ 33 µs; 3bit_nc 102 B → 107 MB ≈ 25 µs; k8v4 196 B → 49 µs.
 * CUDA-core work per 16-token tile per warp (SASS of the loop): ~600 instructions for 4bit_nc (half of
 * them the centroid lookup), ~780 for the 3-bit presets (3-bit → nibble spreading), ~430 for k8v4 →
 * 65.5k warp-tiles × 600 ≈ 39 M warp-instructions ≈ 75k issue cycles per SM ≈ 40 µs at 1.9 GHz, about
 * the memory floor: expect ~45 µs (4bit_nc), ~50 µs (3-bit keys, issue-bound), ~50 µs (k8v4,
 * memory-bound) against the bf16 peer's 135 µs. MMAs: 25 per tile (17 for fp8 keys), far from the
 * tensor pipe's limit.
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
  fp8ScoreLoop,
  groupLoader,
  groupStart,
  kdeqSource,
  magnitudeTables,
  onlineSoftmaxTile,
  queryFragments,
  TQ_MMA_HELPERS,
} from "./tq_decode_parts.ts";
import {
  TQ_SPLIT_HELPERS,
  tqCheckDecodeGeometry,
  type TqDecodeKernelOptions,
  tqDecodeParams,
} from "./tq_decode_simple.ts";

export {
  type TqDecodeKernelOptions,
  tqDecodeParams,
  tqDecodeSimpleKernel,
  tqMergeKernel,
  type TqMergeKernelOptions,
} from "./tq_decode_simple.ts";

/**
 * Stage offset of this warp's slot in tile row `r` (C and JS alike: `rowbytes`, `hoff` as in the
 * kernel): a tile starts at a multiple of 16 tokens, so the row's source address mod 16 — the stage
 * row's lead-in — depends on r only.
 */
export const TQ_DECODE_ROW_OFF = "r * RP + ((r * rowbytes + hoff) & 15) + warp * SLOT";

/** Launch geometry and shared-memory plan of the tensor-core decode kernel. */
export interface TqDecodeGeometry {
  /** KV heads per CTA = warps per CTA. */
  headsPerCta: number;
  /** CTAs along the head axis: numKvHeads / headsPerCta. */
  headGroups: number;
  /** n-tiles of 8 query heads per KV head. */
  nTiles: number;
  stages: number;
  /** Bytes per staged token row (HG slots + misalignment slack + bank padding). */
  rowPitch: number;
  maxChunks: number;
  sharedBytes: number;
}

/** Why the tensor-core kernel cannot serve these options (then use the plain kernel), or undefined. */
export function tqDecodeMmaProblem(o: TqDecodeKernelOptions): string | undefined {
  const L = o.layout, D = L.headDim, G = o.numHeads / o.numKvHeads;
  if (D % 64 !== 0 || D > 256) return `head dim ${D}: the tensor-core kernel takes 64, 128 or 256`;
  if (!L.keyFp8 && (L.keyBits > 4 || !L.symmetric)) {
    return "keys need a symmetric codebook of ≤ 4 bits (or fp8)";
  }
  if (L.valueBits > 4) return `${L.valueBits}-bit values: the tensor-core kernel takes ≤ 4`;
  if (!Number.isInteger(G) || G > 16) {
    return `${G} query heads per KV head: the tensor-core kernel takes ≤ 16`;
  }
  if (G > 8 && D > 128) {
    return `${G} query heads per KV head at head dim ${D}: the tensor-core kernel takes ≤ 8 (registers)`;
  }
  return undefined;
}

/** The geometry {@linkcode tqDecodeKernel} uses. */
export function tqDecodeGeometry(o: TqDecodeKernelOptions): TqDecodeGeometry {
  const Hk = o.numKvHeads, G = o.numHeads / Hk, SLOT = o.layout.slotBytesAligned, D = o.layout.headDim;
  let HG = 1;
  for (let h = 1; h <= Math.min(8, Hk); h++) if (Hk % h === 0) HG = h;
  const maxChunks = (14 + HG * SLOT + 15) >> 4;
  let rowPitch = maxChunks * 16;
  while (rowPitch % 128 !== 16) rowPitch += 16;
  let stages = 4;
  if (stages * 16 * rowPitch > 110 * 1024) stages = 3;
  const sharedBytes = Math.max(stages * 16 * rowPitch, HG * G * D * 4);
  return {
    headsPerCta: HG,
    headGroups: Hk / HG,
    nTiles: Math.ceil(G / 8),
    stages,
    rowPitch,
    maxChunks,
    sharedBytes,
  };
}

/** Grid `[S, headGroups, B]`. */
export function tqDecodeGrid(
  o: TqDecodeKernelOptions,
  batch: number,
  splits: number,
): [number, number, number] {
  return [splits, tqDecodeGeometry(o).headGroups, batch];
}

/**
 * The tensor-core decode kernel. Grid {@linkcode tqDecodeGrid}, block `32·headsPerCta`, dynamic shared
 * memory `sharedBytes`; parameters {@linkcode tqDecodeParams} (same contract as the plain kernel).
 *
 * @example
 * ```ts
 * import { turboQuantLayout } from "../../dsl/turboquant/preset.ts";
 * import { tqDecodeKernel } from "./tq_decode.ts";
 * const ks = tqDecodeKernel({ layout: turboQuantLayout("turboquant_4bit_nc", 128), inDtype: "bf16", numHeads: 32, numKvHeads: 8, blockSize: 16 });
 * console.log(ks.name, ks.block); // tq_decode_mma_4bit_nc_d128_bf16_g4_hk8_bs16 [ 256, 1, 1 ]
 * ```
 */
export function tqDecodeKernel(o: TqDecodeKernelOptions): KernelSource {
  tqCheckDecodeGeometry(o);
  const problem = tqDecodeMmaProblem(o);
  if (problem) throw new RangeError(problem);
  const L = o.layout, D = L.headDim, HK = o.numKvHeads, G = o.numHeads / HK;
  const geo = tqDecodeGeometry(o);
  const HG = geo.headsPerCta, NT = geo.nTiles, off = L.offsets;
  const name = `tq_decode_mma_${tqTag(L)}_${o.inDtype}_g${G}_hk${HK}_bs${o.blockSize}${
    o.signs ? "_signs" : ""
  }`;
  const params = tqDecodeParams(o);
  const up = unpackPair(o.inDtype);
  const toOut = o.inDtype === "bf16" ? "f32_to_bf16" : "f32_to_f16";
  const kb = L.keyBits;
  const tabs = L.keyFp8 ? undefined : magnitudeTables(L.centroids!, D);
  // per-token score factor: n/‖C̃‖ (NC), n/√D (plain centroids; C̃ = √D·C), 1 (fp8)
  const factor = (n: string, nacc: string) =>
    L.keyFp8
      ? "scale_log2"
      : L.normCorrection
      ? `${n} * rsqrtf(${nacc}) * scale_log2`
      : `${n} * ${cFloat(1 / Math.sqrt(D))} * scale_log2`;
  const keyDims = L.keyFp8 ? "4 * (c + 4 * kk)" : "8 * (c + 4 * (kk >> 1)) + 4 * (kk & 1)";

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
#define RP ${geo.rowPitch}
#define STAGES ${geo.stages}
#define NINF (-__int_as_float(0x7f800000))

${TQ_MMA_HELPERS}${L.keyFp8 ? fp8Helpers() : groupLoader("key_group", kb)}
${groupLoader("val_group", L.valueBits)}
${tabs ? kdeqSource(kb, tabs) : ""}

${renderSignature({ entry: name, params }, { launchBounds: HG === 8 && D <= 128 ? [256, 2] : [HG * 32] })} {
  extern __shared__ __align__(16) unsigned char smem[];
  const int split = blockIdx.x, hgrp = blockIdx.y, b = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, c = lane & 3;      // mma row group, thread in group
  const int S = num_splits, Hq = HK * G;
  const int h = hgrp * HG + warp;             // this warp's KV head
  int t0, t1;
  split_range(seq_lens[b], S, split, t0, t1);
  const int ntiles = (t1 - t0 + 15) >> 4;
  if (ntiles == 0) {                          // empty split: zeros, lse = −inf
    for (int e = lane; e < G * D; e += 32) {
      const long long row = (long long)b * Hq + h * G + e / D;
      if (S == 1) out[row * D + e % D] = 0;
      else part_o[(row * S + split) * D + e % D] = 0.f;
    }
    if (S > 1 && lane < G) part_lse[((long long)b * Hq + h * G + lane) * S + split] = NINF;
    return;
  }

  // ---- query → shared scratch (the stage memory, before the pipeline), ${
    L.rotate ? "rotated, " : ""
  }→ B fragments
  u32 bq[NT][NK][2];
  {
    float* qs = (float*)smem + warp * (G * D);
    for (int e = lane * 8; e < G * D; e += 256) {
      const uint4 w = *(const uint4*)((const u16*)q + ((long long)b * Hq + h * G) * D + e);
      const u32 ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        float x = (i & 1) ? ${up.hi("ws[i >> 1]")} : ${up.lo("ws[i >> 1]")};
        ${o.signs ? "const int d = (e + i) % D; if ((signmask[d >> 5] >> (d & 31)) & 1u) x = -x;" : ""}
        qs[e + i] = x;
      }
    }
    __syncwarp();
    ${queryFragments(L.rotate, D, keyDims)}
  }
  __syncthreads();

  // ---- pipeline: stage = 16 token rows × (HG slots), 16-byte cp.async, invalid rows zero-filled
  const long long rowbytes = (long long)HK * SLOT;
  const int hoff = hgrp * HG * SLOT;
  const int lr = tid / (2 * HG), lk = tid % (2 * HG);   // 2·HG threads copy each of the 16 rows
  auto load_tile = [&](int i, int st) {
    const int tb = t0 + 16 * i;
    const long long src = (long long)block_tables[(long long)b * bt_stride + tb / BS] * BS * rowbytes +
                          (long long)(tb % BS + lr) * rowbytes + hoff;
    const int mis = (int)(src & 15), nch = (mis + HG * SLOT + 15) >> 4;
    const unsigned char* from = cache + (src - mis);
    const u32 to = smem_u32(smem + st * (16 * RP) + lr * RP);
    const int bytes = tb + lr < t1 ? 16 : 0;
    for (int k = lk; k < nch; k += 2 * HG) cp_async16(to + 16 * k, from + 16 * k, bytes);
  };
#pragma unroll
  for (int i = 0; i < STAGES - 1; ++i) {
    if (i < ntiles) load_tile(i, i);
    cp_commit();
  }

  // where this warp's slot of tile row r sits in a stage: a tile starts at a multiple of 16 tokens, so
  // (tile row byte offset) mod 16 depends on r only — computed once
  auto row_off = [&](int r) { return (int)(${TQ_DECODE_ROW_OFF}); };
  const int o_k0 = row_off(g), o_k1 = row_off(g + 8);
${
    L.keyFp8
      ? ""
      : `  ${groupStart("q0", "o_k0", `${kb} * c`, kb)}\n  ${groupStart("q1", "o_k1", `${kb} * c`, kb)}`
  }
  ${groupStart("va", `row_off(2 * c) + ${off.valueCodes}`, `${L.valueBits} * g`, L.valueBits)}
  ${groupStart("vb", `row_off(2 * c + 1) + ${off.valueCodes}`, `${L.valueBits} * g`, L.valueBits)}
  ${groupStart("vc", `row_off(2 * c + 8) + ${off.valueCodes}`, `${L.valueBits} * g`, L.valueBits)}
  ${groupStart("vd", `row_off(2 * c + 9) + ${off.valueCodes}`, `${L.valueBits} * g`, L.valueBits)}

  float oacc[NT][NK][4], mrun[NT][2], lrun[NT][2], plo[NT][2];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
    for (int mt = 0; mt < NK; ++mt) oacc[nt][mt][0] = oacc[nt][mt][1] = oacc[nt][mt][2] = oacc[nt][mt][3] = 0.f;
    mrun[nt][0] = mrun[nt][1] = NINF;
    lrun[nt][0] = lrun[nt][1] = plo[nt][0] = plo[nt][1] = 0.f;
  }

#pragma unroll 1
  for (int it = 0; it < ntiles; ++it) {
    cp_wait<STAGES - 2>();
    __syncthreads();
    {
      const int nx = it + STAGES - 1;
      if (nx < ntiles) load_tile(nx, nx % STAGES);
      cp_commit();
    }
    const unsigned char* st = smem + (it % STAGES) * (16 * RP);
    const int tb = t0 + 16 * it;
    const unsigned char* k0 = st + o_k0;
    const unsigned char* k1 = st + o_k1;

    // ---- scores S[token][head] = K̃·q'ᵀ (+ ‖C̃‖² per token for norm correction)
    float sacc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) sacc[nt][0] = sacc[nt][1] = sacc[nt][2] = sacc[nt][3] = 0.f;
${L.normCorrection ? "    float nacc[4] = {0.f, 0.f, 0.f, 0.f};" : ""}
${L.keyFp8 ? fp8ScoreLoop() : centroidScoreLoop(L.normCorrection, kb)}

    // ---- online softmax (log2 domain) per head column; P' = P·s_token → f16 → movmatrix → B of Vᵀ·P'ᵀ
${onlineSoftmaxTile(factor, off, "exp2f")}
    // ---- Oᵀ[d][head] += (1024 + code)[d][token] · P'ᵀ[token][head]; rows g / g+8 = low / high nibble
    {
#pragma unroll
      for (int i2 = 0; i2 < NGV; ++i2) {  // value groups g + 8·i2 of tokens 2c, 2c+1, 2c+8, 2c+9
        const u32 wa = val_group(st + va + ${8 * L.valueBits} * i2, va_sh), wb = val_group(st + vb + ${
    8 * L.valueBits
  } * i2, vb_sh);
        const u32 wc = val_group(st + vc + ${8 * L.valueBits} * i2, vc_sh), wd = val_group(st + vd + ${
    8 * L.valueBits
  } * i2, vd_sh);
#pragma unroll
        for (int hb = 0; hb < 2; ++hb) {
          const u32 xab = prmt(wa, wb, hb ? 0x7632u : 0x5410u), xcd = prmt(wc, wd, hb ? 0x7632u : 0x5410u);
#pragma unroll
          for (int k2 = 0; k2 < 2; ++k2) {
            const u32 x = k2 ? xab >> 8 : xab, y = k2 ? xcd >> 8 : xcd;
            const int mt = 4 * i2 + 2 * hb + k2;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
              mma16816(oacc[nt][mt], x & 0x000f000fu, x & 0x00f000f0u, y & 0x000f000fu, y & 0x00f000f0u,
                       pb[nt][0], pb[nt][1]);
          }
        }
      }
    }
  }
  cp_wait<0>();

  // ---- epilogue: reduce l and Σ P·min over the 8 row groups, undo the 2^-24 (and ×16 of high nibbles)
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
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          v[2 * k] = (oacc[nt][4 * i2 + k][e] * 16777216.f + pz) * inv;
          v[2 * k + 1] = (oacc[nt][4 * i2 + k][2 + e] * 1048576.f + pz) * inv;
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
`;
  return {
    name,
    source,
    entry: name,
    params,
    block: [HG * 32, 1, 1],
    sharedBytes: geo.sharedBytes,
    minArch: 80,
    keyParts: {
      family: "turboquant_decode_mma",
      preset: L.preset.name,
      headDim: D,
      G,
      Hk: HK,
      blockSize: o.blockSize,
    },
  };
}
