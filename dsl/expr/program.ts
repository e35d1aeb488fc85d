/**
 * A row program: expressions over one row, the stores that write them, and the row domain. One
 * program becomes one generated kernel (codegen/expr/render.ts) and runs in the TypeScript interpreter
 * (interpret.ts), its reference semantics.
 *
 * Rows: `[rows, ...]` tensors. At run time the caller gives `m` (rows to compute) and `rows ≥ m`
 * (rows the outputs hold): rows in `[m, rows)` of every row-shaped output are written with zeros in the
 * same launch (row padding). In the masked domain rows are `[experts, tokensPad]` flattened, and row
 * `(e, t)` is computed only when `t < maskedM[e]`; other rows are left untouched.
 *
 * @example
 * ```ts
 * import { input } from "./node.ts";
 * import { quantize } from "./quantize.ts";
 * import { RowProgram } from "./program.ts";
 * const x = input("x", "bf16", 512);
 * const { q, scale } = quantize(x.load(), { format: "fp8e4m3", group: 128 });
 * const p = new RowProgram("demo_quant").store("q", q, { dtype: "fp8e4m3" }).store("s", scale, { layout: "mmajor" });
 * console.log(p.finish().width); // 512
 * ```
 * @module
 */
import { type DType, dtypeInfo } from "../dtype.ts";
import { checkName, type Expr, type InputDecl, type LoadArg, show, toposort } from "./node.ts";

/**
 * How a store lays out its output.
 * - `row`: `[rows, width]`, element (r, j) at `r * ld + col + j` (`ld` is a runtime row stride).
 * - `mmajor`: `[width, ld]` ("column-major", M-major scales), element (r, j) at `j * ld + r`.
 * - `mmajor_packed4`: UE8M0 bytes packed four per int32 along j, M-major words: byte (r, j) at
 *   `((j >> 2) * ld + r) * 4 + (j & 3)`; unused bytes of the last word are zeroed (DeepGEMM's layout).
 * - `scalar`: one value (it must not depend on the row), written once.
 * - `atomic_max`: one float32 that every row's value (≥ 0) is max-ed into with atomicMax.
 */
export type StoreLayout = "row" | "mmajor" | "mmajor_packed4" | "scalar" | "atomic_max";

/** Options of a store. */
export interface StoreOptions {
  /** Storage type (default f32). 8- and 4-bit formats take the codes of a cast to the same dtype. */
  dtype?: DType;
  layout?: StoreLayout;
  /** First column written (several stores at different columns of one output concatenate). */
  col?: number;
  /** Row width of the output (default: col + the value's length). */
  width?: number;
  /**
   * Scatter: write row r to row `index[r]` of the output (an i32 row input); negative skips. Targets
   * must be distinct: when two rows name the same target, which one lands is unspecified (the GPU
   * races; the interpreter keeps the last).
   */
  rowIndex?: string;
}

/** A store, resolved. */
export interface Store {
  readonly output: string;
  readonly value: Expr;
  readonly dtype: DType;
  readonly layout: StoreLayout;
  readonly col: number;
  readonly width: number;
  readonly rowIndex?: string;
}

/** The dtypes a store can write. */
export const STORE_DTYPES: readonly DType[] = [
  "f32",
  "bf16",
  "f16",
  "fp8e4m3",
  "fp8e5m2",
  "i8",
  "int4",
  "fp4e2m1",
  "ue8m0",
];

/** Row domain of a program. */
export type RowDomain = "rows" | "masked";

/** A finished, validated program. */
export interface Program {
  readonly name: string;
  readonly domain: RowDomain;
  /** The iteration length: elements per row the kernel walks (the longest full-length value). */
  readonly width: number;
  readonly inputs: readonly InputDecl[];
  /** Row-index inputs (i32 `[rows]`) used by scattering stores. */
  readonly indexInputs: readonly string[];
  readonly params: readonly string[];
  readonly stores: readonly Store[];
  /** Every node the stores need, sources first. */
  readonly nodes: readonly Expr[];
}

/** Builds a {@linkcode Program}: add stores, then `finish()`. */
export class RowProgram {
  readonly #stores: Store[] = [];
  constructor(readonly name: string, readonly domain: RowDomain = "rows") {
    if (!/^[a-z][a-z0-9_]{0,80}$/.test(name)) throw new TypeError(`program name "${name}": use [a-z0-9_]`);
  }

