/**
 * QuantScheme rules (quant-spec §1.2) and the preset table (§1.3), checked field by field against the spec.
 */
import assert from "node:assert/strict";
import { throwsAt } from "./_config_errors.ts";
import {
  isActivationQuantizationFormat,
  isPresetName,
  parseQuantScheme,
  PRESET_SCHEMES,
  presetNameOf,
  presetScheme,
  type QuantArgs,
  quantArgs,
  quantScheme,
  W8A16_LEGACY,
} from "../../dsl/quant/mod.ts";

/** The spec's fields of one args object (defaults elided by the spec filled in here). */
function fields(a: QuantArgs | null): Record<string, unknown> | null {
  if (!a) return null;
  return {
    bits: a.num_bits,
    type: a.type,
    sym: a.symmetric,
    strategy: a.strategy,
    g: a.group_size,
    block: a.block_structure,
    dynamic: a.dynamic,
    scale: a.scale_dtype,
  };
}

const P = "config_groups.group_0";

Deno.test("QuantScheme: targets are required, a non-empty list of strings", () => {
  throwsAt(() => parseQuantScheme({ weights: {} }, P), `${P}.targets`, "required");
  throwsAt(() => parseQuantScheme({ targets: "Linear" }, P), `${P}.targets`, "list of strings");
  throwsAt(() => parseQuantScheme({ targets: ["Linear", 3] }, P), `${P}.targets[1]`, "must be a string");
  throwsAt(() => parseQuantScheme({ targets: [] }, P), `${P}.targets`, "at least one target");
});

Deno.test("QuantScheme: activations cannot be channel or block; actorder only on weights", () => {
  throwsAt(
    () => parseQuantScheme({ targets: ["Linear"], input_activations: { strategy: "channel" } }, P),
    `${P}.input_activations.strategy`,
    `"channel" is not allowed for activations`,
  );
  throwsAt(
    () =>
      parseQuantScheme({
        targets: ["Linear"],
        input_activations: { strategy: "block", block_structure: [128, 128] },
      }, P),
    `${P}.input_activations.strategy`,
    `"block" is not allowed`,
  );
  throwsAt(
    () =>
      parseQuantScheme(
        { targets: ["Linear"], input_activations: { group_size: 128, actorder: "weight" } },
        P,
      ),
    `${P}.input_activations.actorder`,
    "not allowed on input activations",
  );
  throwsAt(
    () =>
      parseQuantScheme(
        { targets: ["Linear"], output_activations: { group_size: 128, actorder: "group" } },
        P,
      ),
    `${P}.output_activations.actorder`,
    "not allowed on output activations",
  );
  // token, tensor, group, tensor_group and attn_head are fine
  for (
    const a of [{ strategy: "token", dynamic: true }, { strategy: "attn_head" }, {
      group_size: 128,
      dynamic: true,
    }]
  ) {
    assert.ok(parseQuantScheme({ targets: ["Linear"], input_activations: a }, P).input_activations);
  }
});

Deno.test("QuantScheme: format must be a known CompressionFormat and not mixed-precision; extra keys forbidden", () => {
  throwsAt(
    () => parseQuantScheme({ targets: ["Linear"], format: "mixed-precision" }, P),
    `${P}.format`,
    "only allowed as the config's top-level",
  );
  throwsAt(
    () => parseQuantScheme({ targets: ["Linear"], format: "zip" }, P),
    `${P}.format`,
    "unknown compression format",
  );
  throwsAt(() => parseQuantScheme({ targets: ["Linear"], weight: {} }, P), `${P}.weight`, "unknown field");
  assert.equal(
    parseQuantScheme({ targets: ["Linear"], format: "pack-quantized" }, P).format,
    "pack-quantized",
  );
  // nested args errors carry the full path
  throwsAt(
    () => parseQuantScheme({ targets: ["Linear"], weights: { strategy: "group" } }, P),
    `${P}.weights.group_size`,
    "required",
  );
});

