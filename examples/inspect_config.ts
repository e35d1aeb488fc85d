/**
 * Plan every layer of a real HF quantization config: which scheme SGLang's rules pick and which kiln
 * kernels would run it. Pure TypeScript: runs anywhere.
 *
 *   deno run --allow-read examples/inspect_config.ts
 *
 * @module
 */
import { modulesFromArchitecture } from "../dsl/quant/arch.ts";
import { parseHfQuantConfig } from "../dsl/quant/config.ts";
import { planModel } from "../dsl/quant/plan.ts";
import { formatPlan } from "../dsl/quant/plan_format.ts";

/** DeepSeek-V3's architecture fields around the native fp8 block config it ships with. */
const DEEPSEEK_V3 = {
  architectures: ["DeepseekV3ForCausalLM"],
  model_type: "deepseek_v3",
  num_hidden_layers: 61,
  first_k_dense_replace: 3,
  n_routed_experts: 256,
  n_shared_experts: 1,
  q_lora_rank: 1536,
  kv_lora_rank: 512,
  hidden_size: 7168,
  quantization_config: {
    activation_scheme: "dynamic",
    fmt: "e4m3",
    quant_method: "fp8",
    weight_block_size: [128, 128],
  },
};

/** A Llama-shaped model quantized by compressed-tensors with the FP8_DYNAMIC preset, lm_head ignored. */
const LLAMA_FP8_DYNAMIC = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  num_hidden_layers: 32,
  quantization_config: {
    quant_method: "compressed-tensors",
    format: "float-quantized",
    ignore: ["lm_head"],
    config_groups: {
      group_0: {
        targets: ["Linear"],
        weights: { num_bits: 8, type: "float", strategy: "channel", symmetric: true, dynamic: false },
        input_activations: { num_bits: 8, type: "float", strategy: "token", symmetric: true, dynamic: true },
      },
    },
  },
};

/** Print the plans. */
export function main(): void {
  for (
    const [name, cfg] of [["DeepSeek-V3 (native fp8, 128×128 blocks)", DEEPSEEK_V3], [
      "Llama-3-8B-style FP8_DYNAMIC (compressed-tensors)",
      LLAMA_FP8_DYNAMIC,
    ]] as const
  ) {
    const config = parseHfQuantConfig(cfg)!;
    const modules = modulesFromArchitecture(cfg)!.modules;
    console.log(
      `### ${name}\n${formatPlan(planModel(config, modules, { strictTargets: false, capability: 90 }))}\n`,
    );
  }
}

if (import.meta.main) main();
