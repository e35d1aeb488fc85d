/**
 * Module names and kinds. A plan is made per module: Linear layers, fused MoE layers (all experts of one
 * layer together, as sglang's FusedMoE), the output head, and the rest (embeddings, norms, router gates),
 * which are never quantized. Names come from checkpoint tensor names (`model.safetensors.index.json`,
 * safetensors headers), from a list of module names, or from the architecture fields of `config.json`
 * (see `arch.ts`).
 *
 * @example
 * ```ts
 * import { modulesFromTensorNames } from "./modules.ts";
 * const mods = modulesFromTensorNames([
 *   "model.layers.0.self_attn.q_proj.weight",
 *   "model.layers.0.mlp.experts.0.gate_proj.weight",
 *   "model.layers.0.mlp.experts.1.gate_proj.weight",
 * ]);
 * // [{ name: "model.layers.0.mlp.experts", kind: "moe", experts: 2, ... }, { name: "...q_proj", kind: "linear" }, ...]
 * ```
 * @module
 */

/** What a module is, as far as quantization goes. */
export type ModuleKind =
  | "linear"
  | "moe"
  | "lm_head"
  | "embedding"
  | "norm"
  | "router"
  | "attention"
  | "other";

/** One module of a model. */
export interface ModuleInfo {
  readonly name: string;
  readonly kind: ModuleKind;
  /** MoE only: number of experts (null when unknown). */
  readonly experts?: number | null;
  /** MoE only: the per-expert projection names (`gate_proj`, `up_proj`, `down_proj` or `w1`, `w2`, `w3`). */
  readonly expertProjections?: readonly string[];
  /** MoE only: index of the first expert seen (sglang looks at expert 0); null when experts are fused. */
  readonly firstExpert?: number | null;
  /** MoE only: the expert indices seen in a checkpoint (absent: 0 … experts-1). */
  readonly expertIds?: readonly number[];
}

const EMBEDDINGS = new Set([
  "embed_tokens",
  "embed",
  "wte",
  "wpe",
  "word_embeddings",
  "tok_embeddings",
  "embedding",
  "embeddings",
]);
const ROUTERS = new Set(["gate", "router", "gating", "shared_expert_gate"]);
const ATTENTION = new Set(["self_attn", "attention", "attn", "self_attention"]);
/** Projections whose parent is an attention module (for the KV-cache scheme). */
const KV_PROJECTIONS = new Set([
  "k_proj",
  "v_proj",
  "qkv_proj",
  "kv_proj",
  "kv_a_proj_with_mqa",
  "kv_b_proj",
  "query_key_value",
  "c_attn",
  "wkv",
  "wkv_a",
  "wkv_b",
]);
/** Parameter names that make a module a layer with weights (vs. one holding only biases or scales). */
const WEIGHT_PARAMS = new Set(["weight", "weight_packed", "qweight", "weight_scale_inv"]);
const DEFAULT_EXPERT_PROJECTIONS = ["gate_proj", "up_proj", "down_proj"];
const EXPERT_RE = /^(.*?(?:^|\.)experts)\.(\d+)\.([^.]+)$/;
/** A fused expert tensor/module of all experts at once (gpt-oss `experts.gate_up_proj`). */
const FUSED_EXPERT_RE = /^(.*(?:^|\.)experts)\.([A-Za-z][^.]*?)(?:_blocks|_scales|_bias)?$/;

/** The kind of a (non-expert) module from its name alone. */
export function classifyModuleName(name: string): ModuleKind {
  if (EXPERT_RE.test(name) || /(^|\.)experts$/.test(name)) return "moe";
  const leaf = name.slice(name.lastIndexOf(".") + 1);
  if (/norm/i.test(leaf) || /^ln(_\w+)?$/.test(leaf)) return "norm";
  if (EMBEDDINGS.has(leaf)) return "embedding";
  if (leaf === "lm_head" || leaf === "head" || name === "output") return "lm_head";
  if (ROUTERS.has(leaf)) return "router";
  if (ATTENTION.has(leaf)) return "attention";
  if (/^\d+$/.test(leaf) || /rotary|rope/i.test(leaf) || leaf === "") return "other";
  return "linear";
}

interface MoeAcc {
  experts: Set<number>;
  projections: string[];
  fused: boolean;
}

class Collector {
  readonly order: string[] = [];
  readonly kinds = new Map<string, ModuleKind>();
  readonly moe = new Map<string, MoeAcc>();

  add(name: string, kind: ModuleKind): void {
    if (!this.kinds.has(name)) this.order.push(name);
    this.kinds.set(name, kind);
  }

  addExpert(moeName: string, index: number | null, projection: string | null): void {
    let acc = this.moe.get(moeName);
    if (!acc) {
      acc = { experts: new Set(), projections: [], fused: false };
      this.moe.set(moeName, acc);
      this.add(moeName, "moe");
    }
    if (index === null) acc.fused = projection !== null;
    else acc.experts.add(index);
    if (projection !== null && !acc.projections.includes(projection)) acc.projections.push(projection);
  }

