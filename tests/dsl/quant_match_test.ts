/**
 * Target and ignore matching (quant-spec §1.7, §2.2, §4.6): compressed-tensors' exact / `re:` rules and
 * priority, sglang's substring rules as an option, fused shards, and the fp8 dotted-path rules with globs.
 */
import assert from "node:assert/strict";
import {
  ConfigError,
  findTarget,
  fusedShards,
  ignoreEntryFor,
  matchModulePath,
  matchName,
  modulePathEntryFor,
  nameAliases,
  parseQuantConfig,
  PlanError,
  Resolver,
  validatePatterns,
} from "../../dsl/quant/mod.ts";

const Q = "model.layers.0.self_attn.q_proj";

Deno.test("CT match_name: re: is prefix-anchored (re.match), not full-match; plain entries are exact", () => {
  assert.ok(matchName("x.mlp.down_proj", "re:.*mlp"));
  assert.ok(!matchName("x.mlp.down_proj", "re:mlp")); // anchored at the start
  assert.ok(matchName(Q, "re:model\\.layers\\.\\d+\\.self_attn"));
  assert.ok(matchName(Q, Q));
  assert.ok(!matchName(Q, "q_proj"));
  assert.ok(!matchName("model.lm_head", "lm_head"));
  // Python named groups are translated
  assert.ok(matchName("a.b", "re:(?P<x>a)\\.(?P=x)?b"));
});

Deno.test("CT ignore: exact name, regex or exact class; sglang: case-insensitive substring", () => {
  const ignore = ["lm_head", "re:.*self_attn.*"];
  assert.equal(ignoreEntryFor("lm_head", ["Linear"], ignore, "compressed-tensors"), "lm_head");
  assert.equal(ignoreEntryFor("model.lm_head", ["Linear"], ignore, "compressed-tensors"), null);
  assert.equal(ignoreEntryFor("model.lm_head", ["Linear"], ignore, "sglang"), "lm_head");
  assert.equal(ignoreEntryFor(Q, ["Linear"], ignore, "compressed-tensors"), "re:.*self_attn.*");
  assert.equal(ignoreEntryFor(Q, ["Linear"], ["self_attn"], "compressed-tensors"), null);
  assert.equal(ignoreEntryFor(Q, ["Linear"], ["SELF_ATTN"], "sglang"), "SELF_ATTN");
  assert.equal(ignoreEntryFor(Q, ["Linear"], ["Linear"], "compressed-tensors"), "Linear"); // class entries ignore too
});

Deno.test("CT target priority: exact name > regex (alphabetical) > class; sglang: config order, class substring", () => {
  const targets = ["Linear", "re:.*proj", "re:.*q_proj", Q];
  assert.equal(findTarget(Q, ["Linear"], targets, "compressed-tensors"), Q);
  assert.equal(findTarget(Q, ["Linear"], targets.slice(0, 3), "compressed-tensors"), "re:.*proj"); // ".*proj" < ".*q_proj"
  assert.equal(
    findTarget("model.layers.0.mlp.up_proj", ["Linear"], ["Linear", "re:.*q_proj"], "compressed-tensors"),
    "Linear",
  );
  assert.equal(findTarget(Q, ["Linear"], ["re:.*q_proj", "re:.*proj"], "sglang"), "re:.*q_proj"); // first in order
  // class targets: exact in CT, substring in sglang
  assert.equal(findTarget(Q, ["QKVParallelLinear"], ["Linear"], "compressed-tensors"), null);
  assert.equal(findTarget(Q, ["QKVParallelLinear"], ["Linear"], "sglang"), "Linear");
  assert.equal(findTarget(Q, ["Linear"], ["Embedding"], "compressed-tensors"), null);
});

Deno.test("a target string in two groups takes the later group's scheme (compressed-tensors)", () => {
  const cfg = parseQuantConfig({
    config_groups: {
      a: { targets: ["Linear"], weights: {} },
      b: { targets: ["Linear"], weights: {} },
    },
  });
  const r = new Resolver(cfg, "compressed-tensors").resolve(Q, ["Linear"]);
  assert.equal(r.kind === "group" && r.group.name, "b");
});

