/**
 * The key half of the TurboQuant store kernel (`tq_store.ts`), per tile: fp8 keys (a saturating cast),
 * or centroid keys — norm, optional sign flip, the in-register fast Walsh–Hadamard transform, the index
 * by table lookup (`tq_store_parts.ts`), packing into the per-warp stage.
 *
 * Register layout: lane r of a vector holds the 8-element groups r + P·j (j < NG) in `x[8·j + i]`, so
 * index d = 8·(r + P·j) + i. The transform's stages (order: `turboQuantStoreStageOrder`, which the
 * reference follows bit for bit) run on the element bits and the group bits in registers; a transpose
 * through the warp's shared-memory area then gives lane r the groups NG·r + j, whose lane bits are now
 * register bits; bits still across lanes (D ≥ 256) are shuffle stages (`fma(own, ±1, partner)` is
 * exactly partner ± own). The codes of a lane are then one contiguous byte run.
 *
 * The transpose area: group g of vector qv at `TR_R·qv + 32·g + 32·⌊g/P⌋` (a 32-byte pad after every
 * P groups, TR_R ≡ 16 mod 32) — at D = 128 the 16-byte writes and reads of a quarter warp hit 8
 * distinct bank groups, and both sides address as a lane base plus immediates.
 *
 * Session 3, H200, 3bit_nc 65536 × 8 × 128: shuffles for the two lane stages (64 SHFL + 64 FFMA per lane
 * and tile) replaced by 16 shared-memory vector accesses and 64 FADD.
 *
 * @module
 */
import type { TurboQuantLayout } from "../../dsl/turboquant/preset.ts";
import { turboQuantKeyQuantizer } from "../../dsl/turboquant/store_ref.ts";
import { cFloat } from "../../dsl/turboquant/f32.ts";
import { tqStageRunC } from "./tq_store_parts.ts";

/** fp8 keys: `cvt.rn.satfinite.e4m3x2`, 8 bytes per group. */
export function tqFp8KeyC(L: TurboQuantLayout): string {
  return `#pragma unroll
    for (int j = 0; j < NG; ++j) {
      const float* g = x + 8 * j;
      unsigned char* sp = my + ${L.offsets.keyCodes} + 8 * (r + P * j);
      *(u16*)(sp + 0) = (u16)e4m3x2(g[0], g[1]);
      *(u16*)(sp + 2) = (u16)e4m3x2(g[2], g[3]);
      *(u16*)(sp + 4) = (u16)e4m3x2(g[4], g[5]);
      *(u16*)(sp + 6) = (u16)e4m3x2(g[6], g[7]);
    }`;
}

/** Bytes of the per-warp transpose area of a centroid-key layout with P lanes of NG groups (0 if P = 1). */
export function tqTransposeBytes(headDim: number, lanes: number): number {
  return lanes === 1 ? 0 : (32 / lanes) * tqTransposeStride(headDim, lanes);
}

/** Bytes between vectors in the transpose area: 32 per group, 32 per P groups, + 16. */
export function tqTransposeStride(headDim: number, lanes: number): number {
  const groups = headDim / 8;
  return 32 * (groups + groups / lanes) + 16;
}

/**
 * Centroid keys: norm, signs, FWHT (with the transpose), index, pack; `flip` undoes the lookup's
 * complement per word. Uses `tr` (the warp's transpose area, a shared address) and `TR_R`.
 */
export function tqCentroidKeyC(
  L: TurboQuantLayout,
  lanes: number,
  signs: boolean,
  lut: boolean,
  flip: string,
): string {
  const kb = L.keyBits, word = kb > 4 ? "u64" : "u32";
  const P = lanes, NG = L.headDim / 8 / P, post = Math.min(NG, P);
  const q = turboQuantKeyQuantizer(L);
  const signC = `#pragma unroll
    for (int j = 0; j < NG; ++j) {
      const int d0 = 8 * (r + P * j);
      const u32 bits = (signmask[d0 >> 5] >> (d0 & 31)) & 0xffu;
#pragma unroll
      for (int i = 0; i < 8; ++i) x[8 * j + i] = __uint_as_float(__float_as_uint(x[8 * j + i]) ^ (((bits >> i) & 1u) << 31));
    }`;
  return `    // norm: per-lane fma chain, xor tree over the P lanes
    float ss = 0.f;
#pragma unroll
    for (int e = 0; e < NG * 8; ++e) ss = __fmaf_rn(x[e], x[e], ss);
#pragma unroll
    for (int m = 1; m < P; m <<= 1) ss = __fadd_rn(ss, __shfl_xor_sync(FULL, ss, m));
    const float nrm = __fsqrt_rn(ss);
${signs ? signC : ""}
    // FWHT, unnormalized (turboQuantStoreStageOrder): element bits, group bits, [transpose] lane bits
#pragma unroll
    for (int s = 1; s < 8; s <<= 1) {
#pragma unroll
      for (int j = 0; j < NG; ++j) {
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          if (!(i & s)) {
            const float a = x[8 * j + i], c = x[8 * j + i + s];
            x[8 * j + i] = __fadd_rn(a, c);
            x[8 * j + i + s] = __fsub_rn(a, c);
          }
        }
      }
    }
    fwht_groups<NG>(x);
${
    P === 1
      ? ""
      : `    // transpose: groups r + P·j → groups NG·r + j (area: group g at TR_R·qv + 32·g + 32·⌊g/P⌋)
    {
      const u32 tw = tr + TR_R * qv + 32 * r;
#pragma unroll
      for (int j = 0; j < NG; ++j) {
        sts128(tw + 32 * (P + 1) * j, x + 8 * j);
        sts128(tw + 32 * (P + 1) * j + 16, x + 8 * j + 4);
      }
      __syncwarp();
      const u32 trd = tr + TR_R * qv + 32 * NG * r + 32 * ((NG * r) / P);
#pragma unroll
      for (int j = 0; j < NG; ++j) {
        lds128f(trd + 32 * j + 32 * (j / P), x + 8 * j);
        lds128f(trd + 32 * j + 32 * (j / P) + 16, x + 8 * j + 4);
      }
    }
    fwht_groups<${post}>(x);
#pragma unroll
    for (int m = 1; m < ${P / post}; m <<= 1) {
      const float sg = (r & m) ? -1.f : 1.f;
#pragma unroll
      for (int e = 0; e < NG * 8; ++e) x[e] = __fmaf_rn(x[e], sg, __shfl_xor_sync(FULL, x[e], m));
    }`
  }
    // index: z = sat(fma(y, A/ν, B)), ν = n + 1e-8 — y/ν against the boundaries without a divide per element
    const float rv = __fdiv_rn(${cFloat(q.A)}, __fadd_rn(nrm, ${cFloat(1e-8)}));
    ${word} kpk[NG];
#pragma unroll
    for (int j = 0; j < NG; ++j) {
      ${word} packed = 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) packed += (${word})key_code(x[8 * j + i], rv, ${
    lut ? "lut_adj" : "0u"
  }) << (${kb} * i);
      kpk[j] = packed ^ ${flip};  // the lookup yields mask − code
    }
${
    tqStageRunC(
      "my",
      `${L.offsets.keyCodes} + ${kb * NG} * r`,
      kb,
      Array.from({ length: NG }, (_, j) => `kpk[${j}]`),
      L.offsets.keyCodes % 2 === 0,
    )
  }
    if (r == 0) st_h(my + ${L.offsets.keyNorm}, f32_to_f16(nrm), ${L.offsets.keyNorm % 2 === 0});`;
}
