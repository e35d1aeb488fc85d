/**
 * QuantArgs: compressed-tensors defaults, strategy inference and every validation rule (quant-spec §1.1),
 * each error checked for the JSON path it names.
 */
import assert from "node:assert/strict";
import { throwsAt as sharedThrowsAt } from "./_config_errors.ts";
import { describeQuantArgs, parseQuantArgs, quantArgs, quantArgsEqual } from "../../dsl/quant/mod.ts";

/** Assert `fn` throws a ConfigError whose path is `path` and whose message contains `text`. */
/** The shared check, plus: args errors lead with their path. */
function throwsAt(fn: () => unknown, path: string, text: string): void {
  sharedThrowsAt(fn, path, text);
  assert.throws(fn, (e: unknown) => (e as Error).message.startsWith(`${path}: `));
}

Deno.test("QuantArgs: an empty object takes compressed-tensors' defaults", () => {
  const a = parseQuantArgs({}, "weights");
  assert.deepEqual({ ...a }, {
    num_bits: 8,
    type: "int",
    symmetric: true,
    group_size: null,
    strategy: "tensor",
    block_structure: null,
    dynamic: false,
    actorder: null,
    scale_dtype: null,
    zp_dtype: "torch.int8",
  });
});

Deno.test("QuantArgs: strategy is inferred from group_size (null → tensor, > 0 → group, -1 → channel)", () => {
  assert.equal(parseQuantArgs({ group_size: null }, "w").strategy, "tensor");
  assert.equal(parseQuantArgs({ group_size: 128 }, "w").strategy, "group");
  assert.equal(parseQuantArgs({ group_size: -1 }, "w").strategy, "channel");
  throwsAt(() => parseQuantArgs({ group_size: 0 }, "w"), "w.group_size", "cannot infer a strategy");
  throwsAt(() => parseQuantArgs({ group_size: -2 }, "w"), "w.group_size", "got -2");
  // an explicit strategy is kept; channel may carry group_size -1
  assert.equal(parseQuantArgs({ strategy: "channel", group_size: -1 }, "w").strategy, "channel");
});

Deno.test("QuantArgs: enums are lower-cased before validation", () => {
  const a = parseQuantArgs({ type: "FLOAT", strategy: "TOKEN", dynamic: true }, "a");
  assert.equal(a.type, "float");
  assert.equal(a.strategy, "token");
  assert.equal(
    parseQuantArgs(
      { strategy: "tensor_group", group_size: 16, dynamic: "LOCAL", type: "float", num_bits: 4 },
      "a",
    ).dynamic,
    "local",
  );
});

Deno.test("QuantArgs: token strategy needs dynamic", () => {
  throwsAt(
    () => parseQuantArgs({ strategy: "token" }, "config_groups.g.input_activations"),
    "config_groups.g.input_activations.dynamic",
    `strategy is "token"`,
  );
  assert.equal(parseQuantArgs({ strategy: "token", dynamic: true }, "a").dynamic, true);
});

Deno.test("QuantArgs: group and tensor_group need group_size > 0", () => {
  throwsAt(
    () => parseQuantArgs({ strategy: "group" }, "config_groups.group_0.weights"),
    "config_groups.group_0.weights.group_size",
    `required when strategy is "group"`,
  );
  throwsAt(
    () => parseQuantArgs({ strategy: "tensor_group", type: "float", num_bits: 4 }, "w"),
    "w.group_size",
    `required when strategy is "tensor_group"`,
  );
  throwsAt(() => parseQuantArgs({ strategy: "group", group_size: -1 }, "w"), "w.group_size", "must be > 0");
});

Deno.test("QuantArgs: group_size > 0 needs strategy group or tensor_group", () => {
  throwsAt(
    () => parseQuantArgs({ strategy: "channel", group_size: 128 }, "w"),
    "w.group_size",
    `got strategy "channel"`,
  );
  throwsAt(
    () => parseQuantArgs({ strategy: "tensor", group_size: 64 }, "w"),
    "w.group_size",
    `got strategy "tensor"`,
  );
});

