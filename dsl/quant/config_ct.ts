/**
 * compressed-tensors `QuantizationConfig` parsing (quant-spec §1.4): groups (scheme objects or preset
 * shorthands), top-level format, ignore list, KV-cache scheme, sparsity config, and sglang's extensions
 * (`linear_fp8_config`, `packed_modules_mapping`). Extra keys are ignored, as compressed-tensors does
 * (`extra="ignore"`); they are listed in the config's notes.
 *
 * @module
 */
import { parseQuantArgs } from "./args.ts";
import type { Fp8Settings, QuantConfig, QuantGroup, QuantizationStatus, SparsityConfig } from "./config.ts";
import { parseFp8Settings } from "./config_native.ts";
import { ConfigError, UnsupportedConfigError } from "./errors.ts";
import { validatePatterns } from "./match.ts";
import { isPresetName, presetScheme } from "./presets.ts";
import { COMPRESSION_FORMATS, parseQuantScheme, type QuantScheme } from "./scheme.ts";
import {
  describeValue,
  expectNumber,
  expectObject,
  expectOneOf,
  expectString,
  expectStringList,
  expectStringListMap,
  isObject,
  joinPath,
  type JsonObject,
} from "./_json.ts";

const STATUSES: readonly QuantizationStatus[] = [
  "initialized",
  "calibration",
  "frozen",
  "compressed",
  "decompressed",
];

const KNOWN_CT_FIELDS = [
  "config_groups",
  "quant_method",
  "format",
  "quantization_status",
  "kv_cache_scheme",
  "global_compression_ratio",
  "ignore",
  "sparsity_config",
  "linear_fp8_config",
  "packed_modules_mapping",
  "transform_config",
  "version",
  "run_compressed",
];

/** Parse a compressed-tensors `QuantizationConfig` (extra keys are ignored, as compressed-tensors does). */
export function parseCompressedTensorsConfig(o: JsonObject, path: string): QuantConfig {
  const p = (k: string) => joinPath(path, k);
  const notes: string[] = [];
  for (const k of Object.keys(o)) {
    if (!KNOWN_CT_FIELDS.includes(k)) notes.push(`ignored unknown field ${p(k)}`);
  }

  if (o.transform_config !== undefined && o.transform_config !== null) {
    const tc = expectObject(o.transform_config, p("transform_config"));
    const groups = isObject(tc.config_groups) ? tc.config_groups : tc;
    if (Object.keys(groups).length > 0) {
      throw new UnsupportedConfigError(
        p("transform_config"),
        "online transforms (Hadamard/rotation transform_config)",
      );
    }
  }

  let format = "fakequant";
  if (o.format !== undefined && o.format !== null) {
    format = expectString(o.format, p("format"));
    if (format !== "fakequant" && !(COMPRESSION_FORMATS as readonly string[]).includes(format)) {
      throw new ConfigError(
        p("format"),
        `unknown compression format ${JSON.stringify(format)}; expected "fakequant" or one of ${
          COMPRESSION_FORMATS.join(", ")
        }`,
      );
    }
  }

  if (o.config_groups === undefined) {
    throw new ConfigError(p("config_groups"), "required (an object of named groups)");
  }
  const rawGroups = expectObject(o.config_groups, p("config_groups"));
  const groups: QuantGroup[] = [];
  for (const [name, value] of Object.entries(rawGroups)) {
    const gp = joinPath(p("config_groups"), name);
    let scheme: QuantScheme;
    let preset: string | null = null;
    if (Array.isArray(value)) {
      if (!isPresetName(name)) {
        throw new ConfigError(
          gp,
          `a list of targets needs a preset name as the group key, and ${JSON.stringify(name)} is not one`,
        );
      }
      scheme = presetScheme(name, expectStringList(value, gp), gp);
      preset = name.toUpperCase();
    } else if (isObject(value)) {
      scheme = parseQuantScheme(value, gp);
    } else {
      throw new ConfigError(
        gp,
        `must be a scheme object or a preset's target list, got ${describeValue(value)}`,
      );
    }
    validatePatterns(scheme.targets, joinPath(gp, "targets"));
    if (format === "mixed-precision" && scheme.format === null) {
      throw new ConfigError(
        joinPath(gp, "format"),
        `required when the top-level format is "mixed-precision"`,
      );
    }
    groups.push(Object.freeze({ name, path: gp, scheme, preset, ignore: [], checkTargets: true }));
  }
  checkContradictoryTargets(groups);

  const ignore = o.ignore === undefined || o.ignore === null ? [] : expectStringList(o.ignore, p("ignore"));
  validatePatterns(ignore, p("ignore"));

  const quantization_status = o.quantization_status === undefined || o.quantization_status === null
    ? "initialized"
    : expectOneOf(o.quantization_status, STATUSES, p("quantization_status"), "quantization_status");
  const global_compression_ratio =
    o.global_compression_ratio === undefined || o.global_compression_ratio === null
      ? null
      : expectNumber(o.global_compression_ratio, p("global_compression_ratio"));
  const kv_cache_scheme = o.kv_cache_scheme === undefined || o.kv_cache_scheme === null
    ? null
    : parseQuantArgs(o.kv_cache_scheme, p("kv_cache_scheme"));
  const sparsity_config = parseSparsity(o.sparsity_config, p("sparsity_config"));
  let linear_fp8_config: Fp8Settings | null = null;
  if (o.linear_fp8_config !== undefined && o.linear_fp8_config !== null) {
    const lp = p("linear_fp8_config");
    const lo = expectObject(o.linear_fp8_config, lp);
    if (lo.quant_method !== "fp8") {
      throw new ConfigError(
        joinPath(lp, "quant_method"),
        `must be "fp8", got ${describeValue(lo.quant_method)}`,
      );
    }
    linear_fp8_config = parseFp8Settings(lo, lp, { defaultActivationScheme: "dynamic" });
    validatePatterns(linear_fp8_config.ignored_layers, joinPath(lp, "ignored_layers"));
  }
  const packed_modules_mapping = o.packed_modules_mapping === undefined || o.packed_modules_mapping === null
    ? null
    : expectStringListMap(o.packed_modules_mapping, p("packed_modules_mapping"));

  return Object.freeze({
    source: "compressed-tensors",
    quant_method: "compressed-tensors",
    format,
    config_groups: Object.freeze(groups),
    ignore: Object.freeze(ignore),
    ignoreSemantics: "targets",
    ignorePath: p("ignore"),
    kv_cache_scheme,
    sparsity_config,
    quantization_status,
    global_compression_ratio,
    linear_fp8_config,
    packed_modules_mapping,
    scale_fmt: null,
    minCapability: 70,
    path,
    notes: Object.freeze(notes),
  });
}

