/**
 * Module names and kinds: from checkpoint tensor names, from module names, and derived from config.json
 * architecture fields.
 */
import assert from "node:assert/strict";
import {
  classifyModuleName,
  expertProjectionNames,
  type ModuleInfo,
  modulesFromArchitecture,
  modulesFromModuleNames,
  modulesFromTensorNames,
  naturalCompare,
} from "../../dsl/quant/mod.ts";

const byName = (ms: ModuleInfo[]) => new Map(ms.map((m) => [m.name, m]));

Deno.test("classifyModuleName: linear, norm, embedding, head, router, attention, moe", () => {
  const cases: Record<string, string> = {
    "model.layers.0.self_attn.q_proj": "linear",
    "model.layers.0.mlp.down_proj": "linear",
    "model.layers.0.input_layernorm": "norm",
    "model.layers.0.self_attn.kv_a_layernorm": "norm",
    "model.norm": "norm",
    "layers.0.attn_norm": "norm",
    "model.embed_tokens": "embedding",
    "embed": "embedding",
    "lm_head": "lm_head",
    "head": "lm_head",
    "model.layers.3.mlp.gate": "router",
    "model.layers.3.mlp.router": "router",
    "model.layers.3.mlp.shared_expert_gate": "router",
    "model.layers.3.self_attn": "attention",
    "model.layers.3.mlp.experts": "moe",
    "model.layers.3.mlp.experts.7.up_proj": "moe",
    "model.layers.3.mlp.shared_experts.up_proj": "linear",
    "model.rotary_emb": "other",
  };
  for (const [name, kind] of Object.entries(cases)) assert.equal(classifyModuleName(name), kind, name);
});

Deno.test("modulesFromTensorNames: experts gathered per layer, scales folded, attention derived", () => {
  const ms = modulesFromTensorNames([
    "model.layers.10.self_attn.q_proj.weight",
    "model.layers.10.self_attn.q_proj.weight_scale_inv",
    "model.layers.10.self_attn.k_proj.weight",
    "model.layers.10.self_attn.k_scale",
    "model.layers.2.mlp.experts.3.down_proj.weight_packed",
    "model.layers.2.mlp.experts.3.down_proj.weight_scale",
    "model.layers.2.mlp.experts.1.gate_proj.weight_packed",
    "model.layers.2.mlp.experts.1.up_proj.weight_packed",
    "model.layers.2.mlp.experts.1.down_proj.weight_packed",
    "model.layers.2.mlp.gate.weight",
    "model.layers.2.mlp.gate.e_score_correction_bias",
    "model.layers.2.self_attn.o_proj.bias", // a module with only a bias is not a Linear
  ]);
  const m = byName(ms);
  const moe = m.get("model.layers.2.mlp.experts")!;
  assert.equal(moe.kind, "moe");
  assert.equal(moe.experts, 2);
  assert.deepEqual(moe.expertIds, [1, 3]);
  assert.equal(moe.firstExpert, 1);
  assert.deepEqual([...moe.expertProjections!].sort(), ["down_proj", "gate_proj", "up_proj"]);
  assert.deepEqual(expertProjectionNames(moe), [
    "model.layers.2.mlp.experts.1.down_proj",
    "model.layers.2.mlp.experts.1.gate_proj",
    "model.layers.2.mlp.experts.1.up_proj",
  ]);
  assert.equal(m.get("model.layers.10.self_attn")?.kind, "attention");
  assert.equal(m.get("model.layers.10.self_attn.q_proj")?.kind, "linear");
  assert.equal(m.get("model.layers.2.mlp.gate")?.kind, "router");
  assert.equal(m.get("model.layers.2.self_attn.o_proj")?.kind, "other");
  // numeric order of layers
  assert.deepEqual(ms.map((x) => x.name).filter((n) => n.endsWith("self_attn")), [
    "model.layers.10.self_attn",
  ]);
  assert.ok(
    ms.findIndex((x) => x.name.includes("layers.2.")) < ms.findIndex((x) => x.name.includes("layers.10.")),
  );
});

Deno.test("modulesFromTensorNames: gpt-oss fused expert tensors", () => {
  const ms = modulesFromTensorNames([
    "model.layers.0.mlp.experts.gate_up_proj_blocks",
    "model.layers.0.mlp.experts.gate_up_proj_scales",
    "model.layers.0.mlp.experts.gate_up_proj_bias",
    "model.layers.0.mlp.experts.down_proj_blocks",
  ]);
  assert.equal(ms.length, 1);
  assert.equal(ms[0].firstExpert, null);
  assert.deepEqual(ms[0].expertProjections, ["gate_up_proj", "down_proj"]);
  assert.deepEqual(expertProjectionNames(ms[0]), [
    "model.layers.0.mlp.experts.gate_up_proj",
    "model.layers.0.mlp.experts.down_proj",
  ]);
});

