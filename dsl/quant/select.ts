/**
 * Scheme selection in sglang's decision order (quant-spec §2.3–2.6): which kernel scheme a Linear or a
 * FusedMoE layer runs, given its weight and input-activation args, the effective compression format and
 * the sparsity config, and whether a device of a given compute capability can run it.
 *
 * Linear (`_get_scheme_from_parts`): 2:4 sparse → unsupported; weight-only int channel/group with
 * `pack-quantized` 4/8-bit → WNA16; then, for activation formats only: NVFP4 W4A4 (cc 100, no fallback) →
 * FP8 W8A8 (cc 89; below that W8A16-FP8 at cc ≥ 80) → FP8 W8A16 → INT8 static per-tensor → INT8 dynamic
 * per-token; otherwise "no compatible scheme".
 *
 * FusedMoE (`get_moe_scheme`): MXFP4 (fp4 group 32, detected first as newer sglang does, so it is never
 * misread as int WNA16) → WNA16 (MxInt4 with the flashinfer_trtllm backend) → NVFP4 → FP8 W8A8 →
 * INT8 dynamic (NPU only) → W4AFP8 → W4A8 int (NPU only) → unsupported.
 *
 * @module
 */
import type { QuantArgs } from "./args.ts";
import type { SparsityConfig } from "./config.ts";
import { isActivationQuantizationFormat } from "./scheme.ts";

/** Linear schemes (sglang `CompressedTensors*` class in {@linkcode SCHEMES}). */
export type LinearSchemeId = "W8A8-FP8" | "W8A16-FP8" | "W8A8-INT8" | "W4A4-NVFP4" | "WNA16";
/** FusedMoE schemes. */
export type MoeSchemeId =
  | "W8A8-FP8-MoE"
  | "W4A4-NVFP4-MoE"
  | "MxInt4-MoE"
  | "WNA16-MoE"
  | "W4AFP8-MoE"
  | "MXFP4-MoE";
/** Any selected scheme. */
export type SchemeId = LinearSchemeId | MoeSchemeId;

/** Facts about a scheme. */
export interface SchemeInfo {
  readonly id: SchemeId;
  /** The sglang class that runs it. */
  readonly sglang: string;
  /** `get_min_capability()`: major*10 + minor. */
  readonly minCapability: number;
  /** What sglang uses instead on an older device, if anything. */
  readonly fallback: SchemeId | null;
}

function info(
  id: SchemeId,
  sglang: string,
  minCapability: number,
  fallback: SchemeId | null = null,
): SchemeInfo {
  return Object.freeze({ id, sglang, minCapability, fallback });
}

/** Every scheme with its sglang class, minimum compute capability and fallback (quant-spec §2.6). */
export const SCHEMES: Readonly<Record<SchemeId, SchemeInfo>> = Object.freeze({
  "W8A8-FP8": info("W8A8-FP8", "CompressedTensorsW8A8Fp8", 89, "W8A16-FP8"),
  "W8A16-FP8": info("W8A16-FP8", "CompressedTensorsW8A16Fp8", 80),
  "W8A8-INT8": info("W8A8-INT8", "CompressedTensorsW8A8Int8", 80),
  "W4A4-NVFP4": info("W4A4-NVFP4", "CompressedTensorsW4A4Fp4", 100),
  "WNA16": info("WNA16", "CompressedTensorsWNA16", 80),
  "W8A8-FP8-MoE": info("W8A8-FP8-MoE", "CompressedTensorsW8A8Fp8MoE", 80),
  "W4A4-NVFP4-MoE": info("W4A4-NVFP4-MoE", "CompressedTensorsW4A4Nvfp4MoE", 100),
  "MxInt4-MoE": info("MxInt4-MoE", "CompressedTensorsMxInt4MoE", 100),
  "WNA16-MoE": info("WNA16-MoE", "CompressedTensorsWNA16MoE", 80),
  "W4AFP8-MoE": info("W4AFP8-MoE", "CompressedTensorsW4AFP8MoE", 90),
  "MXFP4-MoE": info("MXFP4-MoE", "Mxfp4MoEMethod", 80),
});

