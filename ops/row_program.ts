/**
 * Run a user-scripted row program (dsl/expr) on the GPU: one program, one kernel, one launch.
 *
 * @example
 * ```ts ignore
 * import { compileRowProgram, input, param, quantize, RowProgram, Tensor, vectorInput } from "../mod.ts";
 * const K = 4096;
 * const x = input("x", "bf16", K).load(), w = vectorInput("w", "bf16", K).load();
 * const y = x.mul(x.sumsq().div(K).add(param("eps")).rsqrt()).cast("bf16").mul(w).cast("bf16");
 * const { q, scale } = quantize(y, { format: "fp8e4m3", group: 128 });
 * const prog = new RowProgram("rmsnorm_quant").store("q", q, { dtype: "fp8e4m3" })
 *   .store("s", scale, { layout: "mmajor" }).finish();
 * const k = await compileRowProgram(prog);
 * const out = k.run({ inputs: { x: xs, w: weight }, params: { eps: 1e-6 }, rowAlign: 4 });
 * ```
 * @module
 */
import { type Device, jit, type LoadedKernel, type Stream, Tensor } from "../runtime/mod.ts";
import { ArgumentError } from "../runtime/errors.ts";
import type { Arg } from "../runtime/launch.ts";
import { type DType, dtypeInfo } from "../dsl/dtype.ts";
import { defaultLd, type Program, type RunGeometry, type Store } from "../dsl/expr/program.ts";
import type { LoadArg } from "../dsl/expr/node.ts";
import { renderRowKernel, type RowKernel, rowKernelArgs, rowKernelGrid } from "../codegen/expr/render.ts";
import { defaultSchedule, type Schedule } from "../codegen/expr/schedule.ts";
import { storeParamDtype } from "../codegen/expr/_store.ts";

/** Arguments of a run. */
export interface RowRunArgs {
  inputs: Record<string, Tensor>;
  params?: Record<string, number>;
  /** Row-index inputs of scattering stores (i32 `[rows]`). */
  index?: Record<string, Tensor>;
  /** Preallocated outputs (required for scatter targets; an atomic_max output must hold 0 or a lower max). */
  outputs?: Record<string, Tensor>;
  /** Rows to compute (default: the first row input's row count). */
  m?: number;
  /** Pad row-shaped outputs to a multiple of this many rows (zero-filled in the same launch). */
  rowAlign?: number;
  /** Masked domain: tokens per expert (i32 `[E]`); row inputs are `[E, T_pad, width]`. */
  maskedM?: Tensor;
  stream?: Stream;
}

/** A compiled row program. */
export interface CompiledRowProgram {
  readonly program: Program;
  readonly rowKernel: RowKernel;
  readonly kernel: LoadedKernel;
  /** Output buffers for a geometry. */
  allocate(g: RunGeometry): Record<string, Tensor>;
  /** One launch; returns the outputs (allocated when not given). */
  run(a: RowRunArgs): Record<string, Tensor>;
}

/** Shape and dtype of a store's output buffer. */
export function outputShape(s: Store, g: RunGeometry): { dtype: DType; shape: number[] } {
  const ld = defaultLd(s, g);
  const E = g.experts;
  switch (s.layout) {
    case "row":
      return {
        dtype: s.dtype,
        shape: E ? [E, g.tokensPad ?? 0, s.width] : [s.rowIndex ? g.scatterRows ?? g.rows : g.rows, s.width],
      };
    case "mmajor":
      return { dtype: s.dtype, shape: E ? [E, s.width, ld] : [s.width, ld] };
    case "mmajor_packed4":
      return { dtype: "i32", shape: E ? [E, Math.ceil(s.width / 4), ld] : [Math.ceil(s.width / 4), ld] };
    default:
      return { dtype: s.dtype, shape: [1] };
  }
}

function fail(argument: string, expected: string, got: string): never {
  throw new ArgumentError(argument, expected, got);
}

/** What {@linkcode rowInputGeometry} reads of a tensor (a `Tensor`, or a plain object in tests). */
export interface TensorLayout {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly ptr: bigint;
}

