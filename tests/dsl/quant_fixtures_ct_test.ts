/**
 * The compressed-tensors and ModelOpt configs of tests/fixtures/hf-configs (native fp8 / mxfp4 ones are in
 * quant_fixtures_test.ts), planned over representative module names. The expected scheme of each is
 * written from the spec's rules (quant-spec §1–2), not from kiln's output: the comment above each test
 * gives the reasoning. The last test checks that the two files together cover every fixture.
 */
import assert from "node:assert/strict";
import { modulesFromModuleNames, parseHfQuantConfig, planModel } from "../../dsl/quant/mod.ts";

import { cfg, DEEPSEEK, DIR, expand, fixture, LLAMA, row } from "./_quant_fixtures.ts";

// Kimi-K2.5 (config under text_config): CT pack-quantized int4, symmetric, group 32, weight-only.
// Ignore: lm_head, every self_attn, every shared expert, every dense mlp.{gate,up,gate_up,down}_proj
// (the regex needs "mlp." right before the projection, so mlp.experts.N.gate_proj is NOT ignored).
// Experts → _is_wNa16_group_channel → WNA16-MoE (Marlin, cc 80); with the flashinfer_trtllm MoE
// backend, _is_mxint4a16 (int4 g32 sym) → MxInt4-MoE (cc 100).
Deno.test("fixture kimi-k2.5: ignore regexes; experts WNA16-MoE (MxInt4-MoE with flashinfer_trtllm)", () => {
  const q = fixture("kimi-k2.5-ct-w4a16-int4-group32-pack-quantized.json");
  const c = parseHfQuantConfig({
    model_type: "kimi_k25",
    text_config: { model_type: "kimi_k2", quantization_config: q },
  })!;
  assert.equal(c.path, "text_config.quantization_config");
  assert.equal(c.quantization_status, "compressed");
  const P = "language_model.model.layers";
  const mods = modulesFromModuleNames([
    ...expand(`${P}.0.self_attn`, ["q_a_proj", "kv_b_proj", "o_proj"]),
    ...expand(`${P}.0.mlp`, ["gate_proj", "up_proj", "down_proj"]),
    `${P}.1.mlp.gate`,
    ...[0, 1, 2].flatMap((e) => expand(`${P}.1.mlp.experts.${e}`, ["gate_proj", "up_proj", "down_proj"])),
    ...expand(`${P}.1.mlp.shared_experts`, ["gate_proj", "up_proj", "down_proj"]),
    "language_model.lm_head",
  ]);
  const plan = planModel(c, mods);
  assert.match(row(plan, `${P}.0.self_attn.kv_b_proj`).reason!, /ignore.*re:\.\*self_attn\.\*/);
  assert.equal(row(plan, `${P}.0.mlp.up_proj`).status, "unquantized");
  assert.match(row(plan, `${P}.0.mlp.up_proj`).reason!, /gate\|up\|gate_up\|down/);
  assert.match(row(plan, `${P}.1.mlp.shared_experts.down_proj`).reason!, /shared_experts/);
  assert.equal(row(plan, "language_model.lm_head").status, "unquantized");
  const moe = row(plan, `${P}.1.mlp.experts`);
  assert.equal(moe.scheme, "WNA16-MoE");
  assert.equal(moe.minCapability, 80);
  assert.equal(moe.label, "int4 group 32 (weight-only)");
  assert.equal(moe.weights?.group_size, 32);
  assert.equal(moe.status, "unsupported");
  assert.match(moe.reason!, /no kiln kernel for fused int4 weight-only MoE/);
  const trt = row(planModel(c, mods, { moeBackend: "flashinfer_trtllm" }), `${P}.1.mlp.experts`);
  assert.equal(trt.scheme, "MxInt4-MoE");
  assert.equal(trt.minCapability, 100);
});

