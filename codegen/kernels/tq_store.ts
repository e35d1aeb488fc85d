/**
 * TurboQuant store: one fused kernel per call — K and V rows (bf16/f16, `[T, Hk, D]`, token stride
 * free) → norm, in-register fast Walsh–Hadamard transform, centroid index by table lookup, packing,
 * value min/max quantization — scattered into the paged cache `u8[numBlocks, blockSize, Hk, slot]`
 * through `slot_mapping` (negative slots skipped; slots past the cache are skipped and reported in
 * `status`). Bit-exact with `encodeSlot` in `dsl/turboquant/store_ref.ts`.
 *
 * Work split: a tile is VW = 32/P vectors (token, head pairs), one per P lanes of a warp (P = 2/4/8
 * for D = 64/128/256); lane r of a vector holds the 8-element groups r, r+P, …. Each warp walks the
 * tiles `warp, warp + W, …` (W = resident warps of the grid) through one tile buffer per warp: the next
 * tile's K is copied in (`cp.async`, 16-byte copies, each lane its own chunks) as soon as this tile's K is
 * in registers, its V once this V is, so the loads run under the arithmetic. The slot bytes are assembled in a per-warp stage
 * and written as whole runs (all heads of a token are contiguous) with 16-byte stores.
 *
 * Versions, side by side:
 * - vLLM: norm, divide and a dense fp32 GEMM with H in PyTorch (three kernels and an fp32 copy of K),
 *   then a Triton quantize kernel — 0.11 TB/s as eager PyTorch on the H200.
 * - kiln v1 (one tile per warp, loads into registers, binary-search index): ~1330 instructions per
 *   tile at ~62% issue efficiency → 61–67% of copy for the rotated presets.
 * - kiln v2 (this): the index is one shared-memory table lookup (7 instructions per coordinate instead
 *   of 13), values need 2 float ops per element instead of 4, and the cp.async pipeline overlaps each
 *   warp's loads with its arithmetic.
 * - tried in session 2 (H200, ncu on 3bit_nc: issue slots 71% busy, 1093 warp-instructions per tile,
 *   top stall "not selected" — issue-bound at ~100 µs for every rotated preset): 6 CTAs per SM at 80
 *   registers, 1% slower; 3 tile buffers with the output stage in the computed tile's dead K half (two
 *   tiles in flight, 4 CTAs per SM), 5–18% slower. Both dropped: the warps, not the bytes in flight,
 *   are what this kernel needs.
 * - session 3 (H200, same run as the old kernel, 65536 × 8 × 128):
 *   - kept: the "refill" pipeline (one buffer per warp; the next tile's K is issued as soon as this
 *     tile's K is in registers, its V once V is): half the shared memory, k8v4 97.0 → 94.2 µs
 *     (93% → 96% of copy), the rotated presets unchanged (99.7–99.9 µs); the two-buffer version removed.
 *   - dropped: P = 2 lanes per vector (16-vector tiles; 21% fewer instructions per vector): 121 µs with
 *     two buffers (3 CTAs/SM by shared memory), 109–112 µs with the refill pipeline (5 CTAs/SM).
 *   - dropped: lane-contiguous groups (each lane's codes one byte run: 3-bit codes as u16 stores, 24 →
 *     12 stores per lane, passes bit-exact): read back from a padded shared layout it cost more than it
 *     saved — 16 B of row padding split every 32 B global sector into two L2 requests (L2 read
 *     sectors 8.4 M → 12.6 M, k8v4 96 → 112 µs); with 32 B padding the reads 2-way conflict and the
 *     rotated presets ran 0.5–1% slower than this layout.
 *   ncu on 3bit_nc (refill): issue slots 70% busy, shared-memory wavefronts 66% of peak (stores 2-way
 *   conflicted), DRAM 65% of peak, L2 81% — no single limit; 78.6–79.0% of copy.
 *   - kept: the key rotation's two lane stages done in registers after a transpose through a per-warp
 *     shared area (tq_store_key.ts; 64 SHFL + 64 FFMA → 64 FADD + 16 vector shared accesses per lane
 *     and tile, 1215 → 1164 SASS in the loop; stage order in `turboQuantStoreStageOrder`, which the
 *     reference follows). Same run: 3bit_nc 99.9 → 96.9 µs (78.6 → 81.0% of copy), k3v4_nc 99.5 →
 *     95.2 (81.0 → 84.6%), 4bit_nc 100.2 → 96.0 (82.5 → 86.0%), k8v4 unchanged (96.4%).
 *
 * Napkin math (T = 65536 tokens × Hk 8 × D 128, bf16): reads 2·T·Hk·D·2 = 268 MB, writes T·Hk·134 =
 * 70 MB (4bit_nc) → 338 MB ≈ 83 µs at 4.09 TB/s. Compute: ~950 instructions per tile of 8 vectors
 * (per key element: unpack 1, norm 1, FWHT 9, index + pack 7; per value element ~4.5; ~250 per tile of
 * addressing, scalars and the run copy) → 65536 tiles × 950 / (132 SMs × 4 schedulers × 1.9 GHz) ≈
 * 62 µs of issue: under the memory time once the two overlap — expect ~85–95 µs (≥ 85% of copy).
 *
 * @module
 */
