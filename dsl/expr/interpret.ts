/**
 * The reference semantics of a row program: a plain TypeScript interpreter. It evaluates every node of
 * a row as a Float32Array (so every intermediate is a float32, as on the GPU) and writes the outputs in
 * exactly the buffer layout the generated kernel writes, including the zero-filled padding rows and the
 * untouched masked rows. It is the ground truth the GPU tests compare with, bit for bit.
 *
 * Sums depend on their order. Given the kernel's {@linkcode ReduceTree} the interpreter adds in the
 * kernel's order (per-thread partials, then the warp butterfly, then warps in order), so sums are
 * bit-exact too; without it they add left to right.
 *
 * @example
 * ```ts
 * import { input } from "./node.ts";
 * import { RowProgram } from "./program.ts";
 * import { interpret } from "./interpret.ts";
 * const x = input("x", "f32", 4);
 * const p = new RowProgram("twice").store("y", x.load().mul(2)).finish();
 * const out = interpret(p, { inputs: { x: new Float32Array([1, 2, 3, 4]) }, geometry: { m: 1, rows: 1 } });
 * console.log(out.y); // Float32Array [2, 4, 6, 8]
 * ```
 * @module
 */
import { allocHost, decodeArray, type DType, dtypeInfo, f32Bits, type HostArray } from "../dtype.ts";
import type { CastArg, Expr, LoadArg, ReduceArg, ReduceOp } from "./node.ts";
import { castValue, encodeValue, fmaxf, fminf, kexp, ksilu, pow2ceil, ue8m0Byte } from "./math.ts";
import { defaultLd, outputElements, type Program, type RunGeometry, type Store } from "./program.ts";

/** How the kernel maps a row onto threads (enough to reproduce its summation order). */
export interface ReduceTree {
  /** Elements per chunk (one vector load). */
  vec: number;
  /** Threads that share one row tile. */
  lanes: number;
  /** Chunks per thread. */
  chunks: number;
}

/** Inputs of {@linkcode interpret}. */
export interface InterpretArgs {
  /** Raw storage of each input, contiguous (`[rows, width]`, `[width]` or `[1]`). */
  inputs: Record<string, HostArray>;
  params?: Record<string, number>;
  /** Row-index inputs of scattering stores. */
  index?: Record<string, Int32Array>;
  /** Tokens per expert (masked domain). */
  maskedM?: Int32Array;
  geometry: RunGeometry;
  /** Leading dimension of an output when it is not the default. */
  ld?: Record<string, number>;
  /**
   * Initial output contents (e.g. poisoned), else zero-filled: the raw bytes of each buffer in any array
   * type (a `Uint8Array` of 0xFF poisons an f32 output too); the byte length must match the output's.
   */
  outputs?: Record<string, HostArray>;
  tree?: ReduceTree;
}

/** Host storage for a store's output (bytes for packed 4-bit and UE8M0 outputs). */
export function allocOutput(s: Store, g: RunGeometry, ld?: number): HostArray {
  const n = outputElements(s, g, ld);
  if (s.layout === "mmajor_packed4" || s.dtype === "ue8m0") return new Uint8Array(n);
  return allocHost(s.dtype, n);
}

const IDENTITY: Record<ReduceOp, number> = { max: -Infinity, amax: 0, sum: -0, sumsq: -0 };

function combine(op: ReduceOp, p: number, v: number): number {
  switch (op) {
    case "max":
      return fmaxf(p, v);
    case "amax":
      return fmaxf(p, Math.abs(v));
    case "sum":
      return Math.fround(p + v);
    case "sumsq":
      return Math.fround(p + Math.fround(v * v));
  }
}
/** Combining two partials (the butterfly and the cross-warp step). */
function merge(op: ReduceOp, a: number, b: number): number {
  return op === "max" || op === "amax" ? fmaxf(a, b) : Math.fround(a + b);
}

function unaryOp(op: string, a: number): number {
  switch (op) {
    case "neg":
      return -a;
    case "abs":
      return Math.abs(a);
    case "exp":
      return kexp(a);
    case "silu":
      return ksilu(a);
    case "sqrt":
      return Math.fround(Math.sqrt(a));
    case "rsqrt":
      return Math.fround(1 / Math.fround(Math.sqrt(a)));
    case "recip":
      return Math.fround(1 / a);
    case "pow2ceil":
      return pow2ceil(a);
  }
  throw new Error(`unknown unary op ${op}`);
}

function binaryOp(op: string, a: number, b: number): number {
  switch (op) {
    case "add":
      return Math.fround(a + b);
    case "sub":
      return Math.fround(a - b);
    case "mul":
      return Math.fround(a * b);
    case "div":
      return Math.fround(a / b);
    case "min":
      return fminf(a, b);
    case "max":
      return fmaxf(a, b);
  }
  throw new Error(`unknown binary op ${op}`);
}

