/**
 * The per-module plan: kiln kernels per scheme, contradictions (fused shards, MoE projections, targets
 * that match nothing), sglang vs compressed-tensors matching, linear_fp8_config mixing, and the grouped
 * table.
 */
import assert from "node:assert/strict";
import {
  braceLeaves,
  formatPlan,
  formatRanges,
  groupPlan,
  type ModulePlan,
  modulesFromModuleNames,
  parseQuantConfig,
  PlanError,
  planModel,
  type QuantPlan,
} from "../../dsl/quant/mod.ts";

function row(plan: QuantPlan, name: string): ModulePlan {
  const r = plan.modules.find((m) => m.name === name);
  assert.ok(r, `no row ${name}`);
  return r;
}

const layers = (n: number, leaves: string[], parent: string) =>
  Array.from({ length: n }, (_, i) => leaves.map((l) => `model.layers.${i}.${parent}.${l}`)).flat();
const ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"];
const MLP = ["gate_proj", "up_proj", "down_proj"];
const DENSE = modulesFromModuleNames([...layers(2, ATTN, "self_attn"), ...layers(2, MLP, "mlp"), "lm_head"]);
const ct = (groups: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  parseQuantConfig({
    quant_method: "compressed-tensors",
    format: "float-quantized",
    config_groups: groups,
    ...extra,
  });
const FP8_DYNAMIC_GROUP = {
  targets: ["Linear"],
  weights: { type: "float", strategy: "channel" },
  input_activations: { type: "float", strategy: "token", dynamic: true },
};

Deno.test("kernels: FP8_DYNAMIC → tokenQuant + per-token×per-channel GEMM; INT8 W8A8 dynamic likewise in int8", () => {
  const fp8 = row(planModel(ct({ g: FP8_DYNAMIC_GROUP }), DENSE), "model.layers.0.mlp.up_proj");
  assert.equal(fp8.label, "FP8_DYNAMIC");
  assert.equal(fp8.kernelText, "tokenQuant fp8e4m3 + blockScaledMatmul per-token×per-channel");
  const int8 = parseQuantConfig({ format: "int-quantized", config_groups: { W8A8: ["Linear"] } });
  const r = row(planModel(int8, DENSE), "model.layers.0.mlp.up_proj");
  assert.equal(r.scheme, "W8A8-INT8");
  assert.deepEqual(r.kernels, [
    { op: "tokenQuant", dtype: "i8" },
    { op: "blockScaledMatmul", dtype: "i8", mode: "token-channel", block: null },
  ]);
  assert.equal(r.kernelText, "tokenQuant int8 + blockScaledMatmul int8 per-token×per-channel");
});

Deno.test("kernels: what kiln cannot run is 'unsupported: why', with the scheme still reported", () => {
  // int8 W8A8 with asymmetric static inputs: sglang runs it (azp), kiln has no zero-point kernel
  const asym = ct({ g: { targets: ["Linear"], weights: {}, input_activations: { symmetric: false } } }, {
    format: "int-quantized",
  });
  const a = row(planModel(asym, DENSE), "model.layers.1.self_attn.q_proj");
  assert.equal(a.scheme, "W8A8-INT8");
  assert.equal(a.status, "unsupported");
  assert.match(a.reason!, /asymmetric int8 activations/);
  // block sizes other than 128x128
  const b64 = ct({
    g: {
      targets: ["Linear"],
      weights: { type: "float", strategy: "block", block_structure: [128, 64] },
      input_activations: { type: "float", group_size: 64, dynamic: true },
    },
  });
  const b = row(planModel(b64, DENSE), "model.layers.0.mlp.up_proj");
  assert.equal(b.scheme, "W8A8-FP8");
  assert.match(b.reason!, /128x128 weight blocks; this checkpoint has \[128, 64\]/);
  // activation groups that differ from the block's K
  const g64 = ct({
    g: {
      targets: ["Linear"],
      weights: { type: "float", strategy: "block", block_structure: [128, 128] },
      input_activations: { type: "float", group_size: 64, dynamic: true },
    },
  });
  assert.match(
    row(planModel(g64, DENSE), "model.layers.0.mlp.up_proj").reason!,
    /group_size 64 differs from the weight block's K size 128/,
  );
  // FP8 per-tensor weight-only → W8A16-FP8, which kiln has no kernel for
  const wo = ct({ g: { targets: ["Linear"], weights: { type: "float", strategy: "tensor" } } });
  const w = row(planModel(wo, DENSE), "model.layers.0.mlp.up_proj");
  assert.equal(w.scheme, "W8A16-FP8");
  assert.match(w.reason!, /no kiln kernel for FP8 weight-only/);
  // FP8 per-channel weight-only: sglang's weight-only group/channel test comes first (it does not check
  // the type) and needs pack-quantized, so the layer has no scheme at all (§2.4 step 5)
  const woc = ct({ g: { targets: ["Linear"], weights: { type: "float", strategy: "channel" } } });
  const wc = row(planModel(woc, DENSE), "model.layers.0.mlp.up_proj");
  assert.equal(wc.scheme, null);
  assert.match(wc.reason!, /need format "pack-quantized"/);
  // block weights with dynamic per-token inputs: sglang quantizes per group of bk anyway
  const tok = ct({
    g: {
      targets: ["Linear"],
      weights: { type: "float", strategy: "block", block_structure: [128, 128] },
      input_activations: { type: "float", strategy: "token", dynamic: true },
    },
  });
  const t = row(planModel(tok, DENSE), "model.layers.0.mlp.up_proj");
  assert.equal(t.status, "quantized");
  assert.match(t.reason!, /per token group of 128/);
});

Deno.test("PlanError: q/k/v shards that resolve differently (sglang fuses them)", () => {
  const cfg = ct({ g: FP8_DYNAMIC_GROUP }, { ignore: ["model.layers.1.self_attn.k_proj"] });
  assert.throws(() => planModel(cfg, DENSE), (e: unknown) => {
    assert.ok(e instanceof PlanError);
    assert.equal(e.module, "model.layers.1.self_attn.qkv_proj");
    assert.equal(e.path, "ignore[0]");
    assert.match(e.message, /k_proj: unquantized/);
    return true;
  });
  // o_proj alone is not a shard: ignoring it is fine
  const ok = planModel(ct({ g: FP8_DYNAMIC_GROUP }, { ignore: ["model.layers.1.self_attn.o_proj"] }), DENSE);
  assert.equal(row(ok, "model.layers.1.self_attn.o_proj").status, "unquantized");
});

Deno.test("PlanError: MoE projections with different schemes", () => {
  const mods = modulesFromModuleNames([
    "model.layers.0.mlp.experts.0.gate_proj",
    "model.layers.0.mlp.experts.0.up_proj",
    "model.layers.0.mlp.experts.0.down_proj",
  ]);
  const cfg = ct({ g: FP8_DYNAMIC_GROUP }, { ignore: ["re:.*experts\\.\\d+\\.down_proj"] });
  assert.throws(
    () => planModel(cfg, mods),
    (e: unknown) =>
      e instanceof PlanError && e.module === "model.layers.0.mlp.experts" && e.path === "ignore[0]",
  );
  const all = ct({ g: FP8_DYNAMIC_GROUP }, { ignore: ["re:.*experts.*"] });
  assert.equal(row(planModel(all, mods), "model.layers.0.mlp.experts").status, "unquantized");
});

Deno.test("PlanError: a target that matches no module (warning with strictTargets: false)", () => {
  const cfg = ct({ g: { ...FP8_DYNAMIC_GROUP, targets: ["Linear", "re:.*no_such_proj"] } });
  assert.throws(() => planModel(cfg, DENSE), (e: unknown) => {
    assert.ok(e instanceof PlanError);
    assert.equal(e.path, "config_groups.g.targets[1]");
    assert.match(e.message, /matches no module/);
    return true;
  });
  const lax = planModel(cfg, DENSE, { strictTargets: false });
  assert.match(lax.warnings[0], /config_groups\.g\.targets\[1\]/);
  // targets reaching only some expert are found
  const mods = modulesFromModuleNames([
    "model.layers.0.mlp.experts.0.up_proj",
    "model.layers.0.mlp.experts.5.up_proj",
  ]);
  planModel(ct({ g: { ...FP8_DYNAMIC_GROUP, targets: ["re:.*experts\\.5\\..*"] } }), mods);
  // an unknown class name is unmatched too
  assert.throws(() => planModel(ct({ g: { ...FP8_DYNAMIC_GROUP, targets: ["Conv2d"] } }), DENSE), PlanError);
});

Deno.test("matching: compressed-tensors (exact) by default, sglang (substring) as an option", () => {
  const cfg = ct({ g: FP8_DYNAMIC_GROUP }, { ignore: ["self_attn", "lm_head"] });
  const mods = modulesFromModuleNames([
    ...layers(1, ATTN, "self_attn"),
    ...layers(1, MLP, "mlp"),
    "model.lm_head",
  ]);
  const c = planModel(cfg, mods);
  assert.equal(row(c, "model.layers.0.self_attn.q_proj").status, "quantized"); // "self_attn" is not the exact name
  assert.equal(row(c, "model.lm_head").scheme, "W8A8-FP8"); // an nn.Linear, not named exactly "lm_head"
  const s = planModel(cfg, mods, { matching: "sglang" });
  assert.equal(row(s, "model.layers.0.self_attn.q_proj").status, "unquantized");
  assert.equal(row(s, "model.lm_head").status, "unquantized");
  assert.equal(row(s, "model.layers.0.mlp.up_proj").scheme, "W8A8-FP8");
});

Deno.test("sglang mode: unmatched Linear raises in sglang (unsupported row); lm_head only when named", () => {
  const cfg = ct({ g: { ...FP8_DYNAMIC_GROUP, targets: ["re:.*mlp.*"] } });
  const s = planModel(cfg, DENSE, { matching: "sglang" });
  assert.match(row(s, "model.layers.0.self_attn.q_proj").reason!, /unable to find a matching target/);
  assert.equal(row(s, "model.layers.0.self_attn.q_proj").status, "unsupported");
  assert.equal(
    row(planModel(cfg, DENSE), "model.layers.0.self_attn.q_proj").reason,
    "no config group targets it",
  );
  const linear = planModel(ct({ g: FP8_DYNAMIC_GROUP }), DENSE, { matching: "sglang" });
  assert.equal(row(linear, "lm_head").status, "unquantized");
  const named = planModel(ct({ g: { ...FP8_DYNAMIC_GROUP, targets: ["Linear", "re:.*lm_head"] } }), DENSE, {
    matching: "sglang",
  });
  assert.equal(row(named, "lm_head").scheme, "W8A8-FP8");
});

Deno.test("linear_fp8_config: Linear layers FP8 block, experts keep the int4 groups", () => {
  const cfg = parseQuantConfig({
    quant_method: "compressed-tensors",
    format: "pack-quantized",
    config_groups: { group_0: { targets: ["Linear"], weights: { num_bits: 4, group_size: 32 } } },
    linear_fp8_config: {
      quant_method: "fp8",
      activation_scheme: "dynamic",
      weight_block_size: [128, 128],
      ignored_layers: ["mlp.gate_proj"],
    },
  });
  const mods = modulesFromModuleNames([
    ...layers(1, ATTN, "self_attn"),
    "model.layers.0.mlp.gate_up_proj",
    "model.layers.0.mlp.gate_proj",
    "model.layers.1.mlp.experts.0.gate_proj",
    "model.layers.1.mlp.experts.0.up_proj",
    "model.layers.1.mlp.experts.0.down_proj",
  ]);
  const plan = planModel(cfg, mods);
  const q = row(plan, "model.layers.0.self_attn.q_proj");
  assert.equal(q.group, "linear_fp8_config");
  assert.equal(q.label, "FP8_BLOCK");
  assert.equal(q.kernelText, "groupQuant fp8e4m3 g128 rowAlign 4 + blockScaledMatmul 128x128");
  assert.equal(row(plan, "model.layers.0.mlp.gate_up_proj").scheme, "W8A8-FP8"); // dotted boundary: not mlp.gate_proj
  assert.equal(row(plan, "model.layers.0.mlp.gate_proj").status, "unquantized");
  assert.equal(row(plan, "model.layers.1.mlp.experts").scheme, "WNA16-MoE");
});

Deno.test("Linear targets propagate to FusedMoE; a FusedMoE-only group leaves Linear unquantized", () => {
  const mods = modulesFromModuleNames([
    ...layers(1, ATTN, "self_attn"),
    ...[0, 1].flatMap((e) => MLP.map((p) => `model.layers.0.mlp.experts.${e}.${p}`)),
  ]);
  for (const matching of ["compressed-tensors", "sglang"] as const) {
    const p = planModel(ct({ g: FP8_DYNAMIC_GROUP }), mods, { matching });
    assert.equal(row(p, "model.layers.0.mlp.experts").scheme, "W8A8-FP8-MoE", matching);
  }
  const moeOnly = planModel(ct({ g: { ...FP8_DYNAMIC_GROUP, targets: ["FusedMoE"] } }), mods);
  assert.equal(row(moeOnly, "model.layers.0.mlp.experts").scheme, "W8A8-FP8-MoE");
  assert.equal(row(moeOnly, "model.layers.0.self_attn.q_proj").status, "unquantized");
});

Deno.test("mixed-precision: each group's own format decides (fp8 attention, int4 MLP)", () => {
  const cfg = parseQuantConfig({
    format: "mixed-precision",
    config_groups: {
      attn: {
        targets: ["re:.*self_attn.*"],
        format: "float-quantized",
        ...{ weights: FP8_DYNAMIC_GROUP.weights, input_activations: FP8_DYNAMIC_GROUP.input_activations },
      },
      mlp: { targets: ["re:.*mlp.*"], format: "pack-quantized", weights: { num_bits: 4, group_size: 128 } },
    },
  });
  const p = planModel(cfg, DENSE, { strictTargets: false });
  assert.equal(row(p, "model.layers.0.self_attn.k_proj").scheme, "W8A8-FP8");
  assert.equal(row(p, "model.layers.0.mlp.up_proj").scheme, "WNA16");
  assert.equal(row(p, "model.layers.0.mlp.up_proj").label, "W4A16");
});

Deno.test("grouping: repeated layers become one row per plan; table text", () => {
  const mods = modulesFromModuleNames([
    ...layers(61, ATTN, "self_attn"),
    ...layers(61, MLP, "mlp"),
    "lm_head",
    "model.norm",
  ]);
  const plan = planModel(
    parseQuantConfig({ quant_method: "fp8", activation_scheme: "dynamic", weight_block_size: [128, 128] }),
    mods,
  );
  const rows = groupPlan(plan);
  const attn = rows.find((r) => r.modules === "self_attn.{q,k,v,o}_proj")!;
  assert.equal(attn.where, "layers 0–60");
  assert.equal(attn.count, 244);
  assert.equal(
    attn.value,
    "FP8_BLOCK (W8A8-FP8, cc ≥ 89) → groupQuant fp8e4m3 g128 rowAlign 4 + blockScaledMatmul 128x128",
  );
  assert.ok(rows.some((r) => r.modules === "mlp.{gate,up,down}_proj" && r.where === "layers 0–60"));
  const text = formatPlan(plan);
  assert.match(
    text,
    /layers 0–60 self_attn\.\{q,k,v,o\}_proj: +FP8_BLOCK \(W8A8-FP8, cc ≥ 89\) → groupQuant fp8e4m3 g128 rowAlign 4 \+ blockScaledMatmul 128x128/,
  );
  assert.match(text, /lm_head: +unquantized \(the output head is not converted by fp8 checkpoints\)/);
  assert.match(text, /429 modules: 427 quantized with kiln kernels, 0 unsupported, 2 unquantized/);
});

Deno.test("grouping: a layer that differs splits the range", () => {
  const cfg = ct({ g: FP8_DYNAMIC_GROUP }, { ignore: ["re:model\\.layers\\.3\\..*"] });
  const mods = modulesFromModuleNames([...layers(6, ["o_proj"], "self_attn")]);
  const rows = groupPlan(planModel(cfg, mods));
  assert.deepEqual(rows.map((r) => `${r.where} ${r.modules}`), [
    "layers 0–2, 4–5 self_attn.o_proj",
    "layer 3 self_attn.o_proj",
  ]);
});

Deno.test("formatRanges and braceLeaves", () => {
  assert.equal(formatRanges([0, 1, 2, 60, 3]), "0–3, 60");
  assert.equal(formatRanges([5]), "5");
  assert.equal(braceLeaves(["q_proj", "k_proj", "v_proj", "o_proj"]), "{q,k,v,o}_proj");
  assert.equal(
    braceLeaves(["input_layernorm", "post_attention_layernorm"]),
    "{input,post_attention}_layernorm",
  );
  assert.equal(braceLeaves(["w1", "w2"]), "{w1,w2}");
  assert.equal(braceLeaves(["up_proj"]), "up_proj");
  assert.equal(braceLeaves(["x_proj", "proj"]), "{x_proj,proj}");
});

Deno.test("plan records the device capability and the KV-cache part", () => {
  const cfg = ct({ g: FP8_DYNAMIC_GROUP }, { kv_cache_scheme: { type: "float", strategy: "tensor" } });
  const p = planModel(cfg, DENSE, { capability: 90 });
  assert.equal(p.capability, 90);
  assert.deepEqual(p.kvCache?.modules, ["model.layers.0.self_attn", "model.layers.1.self_attn"]);
  assert.match(p.kvCache!.reason, /no kiln kernel for a per-tensor fp8 KV cache/);
  assert.match(formatPlan(p), /kv cache \(2 attention modules\): fp8e4m3 tensor static → unsupported/);
});
