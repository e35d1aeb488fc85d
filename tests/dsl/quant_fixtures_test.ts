/**
 * The native fp8 and mxfp4 configs of tests/fixtures/hf-configs (the compressed-tensors and ModelOpt ones
 * are in quant_fixtures_ct_test.ts), planned over representative module names. The expected scheme of each
 * is written from the spec's rules (quant-spec §1–2, §4.6), not from kiln's output: the comment above
 * each test gives the reasoning.
 */
import assert from "node:assert/strict";
import {
  modulePathEntryFor,
  modulesFromModuleNames,
  modulesFromTensorNames,
  planModel,
  type PlanOptions,
} from "../../dsl/quant/mod.ts";

import { cfg, DEEPSEEK, expand, LLAMA, row } from "./_quant_fixtures.ts";

const fp8BlockKernels = (ue8m0: boolean) => [
  { op: "groupQuant", dtype: "fp8e4m3", groupSize: 128, rowAlign: 4, ue8m0, scaleLayout: "m-major" },
  { op: "blockScaledMatmul", dtype: "fp8e4m3", mode: "block", block: [128, 128] },
];

// DeepSeek-V3 (both copies): native fp8, weight_block_size [128, 128] = [bn, bk], dynamic activations.
// §4.6 normalizes this onto FP8_BLOCK; §2.4: fp8 weights static symmetric "block" + dynamic fp8 inputs
// → _is_fp8_w8a8 → CompressedTensorsW8A8Fp8 (cc 89). Activations: per-token-group 128 (= bk). §2.5: MoE
// → W8A8-FP8-MoE. The output head is never converted by fp8 checkpoints; routers stay unquantized.
for (const file of ["deepseek-v3-fp8-block.json", "deepseek-v3-readme-weights-documented.json"]) {
  Deno.test(`fixture ${file}: FP8_BLOCK → groupQuant g128 + blockScaledMatmul 128x128`, () => {
    const c = cfg(file);
    assert.equal(c.source, "fp8");
    const plan = planModel(c, DEEPSEEK);
    for (
      const name of [
        "model.layers.0.self_attn.q_a_proj",
        "model.layers.1.self_attn.kv_b_proj",
        "model.layers.0.mlp.down_proj",
        "model.layers.1.mlp.shared_experts.up_proj",
      ]
    ) {
      const r = row(plan, name);
      assert.equal(r.status, "quantized", name);
      assert.equal(r.scheme, "W8A8-FP8");
      assert.equal(r.label, "FP8_BLOCK");
      assert.equal(r.minCapability, 89);
      assert.deepEqual(r.weights?.block_structure, [128, 128]);
      assert.equal(r.weights?.type, "float");
      assert.equal(r.inputActivations?.group_size, 128);
      assert.deepEqual(r.kernels, fp8BlockKernels(false));
      assert.equal(r.kernelText, "groupQuant fp8e4m3 g128 rowAlign 4 + blockScaledMatmul 128x128");
    }
    const moe = row(plan, "model.layers.1.mlp.experts");
    assert.equal(moe.kind, "moe");
    assert.equal(moe.experts, 4);
    assert.equal(moe.scheme, "W8A8-FP8-MoE");
    assert.equal(moe.status, "unsupported");
    assert.match(moe.reason!, /no kiln kernel for fused FP8 MoE/);
    for (
      const n of [
        "lm_head",
        "model.layers.1.mlp.gate",
        "model.embed_tokens",
        "model.norm",
        "model.layers.0.self_attn.q_a_layernorm",
      ]
    ) {
      assert.equal(row(plan, n).status, "unquantized", n);
    }
  });
}

Deno.test("fixture deepseek-v3 configs are the same config", () => {
  assert.deepEqual(cfg("deepseek-v3-fp8-block.json"), cfg("deepseek-v3-readme-weights-documented.json"));
});

// DeepSeek-V3 on an sm_80 device: sglang's W8A8-FP8 falls back to W8A16-FP8 (Marlin), which kiln lacks.
Deno.test("fixture deepseek-v3-fp8-block on cc 80: W8A16-FP8 fallback, no kiln kernel", () => {
  const r = row(
    planModel(cfg("deepseek-v3-fp8-block.json"), DEEPSEEK, { capability: 80 }),
    "model.layers.0.self_attn.q_a_proj",
  );
  assert.equal(r.scheme, "W8A16-FP8");
  assert.equal(r.fallbackFrom, "W8A8-FP8");
  assert.equal(r.status, "unsupported");
  assert.match(r.reason!, /no kiln kernel for FP8 weight-only/);
});

