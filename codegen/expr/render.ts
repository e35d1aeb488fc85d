/**
 * Row program + schedule → one CUDA kernel ({@linkcode KernelSource}). The kernel's parameters are
 * named by role: inputs `i_<name>` (+ `i_<name>_ld`, the row stride in elements), outputs `o_<name>`
 * (+ `o_<name>_ld`), f32 parameters `p_<name>`, scatter indices `x_<name>`, and the rows `m`, `rows`
 * (or `masked_m`, `tokens_pad` in the masked domain). {@linkcode rowKernelArgs} orders values by these
 * names and {@linkcode rowKernelGrid} gives the launch grid, so callers never count parameters.
 *
 * @example
 * ```ts
 * import { input, RowProgram } from "../../dsl/expr/mod.ts";
 * import { renderRowKernel } from "./render.ts";
 * const x = input("x", "bf16", 1024);
 * const prog = new RowProgram("scale_rows").store("y", x.load().mul(0.5), { dtype: "bf16" }).finish();
 * const k = renderRowKernel(prog);
 * console.log(k.source.entry); // "scale_rows_v8l32c4t256"
 * ```
 * @module
 */
import type { DType } from "../../dsl/dtype.ts";
import { type CastArg, type Expr, type LoadArg, toposort } from "../../dsl/expr/node.ts";
import { materialized, type Program, type Store } from "../../dsl/expr/program.ts";
import { type KernelSource, type ParamSpec, renderSignature } from "../kernel_source.ts";
import { checkSchedule, defaultSchedule, type Schedule, type Tiling, tiling } from "./schedule.ts";
import { PRELUDE, PRELUDE_FP8 } from "./prelude.ts";
import {
  at,
  classOf,
  type Ctx,
  decl,
  decode,
  emitGranularLoad,
  emitRawLoad,
  emitReduce,
  forEach,
  INPUT_DTYPES,
  NARROW,
  pointwise,
  rawElem,
  resetShared,
} from "./_emit.ts";
import { emitScalarStore, emitStore, storeParamDtype } from "./_store.ts";

/** A rendered row kernel with what it takes to launch it. */
export interface RowKernel {
  readonly source: KernelSource;
  readonly program: Program;
  readonly schedule: Schedule;
  readonly tiling: Tiling;
}

/** The kernel's parameter list, derived from the program (the single source of the signature). */
export function rowKernelParams(p: Program): ParamSpec[] {
  const ps: ParamSpec[] = [];
  for (const d of p.inputs) {
    ps.push({ name: `i_${d.name}`, kind: "ptr", dtype: d.dtype, readonly: true });
    if (d.kind === "row") ps.push({ name: `i_${d.name}_ld`, kind: "i64" });
  }
  for (const x of p.indexInputs) ps.push({ name: `x_${x}`, kind: "ptr", dtype: "i32", readonly: true });
  const seen = new Set<string>();
  for (const s of p.stores) {
    if (seen.has(s.output)) continue;
    seen.add(s.output);
    ps.push({ name: `o_${s.output}`, kind: "ptr", dtype: storeParamDtype(s) });
    if (s.layout === "row" || s.layout === "mmajor" || s.layout === "mmajor_packed4") {
      ps.push({ name: `o_${s.output}_ld`, kind: "i64" });
    }
  }
  for (const q of p.params) ps.push({ name: `p_${q}`, kind: "f32" });
  if (p.domain === "masked") {
    ps.push({ name: "masked_m", kind: "ptr", dtype: "i32", readonly: true }, {
      name: "tokens_pad",
      kind: "i32",
    });
  } else {
    ps.push({ name: "m", kind: "i32" }, { name: "rows", kind: "i32" });
  }
  return ps;
}

