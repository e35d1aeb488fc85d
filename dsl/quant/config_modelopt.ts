/**
 * ModelOpt configs (`quant_method: "modelopt"`, or `quant_algo` / a ModelOpt `producer` with no
 * `quant_method`, possibly nested under `quantization` as in `hf_quant_config.json`): FP8 (per-tensor
 * weights, static per-tensor activations), NVFP4 (W4A4, groups of 16), and MIXED_PRECISION through
 * `quantized_layers`. Also the per-layer part of native fp8 configs with a ModelOpt MoE override
 * (nvidia DeepSeek-V4-NVFP4). ModelOpt's `ignore` / `exclude_modules` are globs on module paths.
 * `config_groups` in these files are informational: they are checked against `quant_algo` (bits and
 * type) and otherwise not used.
 *
 * @module
 */
import { type QuantArgs, quantArgs } from "./args.ts";
import type { QuantConfig, QuantGroup } from "./config.ts";
import { ConfigError, UnsupportedConfigError } from "./errors.ts";
import { validatePatterns } from "./match.ts";
import { PRESET_SCHEMES } from "./presets.ts";
import type { CompressionFormat } from "./scheme.ts";
import { baseConfig, group } from "./_config_util.ts";
import {
  expectInt,
  expectObject,
  expectString,
  expectStringList,
  isObject,
  joinPath,
  type JsonObject,
} from "./_json.ts";

const MODELOPT_ALGOS = { FP8: "FP8", NVFP4: "NVFP4" } as const;
type ModelOptAlgo = keyof typeof MODELOPT_ALGOS;

function algoArgs(algo: ModelOptAlgo): { weights: QuantArgs; input: QuantArgs; format: CompressionFormat } {
  const preset = algo === "FP8" ? PRESET_SCHEMES.FP8 : PRESET_SCHEMES.NVFP4;
  return {
    weights: preset.weights!,
    input: preset.input_activations!,
    format: algo === "FP8" ? "float-quantized" : "nvfp4-pack-quantized",
  };
}

function parseAlgo(v: unknown, path: string): ModelOptAlgo {
  const s = expectString(v, path);
  if (s === "FP8" || s === "NVFP4") return s;
  throw new UnsupportedConfigError(
    path,
    `ModelOpt quant_algo ${JSON.stringify(s)} (kiln reads FP8, NVFP4 and MIXED_PRECISION)`,
  );
}

function parseKvAlgo(o: JsonObject, path: string): QuantArgs | null {
  for (const key of ["kv_cache_quant_algo", "kv_cache_scheme"]) {
    const v = o[key];
    if (v === undefined || v === null) continue;
    if (isObject(v)) continue; // a compressed-tensors style object: not ModelOpt's; left to the CT parser
    const s = expectString(v, joinPath(path, key));
    if (s !== "FP8") {
      throw new UnsupportedConfigError(joinPath(path, key), `KV cache algorithm ${JSON.stringify(s)}`);
    }
    return quantArgs({ type: "float", strategy: "tensor" });
  }
  return null;
}

/** Check ModelOpt's informational `config_groups` agree with the algorithm (bits and type). */
function crossCheckGroups(o: JsonObject, path: string, algo: ModelOptAlgo): void {
  if (!isObject(o.config_groups)) return;
  const want = algoArgs(algo);
  for (const [name, g] of Object.entries(o.config_groups)) {
    const gp = joinPath(joinPath(path, "config_groups"), name);
    const go = expectObject(g, gp);
    for (const [key, args] of [["weights", want.weights], ["input_activations", want.input]] as const) {
      const a = go[key];
      if (!isObject(a)) continue;
      const bits = a.num_bits ?? 8;
      const type = a.type ?? "int";
      if (bits !== args.num_bits || type !== args.type) {
        throw new ConfigError(
          joinPath(gp, key),
          `${type}${bits} disagrees with quant_algo "${algo}" (${args.type}${args.num_bits}); contradictory groups`,
        );
      }
    }
  }
}

function expertRegex(name: string): string {
  const esc = name.replace(/^model\./, "").replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return `re:(?:model\\.)?${esc}(?:\\.|$)`;
}

/**
 * ModelOpt per-layer algorithms: `quantized_layers` (MIXED_PRECISION) or `moe_quant_algo` for all MoE
 * layers. `base` "fp8": layers not listed keep the native fp8 config, and FP8 entries are that config.
 */
