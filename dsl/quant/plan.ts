/**
 * The per-module plan: for every module of a model, the scheme it is stored in, what sglang would select
 * for it, the weight and activation formats, and the kiln kernels that would run it — or "unquantized", or
 * "unsupported: why".
 *
 * @example
 * ```ts
 * import { parseQuantConfig } from "./config.ts";
 * import { modulesFromModuleNames } from "./modules.ts";
 * import { planModel } from "./plan.ts";
 * const cfg = parseQuantConfig({ quant_method: "fp8", activation_scheme: "dynamic", weight_block_size: [128, 128] });
 * const plan = planModel(cfg, modulesFromModuleNames(["model.layers.0.self_attn.q_proj", "lm_head"]));
 * plan.modules[1].kernelText; // "groupQuant fp8e4m3 g128 rowAlign 4 + blockScaledMatmul 128x128"
 * ```
 * @module
 */
import type { QuantArgs } from "./args.ts";
import type { QuantConfig, QuantGroup, QuantSource, SparsityConfig } from "./config.ts";
import { fp8SettingsArgs } from "./config_native.ts";
import { describeActivation, describeQuantArgs, describeScheme } from "./describe.ts";
import { describeKernels, planKernels, type PlannedKernel } from "./kernels.ts";
import { findTarget, type MatchMode, matchName, modulePathEntryFor } from "./match.ts";
import { expertProjectionNames, type ModuleInfo, type ModuleKind } from "./modules.ts";
import { checkSiblingShards, checkTargets, kvPlan } from "./plan_checks.ts";
import { presetNameOf } from "./presets.ts";
import { assertAgree, type Resolution, Resolver } from "./resolve.ts";
import {
  type MoeBackend,
  type SchemeId,
  type Selection,
  selectLinearScheme,
  selectMoeScheme,
} from "./select.ts";

/** Options of {@linkcode planModel}. */
export interface PlanOptions {
  /** Name matching: compressed-tensors (default) or sglang's substring rules (see match.ts). */
  readonly matching?: MatchMode;
  /** Device compute capability (e.g. 90 for sm_90); schemes are checked against it when given. */
  readonly capability?: number;
  readonly moeBackend?: MoeBackend;
  /** A config target that matches no module is an error (default) or, when false, a warning. */
  readonly strictTargets?: boolean;
}

/** The plan of one module. */
export interface ModulePlan {
  readonly name: string;
  readonly kind: ModuleKind;
  readonly status: "quantized" | "unquantized" | "unsupported";
  /** sglang's scheme for it (also set for unsupported modules when the scheme is known). */
  readonly scheme: SchemeId | null;
  /** The stored scheme: a preset name (`FP8_BLOCK`) or a short description; "unquantized" otherwise. */
  readonly label: string;
  /** The config group it matched. */
  readonly group: string | null;
  readonly weights: QuantArgs | null;
  readonly inputActivations: QuantArgs | null;
  readonly weightFormat: string;
  readonly activationFormat: string;
  readonly kernels: readonly PlannedKernel[];
  /** `groupQuant fp8e4m3 g128 rowAlign 4 + blockScaledMatmul 128x128`, or "" without kernels. */
  readonly kernelText: string;
  /** Why unquantized / unsupported, or a note on a quantized module. */
  readonly reason: string | null;
  readonly minCapability: number | null;
  readonly fallbackFrom: SchemeId | null;
  /** MoE only: number of experts. */
  readonly experts: number | null;
}

/** The KV-cache part of a plan. */
export interface KvCachePlan {
  readonly scheme: QuantArgs;
  readonly format: string;
  readonly modules: readonly string[];
  readonly status: "unsupported";
  readonly reason: string;
}

/** A whole model's plan. */
export interface QuantPlan {
  readonly source: QuantSource;
  readonly quantMethod: string;
  readonly format: string;
  readonly matching: MatchMode;
  readonly capability: number | null;
  readonly configMinCapability: number;
  readonly modules: readonly ModulePlan[];
  readonly kvCache: KvCachePlan | null;
  readonly warnings: readonly string[];
  readonly notes: readonly string[];
}

const BF16 = "bf16/fp16 (unquantized)";

