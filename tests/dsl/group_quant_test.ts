/**
 * The group-quant family in the DSL: option validation, buffer geometry, the IR program's interpreter
 * against the direct reference (bit for bit, every option), and the agreement between conventions.
 */
import { deepEqual as assertEquals, ok as assert, throws as assertThrows } from "node:assert/strict";
import { decodeArray, encodeArray, FP8E4M3_VALUES } from "../../dsl/dtype.ts";
import { interpret } from "../../dsl/expr/interpret.ts";
import {
  groupQuantName,
  groupQuantProgram,
  groupQuantShapes,
  type GroupQuantSpec,
  paddedRows,
  resolveGroupQuant,
} from "../../dsl/ops/group_quant.ts";
import { codeAgreement, groupQuantReference } from "../../dsl/ops/group_quant_ref.ts";
import { Rng } from "../../testing/mod.ts";

Deno.test("group quant: options are validated and name the option", () => {
  const bad: [number, object, RegExp][] = [
    [7168, { groupSize: 96 }, /groupSize/],
    [7168, { groupSize: 8192 }, /groupSize/],
    [512, { dtype: "fp4e2m1" }, /dtype/],
    [512, { eps: 0 }, /eps/],
    [512, { rowAlign: 0 }, /rowAlign/],
    [512, { scaleLayout: "colmajor" }, /scaleLayout/],
    [512, { packUe8m0: true }, /packUe8m0/],
    [512, { ue8m0: true, packUe8m0: true }, /packUe8m0/],
    [512, { masked: true, rowAlign: 4 }, /rowAlign/],
    [512, { rounding: "floor" }, /rounding/],
    [100, { groupSize: 100 }, /K/],
  ];
  for (const [K, o, re] of bad) assertThrows(() => resolveGroupQuant(K, "bf16", o), re, JSON.stringify(o));
  assertThrows(() => resolveGroupQuant(512, "f32"), /x.dtype/);
  const s = resolveGroupQuant(7168, "f16", { groupSize: 7168 });
  assertEquals([s.groupSize, s.dtype, s.eps, s.rounding, s.rowAlign], [7168, "fp8e4m3", 1e-10, "rcp", 1]);
});

Deno.test("group quant: names encode the variant", () => {
  const n = (K: number, o: object) => groupQuantName(resolveGroupQuant(K, "bf16", o));
  assertEquals(n(7168, {}), "group_quant_bf16_fp8e4m3_g128_row_rcp");
  assertEquals(
    n(7168, { scaleLayout: "mmajor", ue8m0: true }),
    "group_quant_bf16_fp8e4m3_g128_mmajor_ue8m0_rcp",
  );
  assertEquals(
    n(7168, { scaleLayout: "mmajor", ue8m0: true, packUe8m0: true, fuseSiluMul: true }),
    "group_quant_bf16_fp8e4m3_g128_ue8m0x4_silu_rcp",
  );
  assertEquals(
    n(512, { groupSize: 512, dtype: "i8", rounding: "sglang", eps: 1e-4 }),
    "group_quant_bf16_i8_token_row_sglang_eps1em4",
  );
});

Deno.test("group quant: padded shapes follow the contract", () => {
  const s = resolveGroupQuant(512, "bf16", { rowAlign: 4, scaleLayout: "mmajor" });
  for (const m of [0, 1, 4, 5, 13]) {
    const sh = groupQuantShapes(s, { m });
    assertEquals(sh.mPad, paddedRows(m, 4));
    assertEquals(sh.q.shape, [sh.mPad, 512]);
    assertEquals(sh.scales.shape, [4, sh.mPad]);
  }
  const row = groupQuantShapes(resolveGroupQuant(512, "bf16", { rowAlign: 4 }), { m: 5 });
  assertEquals(row.scales.shape, [8, 4]);
  const pk = groupQuantShapes(
    resolveGroupQuant(7168, "bf16", { scaleLayout: "mmajor", ue8m0: true, packUe8m0: true }),
    { m: 3 },
  );
  assertEquals([pk.scales.dtype, pk.scales.shape], ["i32", [14, 3]]);
  const mk = groupQuantShapes(resolveGroupQuant(256, "bf16", { masked: true, scaleLayout: "mmajor" }), {
    m: 0,
    experts: 3,
    tokensPad: 8,
  });
  assertEquals([mk.q.shape, mk.scales.shape], [[3, 8, 256], [3, 2, 8]]);
});

