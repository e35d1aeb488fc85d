/**
 * Which kiln kernels would run a selected scheme. kiln has (or will have): `groupQuant` (per-token-group
 * fp8/int8 activation quantization with row padding, ue8m0 and M-major scales, quant-spec §3),
 * `tokenQuant` / `tensorQuant` (per-token / per-tensor activation quantization), and `blockScaledMatmul`
 * (fp8 GEMM with 128×128 weight blocks, plus per-tensor and per-token×per-channel scale modes, and the
 * int8 s8×s8 W8A8 modes, §4). Weight-only int4/fp4/fp8 and NVFP4 schemes, and every fused-MoE scheme,
 * have no kiln kernel yet: the plan says so, but still reports the scheme.
 *
 * @module
 */
import type { QuantArgs } from "./args.ts";
import type { Selection } from "./select.ts";

/** The activation element types kiln's quantization kernels write. */
export type ActDType = "fp8e4m3" | "i8";

/** One kiln kernel a plan calls, with the options that matter. */
export type PlannedKernel =
  | {
    readonly op: "groupQuant";
    readonly dtype: ActDType;
    readonly groupSize: number;
    /** Rows of the output padded to this multiple (4 for the row-padded variant, 1 = unpadded). */
    readonly rowAlign: number;
    /** Power-of-two (ue8m0) scales. */
    readonly ue8m0: boolean;
    readonly scaleLayout: "m-major" | "row-major";
  }
  | { readonly op: "tokenQuant"; readonly dtype: ActDType }
  | { readonly op: "tensorQuant"; readonly dtype: ActDType; readonly static: boolean }
  | {
    readonly op: "blockScaledMatmul";
    readonly dtype: ActDType;
    /** `block`: 1×bk activation groups × bn×bk weight blocks; `tensor`: one scale each; `token-channel`. */
    readonly mode: "block" | "tensor" | "token-channel";
    readonly block: readonly [number, number] | null;
  };

/** kiln kernels for a selection, or why there are none. */
export type KernelPlan =
  | { readonly ok: true; readonly kernels: readonly PlannedKernel[]; readonly note: string | null }
  | { readonly ok: false; readonly reason: string };

/** Options of {@linkcode planKernels}. */
export interface KernelPlanOptions {
  /** Block scales are powers of two (native fp8 `scale_fmt: "ue8m0"`): activations get ue8m0 scales too. */
  readonly ue8m0?: boolean;
}

/** Group sizes the row-padded per-token-group kernel supports (sglang v2, quant-spec §3.3–3.4). */
export const ROW_PADDED_GROUP_SIZES: readonly number[] = [16, 32, 64, 128];

const NO_KERNEL: Record<string, string> = {
  "W8A16-FP8": "FP8 weight-only (W8A16-FP8, Marlin)",
  "W4A4-NVFP4": "NVFP4 (W4A4)",
  "W8A8-FP8-MoE": "fused FP8 MoE (W8A8-FP8-MoE)",
  "W4A4-NVFP4-MoE": "fused NVFP4 MoE (W4A4-NVFP4-MoE)",
  "MxInt4-MoE": "fused MXINT4 MoE (MxInt4-MoE)",
  "W4AFP8-MoE": "fused W4AFP8 MoE",
  "MXFP4-MoE": "fused MXFP4 MoE (Mxfp4MoEMethod)",
};

function none(reason: string): KernelPlan {
  return { ok: false, reason };
}

/** The kiln kernels that would run `sel` (which must be a quantized selection). */
export function planKernels(sel: Selection, opts: KernelPlanOptions = {}): KernelPlan {
  if (sel.status !== "quantized") return none(sel.reason);
  const w = sel.weights;
  switch (sel.scheme) {
    case "WNA16":
      return none(`no kiln kernel for int${w.num_bits} weight-only (WNA16, Marlin) yet`);
    case "WNA16-MoE":
      return none(`no kiln kernel for fused int${w.num_bits} weight-only MoE (WNA16-MoE) yet`);
    case "W8A8-FP8":
      return fp8Linear(w, sel.input!, opts);
    case "W8A8-INT8":
      return int8Linear(w, sel.input!);
    default:
      return none(`no kiln kernel for ${NO_KERNEL[sel.scheme] ?? sel.scheme} yet`);
  }
}