Deno.test("presets: the table of quant-spec §1.3 (new compressed-tensors)", () => {
  const S = PRESET_SCHEMES;
  const intW = (bits: number, sym = true) => ({
    bits,
    type: "int",
    sym,
    strategy: "group",
    g: 128,
    block: null,
    dynamic: false,
    scale: null,
  });
  assert.deepEqual(fields(S.W8A16.weights), intW(8)); // group 128 in new CT (PR #702), not channel
  assert.equal(S.W8A16.input_activations, null);
  assert.deepEqual(fields(S.W4A16.weights), intW(4));
  assert.deepEqual(fields(S.W4A16_ASYM.weights), intW(4, false));
  assert.deepEqual(fields(W8A16_LEGACY.weights), { ...intW(8), strategy: "channel", g: null });
  const tokenAct = (bits: number, type = "int") => ({
    bits,
    type,
    sym: true,
    strategy: "token",
    g: null,
    block: null,
    dynamic: true,
    scale: null,
  });
  assert.deepEqual(fields(S.W8A8.weights), { ...intW(8), strategy: "channel", g: null });
  assert.deepEqual(fields(S.W8A8.input_activations), tokenAct(8));
  assert.deepEqual(S.INT8, S.W8A8);
  assert.deepEqual(fields(S.W4A8.input_activations), tokenAct(8));
  assert.deepEqual(fields(S.W2A4.input_activations), tokenAct(4));
  assert.deepEqual(fields(S.W4AFP8.weights), intW(4));
  assert.deepEqual(fields(S.W4AFP8.input_activations), tokenAct(8, "float"));
  const f8 = { bits: 8, type: "float", sym: true, block: null, g: null, scale: null };
  assert.deepEqual(fields(S.FP8.weights), { ...f8, strategy: "tensor", dynamic: false });
  assert.deepEqual(fields(S.FP8.input_activations), { ...f8, strategy: "tensor", dynamic: false });
  assert.deepEqual(fields(S.FP8_DYNAMIC.weights), { ...f8, strategy: "channel", dynamic: false });
  assert.deepEqual(fields(S.FP8_DYNAMIC.input_activations), { ...f8, strategy: "token", dynamic: true });
  assert.deepEqual(fields(S.FP8_BLOCK.weights), {
    ...f8,
    strategy: "block",
    block: [128, 128],
    dynamic: false,
  });
  assert.deepEqual(fields(S.FP8_BLOCK.input_activations), {
    ...f8,
    strategy: "group",
    g: 128,
    dynamic: true,
  });
  const fp4 = { bits: 4, type: "float", sym: true, block: null };
  assert.deepEqual(fields(S.NVFP4A16.weights), {
    ...fp4,
    strategy: "tensor_group",
    g: 16,
    dynamic: false,
    scale: "torch.float8_e4m3fn",
  });
  assert.equal(S.NVFP4A16.input_activations, null);
  assert.deepEqual(fields(S.NVFP4.input_activations), {
    ...fp4,
    strategy: "tensor_group",
    g: 16,
    dynamic: "local",
    scale: "torch.float8_e4m3fn",
  });
  assert.deepEqual(fields(S.MXFP4A16.weights), {
    ...fp4,
    strategy: "group",
    g: 32,
    dynamic: false,
    scale: "torch.uint8",
  });
  assert.deepEqual(fields(S.MXFP4.input_activations), {
    ...fp4,
    strategy: "group",
    g: 32,
    dynamic: true,
    scale: "torch.uint8",
  });
  assert.deepEqual(fields(S.MXFP8A16.weights), {
    ...f8,
    strategy: "group",
    g: 32,
    dynamic: false,
    scale: "torch.uint8",
  });
  assert.equal(S.UNQUANTIZED.weights, null);
  // W{2..8}A16 all exist; W8A4 does not (w ≤ a only for the WxAy presets)
  for (const w of [2, 3, 4, 5, 6, 7, 8]) assert.ok(isPresetName(`W${w}A16`));
  assert.ok(!isPresetName("W8A4"));
});

Deno.test("presetScheme expands a shorthand (case-insensitive); unknown names are errors", () => {
  const s = presetScheme("fp8_dynamic", ["Linear"]);
  assert.deepEqual(s.targets, ["Linear"]);
  assert.equal(s.weights?.strategy, "channel");
  assert.equal(s.input_activations?.strategy, "token");
  throwsAt(
    () => presetScheme("W9A16", ["Linear"], "config_groups.W9A16"),
    "config_groups.W9A16",
    "unknown preset scheme",
  );
});

Deno.test("presetNameOf names presets regardless of scale/zp dtypes, else null", () => {
  const block = PRESET_SCHEMES.FP8_BLOCK;
  assert.equal(presetNameOf(block.weights, block.input_activations), "FP8_BLOCK");
  assert.equal(presetNameOf(PRESET_SCHEMES.INT8.weights, PRESET_SCHEMES.INT8.input_activations), "W8A8");
  // old NVFP4 checkpoints have no scale_dtype
  const oldNv = quantArgs({ num_bits: 4, type: "float", strategy: "tensor_group", group_size: 16 });
  assert.equal(presetNameOf(oldNv, null), "NVFP4A16");
  assert.equal(presetNameOf(quantArgs({ strategy: "channel" }), null), "W8A16 (legacy, per-channel)");
  assert.equal(presetNameOf(quantArgs({ num_bits: 4, group_size: 32 }), null), null);
  assert.equal(presetNameOf(null, null), null);
});

Deno.test("quantScheme (programmatic) validates like the parser", () => {
  assert.throws(
    () => quantScheme({ targets: ["Linear"], input_activations: { strategy: "channel" } }),
    /not allowed for activations/,
  );
  assert.equal(
    quantScheme({ targets: ["x"], weights: { num_bits: 4, group_size: 64 } }).weights?.strategy,
    "group",
  );
});

Deno.test("activation-quantization formats are sglang's list (pack-quantized yes, mixed-precision no)", () => {
  for (
    const f of [
      "naive-quantized",
      "int-quantized",
      "float-quantized",
      "nvfp4-pack-quantized",
      "pack-quantized",
    ]
  ) {
    assert.ok(isActivationQuantizationFormat(f), f);
  }
  for (const f of ["mixed-precision", "mxfp4-pack-quantized", "dense", "fakequant", "marlin-24", null]) {
    assert.ok(!isActivationQuantizationFormat(f), String(f));
  }
});