// DeepSeek-V3.2: as V3 plus scale_fmt "ue8m0": power-of-two scales, so the activation quant uses ue8m0.
Deno.test("fixture deepseek-v3.2-fp8-block-ue8m0.json: groupQuant with ue8m0 scales", () => {
  const c = cfg("deepseek-v3.2-fp8-block-ue8m0.json");
  assert.equal(c.scale_fmt, "ue8m0");
  const r = row(planModel(c, DEEPSEEK), "model.layers.0.self_attn.q_b_proj");
  assert.equal(r.scheme, "W8A8-FP8");
  assert.deepEqual(r.kernels, fp8BlockKernels(true));
  assert.equal(r.kernelText, "groupQuant fp8e4m3 g128 rowAlign 4 ue8m0 + blockScaledMatmul 128x128");
});

// Qwen3-32B-FP8: a dense model, same native fp8 block config → every Linear W8A8-FP8 block.
Deno.test("fixture qwen3-32b-fp8-block.json: every Linear FP8_BLOCK, head unquantized", () => {
  const plan = planModel(cfg("qwen3-32b-fp8-block.json"), LLAMA);
  for (const m of plan.modules.filter((x) => x.kind === "linear")) {
    assert.equal(m.scheme, "W8A8-FP8", m.name);
    assert.equal(m.label, "FP8_BLOCK");
    assert.equal(m.status, "quantized");
  }
  assert.equal(row(plan, "lm_head").status, "unquantized");
});

// Qwen3-235B-A22B-FP8: fp8 block; modules_to_not_convert lists norms, mlp.gate (routers) and lm_head,
// matched on dotted module paths (§4.6): "model.layers.N.mlp.gate" must not match "mlp.gate_proj" or
// "mlp.gate_up_proj". Experts → W8A8-FP8-MoE.
Deno.test("fixture qwen3-235b-a22b: modules_to_not_convert on dotted boundaries; MoE FP8", () => {
  const c = cfg("qwen3-235b-a22b-fp8-block-modules-to-not-convert.json");
  assert.equal(c.ignore.length, 1 + 94 * 3);
  assert.equal(modulePathEntryFor("model.layers.5.mlp.gate", c.ignore), "model.layers.5.mlp.gate");
  assert.equal(modulePathEntryFor("model.layers.5.mlp.gate_up_proj", c.ignore), null);
  assert.equal(modulePathEntryFor("model.layers.5.mlp.gate_proj", c.ignore), null);
  assert.equal(modulePathEntryFor("model.layers.5.mlp.experts", c.ignore), null);
  assert.equal(
    modulePathEntryFor("model.layers.93.post_attention_layernorm", c.ignore),
    "model.layers.93.post_attention_layernorm",
  );
  const mods = modulesFromModuleNames([
    ...expand("model.layers.5.self_attn", ["q_proj", "k_proj", "v_proj", "o_proj"]),
    "model.layers.5.mlp.gate",
    ...[0, 1].flatMap((e) =>
      expand(`model.layers.5.mlp.experts.${e}`, ["gate_proj", "up_proj", "down_proj"])
    ),
    "model.layers.5.mlp.gate_up_proj", // not in Qwen3-MoE, here to check the boundary rule in a plan
    "model.layers.5.input_layernorm",
    "lm_head",
  ]);
  const plan = planModel(c, mods);
  assert.equal(row(plan, "model.layers.5.mlp.gate_up_proj").scheme, "W8A8-FP8");
  assert.equal(row(plan, "model.layers.5.self_attn.k_proj").scheme, "W8A8-FP8");
  assert.equal(row(plan, "model.layers.5.mlp.experts").scheme, "W8A8-FP8-MoE");
  assert.equal(row(plan, "model.layers.5.mlp.gate").status, "unquantized");
  assert.equal(row(plan, "lm_head").status, "unquantized");
});