/**
 * Check a run's inputs against the program and the schedule (pure: no device) and return their row
 * strides, the rows of the row inputs (plain domain) or `[experts, tokensPad]` (masked domain). Inputs
 * read with vector loads need 16-byte aligned addresses and row strides that are multiples of the
 * vector; inputs read element by element (per-group scales, say) only need a stride ≥ their width.
 * In the masked domain the kernel addresses row `(e, t)` at `(e · T_pad + t) · ld`, so experts must be
 * back to back (`strides[0] = T_pad · ld`).
 *
 * @example
 * ```ts
 * import { input, RowProgram } from "../dsl/expr/mod.ts";
 * import { defaultSchedule } from "../codegen/expr/schedule.ts";
 * import { rowInputGeometry } from "./row_program.ts";
 * const p = new RowProgram("twice").store("y", input("x", "f32", 8).load().mul(2)).finish();
 * const x = { dtype: "f32" as const, shape: [3, 8], strides: [8, 1], ptr: 0n };
 * console.log(rowInputGeometry(p, defaultSchedule(p), { x }).rowsIn); // 3
 * ```
 */
export function rowInputGeometry(
  program: Program,
  schedule: Schedule,
  inputs: Readonly<Record<string, TensorLayout | undefined>>,
): { lds: Record<string, number>; rowsIn?: number; experts: number; tokensPad: number } {
  const masked = program.domain === "masked";
  const lds: Record<string, number> = {};
  let rowsIn: number | undefined, experts = 0, tokensPad = 0, first = true;
  for (const d of program.inputs) {
    const t = inputs[d.name];
    if (!t) fail(`inputs.${d.name}`, `a ${d.dtype} tensor`, String(t));
    if (t.dtype !== d.dtype) fail(`inputs.${d.name}.dtype`, d.dtype, t.dtype);
    const vectorLoaded = d.kind !== "scalar" &&
      program.nodes.some((n) =>
        n.op === "load" && n.len === program.width && (n.arg as LoadArg).input.name === d.name
      );
    const align = vectorLoaded ? 16n : BigInt(dtypeInfo(d.dtype).storageBytes);
    if (t.ptr % align !== 0n) {
      fail(`inputs.${d.name}`, `a ${align}-byte aligned address`, `0x${t.ptr.toString(16)}`);
    }
    if (d.kind === "scalar") continue;
    const r = t.shape.length;
    if (t.shape[r - 1] !== d.width || (t.strides[r - 1] !== 1 && d.width > 1)) {
      fail(`inputs.${d.name}.shape`, `[..., ${d.width}] with unit stride`, `${t.shape} / ${t.strides}`);
    }
    if (d.kind === "vector") continue;
    if (r !== (masked ? 3 : 2)) {
      fail(`inputs.${d.name}.shape`, masked ? `[E, T_pad, ${d.width}]` : `[M, ${d.width}]`, `[${t.shape}]`);
    }
    const ld = t.strides[r - 2];
    lds[d.name] = ld;
    const vec = schedule.vec;
    if (t.shape[r - 2] > 1 && (ld < d.width || (vectorLoaded && ld % vec !== 0))) {
      fail(
        `inputs.${d.name}.strides`,
        vectorLoaded ? `a row stride ≥ ${d.width} and a multiple of ${vec}` : `a row stride ≥ ${d.width}`,
        `[${t.strides}]`,
      );
    }
    if (masked) {
      if (!first && (t.shape[0] !== experts || t.shape[1] !== tokensPad)) {
        fail(`inputs.${d.name}.shape`, `[${experts}, ${tokensPad}, ...]`, `[${t.shape}]`);
      }
      if (t.shape[0] > 1 && t.strides[0] !== t.shape[1] * ld) {
        fail(
          `inputs.${d.name}.strides`,
          `experts back to back (strides[0] = ${t.shape[1]} · ${ld})`,
          `[${t.strides}]`,
        );
      }
      experts = t.shape[0];
      tokensPad = t.shape[1];
    } else {
      if (rowsIn !== undefined && t.shape[0] !== rowsIn) {
        fail(`inputs.${d.name}.shape`, `${rowsIn} rows`, `[${t.shape}]`);
      }
      rowsIn = t.shape[0];
    }
    first = false;
  }
  return { lds, rowsIn, experts, tokensPad };
}

