/**
 * `deno task inspect`: config.json files synthesized around the fixtures (which hold only the
 * quantization_config), model directories with an index or safetensors headers, --json, and errors.
 */
import assert from "node:assert/strict";
import { serializeSafetensors } from "../../dsl/safetensors.ts";
import { inspect, main } from "../../cli/inspect.ts";

const FIXTURES = new URL("../fixtures/hf-configs/", import.meta.url);
const fixture = (name: string) => JSON.parse(Deno.readTextFileSync(new URL(name, FIXTURES)));
const ROOT = new URL("../../", import.meta.url).pathname;

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "", err = "";
  const code = await main(args, { out: (s) => (out += s + "\n"), err: (s) => (err += s + "\n") });
  return { code, out, err };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "kiln_inspect_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const DEEPSEEK_ARCH = {
  architectures: ["DeepseekV3ForCausalLM"],
  model_type: "deepseek_v3",
  num_hidden_layers: 61,
  first_k_dense_replace: 3,
  n_routed_experts: 256,
  n_shared_experts: 1,
  q_lora_rank: 1536,
  kv_lora_rank: 512,
};

Deno.test("inspect config.json (DeepSeek-V3 fp8 block): module names derived from the architecture", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/config.json`;
    await Deno.writeTextFile(
      path,
      JSON.stringify({ ...DEEPSEEK_ARCH, quantization_config: fixture("deepseek-v3-fp8-block.json") }),
    );
    const r = await run([path]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /modules: derived from config\.json \(deepseek \(MLA \+ MoE\)\)/);
    assert.match(
      r.out,
      /layers 0–60 self_attn\.\{q_a_proj,q_b_proj,kv_a_proj_with_mqa,kv_b_proj,o_proj\}: +FP8_BLOCK \(W8A8-FP8, cc ≥ 89\) → groupQuant fp8e4m3 g128 rowAlign 4 \+ blockScaledMatmul 128x128/,
    );
    assert.match(r.out, /layers 0–2 mlp\.\{gate,up,down\}_proj: +FP8_BLOCK/);
    assert.match(
      r.out,
      /layers 3–60 mlp\.experts \(256 experts\): +FP8_BLOCK \(W8A8-FP8-MoE, cc ≥ 80\) → unsupported: no kiln kernel/,
    );
    assert.match(r.out, /lm_head: +unquantized/);
  });
});

Deno.test("inspect a model dir: names from model.safetensors.index.json; --json; --cc", async () => {
  await withDir(async (dir) => {
    const q = fixture("hf-docs-llama3.1-8b-fp8-static-tensor-naive-quantized.json");
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({ model_type: "llama", num_hidden_layers: 32, quantization_config: q }),
    );
    const names = [0, 1].flatMap((i) =>
      ["q_proj", "k_proj", "v_proj", "o_proj"].flatMap((
        p,
      ) => [
        `model.layers.${i}.self_attn.${p}.weight`,
        `model.layers.${i}.self_attn.${p}.weight_scale`,
        `model.layers.${i}.self_attn.${p}.input_scale`,
      ])
    );
    const weight_map = Object.fromEntries(
      [...names, "lm_head.weight", "model.embed_tokens.weight"].map((
        n,
      ) => [n, "model-00001-of-00001.safetensors"]),
    );
    await Deno.writeTextFile(`${dir}/model.safetensors.index.json`, JSON.stringify({ weight_map }));
    const text = await run([dir]);
    assert.equal(text.code, 0, text.err);
    assert.match(text.out, /modules: checkpoint tensor names/);
    assert.match(
      text.out,
      /layers 0–1 self_attn\.\{q,k,v,o\}_proj: +FP8 \(W8A8-FP8, cc ≥ 89\) → tensorQuant fp8e4m3 static \+ blockScaledMatmul per-tensor/,
    );
    const js = await run([dir, "--json", "--cc", "80"]);
    assert.equal(js.code, 0, js.err);
    const j = JSON.parse(js.out);
    assert.equal(j.quantized, true);
    assert.equal(j.capability, 80);
    assert.equal(j.quantMethod, "compressed-tensors");
    const q0 = j.modules.find((m: { name: string }) => m.name === "model.layers.0.self_attn.q_proj");
    assert.equal(q0.scheme, "W8A16-FP8"); // the sm_80 fallback
    assert.equal(q0.fallbackFrom, "W8A8-FP8");
    assert.equal(j.modules.find((m: { name: string }) => m.name === "lm_head").status, "unquantized");
    assert.ok(
      j.rows.some((r: { where: string; modules: string }) =>
        r.where === "layers 0–1" && r.modules === "self_attn.{q,k,v,o}_proj"
      ),
    );
    // the derived names would have been 32 layers; the checkpoint has 2
    assert.equal(j.modules.filter((m: { kind: string }) => m.kind === "linear").length, 8);
  });
});

Deno.test("inspect a model dir without an index: names from safetensors headers (Kimi under text_config)", async () => {
  await withDir(async (dir) => {
    const q = fixture("kimi-k2.5-ct-w4a16-int4-group32-pack-quantized.json");
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({
        model_type: "kimi_k25",
        text_config: { model_type: "kimi_k2", num_hidden_layers: 2, quantization_config: q },
      }),
    );
    const t = (name: string) => ({ name, dtype: "I32" as const, shape: [1], data: new Int32Array([7]) });
    await Deno.writeFile(
      `${dir}/model-1.safetensors`,
      serializeSafetensors([
        t("language_model.model.layers.1.mlp.experts.0.gate_proj.weight_packed"),
        t("language_model.model.layers.1.mlp.experts.0.up_proj.weight_packed"),
        t("language_model.model.layers.1.mlp.experts.0.down_proj.weight_packed"),
        t("language_model.model.layers.1.self_attn.o_proj.weight"),
        t("language_model.lm_head.weight"),
      ]),
    );
    const r = await run([dir, "--moe-backend", "flashinfer_trtllm"]);
    assert.equal(r.code, 0, r.err);
    assert.match(
      r.out,
      /mlp\.experts \(1 experts\): +int4 group 32 \(weight-only\) \(MxInt4-MoE, cc ≥ 100\)/,
    );
    assert.match(
      r.out,
      /self_attn\.o_proj: +unquantized \(ignored by text_config\.quantization_config\.ignore "re:\.\*self_attn\.\*"\)/,
    );
    assert.match(r.out, /language_model\.lm_head: +unquantized/);
  });
});

Deno.test("inspect a bare quantization_config with --modules; --matching sglang", async () => {
  const path = new URL("gpt-oss-120b-mxfp4.json", FIXTURES).pathname;
  const mods = "model.layers.0.self_attn.q_proj,model.layers.0.mlp.router,model.layers.0.mlp.experts,lm_head";
  const r = await run([path, "--modules", mods]);
  assert.equal(r.code, 0, r.err);
  assert.match(
    r.out,
    /layer 0 mlp\.experts: +MXFP4A16 \(MXFP4-MoE, cc ≥ 80\) → unsupported: no kiln kernel for fused MXFP4 MoE/,
  );
  assert.match(
    r.out,
    /layer 0 self_attn\.q_proj: +unquantized \(ignored by modules_to_not_convert "model\.layers\.\*\.self_attn"\)/,
  );
  await withDir(async (dir) => {
    const list = `${dir}/mods.txt`;
    await Deno.writeTextFile(list, "model.layers.0.self_attn.q_proj\nlm_head\n");
    const ct = `${dir}/q.json`;
    await Deno.writeTextFile(
      ct,
      JSON.stringify({
        ...fixture("hf-docs-llama3.1-8b-fp8-static-tensor-naive-quantized.json"),
        ignore: ["self_attn"],
      }),
    );
    const exact = await run([ct, "--modules", `@${list}`]);
    assert.match(exact.out, /self_attn\.q_proj: +FP8/);
    const sub = await run([ct, "--modules", `@${list}`, "--matching", "sglang"]);
    assert.match(sub.out, /self_attn\.q_proj: +unquantized \(ignored by ignore "self_attn"\)/);
  });
});

Deno.test("inspect: errors carry the JSON path; usage errors exit 2; unquantized models exit 0", async () => {
  await withDir(async (dir) => {
    const bad = `${dir}/config.json`;
    await Deno.writeTextFile(
      bad,
      JSON.stringify({
        ...DEEPSEEK_ARCH,
        quantization_config: {
          quant_method: "compressed-tensors",
          config_groups: { group_0: { targets: ["Linear"], weights: { strategy: "group" } } },
        },
      }),
    );
    const r = await run([bad]);
    assert.equal(r.code, 1);
    assert.match(
      r.err,
      /error: quantization_config\.config_groups\.group_0\.weights\.group_size: required when strategy is "group"/,
    );
    await Deno.writeTextFile(
      bad,
      JSON.stringify({ ...DEEPSEEK_ARCH, quantization_config: { quant_method: "gptq", bits: 4 } }),
    );
    assert.match(
      (await run([bad])).err,
      /quantization_config\.quant_method: not supported yet: quant_method "gptq"/,
    );
    await Deno.writeTextFile(bad, "{");
    assert.equal((await run([bad])).code, 1);
    await Deno.writeTextFile(bad, JSON.stringify({ model_type: "llama", num_hidden_layers: 2 }));
    const plain = await run([bad, "--json"]);
    assert.equal(plain.code, 0);
    assert.deepEqual(JSON.parse(plain.out), { quantized: false });
    // a bare quantization_config without --modules has no names to plan
    const bare = `${dir}/q.json`;
    await Deno.writeTextFile(bare, JSON.stringify(fixture("qwen3-32b-fp8-block.json")));
    assert.match((await run([bare])).err, /pass --modules/);
  });
  assert.equal((await run([])).code, 2);
  assert.equal((await run(["x", "--frobnicate"])).code, 2);
  assert.equal((await run(["x", "--cc", "sm90"])).code, 2);
  assert.equal((await run(["x", "--matching"])).code, 2);
  assert.equal((await run(["/nonexistent/kiln/config.json"])).code, 1);
});

Deno.test("inspect() returns the plan for programmatic use", async () => {
  const path = new URL("ct-example-naive-quantized-w8a8-int8-tensor.json", FIXTURES).pathname;
  const r = await inspect(path, {
    modules: ["model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.weight_scale"],
  });
  assert.equal(r.moduleSource, "--modules");
  assert.equal(r.plan?.modules.length, 1); // tensor names folded into one module
  assert.equal(r.plan?.modules[0].scheme, "W8A8-INT8");
});

const CAN_RUN = (await Deno.permissions.query({ name: "run" })).state === "granted";

Deno.test(
  { name: "deno task inspect runs with --allow-read only (needs --allow-run)", ignore: !CAN_RUN },
  async () => {
    await withDir(async (dir) => {
      await Deno.writeTextFile(
        `${dir}/config.json`,
        JSON.stringify({
          model_type: "qwen3",
          num_hidden_layers: 2,
          quantization_config: fixture("qwen3-32b-fp8-block.json"),
        }),
      );
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-read", "cli/inspect.ts", dir],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.match(text, /layers 0–1 self_attn\.\{q,k,v,o\}_proj: +FP8_BLOCK/);
    });
  },
);
