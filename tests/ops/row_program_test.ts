/**
 * GPU tier of user-scripted row programs and the per-tensor variants: RMSNorm → group quant and
 * silu(gate)·up → group quant (one kernel each) bit-exact against the interpreter (sums in the kernel's
 * order), the demo programs (concat, scatter, 4-bit stores, tiny groups), per-tensor quantization with a
 * static or a two-pass dynamic scale, and per-token FP8 → per-tensor FP8 requantization with masked_m.
 */
import { deepEqual as assertEquals, throws as assertThrows } from "node:assert/strict";
import { gpuTest } from "../_util.ts";
import { ArgumentError, type HostArray, Tensor } from "../../mod.ts";
import { defaultSchedule } from "../../codegen/expr/schedule.ts";
import type { DType } from "../../dsl/dtype.ts";
import { encodeArray } from "../../dsl/dtype.ts";
import { interpret, type Program } from "../../dsl/expr/mod.ts";
import { compileRowProgram, outputShape, rowInputGeometry } from "../../ops/row_program.ts";
import { prepareRequant, prepareTensorQuant } from "../../ops/tensor_quant.ts";
import { tensorAmaxProgram, tensorQuantProgram } from "../../dsl/ops/group_quant_tensor.ts";
import { misc, rmsnormQuant, siluMulQuant } from "../codegen/_programs.ts";
import { Rng } from "../../testing/mod.ts";

function same(got: HostArray, want: HostArray, what: string): void {
  const g = new Uint8Array(got.buffer, got.byteOffset, got.byteLength);
  const w = new Uint8Array(want.buffer, want.byteOffset, want.byteLength);
  assertEquals(g.length, w.length, what);
  const bad = g.findIndex((v, i) => v !== w[i]);
  if (bad >= 0) {
    const n = g.reduce((c, v, i) => c + (v !== w[i] ? 1 : 0), 0);
    throw new Error(`${what}: ${n} of ${g.length} bytes differ, first at ${bad}: ${g[bad]} vs ${w[bad]}`);
  }
}