  build(): ModuleInfo[] {
    // Attention modules: the parents of k/v projections.
    for (const name of [...this.order]) {
      const leaf = name.slice(name.lastIndexOf(".") + 1);
      if (this.kinds.get(name) === "linear" && KV_PROJECTIONS.has(leaf) && name.includes(".")) {
        const parent = name.slice(0, name.lastIndexOf("."));
        if (!this.kinds.has(parent) && !parent.endsWith(".mlp")) this.add(parent, "attention");
      }
    }
    const out: ModuleInfo[] = this.order.map((name) => {
      const kind = this.kinds.get(name)!;
      if (kind !== "moe") return Object.freeze({ name, kind });
      const acc = this.moe.get(name)!;
      const sorted = [...acc.experts].sort((a, b) => a - b);
      return Object.freeze({
        name,
        kind,
        experts: sorted.length > 0 ? sorted.length : null,
        expertProjections: Object.freeze(
          acc.projections.length > 0 ? acc.projections : DEFAULT_EXPERT_PROJECTIONS,
        ),
        firstExpert: acc.fused ? null : (sorted[0] ?? 0),
        expertIds: Object.freeze(sorted),
      });
    });
    return out.sort((a, b) => naturalCompare(a.name, b.name));
  }
}

/** Compare names with embedded numbers numerically (`layers.2` before `layers.10`). */
export function naturalCompare(a: string, b: string): number {
  const ra = a.split(/(\d+)/), rb = b.split(/(\d+)/);
  for (let i = 0; i < Math.min(ra.length, rb.length); i++) {
    if (ra[i] === rb[i]) continue;
    const na = Number(ra[i]), nb = Number(rb[i]);
    if (i % 2 === 1 && !Number.isNaN(na) && !Number.isNaN(nb)) return na - nb;
    return ra[i] < rb[i] ? -1 : 1;
  }
  return ra.length - rb.length;
}

/**
 * Modules from checkpoint tensor names (`<module>.<param>`). Per-expert tensors
 * (`…experts.<i>.<proj>.weight`) and fused expert tensors (`…experts.gate_up_proj_blocks`) are gathered
 * into one `moe` module per layer. A module whose only tensors are biases or scales becomes `other`
 * (or `attention` for `self_attn.k_scale`-style tensors).
 */
export function modulesFromTensorNames(tensorNames: Iterable<string>): ModuleInfo[] {
  const c = new Collector();
  const params = new Map<string, Set<string>>();
  for (const t of tensorNames) {
    const dot = t.lastIndexOf(".");
    if (dot < 0) continue;
    const mod = t.slice(0, dot);
    const param = t.slice(dot + 1);
    const ex = EXPERT_RE.exec(mod);
    if (ex) {
      c.addExpert(ex[1], Number(ex[2]), ex[3]);
      continue;
    }
    if (/(^|\.)experts$/.test(mod)) {
      const proj = param.replace(/_(blocks|scales|bias|scale|weight|weight_scale|input_scale)$/, "");
      c.addExpert(mod, null, proj === param && !/proj|w\d/.test(param) ? null : proj);
      continue;
    }
    let set = params.get(mod);
    if (!set) params.set(mod, set = new Set());
    set.add(param);
    let kind = classifyModuleName(mod);
    if (kind === "linear" && ![...set].some((p) => WEIGHT_PARAMS.has(p))) kind = "other";
    c.add(mod, kind);
  }
  return c.build();
}

/**
 * Modules from module names (a `--modules` list). Expert names (`…experts.3.up_proj`) are gathered into
 * their MoE module; a bare `…experts` name becomes an MoE with the default `gate/up/down_proj`.
 */
export function modulesFromModuleNames(moduleNames: Iterable<string>): ModuleInfo[] {
  const c = new Collector();
  for (const name of moduleNames) {
    const ex = EXPERT_RE.exec(name);
    if (ex) c.addExpert(ex[1], Number(ex[2]), ex[3]);
    else if (/(^|\.)experts$/.test(name)) c.addExpert(name, null, null);
    else {
      const fused = FUSED_EXPERT_RE.exec(name);
      if (fused) c.addExpert(fused[1], null, fused[2]);
      else c.add(name, classifyModuleName(name));
    }
  }
  return c.build();
}

/**
 * The names sglang looks up for an MoE module: the projections of its first expert
 * (`<moe>.0.gate_proj`, ...), or `<moe>.<proj>` when the checkpoint stores all experts fused.
 */
export function expertProjectionNames(m: ModuleInfo): string[] {
  const projs = m.expertProjections ?? DEFAULT_EXPERT_PROJECTIONS;
  if (m.firstExpert === null) return projs.map((p) => `${m.name}.${p}`);
  return projs.map((p) => `${m.name}.${m.firstExpert ?? 0}.${p}`);
}
