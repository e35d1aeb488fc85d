/**
 * Pieces of the second tensor-core TurboQuant decode kernel (`tq_decode_v2.ts`): its per-warp stage
 * geometry, the value-operand field plan (codes read straight out of the packed bytes, no nibble
 * spreading), and the small PTX helpers it adds to `tq_decode_parts.ts`.
 *
 * @module
 */
import type { ParamSpec } from "../kernel_source.ts";
import type { TurboQuantLayout } from "../../dsl/turboquant/preset.ts";
import { type TqDecodeKernelOptions, tqDecodeParams } from "./tq_decode_simple.ts";
import { hex } from "./tq_decode_parts.ts";

/**
 * Where code `i` (0..7) of an 8-code value group sits for the `1024 + code·2^p` f16 operand: the
 * 16-bit window starting at byte `k` of the group (PRMT of two tokens' bytes k, k+1 into the two
 * halves of a register) and the bit `p` inside it. `code·2^p < 1024` keeps the operand exact.
 */
export interface ValueField {
  k: number;
  p: number;
}

/** The field plan of a value width (≤ 4 bits): position `bits·i` of the LSB-first group. */
export function valueFields(bits: number): ValueField[] {
  if (!Number.isInteger(bits) || bits < 1 || bits > 4) throw new RangeError(`value bits ${bits}: 1..4`);
  return Array.from({ length: 8 }, (_, i) => {
    const pos = bits * i, k = pos >> 3, p = pos & 7;
    if (p + bits > 10 || (k === 3 && p + bits > 8)) {
      throw new RangeError(`value field ${i} of ${bits}-bit codes`);
    }
    return { k, p };
  });
}

/**
 * PRMT selector that puts byte k (and k+1 where it exists) of token A's group word in the low half
 * and token B's in the high half (sources: A = bytes 0-3, B = bytes 4-7).
 */
export function windowSelector(k: number): number {
  const k1 = Math.min(k + 1, 3);
  return k | (k1 << 4) | ((4 + k) << 8) | ((4 + k1) << 12);
}

/** Per-warp stage geometry of the v2 kernel. */
export interface TqDecodeV2Geometry {
  /** KV heads per CTA = warps per CTA (each warp runs its own pipeline). */
  headsPerCta: number;
  headGroups: number;
  nTiles: number;
  stages: number;
  /** Bytes per staged token row of one warp: its slot + lead-in, an odd number of 16-byte chunks. */
  rowPitch: number;
  /** 16-byte chunks one row copy takes at most. */
  maxChunks: number;
  /** Bytes of one warp's stage (16 rows). */
  warpStage: number;
  /**
   * Query scratch in the warp's last stage, filled while the first tiles load (else the scratch spans
   * the stage memory and the first copies wait for the query: a CTA barrier between).
   */
  scratchInStage: boolean;
  /**
   * Bytes of the key pair table at the front of shared memory (0 for fp8 keys): one u32 per pair of
   * codes (2^(2·bits) entries), 32 copies so that lane l always reads bank l ({@linkcode keyPairFields}).
   */
  tableBytes: number;
  sharedBytes: number;
}

/** Largest power of two (≤ 16) dividing every row start of a slot: the lead-in is below 16 − it. */
function slotAlign(L: TurboQuantLayout, numKvHeads: number): number {
  let a = 16;
  while (a > 1 && (L.slotBytesAligned % a !== 0 || (numKvHeads * L.slotBytesAligned) % a !== 0)) a >>= 1;
  return a;
}

