/**
 * Helpers shared by the native-config parsers.
 *
 * @module
 */
import type { QuantArgs } from "./args.ts";
import type { QuantConfig, QuantGroup } from "./config.ts";
import { type CompressionFormat, quantScheme } from "./scheme.ts";

export function group(
  name: string,
  path: string,
  targets: readonly string[],
  weights: QuantArgs | null,
  input_activations: QuantArgs | null,
  format: CompressionFormat,
  ignore: readonly string[] = [],
): QuantGroup {
  return Object.freeze({
    name,
    path,
    scheme: quantScheme({ targets, weights, input_activations, format }, path),
    preset: null,
    ignore: Object.freeze([...ignore]),
    checkTargets: false,
  });
}

export function baseConfig(
  fields: Omit<
    QuantConfig,
    | "kv_cache_scheme"
    | "sparsity_config"
    | "quantization_status"
    | "global_compression_ratio"
    | "linear_fp8_config"
  >,
  kv: QuantArgs | null = null,
): QuantConfig {
  return Object.freeze({
    ...fields,
    kv_cache_scheme: kv,
    sparsity_config: null,
    quantization_status: "compressed",
    global_compression_ratio: null,
    linear_fp8_config: null,
  });
}