/** Compile `program` (with `schedule`, or the default) for the device. */
export async function compileRowProgram(
  program: Program,
  opts: { schedule?: Schedule; device?: Device } = {},
): Promise<CompiledRowProgram> {
  const rk = renderRowKernel(program, opts.schedule ?? defaultSchedule(program));
  const kernel = await jit(rk.source, { device: opts.device });
  const outs = [...new Map(program.stores.map((s) => [s.output, s])).values()];
  const allocate = (g: RunGeometry): Record<string, Tensor> =>
    Object.fromEntries(outs.map((s) => {
      const { dtype, shape } = outputShape(s, g);
      return [s.output, Tensor.empty(dtype, shape, { device: opts.device })];
    }));

  const run = (a: RowRunArgs): Record<string, Tensor> => {
    const masked = program.domain === "masked";
    const values: Record<string, Arg> = {};
    for (const d of program.inputs) {
      const t = a.inputs[d.name];
      if (!(t instanceof Tensor)) fail(`inputs.${d.name}`, `a ${d.dtype} tensor`, String(t));
      values[`i_${d.name}`] = t;
    }
    const { lds, rowsIn, experts, tokensPad } = rowInputGeometry(program, rk.schedule, a.inputs);
    for (const [name, ld] of Object.entries(lds)) values[`i_${name}_ld`] = ld;
    for (const q of program.params) {
      const v = a.params?.[q];
      if (typeof v !== "number") fail(`params.${q}`, "a number", String(v));
      values[`p_${q}`] = v;
    }
    for (const x of program.indexInputs) {
      const t = a.index?.[x];
      if (!(t instanceof Tensor) || t.dtype !== "i32") fail(`index.${x}`, "an i32 tensor", String(t));
      values[`x_${x}`] = t;
    }
    const m = masked ? tokensPad : a.m ?? rowsIn ?? 0;
    if (!Number.isInteger(m) || m < 0 || (rowsIn !== undefined && m > rowsIn)) {
      fail("m", `an integer in [0, ${rowsIn}]`, String(m));
    }
    const align = a.rowAlign ?? 1;
    const rows = masked ? tokensPad : Math.ceil(m / align) * align;
    const g: RunGeometry = masked ? { m: tokensPad, rows: tokensPad, experts, tokensPad } : { m, rows };
    const out = { ...(a.outputs ?? {}) };
    for (const s of outs) {
      const want = outputShape(s, g);
      let t = out[s.output];
      if (!t) {
        if (s.rowIndex) fail(`outputs.${s.output}`, "a preallocated scatter target", "nothing");
        t = out[s.output] = Tensor.empty(want.dtype, want.shape, { device: opts.device });
        if (s.layout === "atomic_max") t.fill(0, a.stream); // max-ed into: starts at +0
      }
      if (t.dtype !== storeParamDtype(s)) fail(`outputs.${s.output}.dtype`, storeParamDtype(s), t.dtype);
      if (
        !s.rowIndex && (t.shape.length !== want.shape.length || t.shape.some((d, i) => d !== want.shape[i]))
      ) {
        fail(`outputs.${s.output}.shape`, `[${want.shape}]`, `[${t.shape}]`);
      }
      if (!t.isContiguous) fail(`outputs.${s.output}`, "a contiguous tensor", `strides [${t.strides}]`);
      values[`o_${s.output}`] = t;
      if (s.layout === "row" || s.layout === "mmajor" || s.layout === "mmajor_packed4") {
        values[`o_${s.output}_ld`] = s.layout === "row" ? s.width : defaultLd(s, g);
      }
      if (dtypeInfo(t.dtype).packing === 2 && s.width % 2) {
        fail(`outputs.${s.output}`, "an even width (4-bit)", String(s.width));
      }
    }
    if (masked) {
      if (!(a.maskedM instanceof Tensor) || a.maskedM.dtype !== "i32" || a.maskedM.numel !== experts) {
        fail("maskedM", `an i32 tensor [${experts}]`, String(a.maskedM));
      }
      values.masked_m = a.maskedM;
      values.tokens_pad = tokensPad;
    } else {
      values.m = m;
      values.rows = rows;
    }
    const grid = rowKernelGrid(
      rk,
      masked ? { experts, tokensPad, smCount: kernel.device.info.smCount } : { rows },
    );
    kernel.launch(grid, rowKernelArgs(rk, values), { stream: a.stream });
    return out;
  };
  return { program, rowKernel: rk, kernel, allocate, run };
}