/**
 * A target string listed by two groups with different schemes is a contradiction: compressed-tensors
 * would silently give it the later group's scheme. kiln refuses it (the later occurrence is blamed).
 */
function checkContradictoryTargets(groups: readonly QuantGroup[]): void {
  const seen = new Map<string, QuantGroup>();
  for (const g of groups) {
    g.scheme.targets.forEach((t, i) => {
      const prev = seen.get(t);
      if (prev && prev !== g && !sameArgs(prev.scheme, g.scheme)) {
        throw new ConfigError(
          joinPath(joinPath(g.path, "targets"), i),
          `${
            JSON.stringify(t)
          } is also a target of ${prev.name} with a different scheme (compressed-tensors would silently use ${g.name})`,
        );
      }
      seen.set(t, g);
    });
  }
}

function sameArgs(a: QuantScheme, b: QuantScheme): boolean {
  return JSON.stringify([a.weights, a.input_activations, a.output_activations, a.format]) ===
    JSON.stringify([b.weights, b.input_activations, b.output_activations, b.format]);
}

function parseSparsity(v: unknown, path: string): SparsityConfig | null {
  if (v === undefined || v === null) return null;
  const o = expectObject(v, path);
  if (Object.keys(o).length === 0) return null; // new writers emit {}: "sparsity is removed for now"
  const p = (k: string) => joinPath(path, k);
  const format = expectOneOf(
    o.format,
    ["dense", "sparse-bitmask", "sparse-24-bitmask"] as const,
    p("format"),
    "sparsity format",
  );
  const targets = o.targets === undefined || o.targets === null
    ? null
    : expectStringList(o.targets, p("targets"));
  const ignore = o.ignore === undefined || o.ignore === null ? null : expectStringList(o.ignore, p("ignore"));
  if (targets) validatePatterns(targets, p("targets"));
  if (ignore) validatePatterns(ignore, p("ignore"));
  const global_sparsity = o.global_sparsity === undefined || o.global_sparsity === null
    ? 0
    : expectNumber(o.global_sparsity, p("global_sparsity"));
  const sparsity_structure = o.sparsity_structure === undefined || o.sparsity_structure === null
    ? "unstructured"
    : expectString(o.sparsity_structure, p("sparsity_structure")).toLowerCase();
  if (!/^(unstructured|\d+:\d+)$/.test(sparsity_structure)) {
    throw new ConfigError(
      p("sparsity_structure"),
      `must be "unstructured" or "N:M" such as "2:4", got ${JSON.stringify(o.sparsity_structure)}`,
    );
  }
  return Object.freeze({ format, targets, ignore, global_sparsity, sparsity_structure });
}
