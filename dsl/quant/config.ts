/**
 * `QuantConfig`: a model's `quantization_config`, parsed and validated. compressed-tensors configs are read
 * field for field (quant-spec §1.4, §2.1); native fp8 (`quant_method: "fp8"`, §4.6), `mxfp4` and ModelOpt
 * FP8/NVFP4 configs are normalized onto the same model (see `config_native.ts`); every other
 * `quant_method` is refused with an {@linkcode UnsupportedConfigError} ("not supported yet: ..."), never
 * guessed at.
 *
 * @example
 * ```ts
 * import { parseQuantConfig } from "./config.ts";
 * const cfg = parseQuantConfig({ quant_method: "fp8", activation_scheme: "dynamic", weight_block_size: [128, 128] });
 * cfg.config_groups[0].scheme.weights?.strategy; // "block"
 * ```
 * @module
 */
import type { QuantArgs } from "./args.ts";
import { ConfigError, UnsupportedConfigError } from "./errors.ts";
import type { QuantScheme } from "./scheme.ts";
import { parseCompressedTensorsConfig } from "./config_ct.ts";
import { parseFp8Config, parseMxfp4Config } from "./config_native.ts";
import { parseModelOptConfig } from "./config_modelopt.ts";
import { describeValue, expectObject, expectString, isObject, joinPath, type JsonObject } from "./_json.ts";

/** Where a config came from. */
export type QuantSource = "compressed-tensors" | "fp8" | "mxfp4" | "modelopt";

/**
 * How `ignore` entries match module names. `"targets"`: compressed-tensors rules (exact name, `re:`
 * regex, class name; see match.ts). `"module-path"`: the native fp8 rules of sglang's `is_layer_skipped`:
 * equal, or a dotted-path prefix, or a `.segment.` inside the name, with `*` globs, each entry tried with
 * and without a leading `model.`.
 */
export type IgnoreSemantics = "targets" | "module-path";

/** compressed-tensors `QuantizationStatus`. */
export type QuantizationStatus = "initialized" | "calibration" | "frozen" | "compressed" | "decompressed";

/** One config group, with where it came from. */
export interface QuantGroup {
  /** The key in `config_groups` (or a synthesized name such as `fp8` for native configs). */
  readonly name: string;
  /** JSON path of the group (for errors). */
  readonly path: string;
  readonly scheme: QuantScheme;
  /** The preset name when the group was written as `"PRESET": [targets]`. */
  readonly preset: string | null;
  /** Module-path patterns this group never applies to (ModelOpt `ignore` of mixed configs); [] usually. */
  readonly ignore: readonly string[];
  /** True for groups written by the user (compressed-tensors): a target that matches no module is an error. */
  readonly checkTargets: boolean;
}

/** compressed-tensors `SparsityCompressionConfig`. */
export interface SparsityConfig {
  readonly format: "dense" | "sparse-bitmask" | "sparse-24-bitmask";
  readonly targets: readonly string[] | null;
  readonly ignore: readonly string[] | null;
  readonly global_sparsity: number;
  /** `"unstructured"`, `"2:4"`, `"0:0"` ...; null in the file means unstructured. */
  readonly sparsity_structure: string;
}

/** A native fp8 config (`Fp8Config`), also the shape of sglang's `linear_fp8_config`. */
export interface Fp8Settings {
  readonly activation_scheme: "static" | "dynamic";
  /** `[bn, bk]`: bn tiles the output dim N (weight rows), bk tiles K. null = per-tensor weights. */
  readonly weight_block_size: readonly [number, number] | null;
  readonly fmt: "e4m3";
  /** `"ue8m0"`: scales are powers of two (DeepSeek V3.2+). */
  readonly scale_fmt: "ue8m0" | null;
  /** `ignored_layers` or `modules_to_not_convert`, as written. */
  readonly ignored_layers: readonly string[];
}

/** A parsed quantization config. */
export interface QuantConfig {
  readonly source: QuantSource;
  readonly quant_method: string;
  /** Top-level compression format (`"fakequant"` is compressed-tensors' default). */
  readonly format: string;
  /** Groups in config order (later groups win a target string they share). */
  readonly config_groups: readonly QuantGroup[];
  readonly ignore: readonly string[];
  readonly ignoreSemantics: IgnoreSemantics;
  /** JSON path of the ignore list (`ignore`, `modules_to_not_convert`, `ignored_layers`, ...). */
  readonly ignorePath: string;
  readonly kv_cache_scheme: QuantArgs | null;
  readonly sparsity_config: SparsityConfig | null;
  readonly quantization_status: QuantizationStatus;
  readonly global_compression_ratio: number | null;
  /** sglang extension: every Linear uses this fp8 config; only FusedMoE layers use the groups. */
  readonly linear_fp8_config: Fp8Settings | null;
  /** Fused module → shard names; null = the model's default (qkv_proj, gate_up_proj). */
  readonly packed_modules_mapping: Readonly<Record<string, readonly string[]>> | null;
  /** Scale format of fp8 block scales (native fp8 `scale_fmt`). */
  readonly scale_fmt: "ue8m0" | null;
  /** sglang's config-level minimum compute capability (CT 70, fp8 80, mxfp4 80, ModelOpt 89/100). */
  readonly minCapability: number;
  /** JSON path of this object in its file ("" when parsed on its own). */
  readonly path: string;
  /** Things worth telling a person (normalizations applied, fields ignored). */
  readonly notes: readonly string[];
}

