/**
 * TurboQuant store: one fused kernel per call — K and V rows (bf16/f16, `[T, Hk, D]`, token stride
 * free) → norm, in-register fast Walsh–Hadamard transform, centroid index by threshold count, packing,
 * value min/max quantization — scattered into the paged cache `u8[numBlocks, blockSize, Hk, slot]`
 * through `slot_mapping` (negative slots skipped; slots past the cache are skipped and reported in
 * `status`). Bit-exact with `encodeSlot` in `dsl/turboquant/store_ref.ts`.
 *
 * Work split: P lanes per (token, head) vector (P = 2/4/8 for D = 64/128/256), lane r holding the
 * 8-element groups r, r+P, … as 16-byte loads — up to 8 K + V loads in flight per thread. FWHT stages
 * over a group's 8 elements and across a lane's groups run in registers; the log2 P stages across lanes
 * are shuffles (`fma(own, ±1, partner)` is exactly a ± b). The slot bytes are assembled in shared
 * memory per warp and written as whole runs (all heads of a token are contiguous) with 16-byte stores.
 *
 * Versions, side by side in spirit with vLLM's path: vLLM runs norm, divide and a dense fp32 GEMM
 * with H in PyTorch (three kernels and an fp32 copy of K) before its Triton quantize kernel; kiln does
 * it all in one pass, the rotation as D·log2 D adds instead of D² multiply-adds, and compares the
 * unnormalized transform against thresholds scaled once per vector instead of dividing every element.
 *
 * Napkin math (T = 65536 tokens × Hk 8 × D 128, bf16): reads 2·T·Hk·D·2 = 268 MB, writes T·Hk·134 =
 * 70 MB (4bit_nc) → 338 MB ≈ 80 µs at 4.2 TB/s. Compute, from the SASS: ~1640 instructions per warp of
 * 8 vectors for the rotated presets (per key element: FWHT 9, threshold search ~12; per value element
 * ~7) → 65536 warps × 1640 / 132 SMs / 4 issue ≈ 200k cycles ≈ 100–115 µs: the rotated presets are
 * issue-bound at ~70–80% of copy bandwidth; k8v4 (~870 per warp) streams at the memory rate.
 *
 * @module
 */
import { renderSignature } from "../kernel_source.ts";
import type { KernelSource, ParamSpec } from "../kernel_source.ts";
import type { TurboQuantLayout } from "../../dsl/turboquant/preset.ts";
import { scaledMidpoints, turboQuantStoreLanes } from "../../dsl/turboquant/store_ref.ts";
import { cFloat } from "../../dsl/turboquant/f32.ts";
import { TQ_PRELUDE, type TqInDtype, tqTag, unpackPair } from "./tq_common.ts";

/** Options of {@linkcode tqStoreKernel}. */
export interface TqStoreKernelOptions {
  layout: TurboQuantLayout;
  /** Element type of K and V. */
  inDtype: TqInDtype;
  numKvHeads: number;
  /** The kernel takes a per-layer ±1 sign mask (`u32[⌈D/32⌉]`, bit set = flip) before the rotation. */
  signs?: boolean;
}

const WARPS = 8;

/** Vectors (token, head pairs) one CTA of the store kernel covers. */
export function tqStoreVectorsPerBlock(headDim: number): number {
  return WARPS * (32 / turboQuantStoreLanes(headDim));
}

/** Grid of the store kernel for `tokens` tokens. */
export function tqStoreGrid(tokens: number, numKvHeads: number, headDim: number): number {
  return Math.ceil((tokens * numKvHeads) / tqStoreVectorsPerBlock(headDim));
}

/**
 * The store kernel. Parameters: `(k, v, slot_mapping, cache, status, [signmask,] T, k_stride,
 * v_stride, num_slots)` — strides in elements between tokens (multiples of 8), `status` an `i32[4]`
 * (`[count, token, slot, _]` of slots past the cache; zero it to reset).
 *
 * @example
 * ```ts
 * import { turboQuantLayout } from "../../dsl/turboquant/preset.ts";
 * import { tqStoreKernel } from "./tq_store.ts";
 * const ks = tqStoreKernel({ layout: turboQuantLayout("turboquant_4bit_nc", 128), inDtype: "bf16", numKvHeads: 8 });
 * console.log(ks.name); // tq_store_4bit_nc_d128_bf16_hk8
 * ```
 */