/** Render `program` with `schedule` (default: {@linkcode defaultSchedule}). */
export function renderRowKernel(program: Program, schedule: Schedule = defaultSchedule(program)): RowKernel {
  checkSchedule(program, schedule);
  validate(program);
  resetShared();
  const t = tiling(program, schedule);
  const s = schedule;
  const masked = program.domain === "masked";
  const ctx: Ctx = { p: program, s, t, out: [], name: new Map(), shared: [], loop: masked };
  const o = ctx.out;
  const N = s.chunks, V = s.vec, R = s.lanes, RB = masked ? 1 : s.rowBlock ?? 1;

  // 0. row-independent values (parameters, per-tensor inputs and what is computed from them) and the
  //    scalar stores: once per thread, before the row mapping (hoisted out of the masked token loop)
  const kept = materialized(program.stores.map((st) => st.value));
  const idx = new Map(program.nodes.map((n, i) => [n, i]));
  const hoisted = new Set(kept.filter((n) => !readsRows(n)));
  for (const n of kept) if (hoisted.has(n)) emitNode(ctx, n, `n${idx.get(n)}`, undefined);
  for (const st of program.stores) if (st.layout === "scalar") emitScalarStore(ctx, st);
  const prologue = o.splice(0, o.length);
  // 1. raw vector loads of every full-length load, all issued before any math
  const raws = new Map<Expr, string>();
  for (const n of kept) {
    if (n.op === "load" && classOf(ctx, n.len).cls === "elem" && (n.arg as LoadArg).input.kind !== "scalar") {
      raws.set(n, `raw${idx.get(n)}`);
      emitRawLoad(ctx, n, `raw${idx.get(n)}`);
    }
  }
  // 2. nodes in order
  for (const n of kept) if (!hoisted.has(n)) emitNode(ctx, n, `n${idx.get(n)}`, raws.get(n));
  // 3. stores
  for (const st of program.stores) if (st.layout !== "scalar") emitStore(ctx, st);

  const body = o.join("\n");
  const entry = `${program.name}_v${V}l${R}c${N}t${s.threads}${RB > 1 ? `r${RB}` : ""}`;
  const params = rowKernelParams(program);
  const fp8 = program.stores.some((st) => st.dtype === "fp8e4m3" || st.dtype === "fp8e5m2");
  const head = [
    R === s.threads ? `  const int lane = threadIdx.x;` : `  const int lane = threadIdx.x & ${R - 1};`,
    `  const int team = threadIdx.x / ${R};`,
  ];
  const chunkIdx = [
    `  unsigned int ec[${N}]; bool okc[${N}];`,
    `  #pragma unroll`,
    `  for (int c = 0; c < ${N}; ++c) { ec[c] = col0 + (c * ${R} + lane) * ${V}; okc[c] = ${
      t.full ? "true" : `ec[c] < ${program.width}`
    }; }`,
  ];
  let main: string[];
  if (masked) {
    main = [
      ...head,
      `  const int ex = blockIdx.z;`,
      `  const int ct = blockIdx.x * ${t.teams} + team;`,
      `  const unsigned int col0 = ct * ${t.tile};`,
      `  const bool inrow = ct < ${t.colTiles};`,
      R >= 32 ? `  if (!inrow) return;` : "",
      `  int cnt = masked_m[ex];`,
      `  cnt = cnt < tokens_pad ? cnt : tokens_pad;`,
      `  for (int tok = blockIdx.y; tok < cnt; tok += gridDim.y) {`,
      `  const long long row = (long long)ex * tokens_pad + tok;`,
      `  const bool live = inrow;`,
      ...chunkIdx,
      body,
      `  }`,
    ];
  } else {
    main = [
      ...head,
      `  const long long tile_id = (long long)blockIdx.x * ${t.teams} + team;`,
      ...(RB === 1
        ? [
          `  const long long row = tile_id / ${t.colTiles};`,
          `  const int ct = (int)(tile_id - row * ${t.colTiles});`,
        ]
        : [
          `  const long long rest = tile_id / ${RB};`,
          `  const int ct = (int)(rest % ${t.colTiles});`,
          `  const long long row = (rest / ${t.colTiles}) * ${RB} + (int)(tile_id % ${RB});`,
        ]),
      `  const unsigned int col0 = ct * ${t.tile};`,
      `  const bool inrow = row < rows;`,
      `  const bool live = row < m;`,
      R >= 32 ? `  if (!inrow) return;` : "",
      ...chunkIdx,
      body,
    ];
  }
  main.unshift(...prologue);
  const source = [
    `// kiln row program ${program.name}: ${
      program.stores.map((st) => `${st.output} <- ${short(st)}`).join("; ")
    }`,
    `// schedule: vec ${V}, lanes ${R}, chunks ${N}, threads ${s.threads}; tile ${t.tile} of ${program.width}`,
    PRELUDE,
    fp8 ? PRELUDE_FP8 : "",
    `${renderSignature({ entry, params }, { launchBounds: [s.threads] })} {`,
    ...ctx.shared.map((l) => `  ${l}`),
    ...main.filter((l) => l !== ""),
    `}`,
    ``,
  ].join("\n");
  return {
    source: {
      name: entry,
      entry,
      source,
      params,
      block: [s.threads, 1, 1],
      sharedBytes: 0,
      minArch: fp8 ? 89 : 80,
      options: ["--fmad=false"],
      keyParts: { program: program.name, schedule: JSON.stringify(s) },
    },
    program,
    schedule: s,
    tiling: t,
  };
}

