/**
 * sglang's scheme selection (quant-spec §2.3–2.6): Linear and FusedMoE decision order, the input-dropping
 * rule for weight-only formats, and minimum compute capability with the W8A8-FP8 → W8A16-FP8 fallback.
 */
import assert from "node:assert/strict";
import {
  PRESET_SCHEMES,
  type QuantArgs,
  quantArgs,
  SCHEMES,
  type SelectInput,
  type Selection,
  selectLinearScheme,
  selectMoeScheme,
  type SparsityConfig,
} from "../../dsl/quant/mod.ts";

const P = PRESET_SCHEMES;
const fp8 = (a: Partial<Parameters<typeof quantArgs>[0]> = {}) => quantArgs({ type: "float", ...a });
const inp = (weights: QuantArgs | null, input: QuantArgs | null, format: string | null): SelectInput => ({
  weights,
  input,
  format,
});

function scheme(s: Selection): string {
  return s.status === "quantized" ? s.scheme : s.status;
}

Deno.test("Linear: FP8 W8A8 covers tensor, channel and block weights; static inputs must be symmetric per-tensor", () => {
  assert.equal(
    scheme(selectLinearScheme(inp(P.FP8.weights, P.FP8.input_activations, "float-quantized"))),
    "W8A8-FP8",
  );
  assert.equal(
    scheme(
      selectLinearScheme(inp(P.FP8_DYNAMIC.weights, P.FP8_DYNAMIC.input_activations, "float-quantized")),
    ),
    "W8A8-FP8",
  );
  const block = selectLinearScheme(
    inp(P.FP8_BLOCK.weights, P.FP8_BLOCK.input_activations, "float-quantized"),
  );
  assert.equal(scheme(block), "W8A8-FP8");
  assert.equal(block.status === "quantized" && block.staticInput, false);
  const st = selectLinearScheme(inp(P.FP8.weights, P.FP8.input_activations, "naive-quantized"));
  assert.equal(st.status === "quantized" && st.staticInput, true);
  // static per-token-group inputs are not W8A8: they fall to FP8 weight-only for tensor weights
  const staticGroup = fp8({ strategy: "group", group_size: 128 });
  assert.equal(scheme(selectLinearScheme(inp(P.FP8.weights, staticGroup, "float-quantized"))), "W8A16-FP8");
  // asymmetric static per-tensor inputs → not W8A8 either
  assert.equal(
    scheme(selectLinearScheme(inp(P.FP8.weights, fp8({ symmetric: false }), "float-quantized"))),
    "W8A16-FP8",
  );
});

Deno.test("Linear: weight-only formats drop input activations (sglang reads them only for activation formats)", () => {
  // FP8 under a weight-only format (mixed-precision with no group format): inputs dropped, and the
  // FP8 predicates are only tried for activation formats → no scheme
  assert.equal(
    scheme(selectLinearScheme(inp(P.FP8.weights, P.FP8.input_activations, "mixed-precision"))),
    "unsupported",
  );
  assert.equal(
    scheme(selectLinearScheme(inp(P.FP8.weights, P.FP8.input_activations, "float-quantized"))),
    "W8A8-FP8",
  );
});

Deno.test("Linear: WNA16 needs pack-quantized with 4 or 8 bits; any symmetry", () => {
  assert.equal(scheme(selectLinearScheme(inp(P.W4A16.weights, null, "pack-quantized"))), "WNA16");
  assert.equal(scheme(selectLinearScheme(inp(P.W4A16_ASYM.weights, null, "pack-quantized"))), "WNA16");
  assert.equal(scheme(selectLinearScheme(inp(P.W8A16.weights, null, "pack-quantized"))), "WNA16");
  const w3 = selectLinearScheme(inp(P.W3A16.weights, null, "pack-quantized"));
  assert.equal(w3.status, "unsupported");
  const marlin24 = selectLinearScheme(inp(P.W4A16.weights, null, "marlin-24"));
  assert.equal(marlin24.status, "unsupported");
  // per-tensor int4 weight-only matches nothing
  const tensor4 = selectLinearScheme(
    inp(quantArgs({ num_bits: 4, symmetric: false }), null, "pack-quantized"),
  );
  assert.equal(tensor4.status, "unsupported");
  assert.match((tensor4 as { reason: string }).reason, /no compressed-tensors compatible scheme/);
});

