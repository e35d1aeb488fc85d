/**
 * TurboQuant decode attention, the plain version: one CTA of 128 threads per (KV-split, KV head,
 * sequence), scalar CUDA-core math, any preset (any code width 1..8, any codebook, fp8 keys, any head
 * dim). It is kiln's generic path and the GPU cross-check of the tensor-core kernel in `tq_decode.ts`.
 *
 * Per tile of 128 tokens: thread i scores token i for the G query heads of the KV head (centroid
 * gather from a shared table, NC norm, dot with the rotated query in shared memory); an online softmax
 * over the tile; then thread i accumulates output dims i, i+128, … over the tile's tokens, reading the
 * value codes (coalesced across threads: consecutive dims of one slot).
 *
 * Split-KV contract shared with `tq_decode.ts` and the merge kernel below: split s of a sequence of
 * length L covers tokens `[s·c, min(L, (s+1)·c))` with `c = roundup(⌈L/S⌉, 16)`; it writes
 * `part_o[b, hq, s, :] = O/l` (f32) and `part_lse[b, hq, s] = m + log2 l` (log2 units, −inf when
 * empty). With S = 1 the decode kernel writes `out` directly and no merge runs.
 *
 * Napkin math: per cached (token, head) it does ~G·D multiply-adds for the scores and G·D for the
 * values, ≈ 8·D flops per slot byte-pair at G = 4 — 2·B·L·Hq·D·2 = 1 GFLOP at B 16 × 8k, ≈ 60 µs of
 * scalar issue on an H100 at best. The tensor-core kernel exists because this is not memory-bound.
 *
 * @module
 */
import { renderSignature } from "../kernel_source.ts";
import type { KernelSource, ParamSpec } from "../kernel_source.ts";
import type { TurboQuantLayout } from "../../dsl/turboquant/preset.ts";
import { cFloat } from "../../dsl/turboquant/f32.ts";
import { cFloatList, TQ_PRELUDE, type TqInDtype, tqTag } from "./tq_common.ts";

/** What a decode kernel is built for. */
export interface TqDecodeKernelOptions {
  layout: TurboQuantLayout;
  /** Element type of q and out. */
  inDtype: TqInDtype;
  numHeads: number;
  numKvHeads: number;
  blockSize: number;
  /** Queries are sign-flipped before the rotation (the layer stored keys with a sign vector). */
  signs?: boolean;
}

/** The parameter list every TurboQuant decode kernel takes, in order. */
export function tqDecodeParams(o: TqDecodeKernelOptions): ParamSpec[] {
  return [
    { name: "q", kind: "ptr", dtype: o.inDtype, readonly: true },
    { name: "cache", kind: "ptr", dtype: "u8", readonly: true },
    { name: "block_tables", kind: "ptr", dtype: "i32", readonly: true },
    { name: "seq_lens", kind: "ptr", dtype: "i32", readonly: true },
    { name: "out", kind: "ptr", dtype: o.inDtype },
    { name: "part_o", kind: "ptr", dtype: "f32" },
    { name: "part_lse", kind: "ptr", dtype: "f32" },
    ...(o.signs ? [{ name: "signmask", kind: "ptr", dtype: "u32", readonly: true } as ParamSpec] : []),
    { name: "bt_stride", kind: "i32" },
    { name: "num_splits", kind: "i32" },
    { name: "scale_log2", kind: "f32" },
  ];
}

/** Check the head counts and block size a decode kernel needs. */
export function tqCheckDecodeGeometry(o: TqDecodeKernelOptions): void {
  const { numHeads: Hq, numKvHeads: Hk, blockSize: BS } = o;
  if (!Number.isInteger(Hk) || Hk < 1 || !Number.isInteger(Hq) || Hq < 1 || Hq % Hk !== 0) {
    throw new RangeError(`numHeads (${Hq}) must be a positive multiple of numKvHeads (${Hk})`);
  }
  if (!Number.isInteger(BS) || BS < 16 || BS % 16 !== 0) {
    throw new RangeError(`blockSize must be a multiple of 16, got ${BS}`);
  }
}

