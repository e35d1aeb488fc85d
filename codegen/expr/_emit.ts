/**
 * Private pieces of the row-program renderer: value classes, element access, and the code for loads,
 * element-wise nodes and reductions. render.ts assembles them into a kernel.
 *
 * @module
 */
import { type DType, dtypeInfo } from "../../dsl/dtype.ts";
import type { CastArg, Expr, LoadArg, ReduceArg, ReduceOp } from "../../dsl/expr/node.ts";
import type { Program } from "../../dsl/expr/program.ts";
import type { Schedule, Tiling } from "./schedule.ts";
import { hexf } from "./prelude.ts";

/**
 * Where a node's values live in a thread: `elem` one per element (`[chunks·vec]`), `sub` one per group
 * of `gr < vec` elements, `chunk` one per chunk, `scalar` one per thread (per tile).
 */
export type Cls = "elem" | "sub" | "chunk" | "scalar";

/** Shared state of one rendering. */
export interface Ctx {
  readonly p: Program;
  readonly s: Schedule;
  readonly t: Tiling;
  readonly out: string[];
  /** C variable of each node. */
  readonly name: Map<Expr, string>;
  /** Shared-memory declarations. */
  readonly shared: string[];
  /** True inside the masked domain's token loop (shared buffers then need a trailing barrier). */
  readonly loop: boolean;
}

export const INPUT_DTYPES: readonly DType[] = ["f32", "bf16", "f16", "fp8e4m3", "fp8e5m2", "i8", "u8", "i32"];
export const NARROW: readonly DType[] = ["fp8e4m3", "fp8e5m2", "i8", "int4", "fp4e2m1"];

/** Granularity (row elements per value) and class of a length. */
export function classOf(c: Ctx, len: number): { cls: Cls; gr: number } {
  const gr = c.p.width / len;
  if (len === 1 || gr >= c.t.tile) return { cls: "scalar", gr };
  if (gr >= c.s.vec) return { cls: "chunk", gr };
  return { cls: gr > 1 ? "sub" : "elem", gr };
}

/** C expression of node `n` at chunk `ci`, element `ii` (C expressions, constant after unrolling). */
export function at(c: Ctx, n: Expr, ci: string, ii: string): string {
  if (n.op === "const") return hexf(n.arg as number);
  if (n.op === "param") return `p_${n.arg}`;
  const v = c.name.get(n);
  if (v === undefined) throw new Error(`internal: node ${n.op} used before it was emitted`);
  const { cls, gr } = classOf(c, n.len);
  switch (cls) {
    case "scalar":
      return v;
    case "chunk":
      return `${v}[${ci}]`;
    case "sub":
      return `${v}[(${ci}) * ${c.s.vec / gr} + (${ii}) / ${gr}]`;
    case "elem":
      return `${v}[(${ci}) * ${c.s.vec} + (${ii})]`;
  }
}

/** Declaration of a node's storage. */
export function decl(c: Ctx, n: Expr, v: string): string {
  const { cls, gr } = classOf(c, n.len);
  const N = c.s.chunks, V = c.s.vec;
  if (cls === "scalar") return `float ${v};`;
  if (cls === "chunk") return `float ${v}[${N}];`;
  return `float ${v}[${N * (cls === "sub" ? V / gr : V)}];`;
}

/** Loop over the positions of a class: calls body(ci, ii) inside `for c` / `for j` loops. */
export function forEach(c: Ctx, len: number, body: (ci: string, ii: string) => string): void {
  const { cls, gr } = classOf(c, len);
  const N = c.s.chunks, V = c.s.vec;
  const o = c.out;
  if (cls === "scalar") {
    o.push(`  ${body("0", "0")}`);
  } else if (cls === "chunk") {
    o.push(`  #pragma unroll`, `  for (int c = 0; c < ${N}; ++c) { ${body("c", "0")} }`);
  } else {
    const step = cls === "sub" ? gr : 1;
    o.push(
      `  #pragma unroll`,
      `  for (int c = 0; c < ${N}; ++c) {`,
      `    #pragma unroll`,
      `    for (int i = 0; i < ${V}; i += ${step}) { ${body("c", "i")} }`,
      `  }`,
    );
  }
}

