/**
 * Pieces of the TurboQuant store kernel (`tq_store.ts`): the run plan (where each vector's slot goes in
 * the per-warp stage and in the cache) written once in a C/JS-common subset so the host emulation runs
 * the very text the kernel compiles, the key quantizer's cell table (one shared-memory lookup per
 * coordinate), and the C that packs key and value codes.
 *
 * @module
 */
import type { TurboQuantLayout } from "../../dsl/turboquant/preset.ts";
import { turboQuantKeyQuantizer } from "../../dsl/turboquant/store_ref.ts";
import { cFloat, nextDown32 } from "../../dsl/turboquant/f32.ts";

/**
 * Where a vector's slot goes. Each statement `[C type, name, expression]` is `const T name = expr;` in
 * the kernel and `const name = expr` in the emulation; expressions use only integer `+ − * & ?:` and
 * `imax`, `imin`, `idiv` (truncating), with every intermediate an exact integer below 2^53.
 *
 * Inputs: `v0` (the warp's first vector), `qv` (this vector in the warp), `t` (its token), `slot`,
 * `valid`, `cache_lo` (the cache address mod 16), constants `HK`, `SLOT`, `VW`, `JUNK`. A run is the
 * heads of one token inside the warp: contiguous in the cache, copied with 16-byte stores, so its stage
 * copy must start at the same address mod 16 as its destination (`run_stage ≡ cache_lo + dst_off`).
 * Runs sit in token order, run i at `q_first·SLOT + 16·i + (0..15)`: disjoint, inside
 * `VW·SLOT + 16·VW` bytes. Vectors that store nothing write their bytes at `JUNK`.
 */
export const TQ_STORE_PLAN: readonly (readonly [string, string, string])[] = [
  ["int", "t_first", "idiv(v0, HK)"],
  ["int", "q_first", "imax(0, t * HK - v0)"],
  ["int", "h_first", "v0 + q_first - t * HK"],
  ["long long", "dst_off", "(valid ? slot : 0) * (HK * SLOT) + h_first * SLOT"],
  ["int", "run_stage", "q_first * SLOT + 16 * (t - t_first) + ((cache_lo + dst_off - q_first * SLOT) & 15)"],
  ["int", "run_len", "(imin(VW, (t + 1) * HK - v0) - q_first) * SLOT"],
  ["int", "my_off", "valid ? run_stage + (qv - q_first) * SLOT : JUNK"],
];

/** The plan as C statements. */
export function tqStorePlanC(): string {
  return TQ_STORE_PLAN.map(([ty, n, e]) => `  const ${ty} ${n} = ${e};`).join("\n");
}

/** Bytes of the stage's run area for VW vectors of SLOT bytes (a multiple of 16). */
export function tqStoreRunBytes(VW: number, SLOT: number): number {
  return Math.ceil((VW * SLOT + 16 * VW) / 16) * 16;
}

/**
 * The key quantizer's lookup table: `[0, 1]` cut into `cells` uniform cells (cell = ⌊z·ncs⌋), each
 * holding at most one threshold. Entry c = (`w` = float32 bits of its threshold or 0, `e0`) with
 * `mask − code = e0 + [z < w]` for every z in the cell — one 8-byte shared-memory load, one subtract,
 * one shift-add per coordinate (the complement is undone once per packed word).
 */
export interface TqKeyLut {
  readonly cells: number;
  /** float32 just below `cells`, so z = 1 falls in the last cell. */
  readonly ncs: number;
  readonly w: Uint32Array;
  readonly e0: Uint32Array;
}

/** The lookup table of a centroid-key layout, or undefined when no grid of ≤ 64 cells separates its thresholds. */
export function tqKeyLut(layout: TurboQuantLayout): TqKeyLut | undefined {
  const q = turboQuantKeyQuantizer(layout);
  if (!q.cells) return undefined;
  const mask = 2 ** layout.keyBits - 1, ncs = nextDown32(q.cells);
  const cellOf = Array.from(q.W, (x) => Math.floor(x * ncs));
  const w = new Uint32Array(q.cells), e0 = new Uint32Array(q.cells);
  for (let c = 0; c < q.cells; c++) {
    const at = cellOf.indexOf(c), below = cellOf.filter((x) => x < c).length;
    w[c] = at >= 0 ? new Uint32Array(Float32Array.of(q.W[at]).buffer)[0] : 0;
    e0[c] = mask - below - (at >= 0 ? 1 : 0);
  }
  return { cells: q.cells, ncs, w, e0 };
}

/** The code the kernel's lookup gives for z (a float32 in [0, 1]): the host emulation of `key_code`. */
export function tqLutCode(lut: TqKeyLut, bits: number, z: number): number {
  const cell = Math.floor(z * lut.ncs);
  const zb = new Uint32Array(Float32Array.of(z).buffer)[0];
  return 2 ** bits - 1 - (lut.e0[cell] + (((zb - lut.w[cell]) | 0) < 0 ? 1 : 0));
}

/**
 * C helpers of the key quantizer: `key_code(y, rv)` → the code (lookup: its complement, undone per
 * word by `KEY_FLIP`), plus the shared table and its fill. Without a table a `bits`-step binary search
 * over the thresholds in z.
 */