Deno.test("group quant: a group whose amax is 448 keeps its values (scale 1, rounding div)", () => {
  const s = resolveGroupQuant(16, "bf16", { groupSize: 16, rounding: "div" });
  const x = Float32Array.from({ length: 16 }, (_, i) => (i === 3 ? -448 : FP8E4M3_VALUES[0x30 + i * 3]));
  const r = groupQuantReference(s, x, { m: 1 });
  assertEquals([...r.scales], [1]);
  assertEquals([...decodeArray("fp8e4m3", r.q)], [...x]);
});

function sweep(): GroupQuantSpec[] {
  const specs: GroupQuantSpec[] = [];
  for (const K of [128, 512]) {
    for (const groupSize of [16, 64, K]) {
      for (const dtype of ["fp8e4m3", "i8"] as const) {
        for (const rounding of ["rcp", "div", "sglang"] as const) {
          for (
            const [scaleLayout, ue8m0, packUe8m0] of [["row", false, false], ["row", true, false], [
              "mmajor",
              false,
              false,
            ], ["mmajor", true, true]] as const
          ) {
            for (const [fuseSiluMul, masked] of [[false, false], [true, false], [true, true]]) {
              specs.push(resolveGroupQuant(K, "bf16", {
                groupSize,
                dtype,
                rounding,
                scaleLayout,
                ue8m0,
                packUe8m0,
                fuseSiluMul,
                masked,
                rowAlign: masked ? 1 : 4,
              }));
            }
          }
        }
      }
    }
  }
  return specs;
}

Deno.test("group quant: the IR program's interpreter equals the direct reference bit for bit", () => {
  const rng = new Rng();
  const specs = sweep();
  for (const spec of specs) {
    const m = [0, 1, 3, 5, 13][rng.int(0, 5)], E = 2, T = 4;
    const rows = spec.masked ? E * T : m;
    const raw = encodeArray(
      spec.inDtype,
      rng.normals(rows * (spec.fuseSiluMul ? 2 : 1) * spec.K, 2),
    ) as Uint16Array;
    const maskedM = new Int32Array([rng.int(0, 5), rng.int(0, 5)]);
    const geo = spec.masked
      ? { m: 0, rows: E * T, experts: E, tokensPad: T }
      : { m, rows: paddedRows(m, spec.rowAlign) };
    const ref = groupQuantReference(spec, decodeArray(spec.inDtype, raw), { ...geo, maskedM });
    const out = interpret(groupQuantProgram(spec), { inputs: { x: raw }, geometry: geo, maskedM });
    const what = `${groupQuantName(spec)} m=${m} (seed ${rng.seed})`;
    assertEquals(new Uint8Array(out.q.buffer), ref.q, `q of ${what}`);
    assertEquals(new Uint8Array(out.s.buffer), new Uint8Array(ref.scales.buffer), `scales of ${what}`);
  }
  assert(specs.length >= 200, `${specs.length} variants`);
});

