/**
 * Non-compressed-tensors configs normalized onto {@linkcode QuantConfig}:
 *
 * - native fp8 (`quant_method: "fp8"`, DeepSeek/Qwen/MiniMax): one group targeting `Linear` (and through
 *   sglang's aliasing, FusedMoE). `weight_block_size: [bn, bk]` gives fp8 weights in bn×bk blocks (bn tiles
 *   the output dim) with dynamic per-token-group activations of group bk — the FP8_BLOCK preset; without it,
 *   per-tensor weights with static or dynamic per-tensor activations. `modules_to_not_convert` /
 *   `ignored_layers` match on dotted module paths with globs (quant-spec §4.6).
 * - ModelOpt mixed precision on top of native fp8 (`quant_algo: "MIXED_PRECISION"`, `moe_quant_algo`,
 *   `quantized_layers`; nvidia DeepSeek-V4 NVFP4): the listed expert layers get NVFP4 (W4A4), everything
 *   else keeps the fp8 config. Its `ignore` (globs) only exempts layers from NVFP4.
 * - `mxfp4` (gpt-oss): MXFP4 weight-only experts (FusedMoE); Linear layers stay unquantized, as sglang's
 *   `Mxfp4Config` leaves them.
 * - ModelOpt (`quant_method: "modelopt"`, or `quant_algo` with no `quant_method`): FP8 (per-tensor weights
 *   and static per-tensor activations), NVFP4, and MIXED_PRECISION via `quantized_layers`. Other
 *   `quant_algo`s are refused.
 *
 * @module
 */
import { type QuantArgs, quantArgs } from "./args.ts";
import type { Fp8Settings, QuantConfig, QuantGroup } from "./config.ts";
import { parseModelOptLayers } from "./config_modelopt.ts";
import { ConfigError, UnsupportedConfigError } from "./errors.ts";
import { validatePatterns } from "./match.ts";
import { PRESET_SCHEMES } from "./presets.ts";
import { baseConfig, group } from "./_config_util.ts";
import {
  describeValue,
  expectInt,
  expectString,
  expectStringList,
  expectStringListMap,
  joinPath,
  type JsonObject,
} from "./_json.ts";

/** Options of {@linkcode parseFp8Settings}. */
export interface Fp8SettingsOptions {
  /** `activation_scheme` when absent; undefined = required (as sglang's `Fp8Config.from_config`). */
  defaultActivationScheme?: "static" | "dynamic";
}

/** Read the fields of a native fp8 config (or of sglang's `linear_fp8_config`). */
export function parseFp8Settings(o: JsonObject, path: string, opts: Fp8SettingsOptions = {}): Fp8Settings {
  const p = (k: string) => joinPath(path, k);
  let activation_scheme: "static" | "dynamic";
  if (o.activation_scheme === undefined || o.activation_scheme === null) {
    if (!opts.defaultActivationScheme) {
      throw new ConfigError(p("activation_scheme"), `required ("static" or "dynamic")`);
    }
    activation_scheme = opts.defaultActivationScheme;
  } else {
    const s = expectString(o.activation_scheme, p("activation_scheme"));
    if (s !== "static" && s !== "dynamic") {
      throw new ConfigError(
        p("activation_scheme"),
        `must be "static" or "dynamic", got ${JSON.stringify(s)}`,
      );
    }
    activation_scheme = s;
  }
  let weight_block_size: [number, number] | null = null;
  if (o.weight_block_size !== undefined && o.weight_block_size !== null) {
    const wb = o.weight_block_size;
    if (!Array.isArray(wb) || wb.length !== 2) {
      throw new ConfigError(p("weight_block_size"), `must be [block_n, block_k], got ${describeValue(wb)}`);
    }
    const [bn, bk] = wb.map((x, i) => expectInt(x, joinPath(p("weight_block_size"), i)));
    if (bn <= 0 || bk <= 0) {
      throw new ConfigError(p("weight_block_size"), `must be two positive integers, got [${bn}, ${bk}]`);
    }
    weight_block_size = [bn, bk];
    if (activation_scheme !== "dynamic") {
      throw new ConfigError(
        p("activation_scheme"),
        `must be "dynamic" with weight_block_size (block-wise fp8 quantizes activations per token group at run time)`,
      );
    }
  }
  if (o.fmt !== undefined && o.fmt !== null) {
    const fmt = expectString(o.fmt, p("fmt"));
    if (fmt !== "e4m3" && fmt !== "float8_e4m3fn") {
      throw new UnsupportedConfigError(
        p("fmt"),
        `fp8 format ${JSON.stringify(fmt)} (kiln's fp8 kernels use e4m3)`,
      );
    }
  }
  let scale_fmt: "ue8m0" | null = null;
  if (o.scale_fmt !== undefined && o.scale_fmt !== null) {
    const sf = expectString(o.scale_fmt, p("scale_fmt"));
    if (sf !== "ue8m0") {
      throw new UnsupportedConfigError(
        p("scale_fmt"),
        `scale_fmt ${JSON.stringify(sf)} (only "ue8m0" is known)`,
      );
    }
    scale_fmt = "ue8m0";
  }
  // sglang reads `ignored_layers` first, then `modules_to_not_convert`.
  const key = o.ignored_layers !== undefined && o.ignored_layers !== null
    ? "ignored_layers"
    : "modules_to_not_convert";
  const ignored_layers = o[key] === undefined || o[key] === null ? [] : expectStringList(o[key], p(key));
  validatePatterns(ignored_layers, p(key));
  return Object.freeze({
    activation_scheme,
    weight_block_size: weight_block_size ? Object.freeze(weight_block_size) as [number, number] : null,
    fmt: "e4m3",
    scale_fmt,
    ignored_layers: Object.freeze(ignored_layers),
  });
}

