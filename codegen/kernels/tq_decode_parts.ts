/**
 * Pieces of the tensor-core TurboQuant decode kernel (`tq_decode.ts`): the PTX wrappers, the code-group
 * loaders (3-bit → nibble spreading), the centroid lookup `kdeq`, and the per-chunk score loops.
 *
 * @module
 */
import { f16Encode } from "../../dsl/dtype.ts";
import { cFloat } from "../../dsl/turboquant/f32.ts";

/** PTX wrappers: m16n8k16 MMA, movmatrix, f16x2 packing, PRMT, cp.async. */
export const TQ_MMA_HELPERS =
  `__device__ __forceinline__ void mma16816(float (&d)[4], u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
__device__ __forceinline__ u32 movtrans(u32 x) {
  u32 r; asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;" : "=r"(r) : "r"(x)); return r;
}
__device__ __forceinline__ u32 pack_h2(float lo, float hi) {
  u32 r; asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}
__device__ __forceinline__ u32 prmt(u32 a, u32 b, u32 s) {
  u32 r; asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(s)); return r;
}
__device__ __forceinline__ u32 hmul2(u32 a, u32 b) {
  u32 r; asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b)); return r;
}
__device__ __forceinline__ u32 ld2(const unsigned char* p) { return *(const u16*)p; }
__device__ __forceinline__ float ldh(const unsigned char* p) { return f16_to_f32(*(const u16*)p); }
__device__ __forceinline__ u32 smem_u32(const void* p) { return (u32)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void cp_async16(u32 dst, const void* src, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(dst), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory"); }
`;

/** Bit masks that spread 8 codes of `bits` bits (LSB-first) into 8 nibbles, in three shift steps. */
export function spreadSteps(bits: number): { mask: number; shift: number }[] {
  if (bits === 4) return [];
  const pos = Array.from({ length: 8 }, (_, i) => bits * i);
  const steps: { mask: number; shift: number }[] = [];
  for (const k of [2, 1, 0]) {
    const shift = (4 - bits) << k;
    let mask = 0;
    for (let i = 0; i < 8; i++) {
      if (i & (1 << k)) {
        mask |= ((1 << bits) - 1) << pos[i];
        pos[i] += shift;
      }
    }
    steps.push({ mask: mask >>> 0, shift });
  }
  return steps;
}

export function hex(x: number): string {
  return `0x${(x >>> 0).toString(16).padStart(8, "0")}u`;
}

/**
 * C function `u32 NAME(const unsigned char* pe, u32 sel)`: one group (8 codes of `bits` bits, LSB-first)
 * → 8 nibbles. `pe` is even (shared memory is read 2 bytes at a time); for 3-bit codes the group's 3
 * bytes start at `pe` or `pe + 1`, and `sel` (from {@linkcode groupStart}) is the PRMT selector that
 * moves exactly those 3 bytes to bits 0–23 and zeroes bits 24–31 — the spreading below adds fields
 * onto free bits, so a stray fourth byte would corrupt codes 6 and 7.
 */
export function groupLoader(name: string, bits: number): string {
  // (w & ~M) | ((w & M) << s) == w + (w & M)·(2^s − 1): the moved fields land on free bits
  const spread = spreadSteps(bits).map((st) => `  w += (w & ${hex(st.mask)}) * ${(1 << st.shift) - 1}u;`)
    .join("\n");
  const load = bits === 4
    ? "u32 w = prmt(ld2(pe), ld2(pe + 2), 0x5410u);"
    : bits === 3
    ? "u32 w = prmt(ld2(pe), ld2(pe + 2), sel);  // bytes pe[0..2] or pe[1..3], byte 3 = 0"
    : bits === 2
    ? "u32 w = ld2(pe);"
    : "u32 w = pe[0];";
  return `__device__ __forceinline__ u32 ${name}(const unsigned char* pe, u32 sel) {
  ${load}
${spread}
  return w;
}`;
}

/** PRMT selectors of a 3-bit group starting on an even / odd byte (sources: 2 zero-extended u16s). */
export const GROUP3_SEL: readonly [number, number] = [0x2410, 0x2541];