export function tqStoreKernel(o: TqStoreKernelOptions): KernelSource {
  const L = o.layout, D = L.headDim, HK = o.numKvHeads;
  if (!Number.isInteger(HK) || HK < 1) {
    throw new RangeError(`numKvHeads must be a positive integer, got ${HK}`);
  }
  const P = turboQuantStoreLanes(D), NG = D / 8 / P, VW = 32 / P;
  const SLOT = L.slotBytesAligned, off = L.offsets;
  const runBytes = Math.ceil((VW * SLOT + 16 * VW + 16) / 16) * 16; // runs, each at its own dst alignment
  const stageBytes = runBytes + Math.ceil(SLOT / 16) * 16; // + a junk slot for vectors that store nothing
  const name = `tq_store_${tqTag(L)}_${o.inDtype}_hk${HK}${o.signs ? "_signs" : ""}`;
  const params: ParamSpec[] = [
    { name: "k", kind: "ptr", dtype: o.inDtype, readonly: true },
    { name: "v", kind: "ptr", dtype: o.inDtype, readonly: true },
    { name: "slot_mapping", kind: "ptr", dtype: "i32", readonly: true },
    { name: "cache", kind: "ptr", dtype: "u8" },
    { name: "status", kind: "ptr", dtype: "i32" },
    ...(o.signs ? [{ name: "signmask", kind: "ptr", dtype: "u32", readonly: true } as ParamSpec] : []),
    { name: "T", kind: "i32" },
    { name: "k_stride", kind: "i64" },
    { name: "v_stride", kind: "i64" },
    { name: "num_slots", kind: "i64" },
  ];
  const up = unpackPair(o.inDtype);
  const source = `${TQ_PRELUDE}
#define D ${D}
#define P ${P}
#define NG ${NG}
#define VW ${VW}
#define WARPS ${WARPS}
#define HK ${HK}
#define SLOT ${SLOT}
#define STAGE ${stageBytes}

// 8 elements of a 16-byte group → float
__device__ __forceinline__ void unpack8(const uint4 w, float* x) {
  x[0] = ${up.lo("w.x")}; x[1] = ${up.hi("w.x")}; x[2] = ${up.lo("w.y")}; x[3] = ${up.hi("w.y")};
  x[4] = ${up.lo("w.z")}; x[5] = ${up.hi("w.z")}; x[6] = ${up.lo("w.w")}; x[7] = ${up.hi("w.w")};
}
${keyHelpers(L)}
// running min and max of packed pairs (exact)
__device__ __forceinline__ void minmax2(u32& mn, u32& mx, u32 w) {
  asm("min.${o.inDtype}x2 %0, %0, %1;" : "+r"(mn) : "r"(w));
  asm("max.${o.inDtype}x2 %0, %0, %1;" : "+r"(mx) : "r"(w));
}
// copy len bytes (even) smem → global, src ≡ dst (mod 16): u16 head, 16-byte body, u16 tail
__device__ __forceinline__ void copy_run(unsigned char* dst, const unsigned char* src, int len, int lane) {
  int head = (int)((16u - ((u32)(unsigned long long)dst & 15u)) & 15u);
  if (head > len) head = len;
  for (int i = 2 * lane; i < head; i += 64) *(u16*)(dst + i) = *(const u16*)(src + i);
  const int nv = (len - head) >> 4;
  for (int i = lane; i < nv; i += 32) ((uint4*)(dst + head))[i] = ((const uint4*)(src + head))[i];
  for (int i = head + (nv << 4) + 2 * lane; i < len; i += 64) *(u16*)(dst + i) = *(const u16*)(src + i);
}

${renderSignature({ entry: name, params }, { launchBounds: [WARPS * 32, 3] })} {
  __shared__ __align__(16) unsigned char stage_all[WARPS * STAGE];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int r = lane % P, qv = lane / P;
  unsigned char* stage = stage_all + warp * STAGE;
  const long long v0 = ((long long)blockIdx.x * WARPS + warp) * VW;  // first vector of the warp
  const long long vec = v0 + qv;
  const bool live = vec < (long long)T * HK;
  const int t = live ? (int)(vec / HK) : 0;
  const int h = (int)(vec - (long long)t * HK);
  long long slot = live ? (long long)slot_mapping[t] : -1;
  if (slot >= num_slots) {
    if (r == 0 && atomicAdd(status, 1) == 0) { status[1] = t; status[2] = (int)min(slot, 2147483647LL); }
    slot = -1;
  }
  const bool valid = slot >= 0;

  // ---- loads: all of K and V for this lane (2·NG 16-byte loads in flight)
  uint4 kw[NG], vw[NG];
  const u16* kp = (const u16*)k + (long long)t * k_stride + h * D;
  const u16* vp = (const u16*)v + (long long)t * v_stride + h * D;
#pragma unroll
  for (int j = 0; j < NG; ++j) {
    kw[j] = valid ? ldg_stream(kp + 8 * (r + P * j)) : make_uint4(0u, 0u, 0u, 0u);
    vw[j] = valid ? ldg_stream(vp + 8 * (r + P * j)) : make_uint4(0u, 0u, 0u, 0u);
  }

  // ---- where this vector's slot goes: runs = the heads of one token inside this warp
  const int t_first = (int)(v0 / HK);
  const int q_first = max(0, (int)((long long)t * HK - v0));           // first vector of my run
  const int h_first = (int)(v0 + q_first - (long long)t * HK);
  unsigned char* dst_run = cache + ((valid ? slot : 0LL) * HK + h_first) * SLOT;
  const int run_stage = 16 * (t - t_first) + (int)((u32)(unsigned long long)dst_run & 15u) + q_first * SLOT;
  const int run_len = (min(VW, (int)((long long)(t + 1) * HK - v0)) - q_first) * SLOT;
  unsigned char* my = valid ? stage + run_stage + (qv - q_first) * SLOT : stage + ${runBytes};  // junk: never copied

  // ---- key
  float x[NG * 8];
#pragma unroll
  for (int j = 0; j < NG; ++j) unpack8(kw[j], x + 8 * j);
${L.keyFp8 ? fp8KeyBody(off.keyCodes) : centroidKeyBody(L, o.signs === true)}

  // ---- value: per-vector min/max (on packed pairs: exact), codes = floor((v − lo)·(1/s) + 0.5)
  u32 mn2 = vw[0].x, mx2 = vw[0].x;
#pragma unroll
  for (int j = 0; j < NG; ++j) {
    minmax2(mn2, mx2, vw[j].x);
    minmax2(mn2, mx2, vw[j].y);
    minmax2(mn2, mx2, vw[j].z);
    minmax2(mn2, mx2, vw[j].w);
  }
  float lo = fminf(${up.lo("mn2")}, ${up.hi("mn2")}), hi = fmaxf(${up.lo("mx2")}, ${up.hi("mx2")});
#pragma unroll
  for (int j = 0; j < NG; ++j) unpack8(vw[j], x + 8 * j);
#pragma unroll
  for (int m = 1; m < P; m <<= 1) {
    lo = fminf(lo, __shfl_xor_sync(FULL, lo, m));
    hi = fmaxf(hi, __shfl_xor_sync(FULL, hi, m));
  }
  const float sc = fmaxf(__fdiv_rn(__fsub_rn(hi, lo), ${cFloat(2 ** L.valueBits - 1)}), ${cFloat(1e-8)});
  const float inv = __frcp_rn(sc);
#pragma unroll
  for (int j = 0; j < NG; ++j) {
${valuePackCode(L.valueBits)}
${stageBytesCode("my", `${off.valueCodes} + ${L.valueBits} * (r + P * j)`, L.valueBits, "packed")}
  }
  if (r == 0) {
    *(u16*)(my + ${off.valueScale}) = f32_to_f16(sc);
    *(u16*)(my + ${off.valueZero}) = f32_to_f16(lo);
  }
  __syncwarp();

  // ---- write the warp's runs with whole-warp coalesced stores
  const int is_first = (valid && qv == q_first && r == 0) ? 1 : 0;
#pragma unroll 1
  for (int q = 0; q < VW; ++q) {
    if (!__shfl_sync(FULL, is_first, q * P)) continue;
    const unsigned long long d = __shfl_sync(FULL, (unsigned long long)dst_run, q * P);
    const int s = __shfl_sync(FULL, run_stage, q * P);
    const int n = __shfl_sync(FULL, run_len, q * P);
    copy_run((unsigned char*)d, stage + s, n, lane);
  }
}
`;
  return {
    name,
    source,
    entry: name,
    params,
    block: [WARPS * 32, 1, 1],
    sharedBytes: 0,
    minArch: L.keyFp8 ? 89 : 80,
    keyParts: { family: "turboquant_store", preset: L.preset.name, headDim: D, numKvHeads: HK },
  };
}