// gpt-oss-120b: quant_method "mxfp4": MoE experts are MXFP4 (fp4 e2m1, group 32, e8m0 scales),
// weight-only; Linear layers stay unquantized (sglang Mxfp4Config); modules_to_not_convert are globs.
Deno.test("fixture gpt-oss-120b-mxfp4: experts MXFP4, attention ignored by glob, head unquantized", () => {
  const c = cfg("gpt-oss-120b-mxfp4.json");
  assert.equal(c.source, "mxfp4");
  const mods = modulesFromTensorNames([
    "model.embed_tokens.weight",
    ...["q_proj", "k_proj", "v_proj", "o_proj"].flatMap((
      p,
    ) => [`model.layers.7.self_attn.${p}.weight`, `model.layers.7.self_attn.${p}.bias`]),
    "model.layers.7.self_attn.sinks",
    "model.layers.7.mlp.router.weight",
    "model.layers.7.mlp.experts.gate_up_proj_blocks",
    "model.layers.7.mlp.experts.gate_up_proj_scales",
    "model.layers.7.mlp.experts.down_proj_blocks",
    "model.layers.7.mlp.experts.down_proj_scales",
    "lm_head.weight",
  ]);
  const plan = planModel(c, mods);
  const moe = row(plan, "model.layers.7.mlp.experts");
  assert.equal(moe.scheme, "MXFP4-MoE");
  assert.equal(moe.label, "MXFP4A16");
  assert.equal(moe.weights?.scale_dtype, "torch.uint8");
  assert.equal(moe.status, "unsupported");
  const q = row(plan, "model.layers.7.self_attn.q_proj");
  assert.equal(q.status, "unquantized");
  assert.match(q.reason!, /model\.layers\.\*\.self_attn/);
  for (const n of ["model.layers.7.mlp.router", "lm_head", "model.embed_tokens"]) {
    assert.equal(row(plan, n).status, "unquantized");
  }
});

// nvidia DeepSeek-V4-Flash-NVFP4: quant_method fp8 (block [128,128], ue8m0) with ModelOpt
// MIXED_PRECISION: experts of layers 0–42 NVFP4 (W4A4, cc 100; no kiln kernel). Everything else keeps
// the fp8 config: attention and shared experts (listed in `ignore`, which only exempts them from NVFP4)
// are FP8_BLOCK with ue8m0; mtp.* experts (not in quantized_layers) are fp8 MoE; head unquantized.
Deno.test("fixture nvidia-deepseek-v4-flash-nvfp4: NVFP4 experts, FP8 block ue8m0 elsewhere", () => {
  const c = cfg("nvidia-deepseek-v4-flash-nvfp4-experts-mixed.json");
  const mods = modulesFromTensorNames([
    "embed.weight",
    "layers.0.attn_norm.weight",
    ...["wq_a", "wq_b", "wkv", "wo_a", "wo_b"].flatMap((
      p,
    ) => [`layers.0.attn.${p}.weight`, `layers.0.attn.${p}.scale`]),
    "layers.0.ffn.gate.weight",
    ...[0, 1].flatMap((e) => ["w1", "w2", "w3"].map((w) => `layers.0.ffn.experts.${e}.${w}.weight`)),
    ...["w1", "w2", "w3"].map((w) => `layers.0.ffn.shared_experts.${w}.weight`),
    ...["w1", "w2", "w3"].map((w) => `layers.42.ffn.experts.0.${w}.weight`),
    ...["w1", "w2", "w3"].map((w) => `mtp.0.ffn.experts.0.${w}.weight`),
    "head.weight",
  ]);
  const plan = planModel(c, mods);
  for (const n of ["layers.0.ffn.experts", "layers.42.ffn.experts"]) {
    const e = row(plan, n);
    assert.equal(e.scheme, "W4A4-NVFP4-MoE", n);
    assert.equal(e.label, "NVFP4");
    assert.equal(e.minCapability, 100);
    assert.equal(e.status, "unsupported");
    assert.match(e.reason!, /no kiln kernel for fused NVFP4 MoE/);
  }
  for (const n of ["layers.0.attn.wq_a", "layers.0.attn.wkv", "layers.0.ffn.shared_experts.w2"]) {
    const r = row(plan, n);
    assert.equal(r.scheme, "W8A8-FP8", n);
    assert.equal(r.label, "FP8_BLOCK");
    assert.deepEqual(r.kernels, fp8BlockKernels(true));
  }
  assert.equal(row(plan, "mtp.0.ffn.experts").scheme, "W8A8-FP8-MoE");
  assert.equal(row(plan, "head").status, "unquantized");
  assert.equal(row(plan, "layers.0.ffn.gate").status, "unquantized");
  const old = row(planModel(c, mods, { capability: 90 }), "layers.0.ffn.experts");
  assert.match(old.reason!, /needs compute capability ≥ 100, the device has 90/);
});

// The same fixtures under sglang's matching give the same schemes where the names do not hinge on it.
Deno.test("fixtures under { matching: 'sglang' }: same schemes for the fp8 and kimi configs", () => {
  const opts: PlanOptions = { matching: "sglang" };
  const a = planModel(cfg("deepseek-v3-fp8-block.json"), DEEPSEEK, opts);
  assert.equal(row(a, "model.layers.1.mlp.experts").scheme, "W8A8-FP8-MoE");
  assert.equal(row(a, "model.layers.0.self_attn.q_a_proj").scheme, "W8A8-FP8");
});