/**
 * Plan every module. Throws {@linkcode PlanError} for contradictions: fused shards or MoE projections that
 * resolve differently, and (with `strictTargets`) config targets that match no module.
 */
export function planModel(
  config: QuantConfig,
  modules: readonly ModuleInfo[],
  opts: PlanOptions = {},
): QuantPlan {
  const mode = opts.matching ?? "compressed-tensors";
  const ctx = new Planner(config, mode, opts);
  const plans = modules.filter((m) => m.kind !== "attention").map((m) => ctx.plan(m));
  checkSiblingShards(plans, ctx.resolver, config.path);
  const warnings = [...ctx.warnings, ...checkTargets(config, modules, mode, opts.strictTargets ?? true)];
  return Object.freeze({
    source: config.source,
    quantMethod: config.quant_method,
    format: config.format,
    matching: mode,
    capability: opts.capability ?? null,
    configMinCapability: config.minCapability,
    modules: Object.freeze(plans),
    kvCache: kvPlan(config, modules),
    warnings: Object.freeze(warnings),
    notes: config.notes,
  });
}

class Planner {
  readonly resolver: Resolver;
  readonly warnings: string[] = [];
  constructor(readonly config: QuantConfig, readonly mode: MatchMode, readonly opts: PlanOptions) {
    this.resolver = new Resolver(config, mode);
  }

  plan(m: ModuleInfo): ModulePlan {
    switch (m.kind) {
      case "linear":
        return this.linear(m);
      case "moe":
        return this.moe(m);
      case "lm_head":
        return this.lmHead(m);
      case "router":
        return plain(m, "unquantized", "MoE router gate; sglang builds routers unquantized");
      default:
        return plain(m, "unquantized", "not a linear layer");
    }
  }

  linear(m: ModuleInfo): ModulePlan {
    const lf = this.config.linear_fp8_config;
    if (lf) {
      const entry = modulePathEntryFor(m.name, lf.ignored_layers);
      if (entry !== null) {
        return plain(m, "unquantized", `ignored by linear_fp8_config entry ${JSON.stringify(entry)}`);
      }
      const { weights, input_activations } = fp8SettingsArgs(lf);
      const sel = selectLinearScheme(
        { weights, input: input_activations, format: "float-quantized" },
        this.opts,
      );
      return this.fromSelection(
        m,
        sel,
        null,
        weights,
        input_activations,
        lf.scale_fmt === "ue8m0",
        "linear_fp8_config",
      );
    }
    return this.fromResolution(m, this.resolver.resolve(m.name, ["Linear"]), false);
  }

  lmHead(m: ModuleInfo): ModulePlan {
    if (this.config.source !== "compressed-tensors") {
      return plain(
        m,
        "unquantized",
        `the output head is not converted by ${this.config.quant_method} checkpoints`,
      );
    }
    if (this.mode === "sglang") {
      // sglang get_lm_head_scheme: quantized only when a target names it (substring or regex)
      const ign = this.resolver.ignoreFor(m.name, ["Linear"]);
      if (ign) return this.fromResolution(m, ign, false);
      for (const [t, g] of this.resolver.targets) {
        const hit = t.startsWith("re:")
          ? matchName(m.name, t)
          : m.name.toLowerCase().includes(t.toLowerCase());
        if (!hit) continue;
        if (g.scheme.weights?.strategy === "block") {
          return plain(m, "unsupported", "block-quantized lm_head is not supported by sglang");
        }
        return this.fromResolution(m, { kind: "group", group: g, target: t }, false);
      }
      return plain(m, "unquantized", "sglang quantizes the output head only when a target names it");
    }
    return this.fromResolution(m, this.resolver.resolve(m.name, ["Linear"]), false);
  }

  moe(m: ModuleInfo): ModulePlan {
    if (this.config.ignoreSemantics === "module-path") {
      const ign = this.resolver.ignoreFor(m.name, ["FusedMoE"]);
      if (ign) return this.fromResolution(m, ign, true);
    }
    const names = expertProjectionNames(m);
    const classes = this.mode === "sglang" ? ["FusedMoE"] : ["Linear", "FusedMoE"];
    const results = names.map((n) => this.resolver.resolve(n, classes));
    assertAgree(m.name, names, results, this.config.path);
    return this.fromResolution(m, results[0], true);
  }

