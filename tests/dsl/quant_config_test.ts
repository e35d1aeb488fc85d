/**
 * QuantConfig parsing of compressed-tensors configs (quant-spec §1.4, §2.1): top-level fields, groups and
 * presets, mixed precision, contradictions, sparsity, linear_fp8_config, and every bad-config path.
 * Native fp8 / ModelOpt / refused methods: quant_config_native_test.ts.
 */
import assert from "node:assert/strict";
import { throwsAt } from "./_config_errors.ts";
import { parseHfQuantConfig, parseQuantConfig, UnsupportedConfigError } from "../../dsl/quant/mod.ts";

const ct = (extra: Record<string, unknown> = {}) => ({
  quant_method: "compressed-tensors",
  format: "float-quantized",
  config_groups: {
    group_0: {
      targets: ["Linear"],
      weights: { type: "float", strategy: "channel" },
      input_activations: { type: "float", strategy: "token", dynamic: true },
    },
  },
  ...extra,
});

Deno.test("CT config: defaults (format fakequant, status initialized, empty ignore) and group order", () => {
  const cfg = parseQuantConfig({
    config_groups: {
      b: { targets: ["re:.*q_proj"], weights: { num_bits: 4, group_size: 128 } },
      a: { targets: ["Linear"], weights: {} },
    },
  });
  assert.equal(cfg.source, "compressed-tensors");
  assert.equal(cfg.format, "fakequant");
  assert.equal(cfg.quantization_status, "initialized");
  assert.deepEqual(cfg.ignore, []);
  assert.deepEqual(cfg.config_groups.map((g) => g.name), ["b", "a"]);
  assert.equal(cfg.config_groups[0].path, "config_groups.b");
  assert.equal(cfg.kv_cache_scheme, null);
  assert.equal(cfg.minCapability, 70);
});

Deno.test("CT config: preset shorthand groups expand (compressed-tensors), non-presets with lists are errors", () => {
  const cfg = parseQuantConfig({
    quant_method: "compressed-tensors",
    format: "pack-quantized",
    config_groups: { w4a16: ["Linear"] },
  });
  assert.equal(cfg.config_groups[0].preset, "W4A16");
  assert.equal(cfg.config_groups[0].scheme.weights?.group_size, 128);
  throwsAt(
    () => parseQuantConfig({ config_groups: { group_0: ["Linear"] } }),
    "config_groups.group_0",
    "needs a preset name",
  );
  throwsAt(
    () => parseQuantConfig({ config_groups: { group_0: "Linear" } }),
    "config_groups.group_0",
    "must be a scheme object",
  );
});

Deno.test("CT config: bad top-level fields name their paths", () => {
  throwsAt(() => parseQuantConfig({ quant_method: "compressed-tensors" }), "config_groups", "required");
  throwsAt(() => parseQuantConfig(ct({ format: "gzip" })), "format", "unknown compression format");
  throwsAt(() => parseQuantConfig(ct({ format: 3 })), "format", "must be a string");
  throwsAt(
    () => parseQuantConfig(ct({ quantization_status: "baked" })),
    "quantization_status",
    "unknown quantization_status",
  );
  throwsAt(() => parseQuantConfig(ct({ ignore: "lm_head" })), "ignore", "list of strings");
  throwsAt(
    () => parseQuantConfig(ct({ ignore: ["lm_head", "re:(unclosed"] })),
    "ignore[1]",
    "invalid regular expression",
  );
  throwsAt(
    () => parseQuantConfig(ct({ global_compression_ratio: "2x" })),
    "global_compression_ratio",
    "must be a number",
  );
  throwsAt(
    () => parseQuantConfig(ct({ kv_cache_scheme: { strategy: "token" } })),
    "kv_cache_scheme.dynamic",
    `strategy is "token"`,
  );
  throwsAt(
    () => parseQuantConfig(ct({ packed_modules_mapping: { qkv_proj: "q_proj" } })),
    "packed_modules_mapping.qkv_proj",
    "list of strings",
  );
  throwsAt(
    () => parseQuantConfig({ config_groups: { group_0: { targets: ["re:[bad"], weights: {} } } }),
    "config_groups.group_0.targets[0]",
    "invalid regular expression",
  );
  throwsAt(() => parseQuantConfig("compressed-tensors"), "", "must be an object");
});