/**
 * C lines declaring \`NAME\` (byte offset of this thread's first code group in a stage, made even) and
 * \`NAME_sh\` (the loader's selector) for a row at stage offset \`rowOff\` whose first group starts
 * \`first\` bytes in. Later groups of the thread start an even number of bytes further.
 */
export function groupStart(name: string, rowOff: string, first: string, bits: number): string {
  if (bits !== 3) return `const int ${name} = ${rowOff} + ${first}; const u32 ${name}_sh = 0u;`;
  return `const int ${name} = (${rowOff} + ${first}) & ~1; const u32 ${name}_sh = ((${rowOff} + ${first}) & 1) ? ${
    hex(GROUP3_SEL[1])
  } : ${hex(GROUP3_SEL[0])};`;
}

/** f16 magnitude table of a symmetric codebook (scaled by √D): lo/hi bytes of 8 entries as 4 words. */
export function magnitudeTables(
  centroids: Float32Array,
  D: number,
): { lo: [number, number]; hi: [number, number] } {
  const half = centroids.length / 2;
  const lo = [0, 0], hi = [0, 0];
  for (let m = 0; m < half; m++) {
    const h = f16Encode(centroids[half + m] * Math.sqrt(D));
    lo[m >> 2] |= (h & 0xff) << (8 * (m & 3));
    hi[m >> 2] |= (h >> 8) << (8 * (m & 3));
  }
  return { lo: [lo[0] >>> 0, lo[1] >>> 0], hi: [hi[0] >>> 0, hi[1] >>> 0] };
}

/** C `kdeq`: 8 codes (nibbles) → 4 f16x2 centroids C̃ = √D·C (magnitude by PRMT lookup, sign or-ed in). */
export function kdeqSource(kb: number, tabs: { lo: [number, number]; hi: [number, number] }): string {
  const half = 2 ** kb / 2;
  const signMask = hex(0x88888888 >>> (4 - kb)), magMask = hex(0x11111111 * (half - 1));
  const [tl0, tl1, th0, th1] = [hex(tabs.lo[0]), hex(tabs.lo[1]), hex(tabs.hi[0]), hex(tabs.hi[1])];
  return `// 8 codes (nibbles) → 4 f16x2 centroids C̃ = √D·C: magnitude index by PRMT from registers, then the sign
__device__ __forceinline__ void kdeq(u32 w, u32 (&h)[4]) {
  const u32 sb = ~w & ${signMask};  // set where the code is negative
  const u32 m = (w ^ ((sb >> ${kb - 1}) * ${half - 1}u)) & ${magMask};  // magnitude index
  const u32 mh = m >> 16;
  const u32 na = sb << ${8 - kb}, nb = sb << ${4 - kb};  // signs of even / odd nibbles at bit 7 of each byte
  // low bytes of codes 0-3 / 4-7; high bytes with the sign or-ed in (sign of nibble i → bit 7 of byte i)
  const u32 lo0 = prmt(${tl0}, ${tl1}, m), lo1 = prmt(${tl0}, ${tl1}, mh);
  const u32 hi0 = prmt(${th0}, ${th1}, m) | (prmt(na, nb, 0x5140u) & 0x80808080u);
  const u32 hi1 = prmt(${th0}, ${th1}, mh) | (prmt(na, nb, 0x7362u) & 0x80808080u);
  h[0] = prmt(lo0, hi0, 0x5140u);
  h[1] = prmt(lo0, hi0, 0x7362u);
  h[2] = prmt(lo1, hi1, 0x5140u);
  h[3] = prmt(lo1, hi1, 0x7362u);
}`;
}

export function fp8Helpers(): string {
  return `// two e4m3 bytes (low byte → low half) → f16x2: exact (every e4m3 value is an f16 value)
__device__ __forceinline__ u32 e4m3x2_h2(u32 x) {
#if __CUDA_ARCH__ >= 890
  u32 r; asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(r) : "h"((u16)x)); return r;
#else
  const u32 y = (x & 0xffu) | ((x & 0xff00u) << 8);
  return hmul2(((y & 0x00800080u) << 8) | ((y & 0x007f007fu) << 7), 0x5c005c00u);  // × 2^8
#endif
}`;
}