/** sglang's `--moe-runner-backend`, as far as it changes the scheme. */
export type MoeBackend = "auto" | "marlin" | "triton" | "flashinfer_trtllm";

/** The outcome of selection for one layer. */
export type Selection =
  | {
    readonly status: "quantized";
    readonly scheme: SchemeId;
    readonly weights: QuantArgs;
    /** The input args the scheme uses (null when weight-only, or dropped because of the format). */
    readonly input: QuantArgs | null;
    /** True when the input scale is a static (checkpoint) scale. */
    readonly staticInput: boolean;
    readonly minCapability: number;
    /** Set when a capability check replaced the preferred scheme with sglang's fallback. */
    readonly fallbackFrom: SchemeId | null;
    readonly note: string | null;
  }
  | { readonly status: "unquantized"; readonly reason: string }
  | { readonly status: "unsupported"; readonly reason: string; readonly scheme: SchemeId | null };

/** Inputs of a selection. */
export interface SelectInput {
  readonly weights: QuantArgs | null;
  /** The group's input activations as written (dropped here when the format is weight-only). */
  readonly input: QuantArgs | null;
  /** The effective compression format (the group's, else the config's). */
  readonly format: string | null;
  /** The sparsity config that targets this layer, if any. */
  readonly sparsity?: SparsityConfig | null;
}

/** Options of a selection. */
export interface SelectOptions {
  /** Device compute capability (major*10 + minor, e.g. 90); when absent no device check is made. */
  readonly capability?: number;
  readonly moeBackend?: MoeBackend;
}

// ---- predicates (quant-spec §2.3) ------------------------------------------------------------------

const isStatic = (a: QuantArgs) => !a.dynamic;

/** Weight-only int/float channel or group, static (symmetric or not). */
export function isWNa16GroupChannel(w: QuantArgs, a: QuantArgs | null): boolean {
  return a === null && (w.strategy === "channel" || w.strategy === "group") && isStatic(w);
}
/** int4, group 32, symmetric, static, weight-only. */
export function isMxInt4A16(w: QuantArgs, a: QuantArgs | null): boolean {
  return a === null && w.num_bits === 4 && w.type === "int" && w.strategy === "group" &&
    w.group_size === 32 &&
    w.symmetric && isStatic(w);
}
/** MXFP4 weights: fp4, group 32, symmetric (sglang `_is_mxfp4_moe`). */
export function isMxfp4Weights(w: QuantArgs): boolean {
  return w.num_bits === 4 && w.type === "float" && w.strategy === "group" && w.group_size === 32 &&
    w.symmetric;
}
/** NVFP4 W4A4: both fp4 tensor_group 16, symmetric. */
export function isFp4A4Nvfp4(w: QuantArgs, a: QuantArgs | null): boolean {
  return a !== null && w.strategy === "tensor_group" && a.strategy === "tensor_group" &&
    w.group_size === 16 &&
    a.group_size === 16 && w.type === "float" && a.type === "float" && w.num_bits === 4 && a.num_bits === 4 &&
    w.symmetric && a.symmetric;
}
/** FP8 W8A8: float weights and inputs; weights static symmetric tensor/channel/block; inputs dynamic, or static symmetric per-tensor. */
export function isFp8W8A8(w: QuantArgs, a: QuantArgs | null): boolean {
  if (a === null) return false;
  if (!(w.type === "float" && a.type === "float" && w.symmetric && isStatic(w))) return false;
  if (!["tensor", "channel", "block"].includes(w.strategy)) return false;
  if (a.dynamic) return true;
  return a.symmetric && a.strategy === "tensor";
}
/** FP8 weight-only: float, symmetric, static, tensor or channel (inputs anything). */
export function isFp8W8A16(w: QuantArgs, _a: QuantArgs | null): boolean {
  return w.type === "float" && w.symmetric && isStatic(w) &&
    (w.strategy === "tensor" || w.strategy === "channel");
}
/** 8-bit static per-tensor inputs with symmetric tensor/channel weights. */
export function isStaticTensorW8A8(w: QuantArgs, a: QuantArgs | null): boolean {
  return a !== null && w.num_bits === 8 && a.num_bits === 8 &&
    (w.strategy === "tensor" || w.strategy === "channel") &&
    a.strategy === "tensor" && isStatic(w) && isStatic(a) && w.symmetric;
}
/** 8-bit dynamic per-token inputs with symmetric static tensor/channel weights. */
export function isDynamicTokenW8A8(w: QuantArgs, a: QuantArgs | null): boolean {
  return a !== null && w.num_bits === 8 && a.num_bits === 8 &&
    (w.strategy === "tensor" || w.strategy === "channel") &&
    a.strategy === "token" && isStatic(w) && Boolean(a.dynamic) && w.symmetric;
}
/** `pack-quantized` int4 symmetric static weights + dynamic 8-bit (fp8 or int8) inputs. */
export function isWInt4AFp8(w: QuantArgs, a: QuantArgs | null, format: string | null): boolean {
  return a !== null && format === "pack-quantized" && w.num_bits === 4 && w.type === "int" && w.symmetric &&
    isStatic(w) && a.num_bits === 8 && Boolean(a.dynamic);
}
/** int4 group/channel weights + int8 dynamic per-token inputs. */
export function isDynamicTokenW4A8(w: QuantArgs, a: QuantArgs | null): boolean {
  return a !== null && w.num_bits === 4 && a.num_bits === 8 &&
    (w.strategy === "group" || w.strategy === "channel") &&
    a.strategy === "token" && isStatic(w) && Boolean(a.dynamic) && w.symmetric;
}
/** sglang `supports_cutlass_24`: a 2:4 sparsity scheme this layer would need the (removed) 2:4 kernels for. */
export function supportsCutlass24(
  w: QuantArgs | null,
  a: QuantArgs | null,
  sp: SparsityConfig | null | undefined,
): boolean {
  if (
    !sp || sp.sparsity_structure !== "2:4" || !(sp.format === "dense" || sp.format === "sparse-24-bitmask")
  ) return false;
  if (w === null && a === null) return true;
  if (w === null || a === null) return false;
  return (w.strategy === "tensor" || w.strategy === "channel") &&
    (a.strategy === "tensor" || a.strategy === "token") &&
    w.num_bits === 8 && a.num_bits === 8;
}