/** C expression decoding one raw element (an unsigned int holding its bits) of `dtype` to float. */
export function decode(dtype: DType, bits: string): string {
  switch (dtype) {
    case "f32":
      return `__uint_as_float(${bits})`;
    case "bf16":
      return `kiln_bf16_f32(${bits})`;
    case "f16":
      return `kiln_f16_f32(${bits})`;
    case "fp8e4m3":
      return `kiln_e4m3_f32(${bits})`;
    case "fp8e5m2":
      return `kiln_e5m2_f32(${bits})`;
    case "i8":
      return `(float)(signed char)(${bits})`;
    case "u8":
      return `(float)(${bits})`;
    case "i32":
      return `(float)(int)(${bits})`;
  }
  throw new TypeError(`inputs of dtype ${dtype} are not supported (use one of ${INPUT_DTYPES})`);
}

/** Address expression (element pointer) of an input row. */
export function inputBase(a: LoadArg): string {
  const nm = `i_${a.input.name}`;
  return a.input.kind === "row" ? `(${nm} + row * i_${a.input.name}_ld + ${a.col})` : `(${nm} + ${a.col})`;
}

/** Emit the raw vector loads of a full-length load node (issued first, so they are all in flight). */
export function emitRawLoad(c: Ctx, n: Expr, raw: string): void {
  const a = n.arg as LoadArg;
  const bytes = (c.s.vec * dtypeInfo(a.input.dtype).bits) / 8;
  const words = Math.max(1, bytes / 4);
  const stream = a.input.kind === "row";
  const o = c.out;
  o.push(`  unsigned int ${raw}[${c.s.chunks}][${words}];`);
  o.push(`  #pragma unroll`, `  for (int c = 0; c < ${c.s.chunks}; ++c) {`);
  o.push(`    const char* ptr = (const char*)(${inputBase(a)} + ec[c]);`);
  o.push(`    if (live && okc[c]) {`);
  if (bytes >= 16) {
    for (let k = 0; k < bytes / 16; k++) {
      const ld = stream ? `kiln_ld_stream(ptr + ${16 * k})` : `*(const uint4*)(ptr + ${16 * k})`;
      o.push(
        `      { const uint4 t = ${ld}; ${
          [0, 1, 2, 3].map((j) => `${raw}[c][${4 * k + j}] = t.${"xyzw"[j]};`).join(" ")
        } }`,
      );
    }
  } else if (bytes === 8) {
    const ld = stream ? `kiln_ld_stream2(ptr)` : `*(const uint2*)ptr`;
    o.push(`      { const uint2 t = ${ld}; ${raw}[c][0] = t.x; ${raw}[c][1] = t.y; }`);
  } else if (bytes === 4) {
    o.push(`      ${raw}[c][0] = ${stream ? "kiln_ld_stream1(ptr)" : "*(const unsigned int*)ptr"};`);
  } else if (bytes === 2) {
    o.push(`      ${raw}[c][0] = *(const unsigned short*)ptr;`);
  } else {
    o.push(`      ${raw}[c][0] = *(const unsigned char*)ptr;`);
  }
  o.push(
    `    } else {`,
    `      #pragma unroll`,
    `      for (int w = 0; w < ${words}; ++w) ${raw}[c][w] = 0u;`,
    `    }`,
    `  }`,
  );
}

/** C expression of raw element `i` of chunk `c` from the words of `raw`. */
export function rawElem(dtype: DType, raw: string, ci: string, ii: string): string {
  const bits = dtypeInfo(dtype).bits;
  if (bits === 32) return `${raw}[${ci}][${ii}]`;
  if (bits === 16) return `((${raw}[${ci}][(${ii}) >> 1] >> (((${ii}) & 1) * 16)) & 0xffffu)`;
  return `((${raw}[${ci}][(${ii}) >> 2] >> (((${ii}) & 3) * 8)) & 0xffu)`;
}