Deno.test("fp8 module paths: dotted boundaries, model. variants and globs", () => {
  assert.ok(matchModulePath("mlp.gate", "model.layers.0.mlp.gate"));
  assert.ok(!matchModulePath("mlp.gate", "model.layers.0.mlp.gate_up_proj")); // sglang PR #23467
  assert.ok(!matchModulePath("model.layers.0.mlp.gate", "model.layers.0.mlp.gate_proj"));
  assert.ok(matchModulePath("model.layers.0.self_attn", Q)); // prefix followed by "."
  assert.ok(matchModulePath("self_attn", Q)); // ".self_attn." inside
  assert.ok(!matchModulePath("head", "lm_head"));
  assert.ok(matchModulePath("head", "head"));
  assert.ok(matchModulePath("model.layers.*.self_attn", "model.layers.17.self_attn.o_proj"));
  assert.ok(matchModulePath("*.attn.*", "layers.3.attn.wq_a"));
  assert.ok(!matchModulePath("*.attn.*", "layers.3.attn_norm"));
  assert.ok(matchModulePath("mtp.*", "mtp.0.ffn.experts"));
  assert.ok(!matchModulePath("mtp.*", "layers.0.ffn.experts"));
  // entries are tried with and without a leading model.
  assert.equal(
    modulePathEntryFor("layers.5.mlp.gate", ["model.layers.5.mlp.gate"]),
    "model.layers.5.mlp.gate",
  );
  assert.equal(modulePathEntryFor("model.layers.5.mlp.gate", ["layers.5.mlp.gate"]), "layers.5.mlp.gate");
  assert.equal(modulePathEntryFor("model.layers.5.mlp.gate_proj", ["layers.5.mlp.gate"]), null);
});

Deno.test("fused shards come from packed_modules_mapping", () => {
  const m = { qkv_proj: ["q_proj", "k_proj", "v_proj"] };
  assert.deepEqual(fusedShards("m.l.0.self_attn.qkv_proj", m), [
    "m.l.0.self_attn.q_proj",
    "m.l.0.self_attn.k_proj",
    "m.l.0.self_attn.v_proj",
  ]);
  assert.equal(fusedShards(Q, m), null);
});

Deno.test("fused modules: shards must agree (ignore) — else PlanError naming the module and the ignore entry", () => {
  const cfg = parseQuantConfig({
    config_groups: { g: { targets: ["Linear"], weights: {} } },
    ignore: ["model.layers.0.self_attn.k_proj"],
  });
  const r = new Resolver(cfg, "compressed-tensors");
  assert.throws(() => r.resolve("model.layers.0.self_attn.qkv_proj", ["Linear"]), (e: unknown) => {
    assert.ok(e instanceof PlanError);
    assert.equal(e.path, "ignore[0]");
    assert.equal(e.module, "model.layers.0.self_attn.qkv_proj");
    assert.match(e.message, /requires all to use the same scheme/);
    return true;
  });
  // all shards ignored → the fused module is ignored
  const all = parseQuantConfig({
    config_groups: { g: { targets: ["Linear"], weights: {} } },
    ignore: ["re:.*self_attn.*"],
  });
  assert.equal(
    new Resolver(all, "compressed-tensors").resolve("model.layers.0.self_attn.qkv_proj", ["Linear"]).kind,
    "ignored",
  );
});

Deno.test("fused modules: shards matched by different targets disagree; custom packed_modules_mapping is used", () => {
  const cfg = parseQuantConfig({
    config_groups: {
      a: { targets: ["re:.*q_proj"], weights: { num_bits: 4, group_size: 128 } },
      b: { targets: ["Linear"], weights: {} },
    },
    packed_modules_mapping: { qk_proj: ["q_proj", "k_proj"] },
  });
  const r = new Resolver(cfg, "compressed-tensors");
  assert.throws(() => r.resolve("m.0.qk_proj", ["Linear"]), PlanError);
  // qkv_proj is not in this config's mapping, so it is an ordinary name
  assert.equal(r.resolve("m.0.qkv_proj", ["Linear"]).kind, "group");
});

Deno.test("sglang mode aliases a Linear target to FusedMoE", () => {
  const cfg = parseQuantConfig({ config_groups: { g: { targets: ["Linear"], weights: {} } } });
  const s = new Resolver(cfg, "sglang");
  assert.equal(s.resolve("model.layers.1.mlp.experts.0.up_proj", ["FusedMoE"]).kind, "group");
  const c = new Resolver(cfg, "compressed-tensors");
  assert.equal(c.resolve("model.layers.1.mlp.experts.0.up_proj", ["FusedMoE"]).kind, "none");
});

Deno.test("multimodal wrappers: names are also matched without language_model.", () => {
  assert.deepEqual(nameAliases("language_model.lm_head"), ["language_model.lm_head", "lm_head"]);
  assert.deepEqual(nameAliases("model.layers.0.mlp"), ["model.layers.0.mlp"]);
  assert.equal(ignoreEntryFor("language_model.lm_head", [], ["lm_head"], "compressed-tensors"), "lm_head");
  assert.equal(
    findTarget(
      "language_model.model.layers.0.mlp.up_proj",
      [],
      ["re:model\\.layers\\.0\\..*"],
      "compressed-tensors",
    ),
    "re:model\\.layers\\.0\\..*",
  );
});

Deno.test("validatePatterns reports the index of a bad regex", () => {
  assert.throws(
    () => validatePatterns(["ok", "re:a(", "re:.*"], "ignore"),
    (e: unknown) => e instanceof ConfigError && e.path === "ignore[1]",
  );
});
