/**
 * Per-tensor quantization and per-token → per-tensor FP8 requantization, on the row-program runner.
 * With a static scale it is one launch; with a dynamic scale it is a 4-byte memset and two launches
 * (amax pass, quantize pass), all on one stream, so the sequence can be captured in a CUDA graph.
 *
 * @example
 * ```ts ignore
 * import { prepareTensorQuant, prepareRequant } from "../mod.ts";
 * const tq = await prepareTensorQuant({ K: 4096 });                 // dynamic scale
 * const { q, scale } = tq.run(x);                                   // q fp8 [M, 4096], scale f32 [1]
 * const rq = await prepareRequant({ K: 7168, scaleGroup: 7168, masked: true });
 * const r = rq.run(q8, s8, { maskedM });                            // DeepEP LL dispatch output
 * ```
 * @module
 */
import { type Device, type Stream, Tensor } from "../runtime/mod.ts";
import { ArgumentError } from "../runtime/errors.ts";
import type { QuantRounding } from "../dsl/expr/quantize.ts";
import type { GroupQuantDtype } from "../dsl/ops/group_quant.ts";
import {
  tensorAmaxProgram,
  tensorQuantProgram,
  type TensorQuantSpec,
} from "../dsl/ops/group_quant_tensor.ts";
import { type CompiledRowProgram, compileRowProgram } from "./row_program.ts";

/** Options shared by both ops. */
export interface TensorQuantOptions {
  /** Columns of the output (with fuseSiluMul the input has 2K). */
  K: number;
  dtype?: GroupQuantDtype;
  /** A static scale (a number, or an f32 [1] device tensor); omitted: computed from the data. */
  scale?: number | Tensor;
  eps?: number;
  rounding?: QuantRounding;
  /** Inputs are `[E, T_pad, ...]` with tokens per expert given at run time. */
  masked?: boolean;
  device?: Device;
}

/** Result: codes and the f32 [1] scale (the given one, or the computed one). */
export interface TensorQuantResult {
  q: Tensor;
  scale: Tensor;
}

/** Per-run options. */
export interface TensorQuantRunOptions {
  maskedM?: Tensor;
  /** Preallocated codes. */
  q?: Tensor;
  stream?: Stream;
}

/** A compiled per-tensor quantizer. */
export interface PreparedTensorQuant {
  readonly spec: TensorQuantSpec;
  /** Quantize; `xs` are the per-token (or per-group) scales when requantizing FP8. */
  run(x: Tensor, xs?: Tensor | TensorQuantRunOptions, opts?: TensorQuantRunOptions): TensorQuantResult;
}

async function prepare(spec: TensorQuantSpec, o: TensorQuantOptions): Promise<PreparedTensorQuant> {
  const device = o.device;
  const quant: CompiledRowProgram = await compileRowProgram(tensorQuantProgram(spec), { device });
  const amaxPass = spec.scale === "dynamic"
    ? await compileRowProgram(tensorAmaxProgram(spec), { device })
    : undefined;
  const amax = amaxPass ? Tensor.empty("f32", [1], { device }) : undefined;
  const computed = amaxPass ? Tensor.empty("f32", [1], { device }) : undefined;
  const staticScale = o.scale instanceof Tensor
    ? o.scale
    : typeof o.scale === "number"
    ? Tensor.fromFloat("f32", [1], [o.scale], { device })
    : undefined;
  if (staticScale && (staticScale.dtype !== "f32" || staticScale.numel !== 1)) {
    throw new ArgumentError(
      "scale",
      "a number or an f32 tensor of one element",
      `${staticScale.dtype} [${staticScale.shape}]`,
    );
  }
  const run = (
    x: Tensor,
    xsOrOpts?: Tensor | TensorQuantRunOptions,
    opts: TensorQuantRunOptions = {},
  ): TensorQuantResult => {
    let xs: Tensor | undefined;
    if (xsOrOpts instanceof Tensor) xs = xsOrOpts;
    else if (xsOrOpts) opts = xsOrOpts;
    if (spec.source.kind === "fp8" && !xs) throw new ArgumentError("xs", "the input's f32 scales", "nothing");
    const inputs: Record<string, Tensor> = { x };
    if (xs) inputs.xs = xs.rank === x.rank - 1 ? xs.view([...xs.shape, 1]) : xs;
    const common = { inputs, maskedM: opts.maskedM, stream: opts.stream };
    let scale: Tensor;
    if (amaxPass && amax) {
      amax.fill(0, opts.stream);
      amaxPass.run({ ...common, outputs: { amax } });
      const out = quant.run({
        ...common,
        inputs: { ...inputs, amax },
        outputs: opts.q ? { q: opts.q, s: computed! } : { s: computed! },
      });
      return { q: out.q, scale: out.s };
    } else {
      scale = staticScale!;
      const params = spec.scale === "param" ? { scale: o.scale as number } : undefined;
      const out = quant.run({
        ...common,
        inputs: spec.scale === "tensor" ? { ...inputs, scale } : inputs,
        params,
        outputs: opts.q ? { q: opts.q } : undefined,
      });
      return { q: out.q, scale };
    }
  };
  return { spec, run };
}