function emitNode(ctx: Ctx, n: Expr, v: string, raw: string | undefined): void {
  const o = ctx.out;
  if (n.op === "const" || n.op === "param") return;
  if (n.op === "cast" && NARROW.includes((n.arg as CastArg).dtype)) {
    ctx.name.set(n, ctx.name.get(n.src[0]) ?? "");
    return;
  }
  ctx.name.set(n, v);
  if (n.op === "load") {
    if (!raw) return emitGranularLoad(ctx, n, v);
    const dt = (n.arg as LoadArg).input.dtype;
    o.push(`  ${decl(ctx, n, v)}`);
    forEach(ctx, n.len, (ci, ii) => `${at(ctx, n, ci, ii)} = ${decode(dt, rawElem(dt, raw, ci, ii))};`);
    return;
  }
  if (n.op === "reduce") return emitReduce(ctx, n, v);
  if (n.op === "concat") return emitConcat(ctx, n, v);
  o.push(`  ${decl(ctx, n, v)}`);
  const ca = n.arg as CastArg;
  const paired = n.op === "cast" && (ca.dtype === "bf16" || ca.dtype === "f16") && ctx.s.vec % 2 === 0;
  if (paired && classOf(ctx, n.len).cls === "elem") {
    // round pairs with one packed conversion (F2FP on the ALU pipe, not two F2F on the conversion pipe)
    const x = n.src[0], V = ctx.s.vec;
    const [pack, lo, hi] = ca.dtype === "bf16"
      ? ["kiln_f32x2_bf16", "__uint_as_float(w << 16)", "__uint_as_float(w & 0xffff0000u)"]
      : ["kiln_f32x2_f16", "kiln_f16_f32(w & 0xffffu)", "kiln_f16_f32(w >> 16)"];
    o.push(
      `  #pragma unroll`,
      `  for (int c = 0; c < ${ctx.s.chunks}; ++c) {`,
      `    #pragma unroll`,
      `    for (int i = 0; i < ${V}; i += 2) {`,
      `      const unsigned int w = ${pack}(${at(ctx, x, "c", "i")}, ${at(ctx, x, "c", "i + 1")});`,
      `      ${at(ctx, n, "c", "i")} = ${lo}; ${at(ctx, n, "c", "i + 1")} = ${hi};`,
      `    }`,
      `  }`,
    );
    return;
  }
  forEach(
    ctx,
    n.len,
    (ci, ii) => `${at(ctx, n, ci, ii)} = ${pointwise(n, n.src.map((x) => at(ctx, x, ci, ii)))};`,
  );
}

/** True when `n` reads a row or vector input (so it depends on the row or the column). */
function readsRows(n: Expr): boolean {
  return toposort([n]).some((x) => x.op === "load" && (x.arg as LoadArg).input.kind !== "scalar");
}

function short(st: Store): string {
  const s = String(st.value);
  return s.length > 100 ? s.slice(0, 97) + "..." : s;
}