  fromResolution(m: ModuleInfo, r: Resolution, moe: boolean): ModulePlan {
    if (r.kind === "ignored") {
      return plain(m, "unquantized", `ignored by ${r.path} ${JSON.stringify(r.entry)}`);
    }
    if (r.kind === "none") {
      if (this.mode === "sglang" && this.config.source === "compressed-tensors") {
        return plain(m, "unsupported", "sglang: unable to find a matching target (it raises ValueError)");
      }
      return plain(m, "unquantized", "no config group targets it");
    }
    const g = r.group;
    const format = g.scheme.format ?? this.config.format;
    const input = {
      weights: g.scheme.weights,
      input: g.scheme.input_activations,
      format,
      sparsity: moe ? null : this.sparsityFor(m.name),
    };
    const sel = moe ? selectMoeScheme(input, this.opts) : selectLinearScheme(input, this.opts);
    return this.fromSelection(
      m,
      sel,
      g,
      g.scheme.weights,
      g.scheme.input_activations,
      this.config.scale_fmt === "ue8m0",
      null,
      g.preset,
    );
  }

  sparsityFor(name: string): SparsityConfig | null {
    const sp = this.config.sparsity_config;
    if (!sp || !sp.targets) return null;
    const targets = sp.targets.filter((t) => !(sp.ignore ?? []).includes(t));
    return findTarget(name, ["Linear"], targets, this.mode) === null ? null : sp;
  }

  fromSelection(
    m: ModuleInfo,
    sel: Selection,
    g: QuantGroup | null,
    weights: QuantArgs | null,
    inputAsWritten: QuantArgs | null,
    ue8m0: boolean,
    via: string | null,
    preset: string | null = null,
  ): ModulePlan {
    const label = preset ?? presetNameOf(weights, inputAsWritten) ?? describeScheme(weights, inputAsWritten);
    const wf = weights
      ? describeQuantArgs(weights) + (ue8m0 && weights.type === "float" ? " ue8m0 scales" : "")
      : BF16;
    const base = {
      name: m.name,
      kind: m.kind,
      label,
      group: g?.name ?? via,
      weights,
      inputActivations: inputAsWritten,
      weightFormat: wf,
      experts: m.experts ?? null,
    };
    if (sel.status === "unquantized") {
      return Object.freeze({ ...plain(m, "unquantized", sel.reason), group: base.group });
    }
    if (sel.status === "unsupported") {
      return Object.freeze({
        ...base,
        status: "unsupported",
        scheme: sel.scheme,
        activationFormat: inputAsWritten ? describeActivation(inputAsWritten) : BF16,
        kernels: [],
        kernelText: "",
        reason: sel.reason,
        minCapability: null,
        fallbackFrom: null,
      });
    }
    const kp = planKernels(sel, { ue8m0 });
    const notes = [
      sel.fallbackFrom
        ? `${sel.fallbackFrom} needs a newer device; sglang falls back to ${sel.scheme}`
        : null,
      sel.note,
      kp.ok ? kp.note : null,
    ]
      .filter((x): x is string => x !== null);
    return Object.freeze({
      ...base,
      status: kp.ok ? "quantized" : "unsupported",
      scheme: sel.scheme,
      activationFormat: sel.input
        ? describeActivation(sel.input) + (ue8m0 && sel.input.strategy === "group" ? " ue8m0" : "")
        : BF16,
      kernels: kp.ok ? kp.kernels : [],
      kernelText: kp.ok ? describeKernels(kp.kernels) : "",
      reason: kp.ok ? (notes.length ? notes.join("; ") : null) : [kp.reason, ...notes].join("; "),
      minCapability: sel.minCapability,
      fallbackFrom: sel.fallbackFrom,
    });
  }
}

function plain(m: ModuleInfo, status: "unquantized" | "unsupported", reason: string): ModulePlan {
  return Object.freeze({
    name: m.name,
    kind: m.kind,
    status,
    scheme: null,
    label: status === "unquantized" ? "unquantized" : "unknown",
    group: null,
    weights: null,
    inputActivations: null,
    weightFormat: BF16,
    activationFormat: BF16,
    kernels: [],
    kernelText: "",
    reason,
    minCapability: null,
    fallbackFrom: null,
    experts: m.experts ?? null,
  });
}
