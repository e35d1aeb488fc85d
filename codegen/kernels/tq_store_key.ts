/**
 * The key half of the TurboQuant store kernel (`tq_store.ts`), per tile: fp8 keys (a saturating cast),
 * or centroid keys — norm, optional sign flip, the in-register fast Walsh–Hadamard transform, the index
 * by table lookup (`tq_store_parts.ts`), packing into the per-warp stage.
 *
 * Register layout: lane r of a vector holds the 8-element groups r + P·j (j < NG) in `x[8·j + i]`, so
 * index d = 8·(r + P·j) + i. Transform stages run in index-bit order: the element bits (in registers),
 * the lane bits (shuffles: `fma(own, ±1, partner)` is exactly partner ± own), the group bits (in
 * registers) — `fwhtF32`'s order, so the reference matches bit for bit.
 *
 * @module
 */
import type { TurboQuantLayout } from "../../dsl/turboquant/preset.ts";
import { turboQuantKeyQuantizer } from "../../dsl/turboquant/store_ref.ts";
import { cFloat } from "../../dsl/turboquant/f32.ts";
import { tqStageBytesC } from "./tq_store_parts.ts";

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

/** Centroid keys: norm, signs, FWHT, index, pack; `flip` undoes the lookup's complement per word. */
export function tqCentroidKeyC(L: TurboQuantLayout, signs: boolean, lut: boolean, flip: string): string {
  const kb = L.keyBits, word = kb > 4 ? "u64" : "u32";
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
    // FWHT, unnormalized, stages in index-bit order: element bits, lane bits (shuffles), group bits
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
#pragma unroll
    for (int m = 1; m < P; m <<= 1) {
      const float sg = (r & m) ? -1.f : 1.f;
#pragma unroll
      for (int e = 0; e < NG * 8; ++e) x[e] = __fmaf_rn(x[e], sg, __shfl_xor_sync(FULL, x[e], m));
    }
#pragma unroll
    for (int s = 1; s < NG; s <<= 1) {
#pragma unroll
      for (int j = 0; j < NG; ++j) {
        if (!(j & s)) {
#pragma unroll
          for (int i = 0; i < 8; ++i) {
            const float a = x[8 * j + i], c = x[8 * (j + s) + i];
            x[8 * j + i] = __fadd_rn(a, c);
            x[8 * (j + s) + i] = __fsub_rn(a, c);
          }
        }
      }
    }
    // index: z = sat(fma(y, A/ν, B)), ν = n + 1e-8 — y/ν against the boundaries without a divide per element
    const float rv = __fdiv_rn(${cFloat(q.A)}, __fadd_rn(nrm, ${cFloat(1e-8)}));
#pragma unroll
    for (int j = 0; j < NG; ++j) {
      ${word} packed = 0;
#pragma unroll
      for (int i = 0; i < 8; ++i) packed += (${word})key_code(x[8 * j + i], rv, ${
    lut ? "lut_adj" : "0u"
  }) << (${kb} * i);
      packed ^= ${flip};  // the lookup yields mask − code
${
    tqStageBytesC(
      "my",
      `${L.offsets.keyCodes} + ${kb} * (r + P * j)`,
      kb,
      "packed",
      L.offsets.keyCodes % 2 === 0,
    )
  }
    }
    if (r == 0) st_h(my + ${L.offsets.keyNorm}, f32_to_f16(nrm), ${L.offsets.keyNorm % 2 === 0});`;
}