/**
 * C lines packing the 8 value codes of group j into \`packed\`: z = (v − lo)·inv + 0.5 (never above
 * Q + 0.5 for finite inputs), floor by adding 2^23 rounding down — the float's low bits are then the code.
 * For ≤ 4 bits the words are summed unmasked and the 2^23 pattern's contribution subtracted once.
 */
function valuePackCode(bits: number): string {
  const code =
    `__float_as_uint(__fadd_rd(__fadd_rn(__fmul_rn(__fsub_rn(x[8 * j + i], lo), inv), 0.5f), 8388608.0f))`;
  if (bits > 4) {
    return `    u64 packed = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) packed |= (u64)(${code} & 0xffu) << (${bits} * i);`;
  }
  let c = 0n;
  for (let i = 0; i < 8; i++) c = (c + (0x4b000000n << BigInt(bits * i))) & 0xffffffffn;
  return `    u32 packed = ${
    ((0x100000000n - c) & 0xffffffffn).toString()
  }u;  // −Σ_i (2^23 bits) << ${bits}·i
#pragma unroll
    for (int i = 0; i < 8; ++i) packed += ${code} << (${bits} * i);`;
}

/** Store `bits` bytes of `word` (a u32/u64 of packed codes) at `base + offExpr` in shared memory. */
function stageBytesCode(base: string, offExpr: string, bits: number, word: string): string {
  const lines: string[] = [`    { unsigned char* sp = ${base} + ${offExpr};`];
  if (bits % 2 === 0) {
    for (let i = 0; i < bits / 2; i++) {
      lines.push(`      *(u16*)(sp + ${2 * i}) = (u16)(${word} >> ${16 * i});`);
    }
  } else {
    for (let i = 0; i < bits; i++) lines.push(`      sp[${i}] = (unsigned char)(${word} >> ${8 * i});`);
  }
  lines.push("    }");
  return lines.join("\n");
}