/** The geometry {@linkcode tqDecodeV2Kernel} uses. */
export function tqDecodeV2Geometry(o: TqDecodeKernelOptions): TqDecodeV2Geometry {
  const Hk = o.numKvHeads, G = o.numHeads / Hk, L = o.layout, SLOT = L.slotBytesAligned, D = L.headDim;
  let HG = 1;
  for (let h = 1; h <= Math.min(8, Hk); h++) if (Hk % h === 0) HG = h;
  const a = slotAlign(L, Hk);
  const maxChunks = ((a === 16 ? 0 : 16 - a) + SLOT + 15) >> 4;
  // odd chunk count: rows g = 0..7 start 4·odd words apart mod 32 banks, so the fragment reads (≤ 4
  // words wide per row) are conflict-free
  const rowPitch = 16 * (maxChunks | 1);
  const warpStage = 16 * rowPitch;
  const tableBytes = L.keyFp8 ? 0 : 128 << (2 * L.keyBits);
  let stages = 4;
  if (tableBytes + stages * HG * warpStage > 108 * 1024) stages = 3; // two CTAs per SM
  const scratch = G * D * 4;
  const scratchInStage = scratch <= warpStage;
  const sharedBytes = tableBytes + Math.max(stages * HG * warpStage, scratchInStage ? 0 : HG * scratch);
  return {
    headsPerCta: HG,
    headGroups: Hk / HG,
    nTiles: Math.ceil(G / 8),
    stages,
    rowPitch,
    maxChunks,
    warpStage,
    scratchInStage,
    tableBytes,
    sharedBytes,
  };
}

/**
 * Why version 3 (bulk copies of the CTA's slots of each token row) can't take these options, or
 * undefined: when the CTA holds every KV head a tile is one copy of 16 whole page rows (always whole
 * 16-byte units); else each row copy must be whole 16-byte units at 16-byte aligned addresses.
 */
export function tqDecodeV3Problem(o: TqDecodeKernelOptions): string | undefined {
  const HG = tqDecodeV2Geometry(o).headsPerCta, SLOT = o.layout.slotBytesAligned;
  // every KV head in the CTA: a tile is 16 whole rows of the page, 16·Hk·SLOT bytes — whole 16-byte units
  if (HG === o.numKvHeads) return undefined;
  if ((HG * SLOT) % 16 !== 0 || (o.numKvHeads * SLOT) % 16 !== 0) {
    return `${HG} heads × ${SLOT}-byte slots per CTA row (of ${o.numKvHeads}): version 3 copies 16-byte units`;
  }
  return undefined;
}

/**
 * Version 3's geometry: one stage = 16 rows × HG·SLOT bytes (`rowPitch`: the page's own row pitch when
 * the CTA takes every KV head — one copy per tile — else an odd number of 16-byte units; `warpStage` is
 * the stage size / HG so the fields keep version 2's meaning), the key
 * table in front, up to 6 stages within 108 KB (two CTAs per SM), the query scratch in the last stage
 * when it fits, then 2·stages mbarriers and a watchdog word at `barOffset`.
 */
export function tqDecodeV3Geometry(o: TqDecodeKernelOptions): TqDecodeV2Geometry & { barOffset: number } {
  const v2 = tqDecodeV2Geometry(o), HG = v2.headsPerCta, L = o.layout, G = o.numHeads / o.numKvHeads;
  // all heads in the CTA: the tile is 16 contiguous rows of the page, one bulk copy (copies of one ~1 KB
  // row each streamed at ~1.7 TB/s on the H200 — 60% of the tile waits found the data late); else one
  // copy per row, at a pitch of an odd number of 16-byte units (conflict-free fragment reads)
  const rowPitch = HG === o.numKvHeads
    ? HG * L.slotBytesAligned
    : 16 * (Math.ceil((HG * L.slotBytesAligned) / 16) | 1);
  const stage = 16 * rowPitch;
  const scratch = HG * G * L.headDim * 4;
  const scratchInStage = scratch <= stage;
  const fixed = v2.tableBytes + (scratchInStage ? 0 : scratch) + 16 * 6 + 16;
  const stages = Math.max(2, Math.min(6, Math.floor((108 * 1024 - fixed) / stage)));
  const barOffset = v2.tableBytes + stages * stage + (scratchInStage ? 0 : scratch);
  return {
    ...v2,
    stages,
    rowPitch,
    maxChunks: rowPitch / 16,
    warpStage: stage / HG,
    scratchInStage,
    barOffset,
    sharedBytes: barOffset + 16 * stages + 16,
  };
}