/** Run `p` on random inputs (m rows, padded to rowAlign) and compare every output byte. */
async function runProgram(
  rng: Rng,
  p: Program,
  m: number,
  rowAlign = 1,
  extra: { params?: Record<string, number> } = {},
) {
  const k = await compileRowProgram(p);
  const raws: Record<string, HostArray> = {};
  const inputs: Record<string, Tensor> = {};
  for (const d of p.inputs) {
    const shape = d.kind === "row" ? [m, d.width] : [d.width];
    const n = shape.reduce((a, b) => a * b, 1);
    raws[d.name] = encodeArray(d.dtype, rng.normals(n, d.dtype === "fp8e4m3" ? 50 : 2));
    inputs[d.name] = Tensor.fromHost(d.dtype, shape, raws[d.name]);
  }
  const rows = Math.ceil(m / rowAlign) * rowAlign;
  const scatterRows = m + 3;
  // distinct target rows (with duplicates, which row lands is unspecified: a race on the GPU), every
  // third row skipped (-1)
  const perm = Array.from({ length: scatterRows }, (_, i) => i);
  for (let i = perm.length - 1; i > 0; i--) {
    const j = rng.int(0, i + 1);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const slots = Int32Array.from({ length: m }, (_, i) => (i % 3 === 1 ? -1 : perm[i]));
  const index: Record<string, Tensor> = {};
  const outputs: Record<string, Tensor> = {};
  const initial: Record<string, HostArray> = {};
  for (const x of p.indexInputs) index[x] = Tensor.fromHost("i32", [m], slots);
  for (const s of p.stores) {
    if (outputs[s.output]) continue;
    const { dtype, shape } = outputShape(s, { m, rows, scatterRows });
    outputs[s.output] = Tensor.empty(dtype, shape).fill(s.layout === "atomic_max" ? 0 : 0xff);
    initial[s.output] = outputs[s.output].toHost();
  }
  try {
    k.run({ inputs, index, outputs, m, rowAlign, params: extra.params });
    const ref = interpret(p, {
      inputs: raws,
      params: extra.params,
      index: Object.fromEntries(p.indexInputs.map((x) => [x, slots])),
      geometry: { m, rows, scatterRows },
      outputs: initial,
      tree: k.rowKernel.schedule,
    });
    for (const name of Object.keys(outputs)) {
      same(outputs[name].toHost(), ref[name], `${k.kernel.name}: ${name}, m=${m} (seed ${rng.seed})`);
    }
  } finally {
    for (const t of [...Object.values(inputs), ...Object.values(outputs), ...Object.values(index)]) {
      t.dispose();
    }
  }
}

Deno.test("row program: input checks accept per-group scales of any stride and name bad layouts", () => {
  // the requant layout of the GPU test: x [E, T, K] fp8 (vector-loaded), xs [E, T, K/128] f32 (read per
  // group, so its row stride 56 need not be a multiple of the 16-element vector)
  const spec = {
    K: 7168,
    dtype: "fp8e4m3",
    eps: 1e-10,
    rounding: "rcp",
    masked: true,
    scale: "dynamic",
    source: { kind: "fp8", dtype: "fp8e4m3", scaleGroup: 128 },
  } as const;
  const p = tensorQuantProgram(spec);
  const sched = defaultSchedule(p);
  const t = (dtype: DType, shape: number[], strides: number[], ptr = 0n) => ({ dtype, shape, strides, ptr });
  const x = t("fp8e4m3", [3, 32, 7168], [32 * 7168, 7168, 1]);
  const xs = t("f32", [3, 32, 56], [1792, 56, 1]);
  const amax = t("f32", [1], [1]);
  assertEquals(rowInputGeometry(p, sched, { x, xs, amax }), {
    lds: { x: 7168, xs: 56 },
    rowsIn: undefined,
    experts: 3,
    tokensPad: 32,
  });
  const bad = (inputs: Record<string, ReturnType<typeof t>>, arg: string) =>
    assertThrows(
      () => rowInputGeometry(p, sched, { x, xs, amax, ...inputs }),
      (e: unknown) => e instanceof ArgumentError && e.argument === arg,
    );
  bad({ x: t("fp8e4m3", [3, 32, 7168], [32 * 7176, 7176, 1]) }, "inputs.x.strides"); // not a multiple of 16
  bad({ xs: t("f32", [3, 32, 56], [32 * 40, 40, 1]) }, "inputs.xs.strides"); // rows overlap
  bad({ x: t("fp8e4m3", [3, 32, 7168], [40 * 7168, 7168, 1]) }, "inputs.x.strides"); // experts apart
  bad({ xs: t("f32", [3, 16, 56], [16 * 56, 56, 1]) }, "inputs.xs.shape");
  bad({ x: t("fp8e4m3", [3, 32, 7168], [32 * 7168, 7168, 1], 8n) }, "inputs.x"); // misaligned
  bad({ xs: t("bf16", [3, 32, 56], [1792, 56, 1]) }, "inputs.xs.dtype");
});

gpuTest(
  "row program: RMSNorm → group quant is one kernel, bit-exact (sums in the kernel's order)",
  async () => {
    const rng = new Rng();
    for (const K of [512, 4096, 7168]) {
      for (const m of [1, 13, 64]) {
        await runProgram(rng, rmsnormQuant(K), m, 4, { params: { eps: 1e-6 } });
      }
    }
  },
);

gpuTest("row program: silu(gate)·up → group quant is one kernel, bit-exact", async () => {
  const rng = new Rng();
  for (const H of [2048, 7168]) for (const m of [1, 7, 100]) await runProgram(rng, siluMulQuant(H), m, 4);
});

gpuTest("row program: concat, scatter, 4-bit stores, tiny groups", async () => {
  const rng = new Rng();
  const [cat, scatter, four, tiny] = misc();
  await runProgram(rng, cat, 9);
  await runProgram(rng, scatter, 11, 1, { params: { scale: 0.25 } });
  await runProgram(rng, four, 5, 2);
  await runProgram(rng, tiny, 6);
});

gpuTest("tensor quant: static and two-pass dynamic per-tensor scales, bit-exact", async () => {
  const rng = new Rng();
  const K = 2048, M = 37;
  const raw = encodeArray("bf16", rng.normals(M * K, 3));
  using x = Tensor.fromHost("bf16", [M, K], raw);
  const base = {
    K,
    dtype: "fp8e4m3",
    eps: 1e-10,
    rounding: "rcp",
    masked: false,
    source: { kind: "x", dtype: "bf16" },
  } as const;
  // dynamic
  const dyn = await prepareTensorQuant({ K });
  const d = dyn.run(x);
  const amax = interpret(tensorAmaxProgram({ ...base, scale: "dynamic" }), {
    inputs: { x: raw },
    geometry: { m: M, rows: M },
  });
  const ref = interpret(tensorQuantProgram({ ...base, scale: "dynamic" }), {
    inputs: { x: raw, amax: amax.amax },
    geometry: { m: M, rows: M },
  });
  same(d.q.toHost(), ref.q, `dynamic q (seed ${rng.seed})`);
  same(d.scale.toHost(), ref.s, `dynamic scale (seed ${rng.seed})`);
  d.q.dispose();
  // static, as a parameter and as a device scalar
  const st = await prepareTensorQuant({ K, scale: 0.037 });
  const s = st.run(x);
  const sref = interpret(tensorQuantProgram({ ...base, scale: "param" }), {
    inputs: { x: raw },
    params: { scale: 0.037 },
    geometry: { m: M, rows: M },
  });
  same(s.q.toHost(), sref.q, `static q (seed ${rng.seed})`);
  s.q.dispose();
  using sc = Tensor.fromFloat("f32", [1], [0.037]);
  const tt = await prepareTensorQuant({ K, scale: sc });
  const t = tt.run(x);
  same(t.q.toHost(), sref.q, "a device-scalar scale gives the same codes as the parameter");
  t.q.dispose();
});

gpuTest("requant: per-group FP8 → per-tensor FP8 with masked_m (DeepEP low-latency layout)", async () => {
  const rng = new Rng();
  const K = 7168, E = 3, T = 32, G = 128;
  const q8 = encodeArray("fp8e4m3", rng.normals(E * T * K, 60));
  const s8 = Float32Array.from({ length: E * T * (K / G) }, () => 10 ** (rng.next() * 4 - 5));
  const counts = new Int32Array([5, 0, 32]);
  using x = Tensor.fromHost("fp8e4m3", [E, T, K], q8);
  using xs = Tensor.fromHost("f32", [E, T, K / G], s8);
  using mm = Tensor.fromHost("i32", [E], counts);
  const rq = await prepareRequant({ K, scaleGroup: G, masked: true });
  using out = Tensor.empty("fp8e4m3", [E, T, K]).fill(0xff);
  const r = rq.run(x, xs, { maskedM: mm, q: out });
  const spec = {
    K,
    dtype: "fp8e4m3",
    eps: 1e-10,
    rounding: "rcp",
    masked: true,
    scale: "dynamic",
    source: { kind: "fp8", dtype: "fp8e4m3", scaleGroup: G },
  } as const;
  const geometry = { m: T, rows: E * T, experts: E, tokensPad: T };
  const amax = interpret(tensorAmaxProgram(spec), { inputs: { x: q8, xs: s8 }, geometry, maskedM: counts });
  const ref = interpret(tensorQuantProgram(spec), {
    inputs: { x: q8, xs: s8, amax: amax.amax },
    geometry,
    maskedM: counts,
    outputs: { q: new Uint8Array(E * T * K).fill(0xff) },
  });
  same(r.q.toHost(), ref.q, `requant q (seed ${rng.seed})`);
  same(r.scale.toHost(), ref.s, `requant scale (seed ${rng.seed})`);
});