// ---- selection ---------------------------------------------------------------------------------------

function quantized(
  scheme: SchemeId,
  w: QuantArgs,
  a: QuantArgs | null,
  note: string | null = null,
): Selection {
  return {
    status: "quantized",
    scheme,
    weights: w,
    input: a,
    staticInput: a !== null && !a.dynamic,
    minCapability: SCHEMES[scheme].minCapability,
    fallbackFrom: null,
    note,
  };
}

function unsupported(reason: string, scheme: SchemeId | null = null): Selection {
  return { status: "unsupported", reason, scheme };
}

/** The input args sglang actually reads: dropped unless the format is an activation-quantization format. */
export function effectiveInput(input: QuantArgs | null, format: string | null): QuantArgs | null {
  return isActivationQuantizationFormat(format) ? input : null;
}

/** Select the scheme of a Linear layer (sglang `get_linear_scheme`), then check the device capability. */
export function selectLinearScheme(inp: SelectInput, opts: SelectOptions = {}): Selection {
  const w = inp.weights;
  const a = effectiveInput(inp.input, inp.format);
  if (supportsCutlass24(w, a, inp.sparsity)) {
    return unsupported("2:4 sparse layer: sglang has no 2:4 (CompressedTensors24) kernels");
  }
  if (w === null) return { status: "unquantized", reason: "the matching group quantizes no weights" };
  if (isWNa16GroupChannel(w, a)) {
    if (inp.format === "pack-quantized" && (w.num_bits === 4 || w.num_bits === 8)) {
      return checkCapability(quantized("WNA16", w, null), opts, false);
    }
    return unsupported(
      `weight-only ${w.strategy} weights need format "pack-quantized" with 4 or 8 bits for WNA16 (Marlin); got ${
        JSON.stringify(inp.format)
      }, ${w.num_bits} bits`,
    );
  }
  if (isActivationQuantizationFormat(inp.format)) {
    if (isFp4A4Nvfp4(w, a)) return checkCapability(quantized("W4A4-NVFP4", w, a), opts, false);
    if (isFp8W8A8(w, a)) return checkCapability(quantized("W8A8-FP8", w, a), opts, false);
    if (isFp8W8A16(w, a)) return checkCapability(quantized("W8A16-FP8", w, a), opts, false);
    if (isStaticTensorW8A8(w, a)) return checkCapability(quantized("W8A8-INT8", w, a), opts, false);
    if (isDynamicTokenW8A8(w, a)) return checkCapability(quantized("W8A8-INT8", w, a), opts, false);
    return unsupported(
      "no compressed-tensors compatible scheme was found (sglang raises NotImplementedError)",
    );
  }
  return unsupported(
    `no compressed-tensors compatible scheme was found: format ${
      JSON.stringify(inp.format)
    } is not an activation-quantization format, and the weights are not channel/group weight-only`,
  );
}