/** Version 3's bulk copy: `bytes` (a multiple of 16) global → shared, completing on mbarrier `bar`. */
export const BULK_HELPERS =
  `__device__ __forceinline__ void bulk_load(u32 dst, const void* src, u32 bytes, u32 bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
               :: "r"(dst), "l"(src), "r"(bytes), "r"(bar) : "memory");
}
`;

/** Stage offset of row r of this warp's slot (C and JS alike; `h` the KV head, tile rows 16-aligned). */
export const TQ_DECODE2_ROW_OFF = "r * RPW + ((r * rowbytes + h * SLOT) & 15)";

/**
 * How pair j (codes 2j, 2j+1: bits 2·bits·j …) of a raw key group word becomes the byte offset of its
 * table word for this lane: `(w >> shift) & mask | lane·4` (a negative shift is a left shift). The pair
 * index lands at bit 7 (entries are 128 bytes: 32 copies), the lane's copy in bits 2–6.
 */
export function keyPairFields(bits: number): { shift: number; mask: number }[] {
  if (!Number.isInteger(bits) || bits < 1 || bits > 4) throw new RangeError(`key bits ${bits}: 1..4`);
  return [0, 1, 2, 3].map((j) => ({ shift: 2 * bits * j - 7, mask: ((1 << (2 * bits)) - 1) << 7 }));
}

/**
 * Key centroids by table instead of arithmetic (version 1's `kdeq`: ~20 PRMT/LOP3 per 8 codes, 3-bit
 * codes spread to nibbles first — the ALU pipe, at 16 lanes/clk, was the kernel's busiest): the raw
 * group word → 4 shared loads of f16x2 `(C̃[code 2j], C̃[code 2j+1])`, each address one shift + one LOP3.
 * Lane l reads copy l of an entry: bank l, conflict-free for any codes. {@linkcode keyTableFill} builds
 * the table (entry e = `KCENT[e & (2^bits − 1)] | KCENT[e >> bits] << 16`) at the front of shared memory.
 */
export function keyPairSource(bits: number, centroidsF16: number[]): string {
  const n = 1 << bits;
  const loads = keyPairFields(bits).map(({ shift, mask }, j) => {
    const sh = shift < 0 ? `(w << ${-shift})` : shift === 0 ? "w" : `(w >> ${shift})`;
    return `  h[${j}] = *(const u32*)(tab + andor<${hex(mask)}>(${sh}, lane4));`;
  }).join("\n");
  return `__constant__ u16 KCENT[${n}] = {${centroidsF16.map((x) => `0x${x.toString(16)}`).join(", ")}};
// (x & m) | y in one LOP3 (C's version becomes two: the compiler re-derives lane4's bits)
template <u32 M> __device__ __forceinline__ u32 andor(u32 x, u32 y) {
  u32 r; asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(x), "n"(M), "r"(y)); return r;
}
// a raw group word (code i at bit ${bits}·i) → 4 f16x2 centroid pairs, by table (copy lane4 / 4)
__device__ __forceinline__ void kpair(const unsigned char* tab, u32 w, u32 lane4, u32 (&h)[4]) {
${loads}
}`;
}

/** C statements filling the key pair table at `smem` (all threads of the CTA; a barrier must follow). */
export function keyTableFill(bits: number): string {
  const quads = (128 << (2 * bits)) / 16;
  // 16-byte stores of 4 copies of one entry, unrolled: 8 constant loads per thread in flight (a rolled
  // loop of 4-byte stores was ~15% of a B 16 × 512 call's warp samples in ncu)
  return `#pragma unroll 8
  for (int j = 0; j < (${quads} + HG * 32 - 1) / (HG * 32); ++j) {
    const int i = threadIdx.x + j * (HG * 32), e = i >> 3;
    const u32 v = (u32)KCENT[e & ${(1 << bits) - 1}] | ((u32)KCENT[e >> ${bits}] << 16);
    if (i < ${quads}) ((uint4*)smem)[i] = make_uint4(v, v, v, v);
  }`;
}

