/**
 * Display of a {@linkcode QuantPlan}: repeated layers grouped into rows such as
 * `layers 0–60 self_attn.{q,k,v,o}_proj: FP8_BLOCK (W8A8-FP8, cc ≥ 89) → groupQuant fp8e4m3 g128 rowAlign 4 + blockScaledMatmul 128x128`.
 *
 * @module
 */
import type { ModulePlan, QuantPlan } from "./plan.ts";

/** One display row: modules with the same plan, over a set of layers. */
export interface PlanRow {
  /** `layers 0–60`, `layer 3`, or "" for modules outside the layer stack. */
  readonly where: string;
  /** `self_attn.{q,k,v,o}_proj`, `lm_head`, ... */
  readonly modules: string;
  /** How many modules the row stands for. */
  readonly count: number;
  /** The plan of the first module of the row (all share status, label, scheme and kernels). */
  readonly plan: ModulePlan;
  /** The text after the colon. */
  readonly value: string;
}

const LAYER_RE = /^((?:.*\.)?(?:layers|layer|h|blocks))\.(\d+)\.(.+)$/;

/** Drop what differs between layers in a reason: the ignore entry's index and layer numbers. */
function normalizedReason(r: string | null): string | null {
  return r === null
    ? null
    : r.replace(/^ignored by (\S+?)\[\d+\] /, "ignored by $1 ").replace(/\.\d+\./g, ".N.");
}

function signature(p: ModulePlan): string {
  return JSON.stringify([
    p.status,
    p.label,
    p.scheme,
    p.kernelText,
    normalizedReason(p.reason),
    p.experts,
    p.minCapability,
  ]);
}

/** Inclusive ranges of sorted integers: `0–60`, `0, 2–5`. */
export function formatRanges(nums: readonly number[]): string {
  const s = [...new Set(nums)].sort((a, b) => a - b);
  const out: string[] = [];
  for (let i = 0; i < s.length;) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j] + 1) j++;
    out.push(i === j ? `${s[i]}` : `${s[i]}–${s[j]}`);
    i = j + 1;
  }
  return out.join(", ");
}

/** `{q,k,v,o}_proj` from `q_proj, k_proj, v_proj, o_proj` (a shared `_suffix` is factored out). */
export function braceLeaves(leaves: readonly string[]): string {
  if (leaves.length === 1) return leaves[0];
  let suffix = leaves[0];
  for (const l of leaves) while (!l.endsWith(suffix)) suffix = suffix.slice(1);
  const us = suffix.indexOf("_");
  suffix = us >= 0 ? suffix.slice(us) : "";
  if (leaves.some((l) => l.length <= suffix.length)) suffix = "";
  return `{${leaves.map((l) => l.slice(0, l.length - suffix.length)).join(",")}}${suffix}`;
}

function valueOf(p: ModulePlan): string {
  const reason = normalizedReason(p.reason);
  if (p.status === "unquantized") return `unquantized (${reason})`;
  const cc = p.minCapability !== null ? `, cc ≥ ${p.minCapability}` : "";
  const scheme = p.scheme ? ` (${p.scheme}${cc})` : "";
  if (p.status === "unsupported") return `${p.label}${scheme} → unsupported: ${reason}`;
  return `${p.label}${scheme} → ${p.kernelText}${reason ? ` [${reason}]` : ""}`;
}

const LEAF_ORDER = [
  "q_proj",
  "k_proj",
  "v_proj",
  "qkv_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "gate_up_proj",
  "down_proj",
  "w1",
  "w3",
  "w2",
];

function leafRank(leaf: string): number {
  const i = LEAF_ORDER.indexOf(leaf);
  return i < 0 ? LEAF_ORDER.length : i;
}

/**
 * Group a plan's modules into display rows: embeddings first, then the layer stack, then the rest
 * (first-appearance order within each); known projections in their usual order (q, k, v, o; gate, up,
 * down).
 */