Deno.test("Linear: NVFP4 W4A4 is selected before FP8, needs cc 100 with no fallback", () => {
  const nv = inp(P.NVFP4.weights, P.NVFP4.input_activations, "nvfp4-pack-quantized");
  assert.equal(scheme(selectLinearScheme(nv)), "W4A4-NVFP4");
  assert.equal(scheme(selectLinearScheme(nv, { capability: 100 })), "W4A4-NVFP4");
  const old = selectLinearScheme(nv, { capability: 90 });
  assert.equal(old.status, "unsupported");
  assert.match(
    (old as { reason: string }).reason,
    /needs compute capability ≥ 100, the device has 90 \(sglang has no fallback\)/,
  );
  // weight-only NVFP4A16 is not W4A4 and not FP8
  assert.equal(
    selectLinearScheme(inp(P.NVFP4A16.weights, null, "nvfp4-pack-quantized")).status,
    "unsupported",
  );
});

Deno.test("Linear: INT8 static per-tensor and dynamic per-token (W8A8-INT8, cc 80)", () => {
  const stat = selectLinearScheme(inp(quantArgs({}), quantArgs({}), "int-quantized"));
  assert.equal(scheme(stat), "W8A8-INT8");
  assert.equal(stat.status === "quantized" && stat.staticInput, true);
  // asymmetric static inputs are allowed by sglang
  assert.equal(
    scheme(selectLinearScheme(inp(quantArgs({}), quantArgs({ symmetric: false }), "int-quantized"))),
    "W8A8-INT8",
  );
  const dyn = selectLinearScheme(inp(P.W8A8.weights, P.W8A8.input_activations, "int-quantized"));
  assert.equal(scheme(dyn), "W8A8-INT8");
  assert.equal(dyn.status === "quantized" && dyn.staticInput, false);
  // asymmetric weights are never W8A8-INT8
  assert.equal(
    selectLinearScheme(inp(quantArgs({ symmetric: false }), quantArgs({}), "int-quantized")).status,
    "unsupported",
  );
  // W4A8 int: no linear scheme
  assert.equal(
    selectLinearScheme(inp(P.W4A8.weights, P.W4A8.input_activations, "int-quantized")).status,
    "unsupported",
  );
});

Deno.test("Linear: W8A8-FP8 falls back to W8A16-FP8 at cc 80–88 and fails below 80", () => {
  const x = inp(P.FP8_BLOCK.weights, P.FP8_BLOCK.input_activations, "float-quantized");
  const at89 = selectLinearScheme(x, { capability: 89 });
  assert.equal(scheme(at89), "W8A8-FP8");
  const at80 = selectLinearScheme(x, { capability: 80 });
  assert.equal(scheme(at80), "W8A16-FP8");
  assert.equal(at80.status === "quantized" && at80.fallbackFrom, "W8A8-FP8");
  assert.equal(at80.status === "quantized" && at80.input, null);
  const at75 = selectLinearScheme(x, { capability: 75 });
  assert.equal(at75.status, "unsupported");
  assert.match(
    (at75 as { reason: string }).reason,
    /needs compute capability ≥ 89, the device has 75 and its fallback W8A16-FP8 needs 80/,
  );
  assert.equal(
    scheme(selectLinearScheme(inp(P.W4A16.weights, null, "pack-quantized"), { capability: 75 })),
    "unsupported",
  );
});

Deno.test("Linear: 2:4 sparsity is refused before anything else; unstructured sparsity is not", () => {
  const sp = (
    sparsity_structure: string,
    format: SparsityConfig["format"] = "sparse-24-bitmask",
  ): SparsityConfig => ({
    format,
    targets: ["Linear"],
    ignore: null,
    global_sparsity: 0.5,
    sparsity_structure,
  });
  const x = {
    ...inp(P.FP8_DYNAMIC.weights, P.FP8_DYNAMIC.input_activations, "float-quantized"),
    sparsity: sp("2:4"),
  };
  const r = selectLinearScheme(x);
  assert.equal(r.status, "unsupported");
  assert.match((r as { reason: string }).reason, /2:4/);
  assert.equal(scheme(selectLinearScheme({ ...x, sparsity: sp("unstructured") })), "W8A8-FP8");
  // weight-only layers do not take the 2:4 path (supports_cutlass_24 is false)
  assert.equal(
    scheme(
      selectLinearScheme({ ...inp(P.W4A16.weights, null, "pack-quantized"), sparsity: sp("2:4", "dense") }),
    ),
    "WNA16",
  );
});

Deno.test("Linear: no weights → unquantized", () => {
  assert.equal(selectLinearScheme(inp(null, null, "dense")).status, "unquantized");
});