/** PTX helpers the v2 kernel adds: approximate ex2/rsqrt (ftz) and 4-byte shared loads. */
export const TQ_V2_HELPERS = `__device__ __forceinline__ float ex2(float x) {
  float r; asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x)); return r;
}
__device__ __forceinline__ float rsq(float x) {
  float r; asm("rsqrt.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x)); return r;
}
__device__ __forceinline__ u32 ld4(const unsigned char* p) { return *(const u32*)p; }
`;

/** C function `u32 NAME(const unsigned char* pe, u32 sel)`: one group's bytes, LSB-first, no spreading. */
export function rawGroupLoader(name: string, bits: number): string {
  const load = bits === 4
    ? "prmt(ld2(pe), ld2(pe + 2), 0x5410u)"
    : bits === 3
    ? "prmt(ld2(pe), ld2(pe + 2), sel)"
    : bits === 2
    ? "ld2(pe)"
    : "(u32)pe[0]";
  return `__device__ __forceinline__ u32 ${name}(const unsigned char* pe, u32 sel) { return ${load}; }`;
}

/** The parameter list of the v2 kernel: version 1's plus `counters` (i32, B·Hk, zero; self-resetting). */
export function tqDecodeV2Params(o: TqDecodeKernelOptions): ParamSpec[] {
  const p = tqDecodeParams(o);
  const at = p.findIndex((x) => x.name === "part_lse") + 1;
  return [...p.slice(0, at), { name: "counters", kind: "ptr", dtype: "i32" }, ...p.slice(at)];
}

/** fp8 key chunks with 4-byte shared loads (k8v4 slots are 4-byte aligned). */
export function fp8ScoreLoop4(): string {
  return `#pragma unroll
    for (int kk = 0; kk < NK; ++kk) {   // 4 fp8 codes per thread per chunk: word c + 4·kk
      const u32 x0 = ld4(k0 + 4 * (c + 4 * kk)), x1 = ld4(k1 + 4 * (c + 4 * kk));
      const u32 a0 = e4m3x2_h2(x0), a2 = e4m3x2_h2(x0 >> 16);
      const u32 a1 = e4m3x2_h2(x1), a3 = e4m3x2_h2(x1 >> 16);
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) mma16816(sacc[nt], a0, a1, a2, a3, bq[nt][kk][0], bq[nt][kk][1]);
    }`;
}

/**
 * The value MMAs of one tile: for each group i2 of the lane (g + 8·i2) and code pair j, rows g / g+8
 * of MMA 4·i2 + j are codes 2j / 2j+1 of that group, columns the tokens 2c, 2c+1, 2c+8, 2c+9.
 */
export function valueLoop(vb: number): string {
  const f = valueFields(vb);
  const mask = (i: number) => hex((((1 << vb) - 1) << f[i].p) * 0x10001);
  const lines: string[] = [];
  const toks = ["va", "vb", "vc", "vd"];
  if (vb === 4) {
    // 16-bit halves of each token's group word: window k comes from half k >> 1, byte k & 1
    for (const t of toks) {
      lines.push(`const u32 ${t}l = ld2(st + ${t} + 32 * i2), ${t}h = ld2(st + ${t} + 32 * i2 + 2);`);
    }
  } else {
    for (const t of toks) lines.push(`const u32 ${t}w = val_group(st + ${t} + ${8 * vb} * i2, ${t}_sh);`);
  }
  const windows = [...new Set(f.map((x) => x.k))];
  for (const k of windows) {
    for (const [x, a, b] of [["ab", "va", "vb"], ["cd", "vc", "vd"]]) {
      const src = vb === 4 ? [`${a}${k >> 1 ? "h" : "l"}`, `${b}${k >> 1 ? "h" : "l"}`] : [`${a}w`, `${b}w`];
      const sel = vb === 4 ? windowSelector(k & 1) : windowSelector(k);
      lines.push(`const u32 x${x}${k} = prmt(${src[0]}, ${src[1]}, ${hex(sel)});`);
    }
  }
  for (let j = 0; j < 4; j++) {
    const [e, o] = [2 * j, 2 * j + 1];
    const op = (x: string, i: number) => `(x${x}${f[i].k} & ${mask(i)})`; // f16 subnormal code·2^(p−24)
    lines.push(`{
          const u32 a0 = ${op("ab", e)}, a1 = ${op("ab", o)}, a2 = ${op("cd", e)}, a3 = ${op("cd", o)};
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) mma16816(oacc[nt][4 * i2 + ${j}], a0, a1, a2, a3, pb[nt][0], pb[nt][1]);
        }`);
  }
  return `#pragma unroll
      for (int i2 = 0; i2 < NGV; ++i2) {  // value group g + 8·i2 of tokens 2c, 2c+1, 2c+8, 2c+9
        ${lines.join("\n        ")}
      }`;
}

