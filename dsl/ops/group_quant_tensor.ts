/**
 * Per-tensor relatives of the group-quant family, as row programs:
 * - per-tensor quantization with a static scale (a parameter or a device scalar), or a dynamic one in
 *   two passes (`tensorAmaxProgram` max-es every row's amax into one float with atomicMax, then
 *   `tensorQuantProgram` quantizes with `max(amax, eps) / MAX` and writes the scale once);
 * - requantization of per-token (or per-group) FP8 with its scales into per-tensor FP8 (the seed is
 *   DeepEP's low-latency FP8 dispatch), honouring masked_m: the dequantized value `q · s` is the source.
 *
 * @module
 */
import { type Expr, input, param, scalarInput } from "../expr/node.ts";
import { quantizeWithAmax, quantizeWithScale, type QuantRounding } from "../expr/quantize.ts";
import { type Program, RowProgram } from "../expr/program.ts";
import type { GroupQuantDtype } from "./group_quant.ts";

/** Where a per-tensor scale comes from. */
export type TensorScale = "dynamic" | "param" | "tensor";

/** A per-tensor quantization problem. */
export interface TensorQuantSpec {
  /** Columns of the output. */
  readonly K: number;
  /** The source: a bf16/f16 row, silu-and-mul of one, or per-token FP8 to requantize. */
  readonly source:
    | { kind: "x"; dtype: "bf16" | "f16"; fuseSiluMul?: boolean }
    | { kind: "fp8"; dtype: "fp8e4m3" | "fp8e5m2"; scaleGroup: number };
  readonly dtype: GroupQuantDtype;
  readonly scale: TensorScale;
  readonly eps: number;
  readonly rounding: QuantRounding;
  readonly masked: boolean;
}

function tag(s: TensorQuantSpec): string {
  const src = s.source.kind === "x"
    ? `${s.source.dtype}${s.source.fuseSiluMul ? "_silu" : ""}`
    : `${s.source.dtype}_s${s.source.scaleGroup === s.K ? "token" : s.source.scaleGroup}`;
  return `${src}_${s.dtype}${s.masked ? "_masked" : ""}_${s.rounding}`;
}

/** The value being quantized, per row. */
export function tensorQuantSource(s: TensorQuantSpec): Expr {
  if (s.source.kind === "x") {
    const x = input("x", s.source.dtype, s.source.fuseSiluMul ? 2 * s.K : s.K);
    if (!s.source.fuseSiluMul) return x.load();
    const [gate, up] = x.split(2);
    return gate.silu().cast(s.source.dtype).mul(up).cast(s.source.dtype);
  }
  const g = s.source.scaleGroup;
  if (!(g >= 1 && s.K % g === 0)) throw new RangeError(`requant: scaleGroup ${g} must divide K = ${s.K}`);
  const q = input("x", s.source.dtype, s.K).load();
  const xs = input("xs", "f32", s.K / g).load();
  return q.mul(xs);
}

/** Pass 1 of dynamic per-tensor quantization: `amax ← max(amax, max_row |v|)` for every row. */
export function tensorAmaxProgram(s: TensorQuantSpec): Program {
  return new RowProgram(`tensor_amax_${tag(s)}`, s.masked ? "masked" : "rows")
    .store("amax", tensorQuantSource(s).amax(), { layout: "atomic_max" })
    .finish();
}

/** Pass 2 (or the only pass with a static scale): codes `q` and, when dynamic, the scale `s`. */
export function tensorQuantProgram(s: TensorQuantSpec): Program {
  const v = tensorQuantSource(s);
  const p = new RowProgram(`tensor_quant_${s.scale}_${tag(s)}`, s.masked ? "masked" : "rows");
  if (s.scale === "dynamic") {
    const amax = scalarInput("amax").load().max(s.eps);
    const { q, scale } = quantizeWithAmax(v, amax, { format: s.dtype, rounding: s.rounding, eps: s.eps });
    p.store("q", q, { dtype: s.dtype }).store("s", scale, { layout: "scalar" });
  } else {
    const scale = s.scale === "param" ? param("scale") : scalarInput("scale").load();
    p.store("q", quantizeWithScale(v, scale, { format: s.dtype, rounding: s.rounding }), { dtype: s.dtype });
  }
  return p.finish();
}
