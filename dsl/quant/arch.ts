/**
 * Module names derived from the architecture fields of a HF `config.json`, for planning a model when
 * only its config is at hand. Templates: Llama-style dense decoders (Llama, Qwen2/3, Mistral ...),
 * DeepSeek-V2/V3/Kimi-K2 (MLA attention, `first_k_dense_replace`, shared experts), Qwen-MoE
 * (`decoder_sparse_step`, `mlp_only_layers`, Qwen2-MoE shared expert), Mixtral (`block_sparse_moe`,
 * `w1/w2/w3`) and gpt-oss (fused expert tensors, `mlp.router`). Unknown model types get the Llama-style
 * template (with MoE when MoE fields are present) and a note saying the names are a guess; a model
 * directory or an explicit module list gives exact names.
 *
 * @module
 */
import type { ModuleInfo } from "./modules.ts";
import { isObject, type JsonObject } from "./_json.ts";

/** Derived modules and how they were derived. */
export interface DerivedModules {
  readonly modules: ModuleInfo[];
  /** Which template was used, e.g. `deepseek (MLA + MoE)`. */
  readonly template: string;
  readonly notes: string[];
}

function num(o: JsonObject, ...keys: string[]): number | null {
  for (const k of keys) if (typeof o[k] === "number" && Number.isFinite(o[k])) return o[k] as number;
  return null;
}

/**
 * Module names of a model from its `config.json` (the `text_config` of multimodal models, whose names
 * get a `language_model.` prefix), or null when it has no `num_hidden_layers`.
 */
export function modulesFromArchitecture(hf: JsonObject): DerivedModules | null {
  let cfg = hf;
  let prefix = "";
  const notes: string[] = [];
  if (num(hf, "num_hidden_layers") === null && isObject(hf.text_config)) {
    cfg = hf.text_config;
    prefix = "language_model.";
    notes.push("architecture read from text_config; module names prefixed with language_model. (a guess)");
  }
  const layers = num(cfg, "num_hidden_layers", "n_layer", "num_layers");
  if (layers === null) return null;
  const modelType = String(cfg.model_type ?? hf.model_type ?? "");
  const experts = num(cfg, "n_routed_experts", "num_experts", "num_local_experts") ?? 0;
  const mla = num(cfg, "kv_lora_rank") !== null;
  const family = /^(deepseek|kimi)/.test(modelType) || mla
    ? "deepseek"
    : modelType === "gpt_oss"
    ? "gpt_oss"
    : modelType === "mixtral"
    ? "mixtral"
    : "llama";
  const known = [
    "llama",
    "qwen2",
    "qwen3",
    "mistral",
    "qwen2_moe",
    "qwen3_moe",
    "mixtral",
    "gpt_oss",
    "olmoe",
    "deepseek_v2",
    "deepseek_v3",
    "deepseek_v32",
    "kimi_k2",
  ];
  if (!known.includes(modelType)) {
    const layout = family === "deepseek" ? "DeepSeek-V3" : "Llama";
    notes.push(
      `model_type ${JSON.stringify(modelType)} has no template: names follow the ${layout} layout (a guess)`,
    );
  }
  const out: ModuleInfo[] = [];
  const add = (name: string, kind: ModuleInfo["kind"]) => out.push({ name: prefix + name, kind });
  const addMoe = (name: string, projections: string[], fused: boolean) =>
    out.push({
      name: prefix + name,
      kind: "moe",
      experts,
      expertProjections: projections,
      firstExpert: fused ? null : 0,
    });

  add("model.embed_tokens", "embedding");
  const firstDense = num(cfg, "first_k_dense_replace") ?? 0;
  const freq = num(cfg, "moe_layer_freq") ?? 1;
  const sparseStep = num(cfg, "decoder_sparse_step") ?? 1;
  const mlpOnly = Array.isArray(cfg.mlp_only_layers) ? cfg.mlp_only_layers as number[] : [];
  for (let i = 0; i < layers; i++) {
    const L = `model.layers.${i}`;
    add(`${L}.input_layernorm`, "norm");
    add(`${L}.post_attention_layernorm`, "norm");
    add(`${L}.self_attn`, "attention");
    if (family === "deepseek") {
      if (cfg.q_lora_rank === null || cfg.q_lora_rank === undefined) add(`${L}.self_attn.q_proj`, "linear");
      else {
        add(`${L}.self_attn.q_a_proj`, "linear");
        add(`${L}.self_attn.q_a_layernorm`, "norm");
        add(`${L}.self_attn.q_b_proj`, "linear");
      }
      add(`${L}.self_attn.kv_a_proj_with_mqa`, "linear");
      add(`${L}.self_attn.kv_a_layernorm`, "norm");
      add(`${L}.self_attn.kv_b_proj`, "linear");
      add(`${L}.self_attn.o_proj`, "linear");
    } else {
      for (const p of ["q_proj", "k_proj", "v_proj", "o_proj"]) add(`${L}.self_attn.${p}`, "linear");
    }
    let moe = experts > 0;
    if (family === "deepseek") moe = moe && i >= firstDense && i % freq === 0;
    else if (moe) moe = !mlpOnly.includes(i) && (i + 1) % sparseStep === 0;
    if (!moe) {
      const mlp = family === "mixtral"
        ? ["w1", "w2", "w3"].map((w) => `block_sparse_moe.${w}`)
        : ["gate_proj", "up_proj", "down_proj"].map((p) => `mlp.${p}`);
      for (const p of mlp) add(`${L}.${p}`, "linear");
      continue;
    }
    if (family === "gpt_oss") {
      add(`${L}.mlp.router`, "router");
      addMoe(`${L}.mlp.experts`, ["gate_up_proj", "down_proj"], true);
    } else if (family === "mixtral") {
      add(`${L}.block_sparse_moe.gate`, "router");
      addMoe(`${L}.block_sparse_moe.experts`, ["w1", "w2", "w3"], false);
    } else {
      add(`${L}.mlp.gate`, "router");
      addMoe(`${L}.mlp.experts`, ["gate_proj", "up_proj", "down_proj"], false);
      if ((num(cfg, "n_shared_experts") ?? 0) > 0) {
        for (const p of ["gate_proj", "up_proj", "down_proj"]) add(`${L}.mlp.shared_experts.${p}`, "linear");
      }
      if ((num(cfg, "shared_expert_intermediate_size") ?? 0) > 0) {
        for (const p of ["gate_proj", "up_proj", "down_proj"]) add(`${L}.mlp.shared_expert.${p}`, "linear");
        add(`${L}.mlp.shared_expert_gate`, "router");
      }
    }
  }
  add("model.norm", "norm");
  if (cfg.tie_word_embeddings !== true) add("lm_head", "lm_head");
  const template = family === "deepseek"
    ? `deepseek (MLA${experts ? " + MoE" : ""})`
    : `${family}${experts && family === "llama" ? " + MoE" : ""}`;
  return { modules: out, template, notes };
}
