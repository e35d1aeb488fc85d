/** Fixture loading and representative module lists shared by the quant fixture tests. */
import assert from "node:assert/strict";
import {
  type ModuleInfo,
  type ModulePlan,
  modulesFromModuleNames,
  parseQuantConfig,
  type QuantConfig,
  type QuantPlan,
} from "../../dsl/quant/mod.ts";

export const DIR = new URL("../fixtures/hf-configs/", import.meta.url);
export const fixture = (name: string): Record<string, unknown> =>
  JSON.parse(Deno.readTextFileSync(new URL(name, DIR)));
export const cfg = (name: string): QuantConfig => parseQuantConfig(fixture(name));

export function row(plan: QuantPlan, name: string): ModulePlan {
  const r = plan.modules.find((m) => m.name === name);
  assert.ok(r, `no plan row for ${name}; rows: ${plan.modules.map((m) => m.name).join(", ")}`);
  return r;
}

export function expand(prefix: string, leaves: string[]): string[] {
  return leaves.map((l) => `${prefix}.${l}`);
}

export const LLAMA: ModuleInfo[] = modulesFromModuleNames([
  "model.embed_tokens",
  ...expand("model.layers.0.self_attn", ["q_proj", "k_proj", "v_proj", "o_proj"]),
  ...expand("model.layers.0.mlp", ["gate_proj", "up_proj", "down_proj"]),
  "model.layers.0.input_layernorm",
  "model.norm",
  "lm_head",
]);

export const DEEPSEEK: ModuleInfo[] = modulesFromModuleNames([
  "model.embed_tokens",
  ...expand("model.layers.0.self_attn", [
    "q_a_proj",
    "q_b_proj",
    "kv_a_proj_with_mqa",
    "kv_b_proj",
    "o_proj",
    "q_a_layernorm",
  ]),
  ...expand("model.layers.0.mlp", ["gate_proj", "up_proj", "down_proj"]),
  ...expand("model.layers.1.self_attn", [
    "q_a_proj",
    "q_b_proj",
    "kv_a_proj_with_mqa",
    "kv_b_proj",
    "o_proj",
  ]),
  "model.layers.1.mlp.gate",
  ...[0, 1, 2, 3].flatMap((e) =>
    expand(`model.layers.1.mlp.experts.${e}`, ["gate_proj", "up_proj", "down_proj"])
  ),
  ...expand("model.layers.1.mlp.shared_experts", ["gate_proj", "up_proj", "down_proj"]),
  "model.norm",
  "lm_head",
]);