  /** Store `value` into output `output` (created on first use; later stores must agree on it). */
  store(output: string, value: Expr, opts: StoreOptions = {}): this {
    checkName(output);
    const dtype = opts.dtype ?? "f32";
    if (!STORE_DTYPES.includes(dtype)) {
      throw new TypeError(`store ${output}: dtype ${dtype} is not one of ${STORE_DTYPES.join(", ")}`);
    }
    const layout = opts.layout ?? "row";
    const col = opts.col ?? 0;
    const width = opts.width ?? col + value.len;
    if (!Number.isInteger(col) || col < 0 || col + value.len > width) {
      throw new RangeError(`store ${output}: columns [${col}, ${col + value.len}) outside width ${width}`);
    }
    if (layout === "mmajor_packed4" && dtype !== "ue8m0") {
      throw new TypeError(`store ${output}: mmajor_packed4 holds ue8m0 bytes, not ${dtype}`);
    }
    if ((layout === "scalar" || layout === "atomic_max") && value.len !== 1) {
      throw new RangeError(
        `store ${output}: a ${layout} store takes a per-row scalar, got length ${value.len}`,
      );
    }
    if (layout === "atomic_max" && dtype !== "f32") throw new TypeError(`store ${output}: atomic_max is f32`);
    if (opts.rowIndex !== undefined && layout !== "row") {
      throw new TypeError(`store ${output}: scatter (rowIndex) needs the row layout`);
    }
    if (opts.rowIndex !== undefined) checkName(opts.rowIndex);
    const narrow = dtypeInfo(dtype).bits <= 8 && dtype !== "ue8m0";
    if (narrow && !(value.op === "cast" && (value.arg as { dtype: DType }).dtype === dtype)) {
      throw new TypeError(
        `store ${output}: a ${dtype} store takes cast(${dtype}) of a value, got ${show(value)}`,
      );
    }
    const prev = this.#stores.find((s) => s.output === output);
    if (
      prev &&
      (prev.dtype !== dtype || prev.layout !== layout || prev.width !== width ||
        prev.rowIndex !== opts.rowIndex)
    ) {
      throw new TypeError(
        `store ${output}: a second store must use the same dtype, layout, width and rowIndex`,
      );
    }
    this.#stores.push(Object.freeze({ output, value, dtype, layout, col, width, rowIndex: opts.rowIndex }));
    return this;
  }

  /** Validate and freeze. */
  finish(): Program {
    const stores = this.#stores;
    if (stores.length === 0) throw new RangeError(`program ${this.name}: no stores`);
    const nodes = toposort(stores.map((s) => s.value));
    const outer = materialized(stores.map((s) => s.value));
    const width = Math.max(...outer.filter((n) => n.op !== "reduce").map((n) => n.len));
    const inputs = new Map<string, InputDecl>();
    const params = new Set<string>();
    for (const n of nodes) {
      if (outer.includes(n) && width % n.len !== 0) {
        throw new RangeError(
          `program ${this.name}: ${show(n)} has length ${n.len}, which does not divide ${width}`,
        );
      }
      if (n.op === "load") {
        const d = (n.arg as LoadArg).input;
        const prev = inputs.get(d.name);
        if (prev && prev !== d && JSON.stringify(prev) !== JSON.stringify(d)) {
          throw new TypeError(`program ${this.name}: two different inputs are named ${d.name}`);
        }
        inputs.set(d.name, d);
      }
      if (n.op === "param") params.add(n.arg as string);
    }
    const indexInputs = [...new Set(stores.flatMap((s) => (s.rowIndex ? [s.rowIndex] : [])))];
    const outputs = new Set(stores.map((s) => s.output));
    const names = [...inputs.keys(), ...params, ...outputs, ...indexInputs];
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup) throw new TypeError(`program ${this.name}: the name ${dup} is used twice`);
    for (const s of stores) {
      if (s.layout === "scalar" && dependsOnRow(s.value)) {
        throw new TypeError(`program ${this.name}: scalar store ${s.output} must not depend on the row`);
      }
    }
    return Object.freeze({
      name: this.name,
      domain: this.domain,
      width,
      inputs: [...inputs.values()].sort((a, b) => a.name.localeCompare(b.name)),
      indexInputs,
      params: [...params].sort(),
      stores: Object.freeze([...stores]),
      nodes,
    });
  }
}

/**
 * The nodes a kernel keeps per row, sources first: everything the stores reach without passing below a
 * `concat` (the parts of a concat are evaluated in place, column by column, at their own positions).
 */
export function materialized(roots: readonly Expr[]): Expr[] {
  const seen = new Set<Expr>();
  const out: Expr[] = [];
  const visit = (e: Expr) => {
    if (seen.has(e)) return;
    seen.add(e);
    if (e.op !== "concat") { for (const s of e.src) visit(s); }
    out.push(e);
  };
  roots.forEach(visit);
  return out.sort((a, b) => a.id - b.id);
}

/** True when `e` reads a row or vector input (so its value differs between rows or columns). */
export function dependsOnRow(e: Expr): boolean {
  return toposort([e]).some((n) => n.op === "load" && (n.arg as LoadArg).input.kind !== "scalar");
}

/** Runtime geometry of one program run. */
export interface RunGeometry {
  /** Rows computed (plain domain). */
  m: number;
  /** Rows the row-shaped outputs hold (≥ m); rows [m, rows) are zero-filled. */
  rows: number;
  /** Masked domain: experts and padded tokens per expert (rows = experts * tokensPad). */
  experts?: number;
  tokensPad?: number;
  /** Row count of scatter targets (rows of the output a rowIndex points into). */
  scatterRows?: number;
}

/** Elements of a store's output buffer, in storage units of its dtype (bytes for packed UE8M0). */
export function outputElements(s: Store, g: RunGeometry, ld: number = defaultLd(s, g)): number {
  switch (s.layout) {
    case "row":
      return (s.rowIndex ? g.scatterRows ?? g.rows : g.rows) * ld;
    case "mmajor":
      return (g.experts ?? 1) * s.width * ld;
    case "mmajor_packed4":
      return (g.experts ?? 1) * Math.ceil(s.width / 4) * ld * 4;
    default:
      return 1;
  }
}

/** The leading dimension a store uses by default: the row width, or the padded rows for M-major. */
export function defaultLd(s: Store, g: RunGeometry): number {
  if (s.layout === "row") return s.width;
  if (s.layout === "mmajor" || s.layout === "mmajor_packed4") return g.tokensPad ?? g.rows;
  return 1;
}