// HF docs Llama-3.1-8B FP8: CT naive-quantized, fp8 per-tensor weights + fp8 per-tensor inputs with
// dynamic defaulting to false (static) and symmetric → the FP8 preset; _is_fp8_w8a8 (static symmetric
// per-tensor input) → W8A8-FP8 with a static input scale; lm_head ignored.
Deno.test("fixture hf-docs-llama3.1-8b-fp8: FP8 static per-tensor → tensorQuant static + per-tensor GEMM", () => {
  const plan = planModel(cfg("hf-docs-llama3.1-8b-fp8-static-tensor-naive-quantized.json"), LLAMA);
  const r = row(plan, "model.layers.0.mlp.down_proj");
  assert.equal(r.label, "FP8");
  assert.equal(r.scheme, "W8A8-FP8");
  assert.equal(r.inputActivations?.dynamic, false);
  assert.deepEqual(r.kernels, [
    { op: "tensorQuant", dtype: "fp8e4m3", static: true },
    { op: "blockScaledMatmul", dtype: "fp8e4m3", mode: "tensor", block: null },
  ]);
  assert.match(row(plan, "lm_head").reason!, /ignore\[0\] "lm_head"|ignore "lm_head"/);
  assert.equal(row(plan, "lm_head").status, "unquantized");
});

// Qwen3-32B FP8 static per-tensor, ModelOpt style (quant_algo FP8, no quant_method): ModelOpt FP8 =
// per-tensor fp8 weights + static per-tensor fp8 activations → W8A8-FP8; kv_cache_scheme "FP8" →
// fp8 per-tensor KV cache (no kiln kernel); lm_head ignored.
Deno.test("fixture qwen3-32b modelopt FP8: W8A8-FP8 static, fp8 KV cache reported", () => {
  const c = cfg("qwen3-32b-fp8-static-pertensor-modelopt-style.json");
  assert.equal(c.source, "modelopt");
  // the attention module is derived from its k/v projections
  const plan = planModel(c, LLAMA);
  const r = row(plan, "model.layers.0.self_attn.q_proj");
  assert.equal(r.scheme, "W8A8-FP8");
  assert.equal(r.label, "FP8");
  assert.equal(r.kernelText, "tensorQuant fp8e4m3 static + blockScaledMatmul per-tensor");
  assert.equal(row(plan, "lm_head").status, "unquantized");
  assert.equal(plan.kvCache?.scheme.type, "float");
  assert.equal(plan.kvCache?.scheme.strategy, "tensor");
  assert.deepEqual(plan.kvCache?.modules, ["model.layers.0.self_attn"]);
});

// CT example W8A8 int8 per-tensor (naive-quantized): int8 tensor weights + int8 tensor static symmetric
// inputs → _is_static_tensor_w8a8 → W8A8-INT8 static (cc 80). No ignore list, and compressed-tensors
// matches "Linear" by class, so lm_head (an nn.Linear) is quantized too. MoE: no int8 static scheme.
Deno.test("fixture ct-example-naive-quantized-w8a8-int8-tensor: W8A8-INT8 static, lm_head included", () => {
  const plan = planModel(cfg("ct-example-naive-quantized-w8a8-int8-tensor.json"), DEEPSEEK);
  for (const n of ["model.layers.0.self_attn.o_proj", "lm_head"]) {
    const r = row(plan, n);
    assert.equal(r.scheme, "W8A8-INT8", n);
    assert.equal(r.kernelText, "tensorQuant int8 static + blockScaledMatmul int8 per-tensor");
  }
  const moe = row(plan, "model.layers.1.mlp.experts");
  assert.equal(moe.status, "unsupported");
  assert.equal(moe.scheme, null);
});

// CT example int4 asymmetric per-tensor, pack-quantized, weight-only: _is_wNa16_group_channel needs
// channel/group; no activation-format predicate matches a weight-only int per-tensor scheme → no scheme.
Deno.test("fixture ct-example-pack-quantized-w4-asym-tensor: no sglang scheme", () => {
  const r = row(
    planModel(cfg("ct-example-pack-quantized-w4-asym-tensor.json"), LLAMA),
    "model.layers.0.self_attn.q_proj",
  );
  assert.equal(r.status, "unsupported");
  assert.equal(r.scheme, null);
  assert.equal(r.label, "int4 tensor asym (weight-only)");
  assert.match(r.reason!, /no compressed-tensors compatible scheme/);
});