Deno.test("CT config: the issue's example path for a group without group_size", () => {
  assert.throws(
    () =>
      parseQuantConfig({
        quant_method: "compressed-tensors",
        config_groups: { group_0: { targets: ["Linear"], weights: { strategy: "group" } } },
      }),
    { message: `config_groups.group_0.weights.group_size: required when strategy is "group"` },
  );
  // the same error inside a full config.json carries where the config sat
  assert.throws(
    () =>
      parseHfQuantConfig({
        text_config: {
          quantization_config: {
            config_groups: { g: { targets: ["Linear"], weights: { strategy: "group" } } },
          },
        },
      }),
    {
      message:
        `text_config.quantization_config.config_groups.g.weights.group_size: required when strategy is "group"`,
    },
  );
});

Deno.test("CT config: mixed-precision needs a format on every group", () => {
  const groups = {
    g_fp8: {
      targets: ["re:.*self_attn.*"],
      format: "float-quantized",
      weights: { type: "float" },
      input_activations: { type: "float" },
    },
    g_int4: { targets: ["Linear"], weights: { num_bits: 4, group_size: 128 } },
  };
  throwsAt(
    () => parseQuantConfig({ format: "mixed-precision", config_groups: groups }),
    "config_groups.g_int4.format",
    `required when the top-level format is "mixed-precision"`,
  );
  const ok = parseQuantConfig({
    format: "mixed-precision",
    config_groups: { ...groups, g_int4: { ...groups.g_int4, format: "pack-quantized" } },
  });
  assert.deepEqual(ok.config_groups.map((g) => g.scheme.format), ["float-quantized", "pack-quantized"]);
});

Deno.test("CT config: a target listed by two groups with different schemes is a contradiction", () => {
  throwsAt(
    () =>
      parseQuantConfig({
        config_groups: {
          group_0: { targets: ["Linear"], weights: { num_bits: 4, group_size: 128 } },
          group_1: { targets: ["lm_head", "Linear"], weights: { num_bits: 8 } },
        },
      }),
    "config_groups.group_1.targets[1]",
    "also a target of group_0",
  );
  // the same scheme twice is harmless
  parseQuantConfig({
    config_groups: { a: { targets: ["Linear"], weights: {} }, b: { targets: ["Linear"], weights: {} } },
  });
});

Deno.test("CT config: sparsity_config ({} means none), transform_config refused, linear_fp8_config parsed", () => {
  assert.equal(parseQuantConfig(ct({ sparsity_config: {} })).sparsity_config, null);
  const sp = parseQuantConfig(
    ct({
      sparsity_config: {
        format: "sparse-24-bitmask",
        sparsity_structure: "2:4",
        targets: ["Linear"],
        global_sparsity: 0.5,
      },
    }),
  );
  assert.deepEqual({ ...sp.sparsity_config }, {
    format: "sparse-24-bitmask",
    targets: ["Linear"],
    ignore: null,
    global_sparsity: 0.5,
    sparsity_structure: "2:4",
  });
  throwsAt(
    () => parseQuantConfig(ct({ sparsity_config: { format: "rle" } })),
    "sparsity_config.format",
    "unknown sparsity format",
  );
  throwsAt(
    () => parseQuantConfig(ct({ sparsity_config: { format: "dense", sparsity_structure: "half" } })),
    "sparsity_config.sparsity_structure",
    "N:M",
  );
  throwsAt(
    () => parseQuantConfig(ct({ transform_config: { config_groups: { u: { type: "hadamard" } } } })),
    "transform_config",
    "not supported yet",
    UnsupportedConfigError,
  );
  assert.equal(parseQuantConfig(ct({ transform_config: {} })).source, "compressed-tensors");
  const lf = parseQuantConfig(
    ct({
      linear_fp8_config: { quant_method: "fp8", weight_block_size: [128, 128], ignored_layers: ["lm_head"] },
    }),
  ).linear_fp8_config!;
  assert.equal(lf.activation_scheme, "dynamic"); // sglang's default there
  assert.deepEqual(lf.weight_block_size, [128, 128]);
  assert.deepEqual(lf.ignored_layers, ["lm_head"]);
  throwsAt(
    () => parseQuantConfig(ct({ linear_fp8_config: { quant_method: "int8" } })),
    "linear_fp8_config.quant_method",
    `must be "fp8"`,
  );
  throwsAt(
    () => parseQuantConfig(ct({ linear_fp8_config: { quant_method: "fp8", weight_block_size: [128] } })),
    "linear_fp8_config.weight_block_size",
    "[block_n, block_k]",
  );
});