/** Select the scheme of a FusedMoE layer (sglang `get_moe_scheme`). */
export function selectMoeScheme(inp: SelectInput, opts: SelectOptions = {}): Selection {
  const w = inp.weights;
  const a = effectiveInput(inp.input, inp.format);
  if (w === null) return { status: "unquantized", reason: "the matching group quantizes no weights" };
  if (isMxfp4Weights(w) && (a === null || a.type === "float")) {
    return checkCapability(quantized("MXFP4-MoE", w, a), opts, true);
  }
  if (isWNa16GroupChannel(w, a)) {
    if (isMxInt4A16(w, a) && opts.moeBackend === "flashinfer_trtllm") {
      return checkCapability(quantized("MxInt4-MoE", w, null), opts, true);
    }
    const backend = opts.moeBackend === "triton" ? " (Triton backend)" : "";
    return checkCapability(
      quantized("WNA16-MoE", w, null, backend ? `WNA16 MoE${backend}` : null),
      opts,
      true,
    );
  }
  if (isFp4A4Nvfp4(w, a)) return checkCapability(quantized("W4A4-NVFP4-MoE", w, a), opts, true);
  if (isFp8W8A8(w, a)) {
    if (a && !a.dynamic && w.strategy === "channel") {
      return unsupported(
        "FP8 MoE with per-channel weights and static input scales is rejected by sglang",
        "W8A8-FP8-MoE",
      );
    }
    return checkCapability(quantized("W8A8-FP8-MoE", w, a), opts, true);
  }
  if (isDynamicTokenW8A8(w, a)) {
    return unsupported("the W8A8 INT8 fused-MoE scheme exists only for NPU in sglang");
  }
  if (isWInt4AFp8(w, a, inp.format)) return checkCapability(quantized("W4AFP8-MoE", w, a), opts, true);
  if (isDynamicTokenW4A8(w, a)) {
    return unsupported("the W4A8 INT8 fused-MoE scheme exists only for NPU in sglang");
  }
  return unsupported("unsupported FusedMoE scheme (sglang raises RuntimeError)");
}

/**
 * Check a quantized selection against `opts.capability`: keep it, fall back (W8A8-FP8 → W8A16-FP8 on
 * cc 80–88, as sglang does), or turn it into "unsupported" with the required capability.
 */
export function checkCapability(sel: Selection, opts: SelectOptions, moe: boolean): Selection {
  if (sel.status !== "quantized" || opts.capability === undefined) return sel;
  const cc = opts.capability;
  const inf = SCHEMES[sel.scheme];
  if (cc >= inf.minCapability) return sel;
  if (inf.fallback && cc >= SCHEMES[inf.fallback].minCapability) {
    return {
      ...sel,
      scheme: inf.fallback,
      input: null,
      staticInput: false,
      minCapability: SCHEMES[inf.fallback].minCapability,
      fallbackFrom: sel.scheme,
    };
  }
  const tail = moe
    ? " (sglang does not check MoE schemes at selection; its kernels would fail)"
    : inf.fallback
    ? ` and its fallback ${inf.fallback} needs ${SCHEMES[inf.fallback].minCapability}`
    : " (sglang has no fallback)";
  return unsupported(
    `${sel.scheme} needs compute capability ≥ ${inf.minCapability}, the device has ${cc}${tail}`,
    sel.scheme,
  );
}
