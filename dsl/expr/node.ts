/**
 * The expression IR for fused row-wise ops: a small hash-consed DAG in the style of tinygrad's UOps and
 * jax-js's AluExp. A node is `(op, src, arg)` plus the length of the row vector it produces; building
 * the same expression twice returns the same object, so structural equality is `===` and a program's
 * node set is its canonical form.
 *
 * Every value is a float32 vector over one row. Lengths broadcast by repetition: in `a.mul(s)` where
 * `a` has 7168 elements and `s` has 56 (one per group of 128), element j of `s` is used for elements
 * [128j, 128j + 128) of `a`; a length-1 value (a per-row scalar, a parameter or a constant) is used for
 * every element. Every op computes one correctly rounded float32 result, so the TypeScript interpreter
 * (interpret.ts) and the generated CUDA agree bit for bit; `exp` and `silu` are defined by a fixed
 * sequence of such operations (dsl/expr/math.ts), not by a libm.
 *
 * @example
 * ```ts
 * import { input } from "./node.ts";
 * const x = input("x", "bf16", 256);
 * const y = x.load().silu().cast("bf16");
 * console.log(y.op, y.len); // "cast" 256
 * ```
 * @module
 */
import { type DType, dtypeInfo } from "../dtype.ts";

/** One-operand float ops. `pow2ceil` rounds up to a power of two (UE8M0 scales). */
export type UnaryOp = "neg" | "abs" | "exp" | "silu" | "sqrt" | "rsqrt" | "recip" | "pow2ceil";
/** Two-operand float ops; `min`/`max` ignore a NaN operand (CUDA `fminf`/`fmaxf`). */
export type BinaryOp = "add" | "sub" | "mul" | "div" | "min" | "max";
/** Group reductions: `amax` = max |x|, `sumsq` = sum x². */
export type ReduceOp = "max" | "amax" | "sum" | "sumsq";
/** How a cast to an integer format rounds: to nearest even, or toward zero (C's `int8_t(float)`). */
export type IntRounding = "rne" | "trunc";
/** Every op of the IR. */
export type Op = "load" | "param" | "const" | "cast" | "reduce" | "concat" | UnaryOp | BinaryOp;

/** Where an input's rows come from. */
export type InputKind =
  /** One row per program row, `[rows, width]` with a runtime row stride. */
  | "row"
  /** The same vector for every row (a weight), `[width]`. */
  | "vector"
  /** One value for the whole tensor (a per-tensor scale in device memory), element 0. */
  | "scalar";

/** A declared input tensor. */
export interface InputDecl {
  readonly name: string;
  readonly dtype: DType;
  readonly kind: InputKind;
  /** Elements per row of the tensor (1 for "scalar"). */
  readonly width: number;
}

/** The argument of a `load`: which input, which columns. */
export interface LoadArg {
  readonly input: InputDecl;
  /** First column read. */
  readonly col: number;
}

/** The argument of a `reduce`. */
export interface ReduceArg {
  readonly op: ReduceOp;
  /** Elements of the operand combined into one result. */
  readonly group: number;
}

/** The argument of a `cast`. */
export interface CastArg {
  readonly dtype: DType;
  readonly rounding: IntRounding;
}

/** The argument of a node, by op: a load, reduce or cast descriptor, a constant, a parameter name. */
export type ExprArg = LoadArg | ReduceArg | CastArg | number | string | undefined;

const FLOAT_CASTS: readonly DType[] = ["f32", "bf16", "f16", "fp8e4m3", "fp8e5m2", "fp4e2m1"];
const INT_CASTS: readonly DType[] = ["i8", "int4"];

let nextId = 0;
const interned = new Map<string, Expr>();

/** A node of the expression DAG. Build with the methods and the free functions of ops.ts. */
export class Expr {
  /** Creation order; sources always have smaller ids (a topological order for free). */
  readonly id: number;
  private constructor(
    readonly op: Op,
    readonly src: readonly Expr[],
    readonly arg: ExprArg,
    /** Elements of the row vector this node produces. */
    readonly len: number,
  ) {
    this.id = nextId++;
    Object.freeze(this);
  }

  /** The interned node for `(op, src, arg)` (hash-consing: equal structure, same object). */
  static make(op: Op, src: readonly Expr[], arg: ExprArg, len: number): Expr {
    const key = `${op}|${src.map((s) => s.id).join(",")}|${argKey(arg)}|${len}`;
    let e = interned.get(key);
    if (!e) {
      e = new Expr(op, src, arg, len);
      interned.set(key, e);
    }
    return e;
  }

