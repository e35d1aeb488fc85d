/**
 * The quant-scheme DSL: compressed-tensors' data model (QuantArgs, QuantScheme, QuantConfig and the
 * presets), native fp8 / mxfp4 / ModelOpt configs normalized onto it, target and ignore matching, sglang's
 * scheme selection, and the per-module plan of which kiln kernels would run a model.
 *
 * @example
 * ```ts
 * import { formatPlan, modulesFromModuleNames, parseQuantConfig, planModel } from "./mod.ts";
 * const cfg = parseQuantConfig({ quant_method: "fp8", activation_scheme: "dynamic", weight_block_size: [128, 128] });
 * const mods = modulesFromModuleNames(["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.o_proj"]);
 * console.log(formatPlan(planModel(cfg, mods)));
 * ```
 * @module
 */
export * from "./errors.ts";
export * from "./args.ts";
export * from "./describe.ts";
export * from "./scheme.ts";
export * from "./presets.ts";
export * from "./config.ts";
export * from "./config_native.ts";
export * from "./match.ts";
export * from "./modules.ts";
export * from "./arch.ts";
export * from "./select.ts";
export * from "./kernels.ts";
export * from "./resolve.ts";
export * from "./plan.ts";
export * from "./plan_checks.ts";
export * from "./plan_format.ts";