/** Emit a load node of a class other than `elem` (granular or scalar inputs): plain scalar loads. */
export function emitGranularLoad(c: Ctx, n: Expr, v: string): void {
  const a = n.arg as LoadArg;
  const dt = a.input.dtype;
  const ptr = `i_${a.input.name}`;
  if (a.input.kind === "scalar") {
    c.out.push(`  const float ${v} = ${decode(dt, `(unsigned int)${bitsOf(dt, `${ptr}[0]`)}`)};`);
    return;
  }
  const { cls, gr } = classOf(c, n.len);
  c.out.push(`  ${decl(c, n, v)}`);
  const base = inputBase(a);
  const ld = (idx: string) => decode(dt, `(unsigned int)${bitsOf(dt, `${base}[${idx}]`)}`);
  if (cls === "scalar") {
    c.out.push(`  ${v} = live ? ${ld(`col0 / ${gr}`)} : 0.0f;`);
  } else if (cls === "chunk") {
    forEach(c, n.len, (ci) => `${v}[${ci}] = (live && okc[${ci}]) ? ${ld(`ec[${ci}] / ${gr}`)} : 0.0f;`);
  } else {
    forEach(
      c,
      n.len,
      (ci, ii) => `${at(c, n, ci, ii)} = (live && okc[${ci}]) ? ${ld(`(ec[${ci}] + ${ii}) / ${gr}`)} : 0.0f;`,
    );
  }
}

/** The raw bits of a storage element as an unsigned value (signed storage is reinterpreted). */
function bitsOf(dt: DType, e: string): string {
  if (dt === "f32") return `__float_as_uint(${e})`;
  if (dt === "i8") return `(unsigned char)(${e})`;
  return `(${e})`;
}

const UNARY: Record<string, (a: string) => string> = {
  neg: (a) => `(-${a})`,
  abs: (a) => `fabsf(${a})`,
  exp: (a) => `kiln_exp(${a})`,
  silu: (a) => `kiln_silu(${a})`,
  sqrt: (a) => `__fsqrt_rn(${a})`,
  rsqrt: (a) => `__fdiv_rn(1.0f, __fsqrt_rn(${a}))`,
  recip: (a) => `__fdiv_rn(1.0f, ${a})`,
  pow2ceil: (a) => `kiln_pow2ceil(${a})`,
};
const BINARY: Record<string, (a: string, b: string) => string> = {
  add: (a, b) => `__fadd_rn(${a}, ${b})`,
  sub: (a, b) => `__fsub_rn(${a}, ${b})`,
  mul: (a, b) => `__fmul_rn(${a}, ${b})`,
  div: (a, b) => `__fdiv_rn(${a}, ${b})`,
  min: (a, b) => `fminf(${a}, ${b})`,
  max: (a, b) => `fmaxf(${a}, ${b})`,
};

/** A float cast that stays a float (bf16/f16 round trips); narrow casts are done by their store. */
export function castExpr(a: CastArg, x: string): string {
  if (a.dtype === "f32") return x;
  if (a.dtype === "bf16") return `kiln_bf16_f32(kiln_f32_bf16(${x}))`;
  if (a.dtype === "f16") return `kiln_f16_f32(kiln_f32_f16(${x}))`;
  throw new TypeError(`cast to ${a.dtype} can only feed a store of the same dtype`);
}

/** Expression of an element-wise node given its operands' expressions. */
export function pointwise(n: Expr, args: string[]): string {
  if (n.op === "cast") return castExpr(n.arg as CastArg, args[0]);
  if (UNARY[n.op]) return UNARY[n.op](args[0]);
  if (BINARY[n.op]) return BINARY[n.op](args[0], args[1]);
  throw new Error(`internal: ${n.op} is not element-wise`);
}

const IDENT: Record<ReduceOp, string> = { max: "-KILN_INF", amax: "0.0f", sum: "-0.0f", sumsq: "-0.0f" };
function comb(op: ReduceOp, p: string, v: string): string {
  switch (op) {
    case "max":
      return `fmaxf(${p}, ${v})`;
    case "amax":
      return `fmaxf(${p}, fabsf(${v}))`;
    case "sum":
      return `__fadd_rn(${p}, ${v})`;
    case "sumsq":
      return `__fadd_rn(${p}, __fmul_rn(${v}, ${v}))`;
  }
}
const merge = (op: ReduceOp, a: string, b: string) =>
  op === "max" || op === "amax" ? `fmaxf(${a}, ${b})` : `__fadd_rn(${a}, ${b})`;

let sharedSeq = 0;

/**
 * Emit a reduction. Per-thread partials in element order (starting from the identity, skipping chunks
 * outside the row), then an xor butterfly over the lanes of a group (every lane gets the result), then,
 * for groups wider than a warp, the warps' results in warp order through shared memory. The interpreter
 * reproduces this order (interpret.ts, ReduceTree).
 */