function resolve(o: TensorQuantOptions, source: TensorQuantSpec["source"]): TensorQuantSpec {
  const eps = o.eps ?? 1e-10;
  if (!(eps >= 1e-30)) throw new ArgumentError("eps", "a number ≥ 1e-30", String(eps));
  const dtype = o.dtype ?? "fp8e4m3";
  if (!["fp8e4m3", "fp8e5m2", "i8"].includes(dtype)) {
    throw new ArgumentError("dtype", "fp8e4m3, fp8e5m2 or i8", dtype);
  }
  if (!Number.isInteger(o.K) || o.K < 1 || o.K % 16 !== 0) {
    throw new ArgumentError("K", "a positive multiple of 16", String(o.K));
  }
  // a static number is baked as a kernel parameter; a tensor is read on the device
  const scale = o.scale === undefined ? "dynamic" : typeof o.scale === "number" ? "param" : "tensor";
  return { K: o.K, source, dtype, scale, eps, rounding: o.rounding ?? "rcp", masked: o.masked ?? false };
}

/**
 * Per-tensor quantization of bf16/f16 rows (`x` `[M, K]`, or `[M, 2K]` with fuseSiluMul).
 *
 * @example
 * ```ts ignore
 * const tq = await prepareTensorQuant({ K: 4096, scale: 0.05 });
 * const { q } = tq.run(x);
 * ```
 */
export function prepareTensorQuant(
  o: TensorQuantOptions & { inputDtype?: "bf16" | "f16"; fuseSiluMul?: boolean },
): Promise<PreparedTensorQuant> {
  return prepare(resolve(o, { kind: "x", dtype: o.inputDtype ?? "bf16", fuseSiluMul: o.fuseSiluMul }), o);
}

/**
 * Requantize per-token (scaleGroup = K) or per-group FP8 `x` `[M, K]` with f32 scales `xs`
 * `[M, K / scaleGroup]` into per-tensor FP8 (given or computed scale); masked inputs `[E, T_pad, K]`
 * skip the rows past maskedM[e].
 *
 * @example
 * ```ts ignore
 * const rq = await prepareRequant({ K: 7168, scaleGroup: 128 });
 * const { q, scale } = rq.run(q8, s8);
 * ```
 */
export function prepareRequant(
  o: TensorQuantOptions & { scaleGroup?: number; inputDtype?: "fp8e4m3" | "fp8e5m2" },
): Promise<PreparedTensorQuant> {
  return prepare(
    resolve(o, { kind: "fp8", dtype: o.inputDtype ?? "fp8e4m3", scaleGroup: o.scaleGroup ?? o.K }),
    o,
  );
}
