/**
 * Whole-model checks of a plan: fused shards that disagree, config targets that match no module, and the
 * KV-cache part of the plan.
 *
 * @module
 */
import type { QuantConfig } from "./config.ts";
import { describeActivation } from "./describe.ts";
import { PlanError } from "./errors.ts";
import { matchClass, type MatchMode, matchName, nameAliases } from "./match.ts";
import type { ModuleInfo } from "./modules.ts";
import type { KvCachePlan, ModulePlan } from "./plan.ts";
import type { Resolver } from "./resolve.ts";
import { joinPath } from "./_json.ts";

/** sglang fuses q/k/v and gate/up: shards present as separate modules must share a plan. */
export function checkSiblingShards(
  plans: readonly ModulePlan[],
  resolver: Resolver,
  configPath: string,
): void {
  const byName = new Map(plans.map((p) => [p.name, p]));
  for (const p of plans) {
    if (p.kind !== "linear") continue;
    const dot = p.name.lastIndexOf(".");
    const parent = p.name.slice(0, dot + 1);
    const leaf = p.name.slice(dot + 1);
    for (const [fused, shards] of Object.entries(resolver.mapping)) {
      if (shards[0] !== leaf) continue;
      const group = shards.map((s) => byName.get(parent + s));
      if (group.some((x) => !x)) continue;
      const sig = (x: ModulePlan) => `${x.status}|${x.scheme}|${x.group}|${x.label}`;
      if (group.every((x) => sig(x!) === sig(group[0]!))) continue;
      const detail = group.map((x) =>
        `${x!.name.slice(dot + 1)}: ${x!.status} ${x!.label}${x!.reason ? ` (${x!.reason})` : ""}`
      ).join("; ");
      const ignored = group.find((x) => x!.reason?.startsWith("ignored by "));
      const path = ignored
        ? ignored.reason!.slice("ignored by ".length).split(" ")[0]
        : joinPath(configPath, "config_groups");
      throw new PlanError(
        path,
        parent + fused,
        `its shards resolve to different schemes (${detail}); sglang fuses them and requires all to use the same scheme`,
      );
    }
  }
}

/** Targets of user-written groups must match some module (name, regex or known class). */
export function checkTargets(
  config: QuantConfig,
  modules: readonly ModuleInfo[],
  mode: MatchMode,
  strict: boolean,
): string[] {
  const warnings: string[] = [];
  if (modules.length === 0) return warnings;
  const classes = new Set<string>();
  const names: string[] = [];
  for (const m of modules) {
    names.push(...nameAliases(m.name));
    if (m.kind === "linear" || m.kind === "lm_head") classes.add("Linear");
    if (m.kind === "moe") ["Linear", "FusedMoE", "DeepEPMoE"].forEach((c) => classes.add(c));
    if (m.kind === "embedding") classes.add("Embedding");
    if (m.kind === "attention") classes.add("Attention");
  }
  const expertNames = function* () {
    for (const m of modules) {
      if (m.kind !== "moe") continue;
      const ids = m.expertIds?.length ? m.expertIds : Array.from({ length: m.experts ?? 1 }, (_, i) => i);
      for (const p of m.expertProjections ?? []) {
        if (m.firstExpert === null) yield `${m.name}.${p}`;
        else for (const e of ids) yield `${m.name}.${e}.${p}`;
      }
    }
  };
  const cls = [...classes];
  for (const g of config.config_groups) {
    if (!g.checkTargets) continue;
    g.scheme.targets.forEach((t, i) => {
      if (matchClass(cls, t, mode) || names.some((n) => matchName(n, t))) return;
      for (const n of expertNames()) if (matchName(n, t)) return;
      const msg = `${JSON.stringify(t)} matches no module of the model (names, re: regexes and the classes ${
        cls.join(", ")
      })`;
      if (strict) throw new PlanError(joinPath(joinPath(g.path, "targets"), i), null, msg);
      warnings.push(`${joinPath(joinPath(g.path, "targets"), i)}: ${msg}`);
    });
  }
  return warnings;
}

export function kvPlan(config: QuantConfig, modules: readonly ModuleInfo[]): KvCachePlan | null {
  const kv = config.kv_cache_scheme;
  if (!kv) return null;
  const sglangReads = kv.type === "float" && kv.num_bits === 8 && kv.strategy === "tensor" && !kv.dynamic &&
    kv.symmetric;
  const reason = sglangReads
    ? "no kiln kernel for a per-tensor fp8 KV cache yet (kiln's KV kernels are the TurboQuant rotateQuantizeKV presets)"
    : "sglang ignores this kv_cache_scheme (it reads static symmetric per-tensor fp8 scales only) and kiln has no kernel for it";
  return Object.freeze({
    scheme: kv,
    format: describeActivation(kv),
    modules: Object.freeze(modules.filter((m) => m.kind === "attention").map((m) => m.name)),
    status: "unsupported",
    reason,
  });
}