/** Element offsets (within a group) each lane adds, in order, for a group of `g` under `t`. */
function lanePlan(g: number, width: number, t: ReduceTree): number[][] {
  const span = t.lanes * t.vec;
  const lanes: number[][] = [];
  if (g <= t.vec) return [Array.from({ length: g }, (_, i) => i)];
  if (g <= span) {
    for (let l = 0; l < g / t.vec; l++) lanes.push(Array.from({ length: t.vec }, (_, i) => l * t.vec + i));
    return lanes;
  }
  const rounds = g >= width ? t.chunks : g / span;
  for (let l = 0; l < t.lanes; l++) {
    const offs: number[] = [];
    for (let c = 0; c < rounds; c++) {
      for (let i = 0; i < t.vec; i++) {
        const o = c * span + l * t.vec + i;
        if (o < g) offs.push(o);
      }
    }
    lanes.push(offs);
  }
  return lanes;
}

function treeReduce(op: ReduceOp, x: Float32Array, g: number, out: Float32Array, plan: number[][]): void {
  const parts = new Float64Array(plan.length);
  for (let grp = 0; grp < out.length; grp++) {
    const base = grp * g;
    for (let l = 0; l < plan.length; l++) {
      let p = IDENTITY[op];
      for (const o of plan[l]) p = combine(op, p, x[base + o]);
      parts[l] = p;
    }
    const warp = Math.min(32, plan.length);
    for (let o = warp >> 1; o >= 1; o >>= 1) {
      const next = new Float64Array(parts.length);
      for (let l = 0; l < parts.length; l++) next[l] = merge(op, parts[l], parts[l ^ o]);
      parts.set(next);
    }
    let acc = parts[0];
    if (plan.length > 32) {
      acc = IDENTITY[op];
      for (let w = 0; w < plan.length; w += 32) acc = merge(op, acc, parts[w]);
    }
    out[grp] = acc;
  }
}