/** C text shared by both decode kernels: the split range and the empty-split / output writers. */
export const TQ_SPLIT_HELPERS = `
// split s of a length-L sequence: tokens [t0, t1), chunk a multiple of 16
__device__ __forceinline__ void split_range(int L, int S, int s, int& t0, int& t1) {
  const int c = (((L + S - 1) / S) + 15) & ~15;
  t0 = min(L, s * c);
  t1 = min(L, t0 + c);
}
`;

const THREADS = 128;

/**
 * The generic decode kernel. Grid `[S, Hk, B]`, 128 threads, parameters {@linkcode tqDecodeParams}.
 *
 * @example
 * ```ts
 * import { turboQuantLayout } from "../../dsl/turboquant/preset.ts";
 * import { tqDecodeSimpleKernel } from "./tq_decode_simple.ts";
 * const ks = tqDecodeSimpleKernel({ layout: turboQuantLayout("turboquant_k8v4", 96), inDtype: "bf16", numHeads: 16, numKvHeads: 4, blockSize: 16 });
 * console.log(ks.name); // tq_decode_simple_k8v4_d96_bf16_g4_hk4_bs16
 * ```
 */
export function tqDecodeSimpleKernel(o: TqDecodeKernelOptions): KernelSource {
  tqCheckDecodeGeometry(o);
  const L = o.layout, D = L.headDim, G = o.numHeads / o.numKvHeads, HK = o.numKvHeads;
  const DPT = Math.ceil(D / THREADS);
  if (4 * G * (D + THREADS) > 40 * 1024) {
    throw new RangeError(
      `${G} query heads per KV head at head dim ${D} exceed the plain decode kernel's shared memory`,
    );
  }
  const off = L.offsets, SLOT = L.slotBytesAligned;
  const name = `tq_decode_simple_${tqTag(L)}_${o.inDtype}_g${G}_hk${HK}_bs${o.blockSize}${
    o.signs ? "_signs" : ""
  }`;
  const params = tqDecodeParams(o);
  const toOut = o.inDtype === "bf16" ? "f32_to_bf16" : "f32_to_f16";
  const C = L.centroids ? Float32Array.from(L.centroids) : undefined;
  const keyScore = L.keyFp8
    ? `      for (int d = 0; d < D; ++d) {
        const float kv = e4m3_to_f32(kp[d]);
#pragma unroll
        for (int g = 0; g < G; ++g) dot[g] = fmaf(qs[g * D + d], kv, dot[g]);
      }
      fac = 1.f;`
    : `      float ss = 0.f;
      for (int d = 0; d < D; ++d) {
        const float cv = ctab[read_code(kp, d, ${L.keyBits})];
        ss = fmaf(cv, cv, ss);
#pragma unroll
        for (int g = 0; g < G; ++g) dot[g] = fmaf(qs[g * D + d], cv, dot[g]);
      }
      const float n = f16_to_f32(ld_u16(kp + ${off.keyNorm}));
      fac = ${L.normCorrection ? "n * rsqrtf(ss + 1e-16f)" : "n"};`;
  const source = `${TQ_PRELUDE}${TQ_SPLIT_HELPERS}
#define D ${D}
#define G ${G}
#define HK ${HK}
#define BS ${o.blockSize}
#define SLOT ${SLOT}
#define NT ${THREADS}
#define DPT ${DPT}
${C ? `__constant__ float CTAB[${C.length}] = { ${cFloatList(C)} };` : ""}
__device__ __forceinline__ u32 ld_u16(const unsigned char* p) { return (u32)p[0] | ((u32)p[1] << 8); }
// code d of a b-bit LSB-first stream (reads one byte past the field for the last codes: still in the slot)
__device__ __forceinline__ u32 read_code(const unsigned char* p, int d, int b) {
  const int bit = d * b;
  return (ld_u16(p + (bit >> 3)) >> (bit & 7)) & ((1u << b) - 1u);
}
__device__ __forceinline__ float e4m3_to_f32(unsigned char x) {
  // e4m3fn: sign, 4-bit exponent (bias 7), 3-bit mantissa; no infinities, 0x7f/0xff NaN
  const u32 e = (x >> 3) & 15u, m = x & 7u;
  float v = e ? __uint_as_float(((e + 120u) << 23) | (m << 20)) : (float)m * 0.001953125f;
  if ((x & 0x7fu) == 0x7fu) v = __int_as_float(0x7fffffff);
  return (x & 0x80u) ? -v : v;
}
__device__ __forceinline__ float block_max(float v, float* red) {
  for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL, v, o));
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  v = red[0];
  for (int w = 1; w < NT / 32; ++w) v = fmaxf(v, red[w]);
  return v;
}
__device__ __forceinline__ float block_sum(float v, float* red) {
  for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(FULL, v, o);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  v = red[0];
  for (int w = 1; w < NT / 32; ++w) v += red[w];
  return v;
}

${renderSignature({ entry: name, params }, { launchBounds: [THREADS] })} {
  __shared__ float qs[G * D];
  __shared__ float sc[G * NT];
  __shared__ float vsc[NT], vlo[NT];
  __shared__ long long soff[NT];
  __shared__ float red[NT / 32];
  ${
    C
      ? `__shared__ float ctab[${C.length}];\n  for (int i = threadIdx.x; i < ${C.length}; i += NT) ctab[i] = CTAB[i];`
      : ""
  }
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
  const int S = num_splits, Hq = HK * G;
  int t0, t1;
  split_range(seq_lens[b], S, split, t0, t1);

  // query rows of this KV head → shared, rotated (H·(s ⊙ q)/√D) for centroid keys
  for (int e = tid; e < G * D; e += NT) {
    const int g = e / D, d = e % D;
    const u16 raw = ((const u16*)q)[((long long)b * Hq + h * G + g) * D + d];
    float x = ${o.inDtype === "bf16" ? "__uint_as_float((u32)raw << 16)" : "f16_to_f32(raw)"};
    ${o.signs ? "if ((signmask[d >> 5] >> (d & 31)) & 1u) x = -x;" : ""}
    qs[e] = x;
  }
  __syncthreads();
${
    L.rotate
      ? `  for (int hs = 1; hs < D; hs <<= 1) {
    for (int p = tid; p < G * D / 2; p += NT) {
      const int g = p / (D / 2), r = p % (D / 2);
      const int i = g * D + (r / hs) * 2 * hs + (r % hs);
      const float a = qs[i], c = qs[i + hs];
      qs[i] = a + c;
      qs[i + hs] = a - c;
    }
    __syncthreads();
  }
  for (int e = tid; e < G * D; e += NT) qs[e] *= ${cFloat(1 / Math.sqrt(D))};
  __syncthreads();`
      : ""
  }
  float m[G], l[G], acc[G][DPT];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -__int_as_float(0x7f800000);
    l[g] = 0.f;
#pragma unroll
    for (int j = 0; j < DPT; ++j) acc[g][j] = 0.f;
  }
  for (int tb = t0; tb < t1; tb += NT) {
    const int t = tb + tid;
    const bool valid = t < t1;
    // ---- scores: thread = token
    {
      float dot[G];
#pragma unroll
      for (int g = 0; g < G; ++g) dot[g] = 0.f;
      float fac = 0.f;
      long long so = 0;
      if (valid) {
        const int blk = block_tables[(long long)b * bt_stride + t / BS];
        so = (((long long)blk * BS + t % BS) * HK + h) * SLOT;
        const unsigned char* kp = cache + so;
${keyScore}
        vsc[tid] = f16_to_f32(ld_u16(kp + ${off.valueScale}));
        vlo[tid] = f16_to_f32(ld_u16(kp + ${off.valueZero}));
      }
      soff[tid] = so;
#pragma unroll
      for (int g = 0; g < G; ++g) sc[g * NT + tid] = valid ? dot[g] * fac * scale_log2 : -__int_as_float(0x7f800000);
    }
    __syncthreads();
    // ---- online softmax per head over the tile
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const float x = sc[g * NT + tid];
      const float mn = fmaxf(m[g], block_max(x, red));
      const float ms = mn == -__int_as_float(0x7f800000) ? 0.f : mn;
      const float alpha = exp2f(m[g] - ms);
      const float p = exp2f(x - ms);
      sc[g * NT + tid] = p;
      l[g] = l[g] * alpha + block_sum(p, red);
      m[g] = mn;
#pragma unroll
      for (int j = 0; j < DPT; ++j) acc[g][j] *= alpha;
    }
    __syncthreads();
    // ---- values: thread = output dims
    const int n = min(NT, t1 - tb);
    for (int i = 0; i < n; ++i) {
      const unsigned char* vp = cache + soff[i] + ${off.valueCodes};
      const float s = vsc[i], z = vlo[i];
#pragma unroll
      for (int j = 0; j < DPT; ++j) {
        const int d = tid + NT * j;
        if (d < D) {
          const float v = fmaf((float)read_code(vp, d, ${L.valueBits}), s, z);
#pragma unroll
          for (int g = 0; g < G; ++g) acc[g][j] = fmaf(sc[g * NT + i], v, acc[g][j]);
        }
      }
    }
    __syncthreads();
  }
  // ---- results
#pragma unroll
  for (int g = 0; g < G; ++g) {
    const int hq = h * G + g;
    const float inv = l[g] > 0.f ? 1.f / l[g] : 0.f;
#pragma unroll
    for (int j = 0; j < DPT; ++j) {
      const int d = tid + NT * j;
      if (d >= D) continue;
      if (S == 1) out[((long long)b * Hq + hq) * D + d] = ${toOut}(acc[g][j] * inv);
      else part_o[(((long long)b * Hq + hq) * S + split) * D + d] = acc[g][j] * inv;
    }
    if (S > 1 && tid == 0) part_lse[((long long)b * Hq + hq) * S + split] = l[g] > 0.f ? m[g] + __log2f(l[g]) : -__int_as_float(0x7f800000);
  }
}
`;
  return {
    name,
    source,
    entry: name,
    params,
    block: [THREADS, 1, 1],
    sharedBytes: 0,
    minArch: 80,
    keyParts: {
      family: "turboquant_decode_simple",
      preset: L.preset.name,
      headDim: D,
      G,
      Hk: HK,
      blockSize: o.blockSize,
    },
  };
}