export function emitReduce(c: Ctx, n: Expr, v: string): void {
  const a = n.arg as ReduceArg, x = n.src[0];
  const V = c.s.vec, N = c.s.chunks, R = c.s.lanes, W = c.p.width;
  const G = a.group, o = c.out;
  const full = c.t.full;
  o.push(`  ${decl(c, n, v)}`);
  if (G <= V) {
    const per = V / G;
    o.push(
      `  #pragma unroll`,
      `  for (int c = 0; c < ${N}; ++c) {`,
      `    #pragma unroll`,
      `    for (int j = 0; j < ${per}; ++j) {`,
    );
    o.push(`      float p = ${IDENT[a.op]};`);
    o.push(
      `      #pragma unroll`,
      `      for (int i = 0; i < ${G}; ++i) p = ${comb(a.op, "p", at(c, x, "c", `j * ${G} + i`))};`,
    );
    o.push(`      ${per === 1 ? `${v}[c]` : `${v}[c * ${per} + j]`} = p;`, `    }`, `  }`);
    return;
  }
  const whole = G >= W || G >= c.t.tile;
  // lanes per group and rounds per group
  const lanes = G <= c.t.span ? G / V : R;
  const rounds = G <= c.t.span ? 1 : whole ? N : G / c.t.span;
  const slots = N / rounds;
  const warps = c.s.threads / 32;
  const sm = lanes > 32 ? `kiln_red${sharedSeq++}` : "";
  if (sm) c.shared.push(`__shared__ float ${sm}[${slots}][${warps}];`);
  o.push(`  float ${v}_p[${slots}];`);
  o.push(`  #pragma unroll`, `  for (int g = 0; g < ${slots}; ++g) {`, `    float p = ${IDENT[a.op]};`);
  o.push(
    `    #pragma unroll`,
    `    for (int r = 0; r < ${rounds}; ++r) {`,
    `      const int c = g * ${rounds} + r;`,
  );
  // max is order-free: per-chunk partials (independent chains) keep the FMNMX pipeline busy; sums
  // accumulate in element order (the interpreter reproduces it)
  const body = a.op === "max" || a.op === "amax"
    ? `{ float q = ${IDENT[a.op]};\n        #pragma unroll\n        for (int i = 0; i < ${V}; ++i) q = ${
      comb(a.op, "q", at(c, x, "c", "i"))
    };\n        p = fmaxf(p, q); }`
    : `#pragma unroll\n        for (int i = 0; i < ${V}; ++i) p = ${comb(a.op, "p", at(c, x, "c", "i"))};`;
  o.push(full || rounds === 1 ? `      ${body}` : `      if (okc[c]) {\n        ${body}\n      }`);
  o.push(`    }`);
  for (let off = Math.min(lanes, 32) / 2; off >= 1; off /= 2) {
    o.push(`    p = ${merge(a.op, "p", `__shfl_xor_sync(0xffffffffu, p, ${off})`)};`);
  }
  o.push(`    ${v}_p[g] = p;`, `  }`);
  if (sm) {
    const nw = lanes / 32;
    o.push(
      `  if ((threadIdx.x & 31) == 0) {`,
      `    #pragma unroll`,
      `    for (int g = 0; g < ${slots}; ++g) ${sm}[g][threadIdx.x >> 5] = ${v}_p[g];`,
      `  }`,
    );
    o.push(`  __syncthreads();`, `  {`, `    const int w0 = ((threadIdx.x >> 5) / ${nw}) * ${nw};`);
    o.push(
      `    #pragma unroll`,
      `    for (int g = 0; g < ${slots}; ++g) {`,
      `      float p = ${IDENT[a.op]};`,
    );
    o.push(
      `      #pragma unroll`,
      `      for (int w = 0; w < ${nw}; ++w) p = ${merge(a.op, "p", `${sm}[g][w0 + w]`)};`,
    );
    o.push(`      ${v}_p[g] = p;`, `    }`, `  }`);
    if (c.loop) o.push(`  __syncthreads();`);
  }
  const { cls } = classOf(c, n.len);
  if (cls === "scalar") o.push(`  ${v} = ${v}_p[0];`);
  else o.push(`  #pragma unroll`, `  for (int c = 0; c < ${N}; ++c) ${v}[c] = ${v}_p[c / ${rounds}];`);
}

/** Reset the shared-buffer counter (renders are deterministic per kernel). */
export function resetShared(): void {
  sharedSeq = 0;
}