function validate(p: Program): void {
  for (const d of p.inputs) {
    if (!INPUT_DTYPES.includes(d.dtype)) {
      throw new TypeError(`${p.name}: input ${d.name} has unsupported dtype ${d.dtype}`);
    }
  }
  const narrowUse = new Map<Expr, number>();
  for (const n of p.nodes) {
    for (const x of n.src) {
      if (x.op === "cast" && NARROW.includes((x.arg as CastArg).dtype)) narrowUse.set(x, 1);
    }
  }
  if (narrowUse.size) {
    const first = [...narrowUse.keys()][0];
    throw new TypeError(
      `${p.name}: ${first} is used by another op; casts to 8/4-bit types may only be stored`,
    );
  }
  if (p.domain === "masked" && p.stores.some((s) => s.rowIndex)) {
    throw new TypeError(`${p.name}: the masked domain has no scatter stores`);
  }
}

/** Pointwise rendering of a concat part at a column expression (scalar loads; parts are element-wise). */
function emitConcat(c: Ctx, n: Expr, v: string): void {
  const o = c.out;
  o.push(`  ${decl(c, n, v)}`);
  o.push(`  #pragma unroll`, `  for (int c = 0; c < ${c.s.chunks}; ++c) {`, `    const int pos = ec[c];`);
  let off = 0;
  n.src.forEach((part, k) => {
    const cond = k === n.src.length - 1 ? "" : `if (pos < ${off + part.len}) `;
    o.push(`    ${k ? "else " : ""}${cond}{`);
    o.push(
      `      #pragma unroll`,
      `      for (int i = 0; i < ${c.s.vec}; ++i) ${v}[c * ${c.s.vec} + i] = (live && okc[c]) ? ${
        pw(c, part, `pos - ${off} + i`)
      } : 0.0f;`,
    );
    o.push(`    }`);
    off += part.len;
  });
  o.push(`  }`);
}

function pw(c: Ctx, n: Expr, pos: string): string {
  switch (n.op) {
    case "const":
    case "param":
      return at(c, n, "0", "0");
    case "load": {
      const a = n.arg as LoadArg;
      const dt = a.input.dtype;
      if (a.input.kind === "scalar") return decode(dt, `(unsigned int)i_${a.input.name}[0]`);
      if (n.len === 1) return decode(dt, `(unsigned int)(${inputBaseOf(a)})[0]`);
      const e = `(${inputBaseOf(a)})[${pos}]`;
      return decode(
        dt,
        dt === "f32" ? `__float_as_uint(${e})` : dt === "i8" ? `(unsigned char)${e}` : `(unsigned int)${e}`,
      );
    }
    case "reduce":
    case "concat":
      throw new TypeError(`concat parts must be element-wise expressions of loads (found ${n.op})`);
    default:
      return pointwise(n, n.src.map((x) => pw(c, x, x.len === 1 ? "0" : pos)));
  }
}

function inputBaseOf(a: LoadArg): string {
  const nm = `i_${a.input.name}`;
  return a.input.kind === "row" ? `${nm} + row * i_${a.input.name}_ld + ${a.col}` : `${nm} + ${a.col}`;
}

/** Values for the kernel's parameters, ordered by name (`i_x`, `o_q_ld`, `m`, ...). */
export function rowKernelArgs<T>(k: RowKernel, values: Readonly<Record<string, T>>): T[] {
  return k.source.params.map((p) => {
    const v = values[p.name];
    if (v === undefined) throw new TypeError(`${k.source.name}: no value for parameter ${p.name}`);
    return v;
  });
}

/** Launch grid for `rows` rows (plain domain) or `experts` × a token stride (masked domain). */
export function rowKernelGrid(
  k: RowKernel,
  g: { rows?: number; experts?: number; tokensPad?: number; smCount?: number },
): [number, number, number] {
  const t = k.tiling;
  if (k.program.domain === "masked") {
    const gx = Math.ceil(t.colTiles / t.teams);
    const E = g.experts ?? 0;
    const want = Math.max(1, Math.ceil(((g.smCount ?? 132) * 8) / Math.max(1, gx * E)));
    return [gx, Math.max(1, Math.min(g.tokensPad ?? 1, want, 65535)), E];
  }
  const rb = k.schedule.rowBlock ?? 1;
  const rows = Math.ceil((g.rows ?? 0) / rb) * rb;
  return [Math.ceil((rows * t.colTiles) / t.teams), 1, 1];
}

/** The dtype of a kernel parameter that an output of `dtype` uses (re-exported for ops). */
export function outputParamDtype(s: Store): DType {
  return storeParamDtype(s);
}