/**
 * C text of the in-kernel merge (the last warp of a (sequence, KV head)). When G divides 32 and a lane's
 * share of the G·D outputs is whole float4s (≤ 16 floats), the G heads merge at once: lanes
 * `col·LPH … col·LPH + LPH − 1` own head `col`, each a D/LPH slice; every split's partials of all heads
 * are requested together (LPH splits per round, weights 2^(lse_s − M) shuffled inside the head's
 * lanes), so the merge costs ~1 + 2·S/LPH L2 round trips instead of G·(2 + S/4) one head after the other
 * (S = 16, G = 4: 5 instead of 24 — ~15 µs of a B 16 × 8k call was this tail). Otherwise one head at a
 * time, lane j owning dims [j·D/32, (j+1)·D/32). Partials are read through L2 (`ld.global.cg`: other
 * SMs wrote them).
 */
export function mergeSource(D: number, toOut: string, G = 0): string {
  const LPH = G > 0 && 32 % G === 0 ? 32 / G : 0, PER = LPH ? D / LPH : 0;
  if (LPH && PER % 4 === 0 && PER <= 16) return mergeParallel(toOut, LPH, PER);
  return mergeSerial(D, toOut);
}

/** The all-heads-at-once merge of {@linkcode mergeSource}: LPH lanes per head, PER floats per lane. */
function mergeParallel(toOut: string, LPH: number, PER: number): string {
  const n4 = PER / 4;
  const xors: number[] = [];
  for (let o = 1; o < LPH; o <<= 1) xors.push(o);
  const red = (v: string, op: string) =>
    xors.map((o) => `${v} = ${op}(${v}, __shfl_xor_sync(FULL, ${v}, ${o}));`).join(" ");
  const stores = Array.from(
    { length: PER / 2 },
    (_, i) =>
      `ow[${i}] = (u32)${toOut}(acc[${2 * i}] * inv) | ((u32)${toOut}(acc[${2 * i + 1}] * inv) << 16);`,
  ).join(" ");
  const wr = PER === 4
    ? "*(uint2*)(out + row * D + d0) = make_uint2(ow[0], ow[1]);"
    : Array.from({ length: PER / 8 }, (_, i) =>
      `*(uint4*)(out + row * D + d0 + ${8 * i}) = make_uint4(ow[${4 * i}], ow[${4 * i + 1}], ow[${
        4 * i + 2
      }], ow[${4 * i + 3}]);`).join(" ");
  return `  {
    const int col = lane / ${LPH}, sub = lane % ${LPH}, d0 = sub * ${PER};   // head col, dims d0 … d0 + ${
    PER - 1
  }
    const long long row = (long long)b * Hq + h * G + col;
    const float* lse = part_lse + row * S;
    float M = NINF;
    for (int s = sub; s < S; s += ${LPH}) M = fmaxf(M, __ldcg(lse + s));
    ${red("M", "fmaxf")}
    float acc[${PER}], den = 0.f;
#pragma unroll
    for (int i = 0; i < ${PER}; ++i) acc[i] = 0.f;
    for (int s0 = 0; s0 < S; s0 += ${LPH}) {
      const float ws = s0 + sub < S && M != NINF ? ex2(__ldcg(lse + s0 + sub) - M) : 0.f;
      den += ws;
#pragma unroll
      for (int j = 0; j < ${LPH}; ++j) {
        const float w = __shfl_sync(FULL, ws, j, ${LPH});
        if (s0 + j < S) {
          const float4* po = (const float4*)(part_o + (row * S + s0 + j) * D + d0);
${
    Array.from({ length: n4 }, (_, i) =>
      `          { const float4 x = __ldcg(po + ${i}); acc[${4 * i}] = fmaf(w, x.x, acc[${4 * i}]); acc[${
        4 * i + 1
      }] = fmaf(w, x.y, acc[${4 * i + 1}]); acc[${4 * i + 2}] = fmaf(w, x.z, acc[${4 * i + 2}]); acc[${
        4 * i + 3
      }] = fmaf(w, x.w, acc[${4 * i + 3}]); }`).join("\n")
  }
        }
      }
    }
    ${red("den", "__fadd_rn")}
    const float inv = den > 0.f ? 1.f / den : 0.f;
    u32 ow[${PER / 2}];
    ${stores}
    ${wr}
  }`;
}

