/**
 * `QuantScheme`: one config group of a compressed-tensors config (quant-spec §1.2): the targets it applies
 * to and the {@linkcode QuantArgs} of weights, input and output activations, plus an optional per-group
 * compression format (used when the top-level format is `"mixed-precision"`).
 *
 * Rules, as compressed-tensors: unknown keys are an error; input activations cannot use the `channel` or
 * `block` strategies; `actorder` is only for weights; `"mixed-precision"` is not a group format.
 *
 * @module
 */
import { parseQuantArgs, type QuantArgs, quantArgs, type QuantArgsInput } from "./args.ts";
import { ConfigError } from "./errors.ts";
import { expectObject, expectString, expectStringList, forbidExtraKeys, joinPath } from "./_json.ts";

/** compressed-tensors `CompressionFormat` values (quant-spec §1.4). */
export const COMPRESSION_FORMATS = [
  "dense",
  "sparse-bitmask",
  "sparse-24-bitmask",
  "int-quantized",
  "float-quantized",
  "naive-quantized",
  "pack-quantized",
  "marlin-24",
  "mixed-precision",
  "nvfp4-pack-quantized",
  "mxfp4-pack-quantized",
  "mxfp8-quantized",
] as const;
/** One of {@linkcode COMPRESSION_FORMATS}. */
export type CompressionFormat = typeof COMPRESSION_FORMATS[number];

/**
 * Formats for which sglang reads `input_activations` (`is_activation_quantization_format`, quant-spec
 * §2.1). Under any other format every group is treated as weight-only. (vLLM's list has
 * `mxfp4-pack-quantized` instead of `pack-quantized`.)
 */
export const ACTIVATION_QUANTIZATION_FORMATS: readonly CompressionFormat[] = [
  "naive-quantized",
  "int-quantized",
  "float-quantized",
  "nvfp4-pack-quantized",
  "pack-quantized",
];

/** True when sglang reads input activations under `format`. */
export function isActivationQuantizationFormat(format: string | null): boolean {
  return format !== null && (ACTIVATION_QUANTIZATION_FORMATS as readonly string[]).includes(format);
}

/** One config group: targets plus the args of the three quantized tensors. */
export interface QuantScheme {
  /** Layer names, `re:` regexes (prefix-anchored) or class names such as `"Linear"`. */
  readonly targets: readonly string[];
  readonly weights: QuantArgs | null;
  readonly input_activations: QuantArgs | null;
  readonly output_activations: QuantArgs | null;
  /** Per-group format (needed when the config's format is `"mixed-precision"`). */
  readonly format: CompressionFormat | null;
}

/** Programmatic input for {@linkcode quantScheme}. */
export interface QuantSchemeInput {
  targets: readonly string[];
  weights?: QuantArgs | QuantArgsInput | null;
  input_activations?: QuantArgs | QuantArgsInput | null;
  output_activations?: QuantArgs | QuantArgsInput | null;
  format?: CompressionFormat | null;
}

const FIELDS = ["targets", "weights", "input_activations", "output_activations", "format"] as const;
const ACTIVATION_STRATEGIES = ["token", "tensor", "group", "tensor_group", "attn_head"];

/**
 * Build a validated scheme from parts (args given as input objects are completed with defaults).
 *
 * @example
 * ```ts
 * import { quantScheme } from "./scheme.ts";
 * const s = quantScheme({ targets: ["Linear"], weights: { num_bits: 4, group_size: 128 } });
 * ```
 */
export function quantScheme(input: QuantSchemeInput, path = ""): QuantScheme {
  const args = (a: QuantArgsInput | null | undefined, key: string): QuantArgs | null =>
    a ? quantArgs(a, joinPath(path, key)) : null;
  return validate({
    targets: Object.freeze([...input.targets]),
    weights: args(input.weights, "weights"),
    input_activations: args(input.input_activations, "input_activations"),
    output_activations: args(input.output_activations, "output_activations"),
    format: input.format ?? null,
  }, path);
}

/** Parse one serialized config group (an object with `targets`) at JSON path `path`. */
export function parseQuantScheme(raw: unknown, path: string): QuantScheme {
  const o = expectObject(raw, path);
  forbidExtraKeys(o, FIELDS, path, "QuantizationScheme");
  if (o.targets === undefined) {
    throw new ConfigError(
      joinPath(path, "targets"),
      "required (a list of layer names, re: regexes or class names)",
    );
  }
  const targets = expectStringList(o.targets, joinPath(path, "targets"));
  const args = (key: string): QuantArgs | null =>
    o[key] === undefined || o[key] === null ? null : parseQuantArgs(o[key], joinPath(path, key));
  let format: CompressionFormat | null = null;
  if (o.format !== undefined && o.format !== null) format = parseFormat(o.format, joinPath(path, "format"));
  return validate({
    targets: Object.freeze(targets),
    weights: args("weights"),
    input_activations: args("input_activations"),
    output_activations: args("output_activations"),
    format,
  }, path);
}

/** A CompressionFormat string, or a ConfigError listing the known ones. */
export function parseFormat(v: unknown, path: string): CompressionFormat {
  const s = expectString(v, path);
  if (!(COMPRESSION_FORMATS as readonly string[]).includes(s)) {
    throw new ConfigError(
      path,
      `unknown compression format ${JSON.stringify(s)}; expected one of ${COMPRESSION_FORMATS.join(", ")}`,
    );
  }
  return s as CompressionFormat;
}

function validate(s: QuantScheme, path: string): QuantScheme {
  if (s.targets.length === 0) {
    throw new ConfigError(
      joinPath(path, "targets"),
      "must list at least one target (layer name, re: regex or class name)",
    );
  }
  s.targets.forEach((t, i) => {
    if (t.length === 0) throw new ConfigError(joinPath(joinPath(path, "targets"), i), "must not be empty");
  });
  const inp = s.input_activations;
  if (inp) {
    if (!ACTIVATION_STRATEGIES.includes(inp.strategy)) {
      throw new ConfigError(
        joinPath(joinPath(path, "input_activations"), "strategy"),
        `"${inp.strategy}" is not allowed for activations (use token, tensor, group, tensor_group or attn_head)`,
      );
    }
    if (inp.actorder !== null) {
      throw new ConfigError(
        joinPath(joinPath(path, "input_activations"), "actorder"),
        "not allowed on input activations",
      );
    }
  }
  if (s.output_activations?.actorder) {
    throw new ConfigError(
      joinPath(joinPath(path, "output_activations"), "actorder"),
      "not allowed on output activations",
    );
  }
  if (s.format === "mixed-precision") {
    throw new ConfigError(
      joinPath(path, "format"),
      `"mixed-precision" is only allowed as the config's top-level format`,
    );
  }
  return Object.freeze(s);
}