export function tqKeyQuantizerC(layout: TurboQuantLayout): { helpers: string; fill: string; flip: string } {
  const q = turboQuantKeyQuantizer(layout), lut = tqKeyLut(layout), kb = layout.keyBits;
  const zOf = `  float z; asm("fma.rn.sat.f32 %0, %1, %2, %3;" : "=f"(z) : "f"(y), "f"(rv), "f"(${
    cFloat(q.B)
  }));`;
  if (lut) {
    const entries = Array.from(lut.w, (w, c) => `{${w}u, ${lut.e0[c]}u}`).join(", ");
    const flip = `${(1n << BigInt(8 * kb)) - 1n}${kb > 4 ? "ull" : "u"}`;
    return {
      helpers: `#define KEY_CELLS ${lut.cells}
__constant__ uint2 KEY_LUT[KEY_CELLS] = { ${entries} };
// z = sat(fma(y, A/ν, B)) ∈ [0, 1]; cell ⌊z·${lut.cells}⁻⌋ holds ≤ 1 threshold w: mask − code = e0 + [z < w]
// lut_adj = shared address of the table − 8·bits(2^23): the cell's float pattern is 2^23's + cell
__device__ __forceinline__ u32 key_code(float y, float rv, u32 lut_adj) {
${zOf}
  const u32 at = lut_adj + (__float_as_uint(__fmaf_rd(z, ${cFloat(lut.ncs)}, 8388608.0f)) << 3);
  u32 w, e0;
  asm("ld.shared.v2.u32 {%0, %1}, [%2];" : "=r"(w), "=r"(e0) : "r"(at));
  return e0 + ((__float_as_uint(z) - w) >> 31);
}`,
      fill: "if (threadIdx.x < KEY_CELLS) key_lut[threadIdx.x] = KEY_LUT[threadIdx.x];",
      flip,
    };
  }
  // fallback: complete binary search over the 2^kb − 1 thresholds (no complement)
  const W = Array.from(q.W);
  return {
    helpers: `__device__ __forceinline__ u32 key_code(float y, float rv, u32) {
${zOf}
  const float t[${W.length}] = { ${W.map((x) => cFloat(x)).join(", ")} };
${searchTree(kb, "z", "t")}
  return cnt;
}`,
    fill: "",
    flip: "0u",
  };
}

/**
 * C lines computing `cnt = #{i : x ≥ t[i]}` for 2^K − 1 sorted thresholds by a complete binary search:
 * K compares, each against a threshold picked by selects on the bits decided above it.
 */
function searchTree(K: number, x: string, t: string): string {
  const pick = (level: number, target: number, prefix: number): string =>
    level === target
      ? `${t}[${prefix + (1 << target) - 1}]`
      : `(b${level} ? ${pick(level - 1, target, prefix + (1 << level))} : ${
        pick(level - 1, target, prefix)
      })`;
  const lines: string[] = [];
  for (let l = K - 1; l >= 0; l--) lines.push(`  const bool b${l} = ${x} >= ${pick(K - 1, l, 0)};`);
  const sum = Array.from({ length: K }, (_, i) => K - 1 - i).map((l) => `(b${l} ? ${1 << l}u : 0u)`);
  lines.push(`  const u32 cnt = ${sum.join(" + ")};`);
  return lines.join("\n");
}

/**
 * C lines packing the 8 value codes of group j into `packed`: with lo' = lo − s/2,
 * `fma_rd(v − lo', 1/s, 2^23)` is 2^23 + ⌊(v − lo')/s⌋ exactly, so the float's low bits are the code.
 * For ≤ 4 bits the words are summed unmasked and the 2^23 pattern's contribution subtracted once.
 */
export function tqValuePackC(bits: number): string {
  const code = `__float_as_uint(__fmaf_rd(__fsub_rn(x[8 * j + i], lo2), inv, 8388608.0f))`;
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

/**
 * Store a run of packed codes: `words` (C expressions, in order) of 8 codes × `bits` bits each (u32 for
 * ≤ 4 bits, else u64), concatenated little-endian into `words.length · bits` bytes at `base + off` in
 * shared memory. `offEven`: the run starts at an even address, so it goes out as u16 units (a unit that
 * straddles two words takes a funnel of both), else byte by byte.
 */
export function tqStageRunC(
  base: string,
  off: string,
  bits: number,
  words: readonly string[],
  offEven: boolean,
): string {
  const W = 8 * bits, groups = words.length, n = groups * bits, wide = bits > 4;
  const cast = wide ? "(u64)" : "";
  // bits [b, b + width) of the concatenated stream, as an expression (width ≤ 16)
  const take = (b: number, width: number): string => {
    const j = Math.floor(b / W), o = b - j * W;
    const lo = o === 0 ? `(${words[j]})` : `((${words[j]}) >> ${o})`;
    if (o + width <= W || j + 1 >= groups) return lo;
    return `(${lo} | (${cast}(${words[j + 1]}) << ${W - o}))`;
  };
  const lines = [`    { unsigned char* sp = ${base} + ${off};`];
  if (offEven) {
    for (let u = 0; 2 * u < n; u++) {
      lines.push(
        2 * u + 1 < n
          ? `      *(u16*)(sp + ${2 * u}) = (u16)${take(16 * u, 16)};`
          : `      sp[${2 * u}] = (unsigned char)${take(16 * u, 8)};`,
      );
    }
  } else {
    for (let b = 0; b < n; b++) lines.push(`      sp[${b}] = (unsigned char)${take(8 * b, 8)};`);
  }
  lines.push("    }");
  return lines.join("\n");
}