function keyHelpers(L: TurboQuantLayout): string {
  if (L.keyFp8) {
    return `__device__ __forceinline__ u32 e4m3x2(float lo, float hi) {
  u16 r; asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo)); return r;
}`;
  }
  const Lc = 2 ** L.keyBits;
  if (L.symmetric) {
    const K = L.keyBits - 1; // 2^K − 1 positive thresholds
    return `// The table is antisymmetric: search the 2^K−1 positive thresholds with |y| (a free operand
// modifier), then mirror the index for a set sign bit: index = L/2 + cnt, or L/2 − 1 − cnt.
__device__ __forceinline__ u32 bucket(float y, const float (&t)[${Math.max((1 << K) - 1, 1)}]) {
  const float af = fabsf(y);
${tqSearchTree(K, "af", "t", Lc / 2)}
  return cnt ^ ((u32)((int)__float_as_uint(y) >> 31) & ${Lc - 1}u);
}`;
  }
  return `__device__ __forceinline__ u32 bucket(float y, const float (&t)[${Lc - 1}]) {
${tqSearchTree(L.keyBits, "y", "t", 0)}
  return cnt;
}`;
}

/**
 * C lines computing `cnt = #{i : x ≥ t[i]}` for 2^K − 1 sorted thresholds by a complete binary search:
 * K compares, each against a threshold picked by selects on the bits decided above it.
 */