export function groupPlan(plan: QuantPlan): PlanRow[] {
  // 1. same (stack, rest, plan) across layers
  const byKey = new Map<
    string,
    { stack: string | null; rest: string; layers: number[]; plan: ModulePlan; count: number }
  >();
  for (const p of plan.modules) {
    const m = LAYER_RE.exec(p.name);
    const stack = m ? m[1] : null;
    const rest = m ? m[3] : p.name;
    const key = JSON.stringify([stack, rest, signature(p)]);
    const e = byKey.get(key);
    if (e) {
      if (m) e.layers.push(Number(m[2]));
      e.count++;
    } else {
      byKey.set(key, { stack, rest, layers: m ? [Number(m[2])] : [], plan: p, count: 1 });
    }
  }
  // 2. siblings with the same layers and plan merge into braces
  const rows = new Map<
    string,
    { where: string; parent: string; leaves: string[]; plan: ModulePlan; count: number }
  >();
  for (const e of byKey.values()) {
    const ranges = formatRanges(e.layers);
    const where = e.stack === null
      ? ""
      : `${/^(model\.)?layers$/.test(e.stack) ? "layers" : e.stack} ${ranges}`;
    const dot = e.rest.lastIndexOf(".");
    const parent = e.rest.slice(0, dot + 1);
    const leaf = e.rest.slice(dot + 1);
    const key = JSON.stringify([where, parent, signature(e.plan)]);
    const r = rows.get(key);
    if (r) {
      r.leaves.push(leaf);
      r.count += e.count;
    } else {
      rows.set(key, { where, parent, leaves: [leaf], plan: e.plan, count: e.count });
    }
  }
  const rank = (r: { where: string; plan: ModulePlan }) => r.plan.kind === "embedding" ? 0 : r.where ? 1 : 2;
  return [...rows.values()].sort((a, b) => rank(a) - rank(b)).map((r) => {
    if (r.leaves.every((l) => leafRank(l) < LEAF_ORDER.length)) {
      r.leaves.sort((a, b) => leafRank(a) - leafRank(b));
    }
    const experts = r.plan.kind === "moe" && r.plan.experts ? ` (${r.plan.experts} experts)` : "";
    return Object.freeze({
      where: r.where.replace(/^layers (\d+)$/, "layer $1"),
      modules: r.parent + braceLeaves(r.leaves) + experts,
      count: r.count,
      plan: r.plan,
      value: valueOf(r.plan),
    });
  });
}

/** The plan as a readable table (one line per row, then KV cache, warnings and notes). */
export function formatPlan(plan: QuantPlan): string {
  const rows = groupPlan(plan);
  const lines: string[] = [];
  const counts = { quantized: 0, unquantized: 0, unsupported: 0 };
  for (const m of plan.modules) counts[m.status]++;
  lines.push(
    `quantization: ${plan.quantMethod} (format ${plan.format}), matching: ${plan.matching}` +
      (plan.capability !== null ? `, device cc ${plan.capability}` : "") +
      `, config needs cc ≥ ${plan.configMinCapability}`,
  );
  lines.push(
    `${plan.modules.length} modules: ${counts.quantized} quantized with kiln kernels, ${counts.unsupported} unsupported, ${counts.unquantized} unquantized`,
  );
  lines.push("");
  const heads = rows.map((r) => `${r.where ? r.where + " " : ""}${r.modules}:`);
  const width = Math.min(72, Math.max(0, ...heads.map((h) => h.length)));
  rows.forEach((r, i) => lines.push(`  ${heads[i].padEnd(width)} ${r.value}`));
  if (plan.kvCache) {
    lines.push("");
    lines.push(
      `  kv cache (${plan.kvCache.modules.length} attention modules): ${plan.kvCache.format} → unsupported: ${plan.kvCache.reason}`,
    );
  }
  if (plan.warnings.length) {
    lines.push("");
    for (const w of plan.warnings) lines.push(`warning: ${w}`);
  }
  if (plan.notes.length) {
    lines.push("");
    for (const n of plan.notes) lines.push(`note: ${n}`);
  }
  return lines.join("\n");
}