/** Options of {@linkcode tqMergeKernel}. */
export interface TqMergeKernelOptions {
  headDim: number;
  inDtype: TqInDtype;
}

/**
 * The split-KV merge: `out[b, hq, :] = Σ_s 2^(lse_s − M)·o_s / Σ_s 2^(lse_s − M)`, M the largest
 * lse. Grid `B·Hq`, 128 threads; parameters `(part_o, part_lse, out, num_splits)`. All splits empty
 * (a length-0 sequence) gives zeros.
 */
export function tqMergeKernel(o: TqMergeKernelOptions): KernelSource {
  const D = o.headDim;
  const name = `tq_merge_d${D}_${o.inDtype}`;
  const params: ParamSpec[] = [
    { name: "part_o", kind: "ptr", dtype: "f32", readonly: true },
    { name: "part_lse", kind: "ptr", dtype: "f32", readonly: true },
    { name: "out", kind: "ptr", dtype: o.inDtype },
    { name: "num_splits", kind: "i32" },
  ];
  const toOut = o.inDtype === "bf16" ? "f32_to_bf16" : "f32_to_f16";
  const source = `${TQ_PRELUDE}
#define D ${D}
${renderSignature({ entry: name, params }, { launchBounds: [128] })} {
  const long long row = blockIdx.x;
  const int S = num_splits;
  const float* lse = part_lse + row * S;
  float M = -__int_as_float(0x7f800000);
  for (int s = 0; s < S; ++s) M = fmaxf(M, lse[s]);
  for (int d = threadIdx.x; d < D; d += 128) {
    float num = 0.f, den = 0.f;
    if (M != -__int_as_float(0x7f800000)) {
      for (int s = 0; s < S; ++s) {
        const float w = exp2f(lse[s] - M);
        num = fmaf(w, part_o[(row * S + s) * D + d], num);
        den += w;
      }
    }
    out[row * D + d] = ${toOut}(den > 0.f ? num / den : 0.f);
  }
}
`;
  return { name, source, entry: name, params, block: [128, 1, 1], sharedBytes: 0, minArch: 80 };
}
