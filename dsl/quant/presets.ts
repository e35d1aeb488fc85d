/**
 * compressed-tensors' preset schemes (`PRESET_SCHEMES`, quant-spec §1.3), as of the vllm-project package
 * (2026-08). Every field not listed takes the {@linkcode QuantArgs} default. A config group may name a
 * preset instead of spelling the scheme out: `"config_groups": {"W4A16": ["Linear"]}`; compressed-tensors
 * expands it (upper-casing the name). sglang's parser does not support that shorthand; kiln does.
 *
 * @example
 * ```ts
 * import { PRESET_SCHEMES, presetScheme } from "./presets.ts";
 * PRESET_SCHEMES.FP8_BLOCK.weights?.block_structure; // [128, 128]
 * const s = presetScheme("w4a16", ["Linear"]); // int4, group 128, symmetric
 * ```
 * @module
 */
import { type QuantArgs, quantArgs } from "./args.ts";
import { quantArgsEqual } from "./describe.ts";
import { ConfigError } from "./errors.ts";
import { type QuantScheme, quantScheme } from "./scheme.ts";

/** A preset: the args of weights and input activations (no targets yet). */
export interface PresetScheme {
  readonly weights: QuantArgs | null;
  readonly input_activations: QuantArgs | null;
}

const FP8_E4M3 = "torch.float8_e4m3fn";
const U8 = "torch.uint8";

function intWeights(bits: number, symmetric = true): QuantArgs {
  return quantArgs({ num_bits: bits, type: "int", strategy: "group", group_size: 128, symmetric });
}
function intTokenActs(bits: number): QuantArgs {
  return quantArgs({ num_bits: bits, type: "int", strategy: "token", dynamic: true });
}
function preset(weights: QuantArgs | null, input_activations: QuantArgs | null = null): PresetScheme {
  return Object.freeze({ weights, input_activations });
}

const nvfp4Weights: QuantArgs = quantArgs({
  num_bits: 4,
  type: "float",
  strategy: "tensor_group",
  group_size: 16,
  scale_dtype: FP8_E4M3,
  zp_dtype: FP8_E4M3,
});
const mxfp4Weights: QuantArgs = quantArgs({
  num_bits: 4,
  type: "float",
  strategy: "group",
  group_size: 32,
  scale_dtype: U8,
  zp_dtype: U8,
});
const mxfp8Weights: QuantArgs = quantArgs({
  num_bits: 8,
  type: "float",
  strategy: "group",
  group_size: 32,
  scale_dtype: U8,
  zp_dtype: U8,
});

/** Preset names (compressed-tensors `PRESET_SCHEMES` keys). */
export type PresetName =
  | "UNQUANTIZED"
  | "W2A16"
  | "W3A16"
  | "W4A16"
  | "W5A16"
  | "W6A16"
  | "W7A16"
  | "W8A16"
  | "W4A16_ASYM"
  | "W2A4"
  | "W2A8"
  | "W3A4"
  | "W3A8"
  | "W4A4"
  | "W4A8"
  | "W5A8"
  | "W6A8"
  | "W7A8"
  | "W8A8"
  | "INT8"
  | "W4AFP8"
  | "FP8"
  | "FP8_DYNAMIC"
  | "FP8_BLOCK"
  | "NVFP4A16"
  | "NVFP4"
  | "MXFP4A16"
  | "MXFP4"
  | "MXFP8A16"
  | "MXFP8";

/**
 * The preset schemes by name. W{2..8}A16 are int weights in groups of 128 (new compressed-tensors; the old
 * neuralmagic package made W8A16 per-channel, see {@linkcode W8A16_LEGACY}); W{w}A{a} add int a-bit
 * dynamic per-token activations.
 */