  // Element-wise math. Numbers become f32 constants.
  add(b: Expr | number): Expr {
    return binary("add", this, b);
  }
  sub(b: Expr | number): Expr {
    return binary("sub", this, b);
  }
  mul(b: Expr | number): Expr {
    return binary("mul", this, b);
  }
  div(b: Expr | number): Expr {
    return binary("div", this, b);
  }
  min(b: Expr | number): Expr {
    return binary("min", this, b);
  }
  max(b: Expr | number): Expr {
    return binary("max", this, b);
  }
  /** `min(max(x, lo), hi)`, NaN-ignoring like CUDA's fminf/fmaxf. */
  clamp(lo: Expr | number, hi: Expr | number): Expr {
    return this.max(lo).min(hi);
  }
  neg(): Expr {
    return unary("neg", this);
  }
  abs(): Expr {
    return unary("abs", this);
  }
  exp(): Expr {
    return unary("exp", this);
  }
  /** `x / (1 + exp(-x))`. */
  silu(): Expr {
    return unary("silu", this);
  }
  sqrt(): Expr {
    return unary("sqrt", this);
  }
  /** `1 / sqrt(x)`, both correctly rounded. */
  rsqrt(): Expr {
    return unary("rsqrt", this);
  }
  recip(): Expr {
    return unary("recip", this);
  }
  /** The smallest power of two ≥ x, clamped to [2^-126, 2^127] (UE8M0 scale rounding). */
  pow2ceil(): Expr {
    return unary("pow2ceil", this);
  }
  square(): Expr {
    return this.mul(this);
  }
  /**
   * Round to `dtype` (the value stays a float: the nearest value `dtype` can hold). Floats round to
   * nearest even (fp8 and fp4 saturate to their largest finite value); i8 and int4 saturate and round
   * by `rounding`. Casts to 8- and 4-bit types may only feed a store of the same dtype.
   */
  cast(dtype: DType, rounding: IntRounding = "rne"): Expr {
    if (!FLOAT_CASTS.includes(dtype) && !INT_CASTS.includes(dtype)) {
      throw new TypeError(
        `cast: cannot cast to ${dtype} (expected one of ${[...FLOAT_CASTS, ...INT_CASTS]})`,
      );
    }
    return Expr.make(
      "cast",
      [this],
      { dtype, rounding: dtypeInfo(dtype).isFloat ? "rne" : rounding },
      this.len,
    );
  }

  // Reductions over groups of `group` consecutive elements (default: the whole row).
  reduce(op: ReduceOp, group: number = this.len): Expr {
    if (!Number.isInteger(group) || group < 1 || this.len % group !== 0) {
      throw new RangeError(`reduce(${op}): group ${group} must divide the operand length ${this.len}`);
    }
    return Expr.make("reduce", [this], { op, group }, this.len / group);
  }
  amax(group?: number): Expr {
    return this.reduce("amax", group);
  }
  rmax(group?: number): Expr {
    return this.reduce("max", group);
  }
  sum(group?: number): Expr {
    return this.reduce("sum", group);
  }
  sumsq(group?: number): Expr {
    return this.reduce("sumsq", group);
  }

  toString(): string {
    return show(this);
  }
}

function argKey(a: ExprArg): string {
  if (a === undefined) return "";
  if (typeof a === "number") return Object.is(a, -0) ? "-0" : String(a);
  if (typeof a === "string") return a;
  if ("input" in a) return `${a.input.name}:${a.input.dtype}:${a.input.kind}:${a.input.width}@${a.col}`;
  if ("group" in a) return `${a.op}/${a.group}`;
  return `${a.dtype}:${a.rounding}`;
}

/** Broadcast length of two operands: the longer, when the shorter divides it. */
export function broadcastLen(a: number, b: number, what = "operands"): number {
  const hi = Math.max(a, b), lo = Math.min(a, b);
  if (hi % lo !== 0) {
    throw new RangeError(`${what}: lengths ${a} and ${b} do not broadcast (one must divide the other)`);
  }
  return hi;
}

/** A float32 constant (rounded to f32). */
export function constant(v: number): Expr {
  return Expr.make("const", [], Math.fround(v), 1);
}

/** A runtime float32 kernel parameter (a scalar the caller passes per launch). */
export function param(name: string): Expr {
  checkName(name);
  return Expr.make("param", [], name, 1);
}

function lift(v: Expr | number): Expr {
  return typeof v === "number" ? constant(v) : v;
}

/** Build a binary node. */
export function binary(op: BinaryOp, a: Expr | number, b: Expr | number): Expr {
  const x = lift(a), y = lift(b);
  return Expr.make(op, [x, y], undefined, broadcastLen(x.len, y.len, op));
}