/** The weight and input-activation args a native fp8 config means. */
export function fp8SettingsArgs(s: Fp8Settings): { weights: QuantArgs; input_activations: QuantArgs } {
  if (s.weight_block_size) {
    const [bn, bk] = s.weight_block_size;
    return {
      weights: quantArgs({ type: "float", strategy: "block", block_structure: [bn, bk] }),
      input_activations: quantArgs({ type: "float", strategy: "group", group_size: bk, dynamic: true }),
    };
  }
  return {
    weights: quantArgs({ type: "float", strategy: "tensor" }),
    input_activations: quantArgs({
      type: "float",
      strategy: "tensor",
      dynamic: s.activation_scheme === "dynamic",
    }),
  };
}

/** A native fp8 config (optionally with a ModelOpt mixed-precision MoE override). */
export function parseFp8Config(o: JsonObject, path: string): QuantConfig {
  const p = (k: string) => joinPath(path, k);
  const settings = parseFp8Settings(o, path);
  const notes: string[] = [];
  if (o.ignored_layers && o.modules_to_not_convert) {
    notes.push(`${p("ignored_layers")} used; ${p("modules_to_not_convert")} ignored (sglang order)`);
  }
  const { weights, input_activations } = fp8SettingsArgs(settings);
  const groups: QuantGroup[] = [];
  let kv: QuantArgs | null = null;
  if (
    o.quant_algo === "MIXED_PRECISION" || o.moe_quant_algo !== undefined || o.quantized_layers !== undefined
  ) {
    const mixed = parseModelOptLayers(o, path, "fp8");
    groups.push(...mixed.groups);
    kv = mixed.kv;
    notes.push("ModelOpt mixed precision on a native fp8 config: listed MoE layers NVFP4, the rest fp8");
  } else if (o.quant_algo !== undefined && o.quant_algo !== null) {
    throw new UnsupportedConfigError(
      p("quant_algo"),
      `quant_algo ${describeValue(o.quant_algo)} on a native fp8 config`,
    );
  }
  groups.push(group("fp8", path, ["Linear"], weights, input_activations, "float-quantized"));
  const packed = o.packed_modules_mapping === undefined || o.packed_modules_mapping === null
    ? null
    : expectStringListMap(o.packed_modules_mapping, p("packed_modules_mapping"));
  return baseConfig({
    source: "fp8",
    quant_method: "fp8",
    format: groups.length > 1 ? "mixed-precision" : "float-quantized",
    config_groups: Object.freeze(groups),
    ignore: settings.ignored_layers,
    ignoreSemantics: "module-path",
    ignorePath: p(
      o.ignored_layers !== undefined && o.ignored_layers !== null
        ? "ignored_layers"
        : "modules_to_not_convert",
    ),
    packed_modules_mapping: packed,
    scale_fmt: settings.scale_fmt,
    minCapability: 80,
    path,
    notes: Object.freeze(notes),
  }, kv);
}

/** A `quant_method: "mxfp4"` config (gpt-oss): MXFP4 weight-only experts. */
export function parseMxfp4Config(o: JsonObject, path: string): QuantConfig {
  const key = o.ignored_layers !== undefined ? "ignored_layers" : "modules_to_not_convert";
  const ignore = o[key] === undefined || o[key] === null ? [] : expectStringList(o[key], joinPath(path, key));
  validatePatterns(ignore, joinPath(path, key));
  const g = group("mxfp4", path, ["FusedMoE"], PRESET_SCHEMES.MXFP4A16.weights, null, "mxfp4-pack-quantized");
  return baseConfig({
    source: "mxfp4",
    quant_method: "mxfp4",
    format: "mxfp4-pack-quantized",
    config_groups: Object.freeze([g]),
    ignore: Object.freeze(ignore),
    ignoreSemantics: "module-path",
    ignorePath: joinPath(path, key),
    packed_modules_mapping: null,
    scale_fmt: null,
    minCapability: 80,
    path,
    notes: Object.freeze([
      "mxfp4: MoE experts are MXFP4 weight-only; Linear layers stay unquantized (sglang Mxfp4Config)",
    ]),
  });
}
