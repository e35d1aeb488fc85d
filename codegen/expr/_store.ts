/**
 * Private: the stores of a row kernel. Full-length values are packed to the output format per chunk
 * and written with one vector store; per-group values are written by the first lane of each group in
 * the row-major, M-major or packed-UE8M0 layout. Rows in `[m, rows)` write zeros (row padding).
 *
 * @module
 */
import { type DType, dtypeInfo } from "../../dsl/dtype.ts";
import type { CastArg, Expr } from "../../dsl/expr/node.ts";
import type { Store } from "../../dsl/expr/program.ts";
import { at, classOf, type Ctx, NARROW } from "./_emit.ts";

/** The ParamSpec dtype of an output (packed UE8M0 words are i32; the kernel writes their bytes). */
export function storeParamDtype(s: Store): DType {
  return s.layout === "mmajor_packed4" ? "i32" : s.dtype;
}

/** The float source of a store and the int rounding its narrow cast asks for. */
function source(st: Store): { src: Expr; trunc: boolean } {
  const v = st.value;
  if (v.op === "cast" && NARROW.includes((v.arg as CastArg).dtype)) {
    return { src: v.src[0], trunc: (v.arg as CastArg).rounding === "trunc" };
  }
  return { src: v, trunc: false };
}

/** C expression of the code of one value (granular stores). */
function codeOf(dt: DType, x: string, trunc: boolean): string {
  switch (dt) {
    case "f32":
      return x;
    case "bf16":
      return `(unsigned short)kiln_f32_bf16(${x})`;
    case "f16":
      return `(unsigned short)kiln_f32_f16(${x})`;
    case "fp8e4m3":
      return `(unsigned char)(kiln_e4m3x2(${x}, 0.0f) & 0xffu)`;
    case "fp8e5m2":
      return `(unsigned char)(kiln_e5m2x2(${x}, 0.0f) & 0xffu)`;
    case "i8":
      return `(signed char)kiln_sat_int(${x}, -128, 127, ${trunc})`;
    case "ue8m0":
      return `(unsigned char)((__float_as_uint(${x}) >> 23) & 0xffu)`;
  }
  throw new TypeError(`no granular store for ${dt}`);
}

/** 32-bit words holding the codes of one chunk's `vec` values (`val(i)` gives value i). */
function packWords(dt: DType, vec: number, val: (i: number) => string, trunc: boolean): string[] {
  const bits = dt === "ue8m0" ? 8 : dtypeInfo(dt).bits;
  const per = 32 / bits;
  const words: string[] = [];
  const piece = (i: number): string => {
    switch (dt) {
      case "f32":
        return `__float_as_uint(${val(i)})`;
      case "bf16":
        return `kiln_f32_bf16(${val(i)})`;
      case "f16":
        return `kiln_f32_f16(${val(i)})`;
      case "i8":
        return `((unsigned int)kiln_sat_int(${val(i)}, -128, 127, ${trunc}) & 0xffu)`;
      case "ue8m0":
        return `((__float_as_uint(${val(i)}) >> 23) & 0xffu)`;
      case "int4":
        return `((unsigned int)kiln_sat_int(${val(i)}, -8, 7, ${trunc}) & 0xfu)`;
      case "fp4e2m1":
        return `kiln_e2m1(${val(i)})`;
    }
    throw new TypeError(`no full-length store for ${dt}`);
  };
  for (let w = 0; w * per < vec; w++) {
    const parts: string[] = [];
    for (let k = 0; k < per && w * per + k < vec; k++) {
      const i = w * per + k;
      if (dt === "fp8e4m3" || dt === "fp8e5m2") {
        if (k % 2 === 0) {
          const fn = dt === "fp8e4m3" ? "kiln_e4m3x2" : "kiln_e5m2x2";
          const hi = i + 1 < vec ? val(i + 1) : "0.0f";
          parts.push(`(${fn}(${val(i)}, ${hi}) << ${k * 8})`);
        }
      } else if ((dt === "bf16" || dt === "f16") && i + 1 < vec) {
        // both halves of the word with one packed conversion
        if (k === 0) parts.push(`kiln_f32x2_${dt}(${val(i)}, ${val(i + 1)})`);
      } else {
        parts.push(k === 0 ? piece(i) : `(${piece(i)} << ${k * bits})`);
      }
    }
    words.push(parts.join(" | "));
  }
  return words;
}

function storeBytes(dst: string, words: string[], bytes: number): string {
  if (bytes >= 16) {
    const out: string[] = [];
    for (let k = 0; k < bytes / 16; k++) {
      out.push(
        `{ uint4 t; t.x = ${words[4 * k]}; t.y = ${words[4 * k + 1]}; t.z = ${words[4 * k + 2]}; t.w = ${
          words[4 * k + 3]
        }; *(uint4*)(${dst} + ${16 * k}) = t; }`,
      );
    }
    return out.join("\n        ");
  }
  if (bytes === 8) return `{ uint2 t; t.x = ${words[0]}; t.y = ${words[1]}; *(uint2*)(${dst}) = t; }`;
  if (bytes === 4) return `*(unsigned int*)(${dst}) = ${words[0]};`;
  if (bytes === 2) return `*(unsigned short*)(${dst}) = (unsigned short)(${words[0]});`;
  return `*(unsigned char*)(${dst}) = (unsigned char)(${words[0]});`;
}