Deno.test("MoE: decision order WNA16 → NVFP4 → FP8 → INT8(NPU) → W4AFP8 → W4A8(NPU)", () => {
  assert.equal(scheme(selectMoeScheme(inp(P.W4A16.weights, null, "pack-quantized"))), "WNA16-MoE");
  const g32 = quantArgs({ num_bits: 4, group_size: 32 });
  assert.equal(scheme(selectMoeScheme(inp(g32, null, "pack-quantized"))), "WNA16-MoE");
  assert.equal(
    scheme(selectMoeScheme(inp(g32, null, "pack-quantized"), { moeBackend: "flashinfer_trtllm" })),
    "MxInt4-MoE",
  );
  assert.equal(
    scheme(
      selectMoeScheme(inp(P.W4A16.weights, null, "pack-quantized"), { moeBackend: "flashinfer_trtllm" }),
    ),
    "WNA16-MoE",
  );
  assert.equal(
    scheme(selectMoeScheme(inp(P.NVFP4.weights, P.NVFP4.input_activations, "nvfp4-pack-quantized"))),
    "W4A4-NVFP4-MoE",
  );
  assert.equal(
    scheme(selectMoeScheme(inp(P.FP8_BLOCK.weights, P.FP8_BLOCK.input_activations, "float-quantized"))),
    "W8A8-FP8-MoE",
  );
  assert.equal(
    scheme(selectMoeScheme(inp(P.FP8.weights, P.FP8.input_activations, "float-quantized"))),
    "W8A8-FP8-MoE",
  );
  // per-channel weights with static input scales are rejected
  assert.equal(
    selectMoeScheme(inp(P.FP8_DYNAMIC.weights, P.FP8.input_activations, "float-quantized")).status,
    "unsupported",
  );
  const int8 = selectMoeScheme(inp(P.W8A8.weights, P.W8A8.input_activations, "int-quantized"));
  assert.match((int8 as { reason: string }).reason, /NPU/);
  assert.equal(
    scheme(selectMoeScheme(inp(P.W4AFP8.weights, P.W4AFP8.input_activations, "pack-quantized"))),
    "W4AFP8-MoE",
  );
  // W4AFP8 needs the pack-quantized format; else W4A8-int → NPU only / unsupported
  assert.equal(
    selectMoeScheme(inp(P.W4AFP8.weights, P.W4AFP8.input_activations, "int-quantized")).status,
    "unsupported",
  );
  assert.match(
    (selectMoeScheme(inp(P.W4A8.weights, P.W4A8.input_activations, "int-quantized")) as { reason: string })
      .reason,
    /NPU/,
  );
  assert.equal(selectMoeScheme(inp(quantArgs({}), quantArgs({}), "int-quantized")).status, "unsupported");
});

Deno.test("MoE: MXFP4 weights are recognized before WNA16 (never misread as int)", () => {
  assert.equal(scheme(selectMoeScheme(inp(P.MXFP4A16.weights, null, "mxfp4-pack-quantized"))), "MXFP4-MoE");
  assert.equal(scheme(selectMoeScheme(inp(P.MXFP4A16.weights, null, "pack-quantized"))), "MXFP4-MoE");
});

Deno.test("MoE: capability is reported; a too-old device makes the scheme unsupported", () => {
  const r = selectMoeScheme(inp(P.W4AFP8.weights, P.W4AFP8.input_activations, "pack-quantized"), {
    capability: 89,
  });
  assert.equal(r.status, "unsupported");
  assert.match((r as { reason: string }).reason, /W4AFP8-MoE needs compute capability ≥ 90/);
});

Deno.test("scheme table: sglang classes and minimum capabilities (quant-spec §2.6)", () => {
  const cc = Object.fromEntries(Object.values(SCHEMES).map((s) => [s.id, s.minCapability]));
  assert.deepEqual(cc, {
    "W8A8-FP8": 89,
    "W8A16-FP8": 80,
    "W8A8-INT8": 80,
    "W4A4-NVFP4": 100,
    "WNA16": 80,
    "W8A8-FP8-MoE": 80,
    "W4A4-NVFP4-MoE": 100,
    "MxInt4-MoE": 100,
    "WNA16-MoE": 80,
    "W4AFP8-MoE": 90,
    "MXFP4-MoE": 80,
  });
  assert.equal(SCHEMES["W8A8-FP8"].fallback, "W8A16-FP8");
  assert.equal(SCHEMES["W8A8-FP8"].sglang, "CompressedTensorsW8A8Fp8");
});