/** Options of {@linkcode parseQuantConfig}. */
export interface ParseQuantConfigOptions {
  /** JSON path prefix for error messages, e.g. `"quantization_config"`. */
  path?: string;
}

const REFUSED_METHODS: Record<string, string> = {
  gptq: "GPTQ",
  awq: "AWQ",
  gptq_marlin: "GPTQ (Marlin)",
  awq_marlin: "AWQ (Marlin)",
  bitsandbytes: "bitsandbytes",
  quark: "AMD Quark",
  w8a8_int8: "sglang w8a8_int8",
  w8a8_fp8: "sglang w8a8_fp8",
  fbgemm_fp8: "fbgemm fp8",
  mxfp8: "MXFP8 native",
  torchao: "torchao",
  hqq: "HQQ",
  gguf: "GGUF",
  aqlm: "AQLM",
  eetq: "EETQ",
  bitnet: "BitNet",
  modelslim: "ModelSlim",
  auto_round: "AutoRound",
  petit_nvfp4: "petit NVFP4",
};

/**
 * Parse a `quantization_config` object. Dispatches on `quant_method` (a config without one is
 * compressed-tensors when it has `config_groups`, ModelOpt when it has `quant_algo` or a ModelOpt
 * `producer`). Throws {@linkcode ConfigError} with the JSON path of the offending field.
 */
export function parseQuantConfig(raw: unknown, opts: ParseQuantConfigOptions = {}): QuantConfig {
  const path = opts.path ?? "";
  const o = expectObject(raw, path);
  const qm = o.quant_method;
  if (qm === undefined || qm === null) {
    if (isModelOptShaped(o)) return parseModelOptConfig(o, path);
    if (o.config_groups !== undefined) return parseCompressedTensorsConfig(o, path);
    throw new ConfigError(
      joinPath(path, "quant_method"),
      `required (e.g. "compressed-tensors" or "fp8"), got ${describeValue(qm)}`,
    );
  }
  const method = expectString(qm, joinPath(path, "quant_method"));
  switch (method) {
    case "compressed-tensors":
      return parseCompressedTensorsConfig(o, path);
    case "fp8":
      return parseFp8Config(o, path);
    case "mxfp4":
      return parseMxfp4Config(o, path);
    case "modelopt":
    case "modelopt_fp4":
      return parseModelOptConfig(o, path);
  }
  const known = REFUSED_METHODS[method.toLowerCase()];
  throw new UnsupportedConfigError(
    joinPath(path, "quant_method"),
    `quant_method ${JSON.stringify(method)}${
      known ? ` (${known})` : ""
    }; kiln reads compressed-tensors, fp8, mxfp4 and ModelOpt FP8/NVFP4 configs`,
  );
}

function isModelOptShaped(o: JsonObject): boolean {
  const producer = o.producer;
  return o.quant_algo !== undefined || (isObject(producer) && producer.name === "modelopt") ||
    isObject(o.quantization);
}

/** Where the quantization config sits in a HF config.json: top level, or under `text_config` (Kimi-K2.5). */
export function findQuantizationConfig(hfConfig: unknown): { config: JsonObject; path: string } | null {
  const root = expectObject(hfConfig, "");
  if (root.quantization_config !== undefined && root.quantization_config !== null) {
    return {
      config: expectObject(root.quantization_config, "quantization_config"),
      path: "quantization_config",
    };
  }
  const tc = root.text_config;
  if (isObject(tc) && tc.quantization_config !== undefined && tc.quantization_config !== null) {
    const path = "text_config.quantization_config";
    return { config: expectObject(tc.quantization_config, path), path };
  }
  // Legacy llm-compressor checkpoints wrote `compression_config`.
  if (isObject(root.compression_config)) {
    return { config: root.compression_config, path: "compression_config" };
  }
  return null;
}

/** Parse the quantization config of a full HF `config.json` object; null when the model is not quantized. */
export function parseHfQuantConfig(hfConfig: unknown): QuantConfig | null {
  const found = findQuantizationConfig(hfConfig);
  return found ? parseQuantConfig(found.config, { path: found.path }) : null;
}