export function parseModelOptLayers(
  o: JsonObject,
  path: string,
  base: "fp8" | "none",
): { groups: QuantGroup[]; kv: QuantArgs | null } {
  const p = (k: string) => joinPath(path, k);
  const ignore = o.ignore !== undefined && o.ignore !== null
    ? expectStringList(o.ignore, p("ignore"))
    : o.exclude_modules !== undefined && o.exclude_modules !== null
    ? expectStringList(o.exclude_modules, p("exclude_modules"))
    : [];
  validatePatterns(ignore, p(o.ignore !== undefined ? "ignore" : "exclude_modules"));
  if (
    o.group_size !== undefined && o.group_size !== null && expectInt(o.group_size, p("group_size")) !== 16
  ) {
    throw new ConfigError(p("group_size"), `NVFP4 uses groups of 16, got ${o.group_size}`);
  }
  const byAlgo = new Map<ModelOptAlgo, string[]>();
  if (o.quantized_layers !== undefined && o.quantized_layers !== null) {
    const ql = expectObject(o.quantized_layers, p("quantized_layers"));
    for (const [name, entry] of Object.entries(ql)) {
      const ep = joinPath(p("quantized_layers"), name);
      const eo = expectObject(entry, ep);
      const algo = parseAlgo(eo.quant_algo, joinPath(ep, "quant_algo"));
      if (
        eo.group_size !== undefined && eo.group_size !== null && algo === "NVFP4" &&
        expectInt(eo.group_size, joinPath(ep, "group_size")) !== 16
      ) {
        throw new ConfigError(joinPath(ep, "group_size"), `NVFP4 uses groups of 16, got ${eo.group_size}`);
      }
      if (algo === "FP8" && base === "fp8") continue; // the base config already is fp8
      byAlgo.set(algo, [...(byAlgo.get(algo) ?? []), name]);
    }
  } else if (o.moe_quant_algo !== undefined && o.moe_quant_algo !== null) {
    byAlgo.set(parseAlgo(o.moe_quant_algo, p("moe_quant_algo")), []);
  } else {
    throw new ConfigError(p("quantized_layers"), `required when quant_algo is "MIXED_PRECISION"`);
  }
  if (o.moe_quant_algo !== undefined && o.moe_quant_algo !== null) {
    const moeAlgo = parseAlgo(o.moe_quant_algo, p("moe_quant_algo"));
    crossCheckGroups(o, path, moeAlgo);
  }
  const groups: QuantGroup[] = [];
  for (const [algo, names] of byAlgo) {
    const a = algoArgs(algo);
    const targets = names.length > 0 ? names.map(expertRegex) : ["FusedMoE"];
    const gpath = names.length > 0 ? p("quantized_layers") : p("moe_quant_algo");
    groups.push(group(algo.toLowerCase(), gpath, targets, a.weights, a.input, a.format, ignore));
  }
  return { groups, kv: parseKvAlgo(o, path) };
}

/** A ModelOpt config (`quant_algo` FP8, NVFP4 or MIXED_PRECISION), possibly nested under `quantization`. */
export function parseModelOptConfig(raw: JsonObject, path: string): QuantConfig {
  let o = raw;
  let opath = path;
  if (isObject(raw.quantization)) {
    o = { ...raw, ...raw.quantization };
    opath = joinPath(path, "quantization");
  }
  const p = (k: string) => joinPath(opath, k);
  if (o.quant_algo === undefined || o.quant_algo === null) {
    throw new ConfigError(p("quant_algo"), "required for a ModelOpt config");
  }
  const qa = expectString(o.quant_algo, p("quant_algo"));
  const ignoreKey = o.exclude_modules !== undefined ? "exclude_modules" : "ignore";
  const ignore = o[ignoreKey] === undefined || o[ignoreKey] === null
    ? []
    : expectStringList(o[ignoreKey], p(ignoreKey));
  validatePatterns(ignore, p(ignoreKey));
  let groups: QuantGroup[];
  let kv: QuantArgs | null;
  let format: string;
  let minCapability: number;
  let globalIgnore: string[] = ignore;
  if (qa === "MIXED_PRECISION") {
    const mixed = parseModelOptLayers(o, opath, "none");
    groups = mixed.groups;
    kv = mixed.kv;
    format = "mixed-precision";
    minCapability = groups.some((g) => g.name === "nvfp4") ? 100 : 89;
    globalIgnore = [];
  } else {
    const algo = parseAlgo(qa, p("quant_algo"));
    if (
      algo === "NVFP4" && o.group_size !== undefined && o.group_size !== null &&
      expectInt(o.group_size, p("group_size")) !== 16
    ) {
      throw new ConfigError(p("group_size"), `NVFP4 uses groups of 16, got ${o.group_size}`);
    }
    crossCheckGroups(o, opath, algo);
    const a = algoArgs(algo);
    groups = [group(algo.toLowerCase(), p("quant_algo"), ["Linear"], a.weights, a.input, a.format)];
    kv = parseKvAlgo(o, opath);
    format = a.format;
    minCapability = algo === "FP8" ? 89 : 100;
  }
  return baseConfig({
    source: "modelopt",
    quant_method: "modelopt",
    format,
    config_groups: Object.freeze(groups),
    ignore: Object.freeze(globalIgnore),
    ignoreSemantics: "module-path",
    ignorePath: p(ignoreKey),
    packed_modules_mapping: null,
    scale_fmt: null,
    minCapability,
    path,
    notes: Object.freeze([`ModelOpt quant_algo ${qa}`]),
  }, kv);
}