Deno.test("group quant: fp8 codes of 'rcp' equal SGLang v2's; 'div' is within its test's tolerance", () => {
  const rng = new Rng();
  const K = 7168, m = 64;
  const x = decodeArray("bf16", encodeArray("bf16", rng.normals(m * K, 3)));
  const run = (o: object) => groupQuantReference(resolveGroupQuant(K, "bf16", o), x, { m });
  const rcp = run({}), sg = run({ rounding: "sglang" }), div = run({ rounding: "div" });
  assertEquals(rcp.q, sg.q, `seed ${rng.seed}`);
  assertEquals(rcp.scales, sg.scales);
  const a = codeAgreement("fp8e4m3", div.q, sg.q);
  console.log(
    `div vs SGLang v2 (fp8, ${x.length} elements): ${a.differ} differ (${
      (100 * a.fraction).toFixed(5)
    }%), ${a.oneStep} by one code, ${a.worse} worse`,
  );
  assert(a.fraction < 0.005 && a.worse === 0, `seed ${rng.seed}`);
  let scaleRel = 0;
  for (let i = 0; i < div.scales.length; i++) {
    scaleRel = Math.max(scaleRel, Math.abs(div.scales[i] / sg.scales[i] - 1));
  }
  assert(scaleRel <= 1e-6, `scales agree to rtol 1e-3 (SGLang's test); got ${scaleRel}`);
  // ue8m0: the power-of-two scales of both conventions differ only where amax/448 is within an ulp of 2^k
  const du = run({ rounding: "div", ue8m0: true, scaleLayout: "mmajor" }),
    su = run({ rounding: "sglang", ue8m0: true, scaleLayout: "mmajor" });
  const au = codeAgreement("fp8e4m3", du.q, su.q);
  console.log(`div vs SGLang v2 (fp8, ue8m0): ${au.differ} codes differ, ${au.worse} by more than one code`);
  assert(au.fraction < 0.005, `seed ${rng.seed}`);
});

Deno.test("group quant: int8 rounds to nearest (kiln) or truncates (SGLang): one step apart toward zero", () => {
  const rng = new Rng();
  const K = 512, m = 16;
  const x = decodeArray("bf16", encodeArray("bf16", rng.normals(m * K)));
  const kiln = groupQuantReference(resolveGroupQuant(K, "bf16", { dtype: "i8" }), x, { m });
  const sg = groupQuantReference(resolveGroupQuant(K, "bf16", { dtype: "i8", rounding: "sglang" }), x, { m });
  const a = codeAgreement("i8", kiln.q, sg.q);
  console.log(
    `int8 RNE vs SGLang truncation: ${(100 * a.fraction).toFixed(1)}% of codes differ, all by one step: ${
      a.worse === 0
    }`,
  );
  assert(a.worse === 0 && a.fraction > 0.3 && a.fraction < 0.7, `seed ${rng.seed}`);
  for (let i = 0; i < kiln.q.length; i++) {
    const k = (kiln.q[i] << 24) >> 24, s = (sg.q[i] << 24) >> 24;
    assert(Math.abs(s) <= Math.abs(k), "truncation never grows a code");
  }
});

Deno.test("group quant: fused silu-and-mul rounds each product to the input dtype", () => {
  const s = resolveGroupQuant(8, "bf16", { groupSize: 8, fuseSiluMul: true, dtype: "fp8e4m3" });
  const gate = [0, 1, -1, 2, 3, -4, 0.5, 6], up = [1, 2, 3, 4, 5, 6, 7, 8];
  const x = decodeArray("bf16", encodeArray("bf16", [...gate, ...up]));
  const r = groupQuantReference(s, x, { m: 1 });
  const bf = (v: number) => decodeArray("bf16", encodeArray("bf16", [v]))[0];
  const h = gate.map((g, i) => bf(Math.fround(bf(g / (1 + Math.exp(-g))) * up[i])));
  const amax = Math.max(...h.map(Math.abs));
  assert(Math.abs(r.scales[0] - amax / 448) / (amax / 448) < 1e-6);
  const deq = [...decodeArray("fp8e4m3", r.q)].map((c) => c * r.scales[0]);
  for (let i = 0; i < 8; i++) assert(Math.abs(deq[i] - h[i]) <= Math.abs(h[i]) / 8 + 1e-6, `element ${i}`);
});