export const PRESET_SCHEMES: Readonly<Record<PresetName, PresetScheme>> = Object.freeze({
  /** No quantization (a no-op group). */
  UNQUANTIZED: preset(null),
  /** int2 weights, group 128, symmetric; activations unquantized. */
  W2A16: preset(intWeights(2)),
  /** int3 weights, group 128. */
  W3A16: preset(intWeights(3)),
  /** int4 weights, group 128, symmetric (GPTQ/AWQ-style weight-only). */
  W4A16: preset(intWeights(4)),
  /** int5 weights, group 128. */
  W5A16: preset(intWeights(5)),
  /** int6 weights, group 128. */
  W6A16: preset(intWeights(6)),
  /** int7 weights, group 128. */
  W7A16: preset(intWeights(7)),
  /** int8 weights, group 128 (changed from per-channel by compressed-tensors PR #702, 2026-05). */
  W8A16: preset(intWeights(8)),
  /** int4 weights, group 128, asymmetric (with zero points). */
  W4A16_ASYM: preset(intWeights(4, false)),
  /** int2 weights group 128 + int4 dynamic per-token activations. */
  W2A4: preset(intWeights(2), intTokenActs(4)),
  /** int2 weights group 128 + int8 dynamic per-token activations. */
  W2A8: preset(intWeights(2), intTokenActs(8)),
  /** int3 weights group 128 + int4 dynamic per-token activations. */
  W3A4: preset(intWeights(3), intTokenActs(4)),
  /** int3 weights group 128 + int8 dynamic per-token activations. */
  W3A8: preset(intWeights(3), intTokenActs(8)),
  /** int4 weights group 128 + int4 dynamic per-token activations. */
  W4A4: preset(intWeights(4), intTokenActs(4)),
  /** int4 weights group 128 + int8 dynamic per-token activations. */
  W4A8: preset(intWeights(4), intTokenActs(8)),
  /** int5 weights group 128 + int8 dynamic per-token activations. */
  W5A8: preset(intWeights(5), intTokenActs(8)),
  /** int6 weights group 128 + int8 dynamic per-token activations. */
  W6A8: preset(intWeights(6), intTokenActs(8)),
  /** int7 weights group 128 + int8 dynamic per-token activations. */
  W7A8: preset(intWeights(7), intTokenActs(8)),
  /** int8 per-channel weights + int8 dynamic per-token activations (SmoothQuant-style W8A8). */
  W8A8: preset(quantArgs({ strategy: "channel" }), intTokenActs(8)),
  /** Alias of W8A8. */
  INT8: preset(quantArgs({ strategy: "channel" }), intTokenActs(8)),
  /** int4 weights group 128 + fp8 dynamic per-token activations. */
  W4AFP8: preset(intWeights(4), quantArgs({ type: "float", strategy: "token", dynamic: true })),
  /** fp8 per-tensor weights + fp8 static per-tensor activations. */
  FP8: preset(
    quantArgs({ type: "float", strategy: "tensor" }),
    quantArgs({ type: "float", strategy: "tensor" }),
  ),
  /** fp8 per-channel weights + fp8 dynamic per-token activations. */
  FP8_DYNAMIC: preset(
    quantArgs({ type: "float", strategy: "channel" }),
    quantArgs({ type: "float", strategy: "token", dynamic: true }),
  ),
  /** DeepSeek-style: fp8 weights in 128x128 blocks + fp8 dynamic per-token-group (128) activations. */
  FP8_BLOCK: preset(
    quantArgs({ type: "float", strategy: "block", block_structure: [128, 128] }),
    quantArgs({ type: "float", strategy: "group", group_size: 128, dynamic: true }),
  ),
  /** NVFP4 weight-only: fp4 e2m1 in groups of 16 with fp8 scales and a global fp32 scale. */
  NVFP4A16: preset(nvfp4Weights),
  /** NVFP4 W4A4: as NVFP4A16 plus fp4 activations, local scales dynamic, global scale static. */
  NVFP4: preset(
    nvfp4Weights,
    quantArgs({
      num_bits: 4,
      type: "float",
      strategy: "tensor_group",
      group_size: 16,
      dynamic: "local",
      scale_dtype: FP8_E4M3,
      zp_dtype: FP8_E4M3,
    }),
  ),
  /** MXFP4 weight-only: fp4 in groups of 32 with e8m0 (uint8) scales. */
  MXFP4A16: preset(mxfp4Weights),
  /** MXFP4 weights + fp4 dynamic group-32 activations. */
  MXFP4: preset(
    mxfp4Weights,
    quantArgs({
      num_bits: 4,
      type: "float",
      strategy: "group",
      group_size: 32,
      dynamic: true,
      scale_dtype: U8,
      zp_dtype: U8,
    }),
  ),
  /** MXFP8 weight-only: fp8 in groups of 32 with e8m0 (uint8) scales. */
  MXFP8A16: preset(mxfp8Weights),
  /** MXFP8 weights + fp8 dynamic group-32 activations. */
  MXFP8: preset(
    mxfp8Weights,
    quantArgs({
      num_bits: 8,
      type: "float",
      strategy: "group",
      group_size: 32,
      dynamic: true,
      scale_dtype: U8,
      zp_dtype: U8,
    }),
  ),
});

/** The old (neuralmagic, ≤ 2025-10) W8A16: int8 per-channel weights. Many published checkpoints use it. */
export const W8A16_LEGACY: PresetScheme = preset(quantArgs({ strategy: "channel" }));

/** True when `name` (any case) is a preset name. */
export function isPresetName(name: string): boolean {
  return Object.hasOwn(PRESET_SCHEMES, name.toUpperCase());
}

/**
 * Expand a preset into a full scheme for `targets`, as compressed-tensors' `preset_name_to_scheme`
 * (the name is upper-cased). Throws {@linkcode ConfigError} at `path` for an unknown name.
 */
export function presetScheme(name: string, targets: readonly string[], path = ""): QuantScheme {
  const key = name.toUpperCase();
  if (!isPresetName(key)) {
    throw new ConfigError(
      path,
      `unknown preset scheme ${JSON.stringify(name)}; presets are ${Object.keys(PRESET_SCHEMES).join(", ")}`,
    );
  }
  const p = PRESET_SCHEMES[key as PresetName];
  return quantScheme({ targets, weights: p.weights, input_activations: p.input_activations }, path);
}

/**
 * The name of the preset whose weights and input activations equal these (the first in table order; W8A8
 * rather than its alias INT8), or null. `scale_dtype` / `zp_dtype` are not compared: old NVFP4 checkpoints
 * omit them, and sglang recognizes MXFP4 without them too. `W8A16_LEGACY` is reported as
 * `"W8A16 (legacy, per-channel)"`.
 */
export function presetNameOf(weights: QuantArgs | null, input: QuantArgs | null): string | null {
  if (weights === null && input === null) return null;
  for (const [name, p] of Object.entries(PRESET_SCHEMES)) {
    if (name === "INT8" || name === "UNQUANTIZED") continue;
    if (sameShape(p.weights, weights) && sameShape(p.input_activations, input)) return name;
  }
  if (sameShape(W8A16_LEGACY.weights, weights) && input === null) return "W8A16 (legacy, per-channel)";
  return null;
}

function sameShape(a: QuantArgs | null, b: QuantArgs | null): boolean {
  if (a === null || b === null) return a === b;
  return quantArgsEqual({ ...a, scale_dtype: null, zp_dtype: null }, {
    ...b,
    scale_dtype: null,
    zp_dtype: null,
  });
}