import { renderSignature } from "../kernel_source.ts";
import type { KernelSource, ParamSpec } from "../kernel_source.ts";
import type { TurboQuantLayout } from "../../dsl/turboquant/preset.ts";
import { turboQuantKeyQuantizer, turboQuantStoreLanes } from "../../dsl/turboquant/store_ref.ts";
import { cFloat } from "../../dsl/turboquant/f32.ts";
import { TQ_PRELUDE, type TqInDtype, tqTag, unpackPair } from "./tq_common.ts";
import {
  tqKeyLut,
  tqKeyQuantizerC,
  tqStageRunC,
  tqStorePlanC,
  tqStoreRunBytes,
  tqValuePackC,
} from "./tq_store_parts.ts";
import { tqCentroidKeyC, tqFp8KeyC, tqTransposeBytes, tqTransposeStride } from "./tq_store_key.ts";

/** Options of {@linkcode tqStoreKernel}. */
export interface TqStoreKernelOptions {
  layout: TurboQuantLayout;
  /** Element type of K and V. */
  inDtype: TqInDtype;
  numKvHeads: number;
  /** The kernel takes a per-layer ±1 sign mask (`u32[⌈D/32⌉]`, bit set = flip) before the rotation. */
  signs?: boolean;
}

const WARPS = 4;

/** Shape and shared memory of the store kernel for a layout. */
export interface TqStoreGeometry {
  warps: number;
  /** Vectors per tile (one tile per warp at a time). */
  vectorsPerTile: number;
  /** Bytes of one tile's raw K and V in shared memory (the warp's tile buffer). */
  rawBytes: number;
  /** Bytes of the per-warp output stage (runs + a junk slot). */
  stageBytes: number;
  /** Bytes of the per-warp transpose area of the key rotation (0 for fp8 keys or one lane per vector). */
  transposeBytes: number;
  /** Static shared memory per CTA. */
  sharedBytes: number;
}

/** The geometry {@linkcode tqStoreKernel} uses. */
export function tqStoreGeometry(
  layout: TurboQuantLayout,
): TqStoreGeometry {
  const D = layout.headDim, P = turboQuantStoreLanes(D), NG = D / 8 / P, VW = 32 / P;
  const SLOT = layout.slotBytesAligned;
  const rawBytes = 2 * NG * 32 * 16;
  const stageBytes = tqStoreRunBytes(VW, SLOT) + Math.ceil(SLOT / 16) * 16;
  const lut = layout.keyFp8 ? undefined : tqKeyLut(layout);
  const transposeBytes = layout.keyFp8 ? 0 : tqTransposeBytes(D, P);
  return {
    warps: WARPS,
    vectorsPerTile: VW,
    rawBytes,
    stageBytes,
    transposeBytes,
    sharedBytes: WARPS * (rawBytes + stageBytes + transposeBytes) +
      (lut ? 8 * lut.cells : 0),
  };
}

/**
 * Grid of the store kernel: one CTA per {@linkcode TqStoreGeometry.warps} tiles, at most
 * `residentCtas` (the CTAs the device holds at once; the warps then loop over the tiles).
 */