Deno.test("QuantArgs: block strategy ⇔ block_structure; legacy 'RxC' strings accepted", () => {
  throwsAt(
    () => parseQuantArgs({ strategy: "block", type: "float" }, "w"),
    "w.block_structure",
    `required when strategy is "block"`,
  );
  throwsAt(
    () => parseQuantArgs({ block_structure: [128, 128] }, "w"),
    "w.block_structure",
    `only allowed with strategy "block"`,
  );
  assert.deepEqual(parseQuantArgs({ strategy: "block", block_structure: "128x64" }, "w").block_structure, [
    128,
    64,
  ]);
  assert.deepEqual(parseQuantArgs({ strategy: "block", block_structure: [64, 128] }, "w").block_structure, [
    64,
    128,
  ]);
  throwsAt(
    () => parseQuantArgs({ strategy: "block", block_structure: [128] }, "w"),
    "w.block_structure",
    "two positive integers",
  );
  throwsAt(
    () => parseQuantArgs({ strategy: "block", block_structure: [128, 0] }, "w"),
    "w.block_structure",
    "two positive integers",
  );
  throwsAt(
    () => parseQuantArgs({ strategy: "block", block_structure: "128xabc" }, "w"),
    "w.block_structure",
    "two positive integers",
  );
  throwsAt(
    () => parseQuantArgs({ strategy: "block", block_structure: 128 }, "w"),
    "w.block_structure",
    "[rows, cols]",
  );
});

Deno.test("QuantArgs: actorder aliases; 'group' needs a group strategy, 'weight' does not", () => {
  assert.equal(parseQuantArgs({ group_size: 128, actorder: true }, "w").actorder, "group");
  assert.equal(parseQuantArgs({ group_size: 128, actorder: false }, "w").actorder, null);
  assert.equal(parseQuantArgs({ group_size: 128, actorder: "dynamic" }, "w").actorder, "group");
  assert.equal(parseQuantArgs({ strategy: "channel", actorder: "static" }, "w").actorder, "weight");
  assert.equal(parseQuantArgs({ strategy: "channel", actorder: "weight" }, "w").actorder, "weight");
  throwsAt(
    () => parseQuantArgs({ strategy: "channel", actorder: "group" }, "w"),
    "w.actorder",
    `"group" needs strategy`,
  );
  throwsAt(() => parseQuantArgs({ group_size: 128, actorder: "sometimes" }, "w"), "w.actorder", "must be");
});

Deno.test("QuantArgs: dynamic quantization needs token/tensor/group/tensor_group; 'local' needs tensor_group", () => {
  throwsAt(() => parseQuantArgs({ strategy: "channel", dynamic: true }, "a"), "a.dynamic", `got "channel"`);
  throwsAt(
    () => parseQuantArgs({ strategy: "block", block_structure: [128, 128], dynamic: true }, "a"),
    "a.dynamic",
    `got "block"`,
  );
  throwsAt(
    () => parseQuantArgs({ strategy: "group", group_size: 16, dynamic: "local" }, "a"),
    "a.dynamic",
    `"local" needs strategy "tensor_group"`,
  );
  throwsAt(() => parseQuantArgs({ dynamic: "sometimes" }, "a"), "a.dynamic", "must be true, false");
  for (const strategy of ["token", "tensor"] as const) {
    assert.equal(parseQuantArgs({ strategy, dynamic: true }, "a").dynamic, true);
  }
});

Deno.test("QuantArgs: unknown fields are an error, observer fields are accepted and ignored", () => {
  throwsAt(
    () => parseQuantArgs({ num_bits: 8, bits: 8 }, "config_groups.group_0.weights"),
    "config_groups.group_0.weights.bits",
    "unknown field",
  );
  const a = parseQuantArgs({ observer: "minmax", observer_kwargs: { x: 1 } }, "w");
  assert.ok(!("observer" in a));
  throwsAt(() => parseQuantArgs({ observer: 3 }, "w"), "w.observer", "must be a string");
  throwsAt(() => parseQuantArgs({ observer_kwargs: [] }, "w"), "w.observer_kwargs", "must be an object");
});