/** One head after the other (G not dividing 32, or a lane's share not whole float4s). */
function mergeSerial(D: number, toOut: string): string {
  const V = D / 32;
  const loads = V % 4 === 0
    ? Array.from(
      { length: V / 4 },
      (_, i) =>
        `{ const float4 x = __ldcg((const float4*)po + ${i}); acc[${4 * i}] = fmaf(w, x.x, acc[${
          4 * i
        }]); acc[${4 * i + 1}] = fmaf(w, x.y, acc[${4 * i + 1}]); acc[${4 * i + 2}] = fmaf(w, x.z, acc[${
          4 * i + 2
        }]); acc[${4 * i + 3}] = fmaf(w, x.w, acc[${4 * i + 3}]); }`,
    ).join("\n          ")
    : `{ const float2 x = __ldcg((const float2*)po); acc[0] = fmaf(w, x.x, acc[0]); acc[1] = fmaf(w, x.y, acc[1]); }`;
  const stores = Array.from(
    { length: V / 2 },
    (_, i) =>
      `ow[${i}] = (u32)${toOut}(acc[${2 * i}] * inv) | ((u32)${toOut}(acc[${2 * i + 1}] * inv) << 16);`,
  ).join(" ");
  return `  for (int col = 0; col < G; ++col) {
    const long long row = (long long)b * Hq + h * G + col;
    const float* lse = part_lse + row * S;
    float M = NINF;
    for (int s = lane; s < S; s += 32) M = fmaxf(M, __ldcg(lse + s));
#pragma unroll
    for (int o = 16; o; o >>= 1) M = fmaxf(M, __shfl_xor_sync(FULL, M, o));
    float acc[${V}], den = 0.f;
#pragma unroll
    for (int i = 0; i < ${V}; ++i) acc[i] = 0.f;
    for (int s0 = 0; s0 < S; s0 += 32) {
      const float ws = s0 + lane < S && M != NINF ? ex2(__ldcg(lse + s0 + lane) - M) : 0.f;
      den += ws;
      const int n = min(32, S - s0);
#pragma unroll 4
      for (int j = 0; j < n; ++j) {
        const float w = __shfl_sync(FULL, ws, j);
        const float* po = part_o + (row * S + s0 + j) * D + lane * ${V};
        ${loads}
      }
    }
#pragma unroll
    for (int o = 16; o; o >>= 1) den += __shfl_xor_sync(FULL, den, o);
    const float inv = den > 0.f ? 1.f / den : 0.f;
    u32 ow[${V / 2}];
    ${stores}
    ${
    V === 2
      ? "*(u32*)(out + row * D + lane * 2) = ow[0];"
      : V === 4
      ? "*(uint2*)(out + row * D + lane * 4) = make_uint2(ow[0], ow[1]);"
      : "*(uint4*)(out + row * D + lane * 8) = make_uint4(ow[0], ow[1], ow[2], ow[3]);"
  }
  }`;
}