export function tqStoreGrid(
  tokens: number,
  numKvHeads: number,
  layout: TurboQuantLayout,
  residentCtas = Infinity,
): number {
  const g = tqStoreGeometry(layout);
  const tiles = Math.ceil((tokens * numKvHeads) / g.vectorsPerTile);
  return Math.max(1, Math.min(Math.ceil(tiles / g.warps), residentCtas));
}

/**
 * The store kernel. Parameters: `(k, v, slot_mapping, cache, status, [signmask,] T, k_stride,
 * v_stride, num_slots)` — strides in elements between tokens (multiples of 8; k and v 16-byte
 * aligned), `cache` 16-byte aligned, `status` an `i32[4]` (`[count, token, slot, _]` of slots past the
 * cache; zero it to reset). Block `32·warps`, grid {@linkcode tqStoreGrid}.
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
  const geo = tqStoreGeometry(L);
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
  const keyC = L.keyFp8 ? undefined : tqKeyQuantizerC(L);
  const lut = !L.keyFp8 && tqKeyLut(L) !== undefined;
  const off = L.offsets, vb = L.valueBits;
  const source = `${TQ_PRELUDE}
#define D ${D}
#define P ${P}
#define NG ${NG}
#define VW ${VW}
#define WARPS ${WARPS}
#define HK ${HK}
#define SLOT ${L.slotBytesAligned}
#define RAW ${geo.rawBytes}
#define STAGE ${geo.stageBytes}
#define JUNK ${tqStoreRunBytes(VW, L.slotBytesAligned)}
#define TRB ${geo.transposeBytes}
#define TR_R ${L.keyFp8 ? 0 : tqTransposeStride(D, P)}
__device__ __forceinline__ long long imax(long long a, long long b) { return a > b ? a : b; }
__device__ __forceinline__ long long imin(long long a, long long b) { return a < b ? a : b; }
__device__ __forceinline__ long long idiv(long long a, long long b) { return a / b; }
__device__ __forceinline__ void cp_async16(u32 dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory"); }
__device__ __forceinline__ uint4 lds128(u32 a) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(a) : "memory");
  return v;
}
__device__ __forceinline__ void sts128(u32 a, const float* v) {
  asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};" :: "r"(a), "f"(v[0]), "f"(v[1]), "f"(v[2]), "f"(v[3]) : "memory");
}
__device__ __forceinline__ void lds128f(u32 a, float* v) {
  asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(v[0]), "=f"(v[1]), "=f"(v[2]), "=f"(v[3]) : "r"(a) : "memory");
}
// FWHT stages across the first N groups a lane holds (group bits 1, 2, … < N), in order
template <int N> __device__ __forceinline__ void fwht_groups(float* x) {
#pragma unroll
  for (int s = 1; s < N; s <<= 1) {
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
}
// 8 elements of a 16-byte group → float
__device__ __forceinline__ void unpack8(const uint4 w, float* x) {
  x[0] = ${up.lo("w.x")}; x[1] = ${up.hi("w.x")}; x[2] = ${up.lo("w.y")}; x[3] = ${up.hi("w.y")};
  x[4] = ${up.lo("w.z")}; x[5] = ${up.hi("w.z")}; x[6] = ${up.lo("w.w")}; x[7] = ${up.hi("w.w")};
}
// an f16 at an even byte offset, or byte-wise
__device__ __forceinline__ void st_h(unsigned char* p, u16 h, bool even) {
  if (even) *(u16*)p = h; else { p[0] = (unsigned char)h; p[1] = (unsigned char)(h >> 8); }
}
${
    L.keyFp8
      ? `__device__ __forceinline__ u32 e4m3x2(float lo, float hi) {
  u16 r; asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(r) : "f"(hi), "f"(lo)); return r;
}`
      : keyC!.helpers
  }
// running min and max of packed pairs (exact)
__device__ __forceinline__ void minmax2(u32& mn, u32& mx, u32 w) {
  asm("min.${o.inDtype}x2 %0, %0, %1;" : "+r"(mn) : "r"(w));
  asm("max.${o.inDtype}x2 %0, %0, %1;" : "+r"(mx) : "r"(w));
}
// copy len bytes (even, ≤ 32·16 + head + tail) smem → global, src ≡ dst (mod 16): u16 head, 16-byte body, u16 tail
__device__ __forceinline__ void copy_run(unsigned char* dst, const unsigned char* src, int len, int lane) {
  int head = (int)((16u - ((u32)(unsigned long long)dst & 15u)) & 15u);
  if (head > len) head = len;
  if (2 * lane < head) *(u16*)(dst + 2 * lane) = *(const u16*)(src + 2 * lane);
  const int nv = (len - head) >> 4;
  for (int i = lane; i < nv; i += 32) ((uint4*)(dst + head))[i] = ((const uint4*)(src + head))[i];
  const int tail = head + (nv << 4) + 2 * lane;
  if (tail < len) *(u16*)(dst + tail) = *(const u16*)(src + tail);
}

${renderSignature({ entry: name, params }, { launchBounds: [WARPS * 32, 5] })} {
  extern __shared__ __align__(16) unsigned char smem[];
  unsigned char* raw_all = smem;
  unsigned char* stage_all = smem + WARPS * RAW;
  unsigned char* tr_all = stage_all + WARPS * STAGE;
${lut ? "  uint2* key_lut = (uint2*)(tr_all + WARPS * TRB);" : ""}
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int r = lane % P, qv = lane / P;
  unsigned char* stage = stage_all + warp * STAGE;
  const u32 tr = (u32)__cvta_generic_to_shared(tr_all + warp * TRB);
  const u32 raw = (u32)__cvta_generic_to_shared(raw_all + warp * RAW) + 16 * lane;  // chunk c at + 512·c
${
    lut
      ? `  ${keyC!.fill}
  const u32 lut_adj = (u32)__cvta_generic_to_shared(key_lut) - (0x4b000000u << 3);
  __syncthreads();`
      : ""
  }
  const int nvec = T * HK, ntiles = (nvec + VW - 1) / VW;  // T·Hk < 2^31 (checked by the op)
  const int tstride = gridDim.x * WARPS;
  // issue tile tl's K (parts & 1) and V (parts & 2) chunks (this lane's groups r + P·j) into the buffer;
  // returns its slot. Vectors past the end read row 0 (in bounds) and store nothing.
  auto issue = [&](int tl, const int parts) -> long long {
    const u32 vec = (u32)tl * VW + qv;
    const bool live = vec < (u32)nvec;
    const u32 t = live ? vec / HK : 0u, h = live ? vec % HK : 0u;
    const uint4* kp = (const uint4*)((const u16*)k + (long long)t * k_stride + h * D) + r;
    const uint4* vp = (const uint4*)((const u16*)v + (long long)t * v_stride + h * D) + r;
#pragma unroll
    for (int j = 0; j < NG; ++j) {
      if (parts & 1) cp_async16(raw + 512 * j, kp + P * j);
      if (parts & 2) cp_async16(raw + 512 * (NG + j), vp + P * j);
    }
    return live && (parts & 1) ? (long long)slot_mapping[t] : -1LL;
  };

  int tile = blockIdx.x * WARPS + warp;
  long long slot_cur = -1;
  if (tile < ntiles) slot_cur = issue(tile, 3);
  cp_commit();
#pragma unroll 1
  while (tile < ntiles) {
    const int nxt = tile + tstride;
    long long slot_nxt = -1;
    cp_wait<0>();  // this tile's K and V have landed (each lane reads only its own chunks)

    const int v0 = tile * VW, vec = v0 + qv;   // the tile's first vector, and this lane's
    const int t = vec < nvec ? (int)((u32)vec / HK) : 0;
    long long slot = slot_cur;
    if (slot >= num_slots) {
      if (r == 0 && atomicAdd(status, 1) == 0) { status[1] = t; status[2] = (int)min(slot, 2147483647LL); }
      slot = -1;
    }
    const bool valid = slot >= 0;
    // ---- where this vector's slot goes: runs = the heads of one token inside this tile (tq_store_parts.ts)
    const int cache_lo = (int)((unsigned long long)cache & 15);
${tqStorePlanC().replaceAll("\n", "\n  ").replace(/^/, "  ")}
    unsigned char* my = stage + my_off;

    // ---- key
    float x[NG * 8];
#pragma unroll
    for (int j = 0; j < NG; ++j) unpack8(lds128(raw + 512 * j), x + 8 * j);
    // K is in registers (the unpack consumed every load): refill its half with the next tile's K
    if (nxt < ntiles) slot_nxt = issue(nxt, 1);
    cp_commit();
${L.keyFp8 ? tqFp8KeyC(L) : tqCentroidKeyC(L, P, o.signs === true, lut, keyC!.flip)}

    // ---- value: per-vector min/max (on packed pairs: exact); codes = ⌊(v − lo')·(1/s)⌋, lo' = lo − s/2
    uint4 vw[NG];
#pragma unroll
    for (int j = 0; j < NG; ++j) vw[j] = lds128(raw + 512 * (NG + j));
    u32 mn2 = vw[0].x, mx2 = vw[0].x;
#pragma unroll
    for (int j = 0; j < NG; ++j) {
      minmax2(mn2, mx2, vw[j].x);
      minmax2(mn2, mx2, vw[j].y);
      minmax2(mn2, mx2, vw[j].z);
      minmax2(mn2, mx2, vw[j].w);
    }
    if (nxt < ntiles) issue(nxt, 2);  // V is in registers: refill its half
    cp_commit();
    float lo = fminf(${up.lo("mn2")}, ${up.hi("mn2")}), hi = fmaxf(${up.lo("mx2")}, ${up.hi("mx2")});
#pragma unroll
    for (int m = 1; m < P; m <<= 1) {
      lo = fminf(lo, __shfl_xor_sync(FULL, lo, m));
      hi = fmaxf(hi, __shfl_xor_sync(FULL, hi, m));
    }
    const float sc = fmaxf(__fdiv_rn(__fsub_rn(hi, lo), ${cFloat(2 ** vb - 1)}), ${cFloat(1e-8)});
    const float inv = __frcp_rn(sc), lo2 = __fmaf_rn(-0.5f, sc, lo);
#pragma unroll
    for (int j = 0; j < NG; ++j) {
      unpack8(vw[j], x + 8 * j);
  ${tqValuePackC(vb).replaceAll("\n", "\n  ")}
  ${
    // one group's run: u16 stores only where every group starts even (even offset, even width)
    tqStageRunC(
      "my",
      `${off.valueCodes} + ${vb} * (r + P * j)`,
      vb,
      ["packed"],
      off.valueCodes % 2 === 0 && vb % 2 === 0,
    )
      .replaceAll("\n", "\n  ")}
    }
    if (r == 0) {
      st_h(my + ${off.valueScale}, f32_to_f16(sc), ${off.valueScale % 2 === 0});
      st_h(my + ${off.valueZero}, f32_to_f16(lo), ${off.valueZero % 2 === 0});
    }
    __syncwarp();

    // ---- write the tile's runs (one per token) with whole-warp coalesced stores
    unsigned lead = __ballot_sync(FULL, valid && qv == q_first && r == 0);
    while (lead) {
      const int q = __ffs(lead) - 1;
      lead &= lead - 1;
      const long long d = __shfl_sync(FULL, dst_off, q);
      const int s = __shfl_sync(FULL, run_stage, q);
      const int n = __shfl_sync(FULL, run_len, q);
      copy_run(cache + d, stage + s, n, lane);
    }
    __syncwarp();  // the stage is rewritten by the next tile
    slot_cur = slot_nxt;
    tile = nxt;
  }
  cp_wait<0>();
}
`;
  return {
    name,
    source,
    entry: name,
    params,
    block: [WARPS * 32, 1, 1],
    sharedBytes: geo.sharedBytes,
    minArch: L.keyFp8 ? 89 : 80,
    keyParts: {
      family: "turboquant_store",
      preset: L.preset.name,
      headDim: D,
      numKvHeads: HK,
      ...(L.keyFp8 ? {} : { keyA: turboQuantKeyQuantizer(L).A, keyB: turboQuantKeyQuantizer(L).B }),
    },
  };
}