/** Run `program` on host data. Returns every output's raw storage. */
export function interpret(program: Program, args: InterpretArgs): Record<string, HostArray> {
  const g = args.geometry;
  const outs: Record<string, HostArray> = {};
  const lds: Record<string, number> = {};
  for (const s of program.stores) {
    if (outs[s.output]) continue;
    lds[s.output] = args.ld?.[s.output] ?? defaultLd(s, g);
    const buf = allocOutput(s, g, lds[s.output]);
    const init = args.outputs?.[s.output];
    if (init) {
      // raw contents, whatever array type holds them: copied byte for byte into the typed buffer
      if (init.byteLength !== buf.byteLength) {
        throw new RangeError(
          `interpret ${program.name}: initial ${s.output} has ${init.byteLength} bytes, the output ${buf.byteLength}`,
        );
      }
      new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength).set(
        new Uint8Array(init.buffer, init.byteOffset, init.byteLength),
      );
    }
    outs[s.output] = buf;
  }
  const vals = new Map<Expr, Float32Array>(program.nodes.map((n) => [n, new Float32Array(n.len)]));
  const decoded = new Map<string, Float32Array>();
  for (const d of program.inputs) {
    const raw = args.inputs[d.name];
    if (!raw) throw new TypeError(`interpret ${program.name}: missing input ${d.name}`);
    decoded.set(d.name, decodeArray(d.dtype, raw));
  }
  const plans = new Map<Expr, number[][]>();
  if (args.tree) {
    for (const n of program.nodes) {
      const a = n.arg as ReduceArg;
      if (n.op === "reduce" && (a.op === "sum" || a.op === "sumsq")) {
        plans.set(n, lanePlan(a.group, program.width, args.tree));
      }
    }
  }

  const evalRow = (row: number) => {
    for (const n of program.nodes) {
      const v = vals.get(n)!;
      switch (n.op) {
        case "load": {
          const a = n.arg as LoadArg;
          const src = decoded.get(a.input.name)!;
          const base = a.input.kind === "row" ? row * a.input.width + a.col : a.col;
          for (let j = 0; j < n.len; j++) v[j] = src[base + j];
          break;
        }
        case "param": {
          const p = args.params?.[n.arg as string];
          if (p === undefined) throw new TypeError(`interpret ${program.name}: missing param ${n.arg}`);
          v[0] = p;
          break;
        }
        case "const":
          v[0] = n.arg as number;
          break;
        case "cast": {
          const a = n.arg as CastArg, x = vals.get(n.src[0])!;
          for (let j = 0; j < n.len; j++) v[j] = castValue(a.dtype, x[j], a.rounding);
          break;
        }
        case "reduce": {
          const a = n.arg as ReduceArg, x = vals.get(n.src[0])!;
          const plan = plans.get(n);
          if (plan) {
            treeReduce(a.op, x, a.group, v, plan);
            break;
          }
          for (let k = 0; k < n.len; k++) {
            let p = IDENTITY[a.op];
            for (let j = k * a.group; j < (k + 1) * a.group; j++) p = combine(a.op, p, x[j]);
            v[k] = p;
          }
          break;
        }
        case "concat": {
          let off = 0;
          for (const s of n.src) {
            v.set(vals.get(s)!, off);
            off += s.len;
          }
          break;
        }
        default: {
          if (n.src.length === 1) {
            const x = vals.get(n.src[0])!;
            for (let j = 0; j < n.len; j++) v[j] = unaryOp(n.op, x[j]);
          } else {
            const x = vals.get(n.src[0])!, y = vals.get(n.src[1])!;
            const rx = n.len / x.length, ry = n.len / y.length;
            for (let j = 0; j < n.len; j++) {
              v[j] = binaryOp(n.op, x[Math.floor(j / rx)], y[Math.floor(j / ry)]);
            }
          }
        }
      }
    }
  };

  const put = (s: Store, buf: HostArray, idx: number, x: number | undefined) => {
    // x undefined: a zero (padding); otherwise encode the value.
    const info = dtypeInfo(s.dtype);
    if (info.packing === 2) {
      const code = x === undefined ? 0 : encodeValue(s.dtype, x, roundingOf(s));
      const b = buf as Uint8Array;
      b[idx >> 1] = (b[idx >> 1] & (idx & 1 ? 0x0f : 0xf0)) | (code << ((idx & 1) * 4));
    } else if (s.dtype === "f32") (buf as Float32Array)[idx] = x ?? 0;
    else if (s.dtype === "ue8m0") (buf as Uint8Array)[idx] = x === undefined ? 0 : ue8m0Byte(x);
    else (buf as Uint8Array)[idx] = x === undefined ? 0 : encodeValue(s.dtype, x, roundingOf(s));
  };

  const storeRow = (row: number, e: number, t: number, live: boolean) => {
    for (const s of program.stores) {
      const buf = outs[s.output], ld = lds[s.output];
      const v = live ? vals.get(s.value)! : undefined;
      const len = s.value.len;
      switch (s.layout) {
        case "row": {
          let r = row;
          if (s.rowIndex) {
            if (!live) continue;
            r = args.index?.[s.rowIndex]?.[row] ?? -1;
            if (r < 0) continue;
          }
          for (let j = 0; j < len; j++) put(s, buf, r * ld + s.col + j, v?.[j]);
          break;
        }
        case "mmajor": {
          const base = e * s.width * ld;
          for (let j = 0; j < len; j++) put(s, buf, base + (s.col + j) * ld + t, v?.[j]);
          break;
        }
        case "mmajor_packed4": {
          const words = Math.ceil(s.width / 4);
          const base = e * words * ld * 4;
          const b = buf as Uint8Array;
          for (let j = 0; j < len; j++) {
            const c = s.col + j;
            b[base + ((c >> 2) * ld + t) * 4 + (c & 3)] = v ? ue8m0Byte(v[j]) : 0;
          }
          if (s.col + len === s.width) {
            for (let c = s.width; c < words * 4; c++) b[base + ((c >> 2) * ld + t) * 4 + (c & 3)] = 0;
          }
          break;
        }
        case "scalar":
          break; // written once per launch, below
        case "atomic_max":
          if (live) {
            const f = buf as Float32Array;
            const cur = f32Bits(f[0]) | 0, nv = f32Bits(v![0]) | 0;
            if (nv > cur) f[0] = v![0];
          }
          break;
      }
    }
  };

  // scalar stores: once per launch (a launch exists when there is at least one row or expert)
  const launched = program.domain === "masked" ? (g.experts ?? 0) > 0 : g.rows > 0;
  for (const s of program.stores) {
    if (s.layout === "scalar" && launched) put(s, outs[s.output], 0, evalScalar(s.value, args));
  }
  if (program.domain === "masked") {
    const E = g.experts ?? 0, T = g.tokensPad ?? 0;
    if (!args.maskedM) throw new TypeError(`interpret ${program.name}: the masked domain needs maskedM`);
    for (let e = 0; e < E; e++) {
      for (let t = 0; t < Math.min(T, args.maskedM[e]); t++) {
        evalRow(e * T + t);
        storeRow(e * T + t, e, t, true);
      }
    }
  } else {
    for (let r = 0; r < g.rows; r++) {
      const live = r < g.m;
      if (live) evalRow(r);
      storeRow(r, 0, r, live);
    }
  }
  return outs;
}

/** Evaluate a row-independent expression (parameters, scalar inputs, constants). */
function evalScalar(e: Expr, args: InterpretArgs): number {
  switch (e.op) {
    case "const":
      return e.arg as number;
    case "param":
      return args.params?.[e.arg as string] ?? NaN;
    case "load": {
      const a = e.arg as LoadArg;
      return decodeArray(a.input.dtype, args.inputs[a.input.name])[0];
    }
    case "cast": {
      const a = e.arg as CastArg;
      return castValue(a.dtype, evalScalar(e.src[0], args), a.rounding);
    }
    case "reduce":
    case "concat":
      throw new TypeError("a scalar store's value must not depend on the row");
    default:
      return e.src.length === 1
        ? unaryOp(e.op, evalScalar(e.src[0], args))
        : binaryOp(e.op, evalScalar(e.src[0], args), evalScalar(e.src[1], args));
  }
}

function roundingOf(s: Store): "rne" | "trunc" {
  return s.value.op === "cast" ? (s.value.arg as CastArg).rounding : "rne";
}

/** The dtype a store's host buffer holds. */
export function outputDType(s: Store): DType {
  return s.layout === "mmajor_packed4" ? "u8" : s.dtype === "ue8m0" ? "u8" : s.dtype;
}