// CT PR #86 example: format "fakequant" is not an activation-quantization format, so sglang reads no
// input_activations and the int8 per-tensor weights match no weight-only scheme → unsupported. The
// kv_cache_scheme (int8 per-tensor) is parsed but sglang only reads static symmetric fp8 KV scales.
Deno.test("fixture ct-pr86-kv-cache-scheme-example: fakequant → unsupported; int8 KV cache", () => {
  const c = cfg("ct-pr86-kv-cache-scheme-example.json");
  assert.equal(c.format, "fakequant");
  assert.equal(c.global_compression_ratio, 0);
  assert.equal(c.kv_cache_scheme?.num_bits, 8);
  assert.equal(c.kv_cache_scheme?.type, "int");
  assert.equal(c.config_groups[0].scheme.input_activations?.symmetric, false);
  const plan = planModel(c, LLAMA);
  const r = row(plan, "model.layers.0.mlp.up_proj");
  assert.equal(r.status, "unsupported");
  assert.match(r.reason!, /"fakequant" is not an activation-quantization format/);
  assert.match(plan.kvCache!.reason, /sglang ignores this kv_cache_scheme/);
});

// CT test fixture: int4 symmetric per-channel, pack-quantized, weight-only → WNA16 (Marlin, cc 80).
// sparsity_config is unstructured sparse-bitmask with no targets: parsed, applies to nothing.
Deno.test("fixture ct-test-fixture-w4-channel + sparse-bitmask: WNA16, sparsity parsed", () => {
  const c = cfg("ct-test-fixture-w4-channel-pack-quantized-plus-sparse-bitmask.json");
  assert.equal(c.quantization_status, "frozen");
  assert.equal(c.sparsity_config?.format, "sparse-bitmask");
  assert.equal(c.sparsity_config?.sparsity_structure, "unstructured");
  assert.equal(c.sparsity_config?.targets, null);
  assert.ok(Math.abs(c.sparsity_config!.global_sparsity - 19.098103233975568) < 1e-12);
  const plan = planModel(c, LLAMA, { capability: 80 });
  const r = row(plan, "model.layers.0.self_attn.v_proj");
  assert.equal(r.scheme, "WNA16");
  assert.equal(r.minCapability, 80);
  assert.equal(r.weights?.strategy, "channel");
  assert.equal(r.status, "unsupported");
  assert.match(r.reason!, /no kiln kernel for int4 weight-only \(WNA16/);
  assert.equal(row(plan, "lm_head").status, "unquantized");
});

Deno.test("every fixture file is covered by a test above", () => {
  const covered = new Set([
    "deepseek-v3-fp8-block.json",
    "deepseek-v3-readme-weights-documented.json",
    "deepseek-v3.2-fp8-block-ue8m0.json",
    "qwen3-32b-fp8-block.json",
    "qwen3-235b-a22b-fp8-block-modules-to-not-convert.json",
    "kimi-k2.5-ct-w4a16-int4-group32-pack-quantized.json",
    "gpt-oss-120b-mxfp4.json",
    "hf-docs-llama3.1-8b-fp8-static-tensor-naive-quantized.json",
    "qwen3-32b-fp8-static-pertensor-modelopt-style.json",
    "nvidia-deepseek-v4-flash-nvfp4-experts-mixed.json",
    "ct-example-naive-quantized-w8a8-int8-tensor.json",
    "ct-example-pack-quantized-w4-asym-tensor.json",
    "ct-pr86-kv-cache-scheme-example.json",
    "ct-test-fixture-w4-channel-pack-quantized-plus-sparse-bitmask.json",
  ]);
  const files = [...Deno.readDirSync(DIR)].map((e) => e.name).filter((n) => n.endsWith(".json"));
  assert.deepEqual(files.filter((f) => !covered.has(f)), []);
});