/** A scalar store (its value does not depend on the row): thread 0 of block 0 writes it once. */
export function emitScalarStore(c: Ctx, st: Store): void {
  const { src, trunc } = source(st);
  c.out.push(
    `  if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0) o_${st.output}[0] = ${
      codeOf(st.dtype, at(c, src, "0", "0"), trunc)
    };`,
  );
}

/** Emit one store: computed rows write their values, padding rows (plain domain) write zeros. */
export function emitStore(c: Ctx, st: Store): void {
  const o = c.out;
  o.push(`  { // store ${st.output}`);
  if (
    st.layout === "atomic_max" || st.layout === "scalar" || st.rowIndex !== undefined ||
    c.p.domain === "masked"
  ) {
    o.push(`  if (live) {`);
    emitStoreBody(c, st, false);
    o.push(`  }`);
  } else {
    o.push(`  if (live) {`);
    emitStoreBody(c, st, false);
    o.push(`  } else if (inrow) {`);
    emitStoreBody(c, st, true);
    o.push(`  }`);
  }
  o.push(`  }`);
}

function emitStoreBody(c: Ctx, st: Store, zero: boolean): void {
  const o = c.out, V = c.s.vec, N = c.s.chunks;
  const { src, trunc } = source(st);
  const { cls, gr } = classOf(c, st.value.len);
  const out = `o_${st.output}`, ld = `${out}_ld`;
  const val = (ci: string, ii: string) => zero ? "0.0f" : at(c, src, ci, ii);
  if (st.layout === "atomic_max") {
    o.push(`    if (lane == 0 && col0 == 0) atomicMax((int*)${out}, __float_as_int(${val("0", "0")}));`);
    return;
  }
  const scatter = st.rowIndex !== undefined;
  if (st.layout === "row") {
    o.push(
      scatter
        ? `    const long long orow = (long long)x_${st.rowIndex}[row];`
        : `    const long long orow = row;`,
    );
  }
  const ok = scatter ? "orow >= 0" : "true";
  if (cls === "elem") {
    if (st.layout !== "row") {
      throw new TypeError(`store ${st.output}: full-length values need the row layout`);
    }
    const bits = st.dtype === "ue8m0" ? 8 : dtypeInfo(st.dtype).bits;
    const bytes = (V * bits) / 8;
    const words = zero
      ? Array.from({ length: Math.max(1, bytes / 4) }, () => "0u")
      : packWords(st.dtype, V, (i) => val("c", String(i)), trunc);
    o.push(`    #pragma unroll`, `    for (int c = 0; c < ${N}; ++c) {`, `      if (${ok} && okc[c]) {`);
    o.push(`        char* dst = (char*)${out} + ((orow * ${ld} + ${st.col} + ec[c]) * ${bits}) / 8;`);
    o.push(`        ${storeBytes("dst", words, bytes)}`, `      }`, `    }`);
    return;
  }
  if (dtypeInfo(st.dtype).packing === 2) {
    throw new TypeError(`store ${st.output}: 4-bit values must be full-length`);
  }
  // per-group values: the first lane (and chunk) of each group writes value index j
  const put = (j: string, v: string, cond: string) => {
    const tok = c.p.domain === "masked" ? "tok" : "(int)row";
    if (st.layout === "row") {
      o.push(`      if (${cond}) ${out}[orow * ${ld} + ${st.col} + ${j}] = ${codeOf(st.dtype, v, trunc)};`);
    } else if (st.layout === "mmajor") {
      const base = c.p.domain === "masked" ? `(long long)ex * ${st.width} * ${ld} + ` : "";
      o.push(
        `      if (${cond}) ${out}[${base}(long long)(${st.col} + ${j}) * ${ld} + ${tok}] = ${
          codeOf(st.dtype, v, trunc)
        };`,
      );
    } else {
      const words = Math.ceil(st.width / 4);
      const base = c.p.domain === "masked" ? `(long long)ex * ${words} * ${ld} + ` : "";
      o.push(`      if (${cond}) {`);
      o.push(`        const int jj = ${st.col} + ${j};`);
      o.push(
        `        unsigned char* wb = (unsigned char*)${out} + (${base}(long long)(jj >> 2) * ${ld} + ${tok}) * 4;`,
      );
      o.push(`        wb[jj & 3] = ${codeOf("ue8m0", v, false)};`);
      if (st.width % 4 !== 0 && st.col + st.value.len === st.width) {
        o.push(`        if (jj == ${st.width - 1}) { for (int z = ${st.width % 4}; z < 4; ++z) wb[z] = 0; }`);
      }
      o.push(`      }`);
    }
  };
  if (cls === "scalar") {
    o.push(`    {`);
    put(`col0 / ${gr}`, val("0", "0"), `${ok} && lane == 0 && (col0 % ${gr}) == 0`);
    o.push(`    }`);
  } else if (cls === "chunk") {
    o.push(`    #pragma unroll`, `    for (int c = 0; c < ${N}; ++c) {`);
    put(`ec[c] / ${gr}`, val("c", "0"), `${ok} && okc[c] && (ec[c] % ${gr}) == 0`);
    o.push(`    }`);
  } else {
    o.push(
      `    #pragma unroll`,
      `    for (int c = 0; c < ${N}; ++c) {`,
      `      #pragma unroll`,
      `      for (int i = 0; i < ${V}; i += ${gr}) {`,
    );
    put(`(ec[c] + i) / ${gr}`, val("c", "i"), `${ok} && okc[c]`);
    o.push(`      }`, `    }`);
  }
}