Deno.test("modulesFromModuleNames: bare experts default to gate/up/down of expert 0", () => {
  const [m] = modulesFromModuleNames(["model.layers.1.mlp.experts"]);
  assert.equal(m.kind, "moe");
  assert.equal(m.experts, null);
  assert.deepEqual(expertProjectionNames(m), [
    "model.layers.1.mlp.experts.0.gate_proj",
    "model.layers.1.mlp.experts.0.up_proj",
    "model.layers.1.mlp.experts.0.down_proj",
  ]);
});

Deno.test("naturalCompare orders embedded numbers numerically", () => {
  assert.deepEqual(["l.10.a", "l.2.a", "l.1.b"].sort(naturalCompare), ["l.1.b", "l.2.a", "l.10.a"]);
});

Deno.test("architecture: DeepSeek-V3 (MLA, first_k_dense_replace, shared experts)", () => {
  const d = modulesFromArchitecture({
    model_type: "deepseek_v3",
    num_hidden_layers: 4,
    first_k_dense_replace: 2,
    n_routed_experts: 256,
    n_shared_experts: 1,
    q_lora_rank: 1536,
    kv_lora_rank: 512,
  })!;
  assert.match(d.template, /deepseek/);
  const m = byName(d.modules);
  assert.equal(m.get("model.layers.1.mlp.down_proj")?.kind, "linear");
  assert.ok(!m.has("model.layers.1.mlp.experts"));
  assert.equal(m.get("model.layers.2.mlp.experts")?.experts, 256);
  assert.equal(m.get("model.layers.3.mlp.gate")?.kind, "router");
  assert.equal(m.get("model.layers.3.mlp.shared_experts.up_proj")?.kind, "linear");
  assert.equal(m.get("model.layers.0.self_attn.q_a_proj")?.kind, "linear");
  assert.equal(m.get("model.layers.0.self_attn.kv_a_proj_with_mqa")?.kind, "linear");
  assert.ok(!m.has("model.layers.0.self_attn.q_proj"));
  assert.equal(m.get("lm_head")?.kind, "lm_head");
  // q_lora_rank null → plain q_proj (DeepSeek-V2-Lite)
  const lite = byName(
    modulesFromArchitecture({
      model_type: "deepseek_v2",
      num_hidden_layers: 1,
      q_lora_rank: null,
      kv_lora_rank: 512,
    })!.modules,
  );
  assert.ok(lite.has("model.layers.0.self_attn.q_proj"));
});

Deno.test("architecture: Qwen MoE sparse steps, mlp_only_layers, shared expert; tied embeddings", () => {
  const d = byName(
    modulesFromArchitecture({
      model_type: "qwen2_moe",
      num_hidden_layers: 4,
      num_experts: 60,
      decoder_sparse_step: 2,
      mlp_only_layers: [3],
      shared_expert_intermediate_size: 5632,
      tie_word_embeddings: true,
    })!.modules,
  );
  assert.ok(d.has("model.layers.0.mlp.gate_proj")); // (0+1) % 2 != 0 → dense
  assert.ok(d.has("model.layers.1.mlp.experts"));
  assert.ok(d.has("model.layers.3.mlp.down_proj")); // mlp_only_layers
  assert.equal(d.get("model.layers.1.mlp.shared_expert_gate")?.kind, "router");
  assert.ok(d.has("model.layers.1.mlp.shared_expert.up_proj"));
  assert.ok(!d.has("lm_head"));
});

Deno.test("architecture: gpt-oss, Mixtral, text_config prefix, unknown types, no layers", () => {
  const g = byName(
    modulesFromArchitecture({ model_type: "gpt_oss", num_hidden_layers: 2, num_local_experts: 128 })!.modules,
  );
  assert.equal(g.get("model.layers.1.mlp.experts")?.firstExpert, null);
  assert.equal(g.get("model.layers.1.mlp.router")?.kind, "router");
  const mx = byName(
    modulesFromArchitecture({ model_type: "mixtral", num_hidden_layers: 1, num_local_experts: 8 })!.modules,
  );
  assert.deepEqual(mx.get("model.layers.0.block_sparse_moe.experts")?.expertProjections, ["w1", "w2", "w3"]);
  const k = modulesFromArchitecture({
    text_config: { model_type: "kimi_k2", num_hidden_layers: 1, kv_lora_rank: 512 },
  })!;
  assert.ok(k.modules.every((m) => m.name.startsWith("language_model.")));
  assert.match(k.notes[0], /text_config/);
  const u = modulesFromArchitecture({ model_type: "brand_new", num_hidden_layers: 1 })!;
  assert.match(u.notes[0], /no template/);
  assert.equal(modulesFromArchitecture({ model_type: "llama" }), null);
});
