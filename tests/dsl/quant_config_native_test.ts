/**
 * QuantConfig parsing of non-compressed-tensors configs: native fp8 normalization (quant-spec §4.6),
 * ModelOpt FP8/NVFP4/MIXED_PRECISION, quant_methods refused with "not supported yet", and where the
 * quantization config sits in config.json.
 */
import assert from "node:assert/strict";
import { throwsAt } from "./_config_errors.ts";
import {
  findQuantizationConfig,
  parseHfQuantConfig,
  parseQuantConfig,
  UnsupportedConfigError,
} from "../../dsl/quant/mod.ts";

Deno.test("native fp8: block config normalizes onto FP8_BLOCK with [bn, bk] orientation", () => {
  const cfg = parseQuantConfig({
    quant_method: "fp8",
    activation_scheme: "dynamic",
    weight_block_size: [256, 64],
  });
  assert.equal(cfg.source, "fp8");
  assert.equal(cfg.ignoreSemantics, "module-path");
  const g = cfg.config_groups[0];
  assert.deepEqual(g.scheme.targets, ["Linear"]);
  assert.deepEqual(g.scheme.weights?.block_structure, [256, 64]); // [bn (output rows), bk (K)]
  assert.equal(g.scheme.input_activations?.strategy, "group");
  assert.equal(g.scheme.input_activations?.group_size, 64); // = bk
  assert.equal(g.scheme.input_activations?.dynamic, true);
  assert.equal(cfg.minCapability, 80);
});

Deno.test("native fp8: per-tensor configs, static or dynamic activations", () => {
  const st = parseQuantConfig({ quant_method: "fp8", activation_scheme: "static" }).config_groups[0].scheme;
  assert.equal(st.weights?.strategy, "tensor");
  assert.equal(st.input_activations?.strategy, "tensor");
  assert.equal(st.input_activations?.dynamic, false);
  const dy = parseQuantConfig({ quant_method: "fp8", activation_scheme: "dynamic" }).config_groups[0].scheme;
  assert.equal(dy.input_activations?.dynamic, true);
});

Deno.test("native fp8: fields and their errors", () => {
  throwsAt(() => parseQuantConfig({ quant_method: "fp8" }), "activation_scheme", "required");
  throwsAt(
    () => parseQuantConfig({ quant_method: "fp8", activation_scheme: "lazy" }),
    "activation_scheme",
    `"static" or "dynamic"`,
  );
  throwsAt(
    () =>
      parseQuantConfig({ quant_method: "fp8", activation_scheme: "static", weight_block_size: [128, 128] }),
    "activation_scheme",
    `must be "dynamic" with weight_block_size`,
  );
  throwsAt(
    () =>
      parseQuantConfig({
        quant_method: "fp8",
        activation_scheme: "dynamic",
        weight_block_size: [128, "128"],
      }),
    "weight_block_size[1]",
    "integer",
  );
  throwsAt(
    () =>
      parseQuantConfig({ quant_method: "fp8", activation_scheme: "dynamic", weight_block_size: [128, 0] }),
    "weight_block_size",
    "positive",
  );
  throwsAt(
    () => parseQuantConfig({ quant_method: "fp8", activation_scheme: "dynamic", fmt: "e5m2" }),
    "fmt",
    "not supported yet",
    UnsupportedConfigError,
  );
  throwsAt(
    () => parseQuantConfig({ quant_method: "fp8", activation_scheme: "dynamic", scale_fmt: "e8m0x" }),
    "scale_fmt",
    "not supported yet",
    UnsupportedConfigError,
  );
  throwsAt(
    () =>
      parseQuantConfig({
        quant_method: "fp8",
        activation_scheme: "dynamic",
        modules_to_not_convert: "lm_head",
      }),
    "modules_to_not_convert",
    "list of strings",
  );
  assert.equal(
    parseQuantConfig({ quant_method: "fp8", activation_scheme: "dynamic", fmt: "float8_e4m3fn" }).source,
    "fp8",
  );
  assert.equal(
    parseQuantConfig({ quant_method: "fp8", activation_scheme: "dynamic", scale_fmt: "ue8m0" }).scale_fmt,
    "ue8m0",
  );
  // sglang reads ignored_layers before modules_to_not_convert
  const both = parseQuantConfig({
    quant_method: "fp8",
    activation_scheme: "dynamic",
    ignored_layers: ["a"],
    modules_to_not_convert: ["b"],
  });
  assert.deepEqual(both.ignore, ["a"]);
});

