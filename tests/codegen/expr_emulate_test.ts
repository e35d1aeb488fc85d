/**
 * Emulation tier (needs a host C++ compiler, no GPU): generated row kernels run on the CPU
 * (tests/codegen/_emulate.ts: the kernel's own CUDA C, one fiber per thread, exact shuffles and
 * barriers, guard pages around buffers) on poisoned outputs, compared byte for byte with the
 * interpreter. It mirrors the GPU tier's cases, so index math, padding rows, masked rows, packed UE8M0
 * words, scatter and the float sequences (kiln_exp, kiln_silu) are checked before a GPU run.
 */
import { deepEqual as assertEquals } from "node:assert/strict";
import { encodeArray, type HostArray } from "../../dsl/dtype.ts";
import { input, interpret, type Program, RowProgram } from "../../dsl/expr/mod.ts";
import { defaultLd, outputElements } from "../../dsl/expr/program.ts";
import { groupQuantProgram, groupQuantShapes, resolveGroupQuant } from "../../dsl/ops/group_quant.ts";
import { tensorAmaxProgram, tensorQuantProgram } from "../../dsl/ops/group_quant_tensor.ts";
import { groupQuantKernel } from "../../codegen/kernels/group_quant.ts";
import { renderRowKernel, type RowKernel, rowKernelArgs, rowKernelGrid } from "../../codegen/expr/mod.ts";
import { groupQuantLaunch, type PrepareGroupQuantOptions } from "../../ops/group_quant.ts";
import { rowInputGeometry } from "../../ops/row_program.ts";
import { Rng } from "../../testing/mod.ts";
import { buildEmulators, CXX, emulateKernel } from "./_emulate.ts";
import { misc, rmsnormQuant, siluMulQuant } from "./_programs.ts";

function emuTest(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `emulate: ${name}`, ignore: !CXX, fn, sanitizeResources: false, sanitizeOps: false });
}