function fp8Linear(w: QuantArgs, a: QuantArgs, opts: KernelPlanOptions): KernelPlan {
  if (w.strategy === "block") {
    const [bn, bk] = w.block_structure!;
    if (!a.dynamic) return none("block FP8 with static input scales is rejected by sglang");
    if (bn !== 128 || bk !== 128) {
      return none(`blockScaledMatmul takes 128x128 weight blocks; this checkpoint has [${bn}, ${bk}]`);
    }
    let note: string | null = null;
    if (a.strategy === "group" && a.group_size !== bk) {
      return none(`activation group_size ${a.group_size} differs from the weight block's K size ${bk}`);
    }
    if (a.strategy !== "group") {
      note = `activations are quantized per token group of ${bk} (the block's K size), as sglang does`;
    }
    const ue8m0 = opts.ue8m0 ?? false;
    return {
      ok: true,
      note,
      kernels: [
        {
          op: "groupQuant",
          dtype: "fp8e4m3",
          groupSize: bk,
          rowAlign: ROW_PADDED_GROUP_SIZES.includes(bk) ? 4 : 1,
          ue8m0,
          scaleLayout: "m-major",
        },
        { op: "blockScaledMatmul", dtype: "fp8e4m3", mode: "block", block: [bn, bk] },
      ],
    };
  }
  return perTensorOrChannel("fp8e4m3", w, a);
}

function int8Linear(w: QuantArgs, a: QuantArgs): KernelPlan {
  if (!a.symmetric) return none("no kiln kernel for asymmetric int8 activations (zero points) yet");
  return perTensorOrChannel("i8", w, a);
}

function perTensorOrChannel(dtype: ActDType, w: QuantArgs, a: QuantArgs): KernelPlan {
  let quant: PlannedKernel;
  let tokenScales: boolean;
  if (a.strategy === "token") {
    quant = { op: "tokenQuant", dtype };
    tokenScales = true;
  } else if (a.strategy === "tensor") {
    quant = { op: "tensorQuant", dtype, static: !a.dynamic };
    tokenScales = false;
  } else {
    return none(`no kiln GEMM scale mode for ${a.strategy} activations with per-${w.strategy} weights`);
  }
  const mode = tokenScales || w.strategy === "channel" ? "token-channel" : "tensor";
  return { ok: true, note: null, kernels: [quant, { op: "blockScaledMatmul", dtype, mode, block: null }] };
}

/** One kernel as text: `groupQuant fp8e4m3 g128 rowAlign 4`, `blockScaledMatmul 128x128`, ... */
export function describeKernel(k: PlannedKernel): string {
  const dt = k.dtype === "i8" ? "int8" : k.dtype;
  switch (k.op) {
    case "groupQuant":
      return `groupQuant ${dt} g${k.groupSize}${k.rowAlign > 1 ? ` rowAlign ${k.rowAlign}` : ""}${
        k.ue8m0 ? " ue8m0" : ""
      }${k.scaleLayout === "row-major" ? " rowMajor" : ""}`;
    case "tokenQuant":
      return `tokenQuant ${dt}`;
    case "tensorQuant":
      return `tensorQuant ${dt} ${k.static ? "static" : "dynamic"}`;
    case "blockScaledMatmul": {
      const mode = k.mode === "block"
        ? `${k.block![0]}x${k.block![1]}`
        : k.mode === "tensor"
        ? "per-tensor"
        : "per-token×per-channel";
      return `blockScaledMatmul ${k.dtype === "i8" ? "int8 " : ""}${mode}`;
    }
  }
}

/** Kernels joined with ` + `. */
export function describeKernels(ks: readonly PlannedKernel[]): string {
  return ks.map(describeKernel).join(" + ");
}