/** Build a unary node. */
export function unary(op: UnaryOp, a: Expr | number): Expr {
  const x = lift(a);
  return Expr.make(op, [x], undefined, x.len);
}

/**
 * `[a, b, ...]` along the row. The generated kernel evaluates each part at its own columns, so parts
 * must be element-wise expressions of loads (no reductions below a concat).
 */
export function concat(...parts: Expr[]): Expr {
  if (parts.length < 2) throw new RangeError("concat: needs at least two parts");
  return Expr.make("concat", parts, undefined, parts.reduce((n, p) => n + p.len, 0));
}

/** A declared input. `load()` reads all its columns, `cols(start, len)` a slice. */
export class Input {
  readonly decl: InputDecl;
  constructor(name: string, dtype: DType, kind: InputKind, width: number) {
    checkName(name);
    dtypeInfo(dtype);
    if (!Number.isInteger(width) || width < 1) {
      throw new RangeError(`input ${name}: width must be a positive integer`);
    }
    if (kind === "scalar" && width !== 1) throw new RangeError(`input ${name}: a scalar input has width 1`);
    if (dtypeInfo(dtype).packing !== 1) {
      throw new TypeError(`input ${name}: packed 4-bit inputs are not supported`);
    }
    this.decl = Object.freeze({ name, dtype, kind, width });
  }
  /** Columns `[start, start + len)` as a float32 row vector. */
  cols(start: number, len: number): Expr {
    const w = this.decl.width;
    if (!Number.isInteger(start) || !Number.isInteger(len) || start < 0 || len < 1 || start + len > w) {
      throw new RangeError(`${this.decl.name}.cols(${start}, ${len}): outside the ${w} columns`);
    }
    return Expr.make("load", [], { input: this.decl, col: start }, len);
  }
  /** All columns. */
  load(): Expr {
    return this.cols(0, this.decl.width);
  }
  /** `n` equal parts along the row (e.g. gate and up of a `[.., 2H]` input). */
  split(n: number): Expr[] {
    const w = this.decl.width;
    if (!Number.isInteger(n) || n < 1 || w % n !== 0) {
      throw new RangeError(`${this.decl.name}.split(${n}): ${w} columns`);
    }
    return Array.from({ length: n }, (_, i) => this.cols((i * w) / n, w / n));
  }
}

/** Declare a row input `[rows, width]` of `dtype`. */
export function input(name: string, dtype: DType, width: number): Input {
  return new Input(name, dtype, "row", width);
}
/** Declare a vector input `[width]` shared by every row (e.g. an RMSNorm weight). */
export function vectorInput(name: string, dtype: DType, width: number): Input {
  return new Input(name, dtype, "vector", width);
}
/** Declare a one-element input (e.g. a per-tensor scale kept in device memory). */
export function scalarInput(name: string, dtype: DType = "f32"): Input {
  return new Input(name, dtype, "scalar", 1);
}

/** Names become C identifiers: keep them short and plain. */
export function checkName(name: string): void {
  if (!/^[a-z][a-z0-9_]{0,30}$/.test(name)) {
    throw new TypeError(`"${name}" is not a valid name: use lower-case letters, digits and _ (≤ 31 chars)`);
  }
}

/** Every node reachable from `roots`, sources first. */
export function toposort(roots: readonly Expr[]): Expr[] {
  const seen = new Set<Expr>();
  const out: Expr[] = [];
  const visit = (e: Expr) => {
    if (seen.has(e)) return;
    seen.add(e);
    for (const s of e.src) visit(s);
    out.push(e);
  };
  roots.forEach(visit);
  return out;
}

/** A one-line rendering of an expression, for errors and snapshots. */
export function show(e: Expr): string {
  switch (e.op) {
    case "load": {
      const a = e.arg as LoadArg;
      return a.col === 0 && e.len === a.input.width
        ? a.input.name
        : `${a.input.name}[${a.col}:${a.col + e.len}]`;
    }
    case "param":
      return `$${e.arg}`;
    case "const":
      return String(e.arg);
    case "cast": {
      const a = e.arg as CastArg;
      return `${a.dtype}${a.rounding === "trunc" ? "_rz" : ""}(${show(e.src[0])})`;
    }
    case "reduce": {
      const a = e.arg as ReduceArg;
      return `${a.op}/${a.group}(${show(e.src[0])})`;
    }
    case "concat":
      return `[${e.src.map(show).join(", ")}]`;
    default:
      return `${e.op}(${e.src.map(show).join(", ")})`;
  }
}