export function tqSearchTree(K: number, x: string, t: string, base: number): string {
  if (K === 0) return `  const u32 cnt = ${base}u;`;
  const pick = (level: number, target: number, prefix: number): string =>
    level === target
      ? `${t}[${prefix + (1 << target) - 1}]`
      : `(b${level} ? ${pick(level - 1, target, prefix + (1 << level))} : ${
        pick(level - 1, target, prefix)
      })`;
  const lines: string[] = [];
  for (let l = K - 1; l >= 0; l--) lines.push(`  const bool b${l} = ${x} >= ${pick(K - 1, l, 0)};`);
  const top = K - 1;
  const sum = [`(b${top} ? ${base + (1 << top)}u : ${base}u)`];
  for (let l = top - 1; l >= 0; l--) sum.push(`(b${l} ? ${1 << l}u : 0u)`);
  lines.push(`  const u32 cnt = ${sum.join(" + ")};`);
  return lines.join("\n");
}

function fp8KeyBody(keyOff: number): string {
  return `#pragma unroll
  for (int j = 0; j < NG; ++j) {
    const float* g = x + 8 * j;
    unsigned char* sp = my + ${keyOff} + 8 * (r + P * j);
    *(u16*)(sp + 0) = (u16)e4m3x2(g[0], g[1]);
    *(u16*)(sp + 2) = (u16)e4m3x2(g[2], g[3]);
    *(u16*)(sp + 4) = (u16)e4m3x2(g[4], g[5]);
    *(u16*)(sp + 6) = (u16)e4m3x2(g[6], g[7]);
  }`;
}

function centroidKeyBody(L: TurboQuantLayout, signs: boolean): string {
  const M = scaledMidpoints(L);
  const Lc = 2 ** L.keyBits;
  const thr = L.symmetric ? Array.from(M.slice(Lc / 2)) : Array.from(M);
  const nThr = Math.max(thr.length, 1);
  const thrInit = thr.length
    ? thr.map((m, i) => `thr[${i}] = __fmul_rn(${cFloat(m)}, nu);`).join(" ")
    : "thr[0] = 0.f;";
  const word = L.keyBits > 4 ? "u64" : "u32";
  return `  // norm: per-lane fma chain, xor tree over the P lanes
  float ss = 0.f;
#pragma unroll
  for (int e = 0; e < NG * 8; ++e) ss = __fmaf_rn(x[e], x[e], ss);
#pragma unroll
  for (int m = 1; m < P; m <<= 1) ss = __fadd_rn(ss, __shfl_xor_sync(FULL, ss, m));
  const float nrm = __fsqrt_rn(ss);
${
    signs
      ? `#pragma unroll
  for (int j = 0; j < NG; ++j) {
    const int d0 = 8 * (r + P * j);
    const u32 bits = (signmask[d0 >> 5] >> (d0 & 31)) & 0xffu;
#pragma unroll
    for (int i = 0; i < 8; ++i) x[8 * j + i] = __uint_as_float(__float_as_uint(x[8 * j + i]) ^ (((bits >> i) & 1u) << 31));
  }`
      : ""
  }
  // FWHT, unnormalized, stages in d-bit order: element bits (in-lane), lane bits (shuffles), group bits
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
  // thresholds scaled by the norm once per vector: y ≥ m·√D·(n + 1e-8) ⇔ (H·k/√D)/(n + 1e-8) ≥ m
  const float nu = __fadd_rn(nrm, ${cFloat(1e-8)});
  float thr[${nThr}];
  ${thrInit}
#pragma unroll
  for (int j = 0; j < NG; ++j) {
    ${word} packed = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) packed += (${word})bucket(x[8 * j + i], thr) << (${L.keyBits} * i);
${stageBytesCode("my", `${L.offsets.keyCodes} + ${L.keyBits} * (r + P * j)`, L.keyBits, "packed")}
  }
  if (r == 0) *(u16*)(my + ${L.offsets.keyNorm}) = f32_to_f16(nrm);`;
}