export function fp8ScoreLoop(): string {
  return `#pragma unroll
    for (int kk = 0; kk < NK; ++kk) {   // 4 fp8 codes per thread per chunk: word c + 4·kk
      const unsigned char* p0 = k0 + 4 * (c + 4 * kk);
      const unsigned char* p1 = k1 + 4 * (c + 4 * kk);
      const u32 a0 = e4m3x2_h2(ld2(p0)), a2 = e4m3x2_h2(ld2(p0 + 2));
      const u32 a1 = e4m3x2_h2(ld2(p1)), a3 = e4m3x2_h2(ld2(p1 + 2));
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) mma16816(sacc[nt], a0, a1, a2, a3, bq[nt][kk][0], bq[nt][kk][1]);
    }`;
}

/**
 * The score MMAs of one tile for centroid keys: each lane's key groups c + 4i → 4 f16x2 centroid pairs
 * per group, by `kdeq` (version 1: PRMT arithmetic on nibbles) or `kpair` (versions 2/3: the shared
 * pair table, raw group words), then the MMAs against the query fragments (+ ‖C̃‖² for norm correction).
 */
export function centroidScoreLoop(nc: boolean, kb: number, deq: "kdeq" | "kpair" = "kdeq"): string {
  const call = (w: string, h: string) =>
    deq === "kdeq" ? `kdeq(${w}, ${h})` : `kpair(smem, ${w}, lane4, ${h})`;
  return `#pragma unroll
    for (int i = 0; i < NK / 2; ++i) {  // key groups c + 4i: 8 codes = chunks 2i (codes 0-3) and 2i+1 (4-7)
      u32 h0[4], h1[4];
      ${call(`key_group(st + q0 + ${4 * kb} * i, q0_sh)`, "h0")};
      ${call(`key_group(st + q1 + ${4 * kb} * i, q1_sh)`, "h1")};
#pragma unroll
      for (int hf = 0; hf < 2; ++hf) {
        const u32 a0 = h0[2 * hf], a1 = h1[2 * hf], a2 = h0[2 * hf + 1], a3 = h1[2 * hf + 1];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) mma16816(sacc[nt], a0, a1, a2, a3, bq[nt][2 * i + hf][0], bq[nt][2 * i + hf][1]);
${
    nc
      ? "        mma16816(nacc, hmul2(a0, a0), hmul2(a1, a1), hmul2(a2, a2), hmul2(a3, a3), 0x3c003c00u, 0x3c003c00u);"
      : ""
  }
      }
    }`;
}

/**
 * C text after a warp's G query rows are in its f32 scratch `qs` (G·D floats): the in-place unnormalized
 * FWHT when the preset rotates (butterflies of a stage are independent: unrolled so their shared-memory
 * loads overlap), then the B fragments `bq[nt][kk]` (×1/√D), dims permuted by `keyDims` to match the
 * key operand's contraction order. Shared by the tensor-core decode kernels.
 */
export function queryFragments(rotate: boolean, D: number, keyDims: string): string {
  return `${
    rotate
      ? `#pragma unroll
    for (int hs = 1; hs < D; hs <<= 1) {
#pragma unroll
      for (int j = 0; j < G * D / 64; ++j) {
        const int p = lane + 32 * j, qh = p / (D / 2), r = p % (D / 2);
        const int i = qh * D + (r / hs) * 2 * hs + (r % hs);
        const float a = qs[i], bb = qs[i + hs];
        qs[i] = a + bb;
        qs[i + hs] = a - bb;
      }
      __syncwarp();
    }`
      : ""
  }
    const float qscale = ${rotate ? cFloat(1 / Math.sqrt(D)) : "1.f"};
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const int qh = nt * 8 + g;
#pragma unroll
      for (int kk = 0; kk < NK; ++kk) {
        const int d0 = ${keyDims};
        const float* r = qs + qh * D + d0;
        bq[nt][kk][0] = qh < G ? pack_h2(r[0] * qscale, r[1] * qscale) : 0u;
        bq[nt][kk][1] = qh < G ? pack_h2(r[2] * qscale, r[3] * qscale) : 0u;
      }
    }`;
}