Deno.test("other quant_methods are refused with 'not supported yet', never guessed", () => {
  for (const m of ["gptq", "awq", "bitsandbytes", "quark", "my-own-method"]) {
    throwsAt(
      () => parseQuantConfig({ quant_method: m, bits: 4 }),
      "quant_method",
      `not supported yet: quant_method "${m}"`,
      UnsupportedConfigError,
    );
  }
  throwsAt(() => parseQuantConfig({ quant_method: 7 }), "quant_method", "must be a string");
  throwsAt(() => parseQuantConfig({ bits: 4 }), "quant_method", "required");
  throwsAt(
    () => parseQuantConfig({ quant_method: "modelopt", quant_algo: "W4A8_AWQ" }),
    "quant_algo",
    "not supported yet",
    UnsupportedConfigError,
  );
});

Deno.test("ModelOpt: FP8 and NVFP4, nested hf_quant_config.json layout, exclude_modules globs", () => {
  const fp8 = parseQuantConfig({
    producer: { name: "modelopt" },
    quantization: {
      quant_algo: "FP8",
      kv_cache_quant_algo: "FP8",
      exclude_modules: ["lm_head", "*.mlp.gate"],
    },
  });
  assert.equal(fp8.source, "modelopt");
  assert.deepEqual(fp8.ignore, ["lm_head", "*.mlp.gate"]);
  assert.equal(fp8.kv_cache_scheme?.type, "float");
  assert.equal(fp8.config_groups[0].scheme.input_activations?.dynamic, false);
  const nv = parseQuantConfig({ quant_method: "modelopt", quant_algo: "NVFP4", group_size: 16 });
  assert.equal(nv.config_groups[0].scheme.weights?.strategy, "tensor_group");
  assert.equal(nv.config_groups[0].scheme.input_activations?.dynamic, "local");
  assert.equal(nv.minCapability, 100);
  throwsAt(
    () => parseQuantConfig({ quant_method: "modelopt", quant_algo: "NVFP4", group_size: 32 }),
    "group_size",
    "groups of 16",
  );
  throwsAt(
    () => parseQuantConfig({ quant_method: "modelopt", quant_algo: "FP8", kv_cache_quant_algo: "INT4" }),
    "kv_cache_quant_algo",
    "not supported yet",
    UnsupportedConfigError,
  );
  throwsAt(
    () =>
      parseQuantConfig({
        quant_algo: "FP8",
        config_groups: { group_0: { weights: { num_bits: 4, type: "float" } } },
      }),
    "config_groups.group_0.weights",
    "contradictory groups",
  );
  throwsAt(
    () => parseQuantConfig({ quant_method: "modelopt", quant_algo: "MIXED_PRECISION" }),
    "quantized_layers",
    "required",
  );
  throwsAt(
    () =>
      parseQuantConfig({
        quant_method: "modelopt",
        quant_algo: "MIXED_PRECISION",
        quantized_layers: { "model.layers.0.mlp": { quant_algo: "INT8_SQ" } },
      }),
    `quantized_layers["model.layers.0.mlp"].quant_algo`,
    "not supported yet",
    UnsupportedConfigError,
  );
});

Deno.test("findQuantizationConfig: top level, text_config (Kimi-K2.5), or none", () => {
  assert.equal(
    findQuantizationConfig({ quantization_config: { quant_method: "fp8" } })?.path,
    "quantization_config",
  );
  assert.equal(
    findQuantizationConfig({ text_config: { quantization_config: {} } })?.path,
    "text_config.quantization_config",
  );
  assert.equal(findQuantizationConfig({ model_type: "llama" }), null);
  assert.equal(parseHfQuantConfig({ model_type: "llama" }), null);
  throwsAt(
    () => parseHfQuantConfig({ quantization_config: { quant_method: "fp8", activation_scheme: 1 } }),
    "quantization_config.activation_scheme",
    "must be a string",
  );
});