function bytes(a: HostArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function same(got: HostArray, want: HostArray, what: string): void {
  const g = bytes(got), w = bytes(want);
  assertEquals(g.length, w.length, `${what}: byte length`);
  const bad = g.findIndex((v, i) => v !== w[i]);
  if (bad >= 0) {
    const n = g.reduce((c, v, i) => c + (v !== w[i] ? 1 : 0), 0);
    throw new Error(`${what}: ${n} of ${g.length} bytes differ, first at ${bad}: ${g[bad]} vs ${w[bad]}`);
  }
}

/** Activations as the GPU tier draws them: per-row magnitudes 1e-3 .. 1e3 and an outlier per row. */
function activations(rng: Rng, rows: number, width: number, dtype: "bf16" | "f16"): HostArray {
  const v = rng.normals(rows * width);
  const top = dtype === "f16" ? 2 : 3;
  for (let r = 0; r < rows; r++) {
    const s = 10 ** (rng.next() * (top + 3) - 3);
    for (let j = 0; j < width; j++) v[r * width + j] *= s;
    if (width > 4) v[r * width + rng.int(0, width)] *= 20;
  }
  return encodeArray(dtype, v);
}

const poison = (n: number) => new Uint8Array(n).fill(0xff);
const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** One group-quant case: the ops layer's launch arguments, the emulated kernel, the interpreter. */
async function groupQuantCase(rng: Rng, o: PrepareGroupQuantOptions, M: number, masked?: Int32Array) {
  const spec = resolveGroupQuant(o.K, o.inputDtype ?? "bf16", { ...o, masked: masked !== undefined });
  const rk = groupQuantKernel(spec);
  const W = spec.fuseSiluMul ? 2 * spec.K : spec.K;
  const E = masked?.length ?? 0, T = M;
  const geo = masked ? { m: 0, experts: E, tokensPad: T } : { m: M };
  const sh = groupQuantShapes(spec, geo);
  const raw = activations(rng, masked ? E * T : M, W, spec.inDtype);
  const qBytes = numel(sh.q.shape), sBytes = numel(sh.scales.shape) * 4;
  const q = poison(qBytes), s = poison(sBytes);
  const { args, grid } = groupQuantLaunch<HostArray>(spec, rk, {
    m: masked ? T : M,
    mPad: sh.mPad,
    experts: E,
    xLd: W,
    smCount: 132,
  }, { x: raw, q, scales: s, maskedM: masked });
  await emulateKernel(rk.source, grid, args);
  const ref = interpret(groupQuantProgram(spec), {
    inputs: { x: raw },
    geometry: masked ? { m: 0, rows: E * T, experts: E, tokensPad: T } : { m: M, rows: sh.mPad },
    maskedM: masked,
    outputs: { q: poison(qBytes), s: poison(sBytes) },
  });
  const what = `${rk.source.name} M=${M} (seed ${rng.seed})`;
  same(q, ref.q, `q of ${what}`);
  same(s, ref.s, `scales of ${what}`);
}

emuTest(
  "group quant: the GEMM layout, per-token, row-major, packed UE8M0 and the other options",
  async () => {
    const rng = new Rng();
    const cases: [PrepareGroupQuantOptions, number[]][] = [
      [{ K: 128, scaleLayout: "mmajor", rowAlign: 4 }, [1, 5]], // per-token (G = K), row block 8
      [{ K: 512, scaleLayout: "mmajor", rowAlign: 4 }, [0, 13]],
      [{ K: 7168, scaleLayout: "mmajor", rowAlign: 4 }, [3]],
      [{ K: 7168 }, [1, 7]], // row-major scales
      [{ K: 512, rowAlign: 8 }, [3]],
      [{ K: 384, scaleLayout: "mmajor", ue8m0: true, packUe8m0: true, rowAlign: 4 }, [13]], // a partial word
      [{ K: 7168, scaleLayout: "mmajor", ue8m0: true, packUe8m0: true, rowAlign: 4 }, [5]],
      [{ K: 2048, groupSize: 16 }, [5]],
      [{ K: 2048, groupSize: 32, scaleLayout: "mmajor" }, [5]],
      [{ K: 4096, groupSize: 2048 }, [3]],
      [{ K: 7168, groupSize: 7168, scaleLayout: "mmajor", rowAlign: 4 }, [5]], // a CTA per row
      [{ K: 2048, dtype: "i8", rounding: "sglang" }, [7]],
      [{ K: 2048, rounding: "div", scaleLayout: "mmajor", rowAlign: 4 }, [13]],
      [{ K: 2048, inputDtype: "f16", scaleLayout: "mmajor", rowAlign: 4, ue8m0: true }, [13]],
      [{ K: 512, fuseSiluMul: true }, [13]],
      [{ K: 7168, fuseSiluMul: true, scaleLayout: "mmajor", ue8m0: true, packUe8m0: true, rowAlign: 4 }, [5]],
    ];
    await buildEmulators(
      cases.map(([o]) => groupQuantKernel(resolveGroupQuant(o.K, o.inputDtype ?? "bf16", o)).source),
    );
    for (const [o, ms] of cases) for (const M of ms) await groupQuantCase(rng, o, M);
  },
);

emuTest("group quant: masked experts (live rows written, other rows untouched)", async () => {
  const rng = new Rng();
  const counts = new Int32Array([0, 5, 16, 100]); // empty, partial, full, more than T_pad
  for (
    const o of [
      { K: 7168, fuseSiluMul: true, scaleLayout: "mmajor", ue8m0: true, packUe8m0: true },
      { K: 2048 },
      { K: 512, scaleLayout: "mmajor", dtype: "i8" },
    ] as PrepareGroupQuantOptions[]
  ) {
    await groupQuantCase(rng, o, 16, counts);
  }
});

/** Run a row program (plain or masked domain) emulated and through the interpreter; compare outputs. */
async function programCase(
  rng: Rng,
  p: Program,
  m: number,
  o: {
    rowAlign?: number;
    params?: Record<string, number>;
    masked?: Int32Array;
    extra?: Record<string, HostArray>;
    zeroed?: string[];
  } = {},
): Promise<Record<string, HostArray>> {
  const rk: RowKernel = renderRowKernel(p);
  const E = o.masked?.length ?? 0;
  const rows = o.masked ? m : Math.ceil(m / (o.rowAlign ?? 1)) * (o.rowAlign ?? 1);
  const scatterRows = m + 3;
  const raws: Record<string, HostArray> = {};
  const layouts: Record<
    string,
    { dtype: typeof p.inputs[0]["dtype"]; shape: number[]; strides: number[]; ptr: bigint }
  > = {};
  for (const d of p.inputs) {
    const shape = d.kind === "row" ? (o.masked ? [E, m, d.width] : [m, d.width]) : [d.width];
    raws[d.name] = o.extra?.[d.name] ??
      encodeArray(d.dtype, rng.normals(numel(shape), d.dtype === "fp8e4m3" ? 50 : 2));
    const strides = shape.map((_, i) => numel(shape.slice(i + 1)));
    layouts[d.name] = { dtype: d.dtype, shape, strides, ptr: 0n };
  }
  const geo = rowInputGeometry(p, rk.schedule, layouts);
  // a scatter target takes each slot at most once (which of two rows would land is unspecified)
  const perm = Array.from({ length: scatterRows }, (_, i) => i);
  for (let i = perm.length - 1; i > 0; i--) {
    const j = rng.int(0, i + 1);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const slots = Int32Array.from({ length: m }, (_, i) => (i % 3 === 1 ? -1 : perm[i]));
  const g = o.masked ? { m, rows: E * m, experts: E, tokensPad: m } : { m, rows, scatterRows };
  const values: Record<string, HostArray | number> = {};
  const initial: Record<string, HostArray> = {};
  const outs: Record<string, Uint8Array> = {};
  for (const d of p.inputs) {
    values[`i_${d.name}`] = raws[d.name];
    if (d.kind === "row") values[`i_${d.name}_ld`] = geo.lds[d.name];
  }
  for (const x of p.indexInputs) values[`x_${x}`] = slots;
  for (const s of p.stores) {
    if (outs[s.output]) continue;
    const n = outputElements(s, g);
    const nb = s.layout === "mmajor_packed4" || s.dtype === "ue8m0"
      ? n
      : s.dtype === "int4" || s.dtype === "fp4e2m1"
      ? Math.ceil(n / 2)
      : n * (s.dtype === "f32" ? 4 : s.dtype === "bf16" || s.dtype === "f16" ? 2 : 1);
    outs[s.output] = o.zeroed?.includes(s.output) ? new Uint8Array(nb) : poison(nb);
    initial[s.output] = outs[s.output].slice();
    values[`o_${s.output}`] = outs[s.output];
    if (s.layout === "row" || s.layout === "mmajor" || s.layout === "mmajor_packed4") {
      values[`o_${s.output}_ld`] = s.layout === "row" ? s.width : defaultLd(s, g);
    }
  }
  for (const q of p.params) values[`p_${q}`] = o.params![q];
  if (o.masked) Object.assign(values, { masked_m: o.masked, tokens_pad: m });
  else Object.assign(values, { m, rows });
  const grid = rowKernelGrid(rk, o.masked ? { experts: E, tokensPad: m, smCount: 132 } : { rows });
  await emulateKernel(rk.source, grid, rowKernelArgs(rk, values));
  const ref = interpret(p, {
    inputs: raws,
    params: o.params,
    index: Object.fromEntries(p.indexInputs.map((x) => [x, slots])),
    maskedM: o.masked,
    geometry: g,
    outputs: initial,
    tree: rk.schedule,
  });
  for (const name of Object.keys(outs)) same(outs[name], ref[name], `${rk.source.name}: ${name}, m=${m}`);
  return outs;
}

emuTest("row programs: RMSNorm → quant, silu·up → quant, concat, scatter, 4-bit, tiny groups", async () => {
  const rng = new Rng();
  const [cat, scatter, four, tiny] = misc();
  const programs = [rmsnormQuant(7168), rmsnormQuant(512), siluMulQuant(2048), cat, scatter, four, tiny];
  await buildEmulators(programs.map((p) => renderRowKernel(p).source));
  await programCase(rng, rmsnormQuant(7168), 3, { rowAlign: 4, params: { eps: 1e-6 } });
  await programCase(rng, rmsnormQuant(512), 5, { rowAlign: 4, params: { eps: 1e-6 } });
  await programCase(rng, siluMulQuant(2048), 7, { rowAlign: 4 });
  await programCase(rng, cat, 9);
  await programCase(rng, scatter, 11, { params: { scale: 0.25 } });
  await programCase(rng, four, 5, { rowAlign: 2 });
  await programCase(rng, tiny, 6);
});

emuTest("requant: per-group FP8 → per-tensor FP8 with masked_m, two passes", async () => {
  const rng = new Rng();
  const K = 7168, E = 3, T = 8, G = 128;
  const spec = {
    K,
    dtype: "fp8e4m3",
    eps: 1e-10,
    rounding: "rcp",
    masked: true,
    scale: "dynamic",
    source: { kind: "fp8", dtype: "fp8e4m3", scaleGroup: G },
  } as const;
  const counts = new Int32Array([5, 0, 8]);
  const x = encodeArray("fp8e4m3", rng.normals(E * T * K, 60));
  const xs = Float32Array.from({ length: E * T * (K / G) }, () => 10 ** (rng.next() * 4 - 5));
  const a = await programCase(rng, tensorAmaxProgram(spec), T, {
    masked: counts,
    extra: { x, xs },
    zeroed: ["amax"],
  });
  const amax = new Float32Array(a.amax.buffer, 0, 1);
  await programCase(rng, tensorQuantProgram(spec), T, { masked: counts, extra: { x, xs, amax } });
});

emuTest("kiln_exp and kiln_silu as generated equal the interpreter's exp and silu bit for bit", async () => {
  const rng = new Rng();
  const n = 1 << 14;
  const edges = [
    0,
    -0,
    1,
    -1,
    86.5,
    -86.5,
    86.49,
    -86.51,
    88.72,
    -104,
    -200,
    200,
    1e30,
    -1e30,
    Infinity,
    -Infinity,
  ];
  const xs = Float32Array.from(
    { length: n },
    (_, i) =>
      i < edges.length ? edges[i] : i === edges.length ? NaN : (rng.next() - 0.5) * (i % 3 ? 30 : 200),
  );
  const x = input("x", "f32", 256).load();
  const p = new RowProgram("exp_silu").store("e", x.exp()).store("s", x.silu()).finish();
  const rk = renderRowKernel(p);
  const rows = n / 256, e = new Float32Array(n), s = new Float32Array(n);
  await emulateKernel(
    rk.source,
    rowKernelGrid(rk, { rows }),
    rowKernelArgs(rk, { i_x: xs, i_x_ld: 256, o_e: e, o_e_ld: 256, o_s: s, o_s_ld: 256, m: rows, rows }),
  );
  const ref = interpret(p, { inputs: { x: xs }, geometry: { m: rows, rows } });
  same(e, ref.e, `exp (seed ${rng.seed})`);
  same(s, ref.s, `silu (seed ${rng.seed})`);
});