/**
 * The online softmax of one 16-token tile (log2 domain) per head column, shared by both tensor-core
 * decode kernels: per-token score factors from `factor` (keyNorm / norm-correction), running max and
 * sum, the value-zero term, the rescale of the accumulators when a maximum moves, and P' = P·s packed
 * to f16 and transposed for the Vᵀ·P'ᵀ MMA. `exp` is the base-2 exponential the kernel uses; `guardRows`
 * masks the scale and zero of rows past the sequence (kernels whose copies don't zero-fill them).
 */
export function onlineSoftmaxTile(
  factor: (n: string, nacc: string) => string,
  off: { keyNorm: number; valueScale: number; valueZero: number },
  exp: "exp2f" | "ex2",
  guardRows = false,
): string {
  // guardRows: rows past the sequence hold stale bytes (not zero-filled): their scale and zero read as 0
  const sz = (k: string, ok: string, at: number) =>
    guardRows ? `${ok} ? ldh(${k} + ${at}) : 0.f` : `ldh(${k} + ${at})`;
  return `    const bool ok0 = tb + g < t1, ok1 = tb + g + 8 < t1;
    const float f0 = ${factor(`ldh(k0 + ${off.keyNorm})`, "nacc[0]")};
    const float f1 = ${factor(`ldh(k1 + ${off.keyNorm})`, "nacc[2]")};
    const float s0 = ${sz("k0", "ok0", off.valueScale)}, z0 = ${sz("k0", "ok0", off.valueZero)};
    const float s1 = ${sz("k1", "ok1", off.valueScale)}, z1 = ${sz("k1", "ok1", off.valueZero)};
    u32 pb[NT][2];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const float x00 = ok0 ? sacc[nt][0] * f0 : NINF, x01 = ok0 ? sacc[nt][1] * f0 : NINF;
      const float x10 = ok1 ? sacc[nt][2] * f1 : NINF, x11 = ok1 ? sacc[nt][3] * f1 : NINF;
      float mx0 = fmaxf(x00, x10), mx1 = fmaxf(x01, x11);
#pragma unroll
      for (int o = 4; o < 32; o <<= 1) {
        mx0 = fmaxf(mx0, __shfl_xor_sync(FULL, mx0, o));
        mx1 = fmaxf(mx1, __shfl_xor_sync(FULL, mx1, o));
      }
      const float mn0 = fmaxf(mrun[nt][0], mx0), mn1 = fmaxf(mrun[nt][1], mx1);
      const float ms0 = mn0 == NINF ? 0.f : mn0, ms1 = mn1 == NINF ? 0.f : mn1;
      const float al0 = ${exp}(mrun[nt][0] - ms0), al1 = ${exp}(mrun[nt][1] - ms1);
      const float p00 = ${exp}(x00 - ms0), p10 = ${exp}(x10 - ms0), p01 = ${exp}(x01 - ms1), p11 = ${exp}(x11 - ms1);
      mrun[nt][0] = mn0;
      mrun[nt][1] = mn1;
      lrun[nt][0] = fmaf(lrun[nt][0], al0, p00 + p10);
      lrun[nt][1] = fmaf(lrun[nt][1], al1, p01 + p11);
      plo[nt][0] = fmaf(plo[nt][0], al0, fmaf(p00, z0, p10 * z1));
      plo[nt][1] = fmaf(plo[nt][1], al1, fmaf(p01, z0, p11 * z1));
      if (__any_sync(FULL, al0 != 1.f || al1 != 1.f)) {  // once the maxima settle, most tiles skip this
#pragma unroll
        for (int mt = 0; mt < NK; ++mt) {
          oacc[nt][mt][0] *= al0; oacc[nt][mt][1] *= al1; oacc[nt][mt][2] *= al0; oacc[nt][mt][3] *= al1;
        }
      }
      pb[nt][0] = movtrans(pack_h2(p00 * s0, p01 * s0));
      pb[nt][1] = movtrans(pack_h2(p10 * s1, p11 * s1));
    }
`;
}