Deno.test("QuantArgs: wrong types are errors with paths, never coerced", () => {
  throwsAt(() => parseQuantArgs({ num_bits: "8" }, "w"), "w.num_bits", "must be an integer");
  throwsAt(() => parseQuantArgs({ num_bits: 8.5 }, "w"), "w.num_bits", "must be an integer");
  throwsAt(() => parseQuantArgs({ num_bits: 0 }, "w"), "w.num_bits", "from 1 to 32");
  throwsAt(() => parseQuantArgs({ symmetric: "true" }, "w"), "w.symmetric", "true or false");
  throwsAt(() => parseQuantArgs({ type: "fp" }, "w"), "w.type", "unknown quantization type");
  throwsAt(() => parseQuantArgs({ type: 1 }, "w"), "w.type", "must be a string");
  throwsAt(() => parseQuantArgs({ strategy: "row" }, "w"), "w.strategy", "unknown strategy");
  throwsAt(() => parseQuantArgs({ group_size: "128" }, "w"), "w.group_size", "must be an integer");
  throwsAt(() => parseQuantArgs([], "w"), "w", "must be an object");
  throwsAt(() => parseQuantArgs(null, "kv_cache_scheme"), "kv_cache_scheme", "must be an object");
});

Deno.test("QuantArgs: float needs 4 or 8 bits", () => {
  throwsAt(
    () => parseQuantArgs({ type: "float", num_bits: 16 }, "w"),
    "w.num_bits",
    "4-bit (e2m1) and 8-bit (e4m3)",
  );
  assert.equal(
    parseQuantArgs({ type: "float", num_bits: 4, group_size: 16, strategy: "tensor_group" }, "w").num_bits,
    4,
  );
});

Deno.test("QuantArgs: zp_dtype is inferred, scale/zp dtypes validated and normalized to torch.*", () => {
  assert.equal(parseQuantArgs({ type: "float" }, "w").zp_dtype, "torch.float8_e4m3fn");
  assert.equal(
    parseQuantArgs({ type: "float", num_bits: 4, group_size: 16 }, "w").zp_dtype,
    "torch.float8_e4m3fn",
  );
  assert.equal(parseQuantArgs({ num_bits: 16 }, "w").zp_dtype, "torch.int16");
  assert.equal(parseQuantArgs({ num_bits: 32 }, "w").zp_dtype, "torch.int32");
  const mx = parseQuantArgs({
    type: "float",
    num_bits: 4,
    group_size: 32,
    scale_dtype: "torch.uint8",
    zp_dtype: "uint8",
  }, "w");
  assert.equal(mx.scale_dtype, "torch.uint8");
  assert.equal(mx.zp_dtype, "torch.uint8");
  throwsAt(
    () => parseQuantArgs({ scale_dtype: "torch.float7" }, "w"),
    "w.scale_dtype",
    "unknown torch dtype",
  );
});

Deno.test("quantArgs (programmatic) applies the same rules; equality and descriptions", () => {
  const a = quantArgs({ type: "float", strategy: "block", block_structure: [128, 128] });
  const b = parseQuantArgs({ type: "float", strategy: "block", block_structure: [128, 128] }, "w");
  assert.ok(quantArgsEqual(a, b));
  assert.ok(!quantArgsEqual(a, quantArgs({ type: "float" })));
  assert.ok(quantArgsEqual(null, null));
  assert.ok(!quantArgsEqual(a, null));
  assert.equal(describeQuantArgs(a), "fp8e4m3 block 128x128");
  assert.equal(
    describeQuantArgs(quantArgs({ num_bits: 4, group_size: 32, symmetric: false })),
    "int4 group 32 asym",
  );
  assert.equal(
    describeQuantArgs(quantArgs({ type: "float", strategy: "token", dynamic: true })),
    "fp8e4m3 token dynamic",
  );
  assert.throws(() => quantArgs({ strategy: "group" }, "x"), /x\.group_size: required/);
});
