/**
 * Which config group (if any) applies to a module name: ignore lists, targets with their priority, group
 * level ignores, and fused modules resolved shard by shard (all shards must agree). See match.ts for the
 * two matching modes.
 *
 * @module
 */
import type { QuantConfig, QuantGroup } from "./config.ts";
import { PlanError } from "./errors.ts";
import {
  DEFAULT_PACKED_MODULES,
  findTarget,
  FP8_FALLBACK_PACKED_MODULES,
  fusedShards,
  ignoreEntryFor,
  type MatchMode,
  modulePathEntryFor,
} from "./match.ts";
import { joinPath } from "./_json.ts";

/** How a module name resolved. */
export type Resolution =
  | { readonly kind: "ignored"; readonly entry: string; readonly path: string }
  | { readonly kind: "group"; readonly group: QuantGroup; readonly target: string }
  | { readonly kind: "none" };

/** Resolves module names against a config (targets map built once). */
export class Resolver {
  /** Target string → the group that owns it (later groups win, insertion order kept). */
  readonly targets: Map<string, QuantGroup> = new Map();
  readonly mapping: Readonly<Record<string, readonly string[]>>;

  constructor(readonly config: QuantConfig, readonly mode: MatchMode) {
    for (const g of config.config_groups) for (const t of g.scheme.targets) this.targets.set(t, g);
    if (mode === "sglang" && this.targets.has("Linear") && !this.targets.has("FusedMoE")) {
      // sglang `_add_fused_moe_to_target_scheme_map`
      const lin = this.targets.get("Linear")!;
      this.targets.set("FusedMoE", lin);
      this.targets.set("DeepEPMoE", lin);
    }
    this.mapping = config.packed_modules_mapping ??
      (config.source === "compressed-tensors" ? DEFAULT_PACKED_MODULES : FP8_FALLBACK_PACKED_MODULES);
  }

  /** The ignore entry (and its JSON path) that matches a single, unfused name. */
  ignoreFor(name: string, classes: readonly string[]): Resolution | null {
    const list = this.config.ignore;
    const entry = this.config.ignoreSemantics === "module-path"
      ? modulePathEntryFor(name, list)
      : ignoreEntryFor(name, classes, list, this.mode);
    if (entry === null) return null;
    return {
      kind: "ignored",
      entry,
      path: joinPath(this.config.ignorePath, list.indexOf(entry)),
    };
  }

  /** Resolve one unfused name: ignore, then the target priority of the mode. */
  resolveSingle(name: string, classes: readonly string[]): Resolution {
    const ign = this.ignoreFor(name, classes);
    if (ign) return ign;
    const candidates = [...this.targets.keys()].filter((t) => {
      const g = this.targets.get(t)!;
      return g.ignore.length === 0 || modulePathEntryFor(name, g.ignore) === null;
    });
    const t = findTarget(name, classes, candidates, this.mode);
    return t === null ? { kind: "none" } : { kind: "group", group: this.targets.get(t)!, target: t };
  }

  /**
   * Resolve a module name. A fused name (`…qkv_proj`) is resolved through its shards, which must all
   * resolve alike (else {@linkcode PlanError}); an exact entry for the fused name itself wins.
   */
  resolve(name: string, classes: readonly string[]): Resolution {
    const shards = fusedShards(name, this.mapping);
    if (!shards || this.config.ignore.includes(name) || this.targets.has(name)) {
      return this.resolveSingle(name, classes);
    }
    const results = shards.map((s) => this.resolveSingle(s, classes));
    assertAgree(name, shards, results, this.config.path);
    return results[0];
  }
}

/** A short description of a resolution (for messages). */
export function describeResolution(r: Resolution): string {
  if (r.kind === "ignored") return `ignored by ${JSON.stringify(r.entry)}`;
  if (r.kind === "group") return `group ${r.group.name} (target ${JSON.stringify(r.target)})`;
  return "no target";
}

function key(r: Resolution): string {
  return r.kind === "group" ? `group:${r.group.name}` : r.kind;
}

/** Throws {@linkcode PlanError} unless every shard resolution agrees. */
export function assertAgree(
  module: string,
  names: readonly string[],
  results: readonly Resolution[],
  configPath: string,
): void {
  if (results.every((r) => key(r) === key(results[0]))) return;
  const culprit = results.find((r) => r.kind === "ignored") as { path: string } | undefined;
  const path = culprit ? culprit.path : joinPath(configPath, "config_groups");
  const detail = names.map((n, i) => `${n.slice(n.lastIndexOf(".") + 1)}: ${describeResolution(results[i])}`)
    .join("; ");
  throw new PlanError(
    path,
    module,
    `its parts resolve to different schemes (${detail}); sglang fuses them and requires all to use the same scheme`,
  );
}
