/**
 * Row-padded per-token-group FP8 quantization, and two fused ops scripted in a few lines of the DSL
 * (RMSNorm → group quant, silu(gate)·up → group quant), each one generated kernel.
 *
 * With a GPU: quantize, check every code and scale against the TypeScript reference (bit for bit), and
 * print the throughput. Without one: run the reference, show the generated CUDA of one kernel and
 * compile it with NVRTC when NVRTC is present, and say so.
 *
 *   deno run -A examples/group_quant.ts
 *
 * @module
 */
import { encodeArray } from "../dsl/dtype.ts";
import { input, interpret, param, type Program, quantize, RowProgram, vectorInput } from "../dsl/expr/mod.ts";
import { groupQuantProgram, resolveGroupQuant } from "../dsl/ops/group_quant.ts";
import { groupQuantKernel } from "../codegen/kernels/group_quant.ts";
import { renderRowKernel } from "../codegen/expr/render.ts";
import { compileFor, Device, hasGpu, hasNvrtc, ptxasReport, Tensor, timeKernel } from "../runtime/mod.ts";
import { compileRowProgram } from "../ops/row_program.ts";
import { prepareGroupQuant } from "../ops/group_quant.ts";
import { Rng } from "../testing/mod.ts";

/** RMSNorm (normalize in f32, round to bf16, times the weight, round) → fp8 quant in groups of 128. */
export function rmsnormQuantProgram(K: number): Program {
  const x = input("x", "bf16", K).load(), w = vectorInput("w", "bf16", K).load();
  const y = x.mul(x.sumsq().div(K).add(param("eps")).rsqrt()).cast("bf16").mul(w).cast("bf16");
  const { q, scale } = quantize(y, { format: "fp8e4m3", group: 128 });
  return new RowProgram("rmsnorm_quant").store("q", q, { dtype: "fp8e4m3" }).store("s", scale, {
    layout: "mmajor",
  }).finish();
}

/** silu(gate) · up (each product rounded to bf16) → fp8 quant in groups of 128 with UE8M0 scales. */
export function siluMulQuantProgram(H: number): Program {
  const [gate, up] = input("x", "bf16", 2 * H).split(2);
  const h = gate.silu().cast("bf16").mul(up).cast("bf16");
  const { q, scale } = quantize(h, { format: "fp8e4m3", group: 128, ue8m0: true });
  return new RowProgram("silu_mul_quant").store("q", q, { dtype: "fp8e4m3" }).store("s", scale, {
    layout: "mmajor",
  }).finish();
}

function same(a: ArrayBufferView, b: ArrayBufferView): boolean {
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength),
    y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** The demo step. */
export async function main(): Promise<void> {
  const rng = new Rng(4);
  const [M, K] = [13, 7168];
  const spec = resolveGroupQuant(K, "bf16", { rowAlign: 4, scaleLayout: "mmajor" });
  const raw = encodeArray("bf16", rng.normals(M * K, 2)) as Uint16Array;
  const ref = interpret(groupQuantProgram(spec), { inputs: { x: raw }, geometry: { m: M, rows: 16 } });
  const s = ref.s as Float32Array;
  console.log(`x[${M}, ${K}] bf16 → q[16, ${K}] e4m3 (rows 13..15 zero) + scales [${K / 128}, 16] M-major`);
  console.log(`reference: scale of row 0 group 0 = ${s[0].toExponential(4)}, tail scale = ${s[13]}`);
  const user = [rmsnormQuantProgram(K), siluMulQuantProgram(2048)];
  for (const p of user) {
    console.log(
      `user program ${p.name}: ${
        p.stores.map((st) => `${st.output} <- ${String(st.value).slice(0, 90)}…`).join("; ")
      }`,
    );
  }

  if (!hasGpu()) {
    console.log("\nno GPU here: ran the TypeScript reference only.");
    const k = groupQuantKernel(spec);
    const src = k.source.source;
    console.log(`\ngenerated CUDA of ${k.source.name} (kernel body):\n`);
    console.log(src.slice(src.indexOf('extern "C"')));
    if (hasNvrtc()) {
      for (const ks of [k.source, renderRowKernel(user[0]).source, renderRowKernel(user[1]).source]) {
        const r = await compileFor(ks, "sm_90a");
        const rep = r.log ? ptxasReport(r.log)[0] : undefined;
        console.log(
          `NVRTC sm_90a: ${ks.name}: ${r.cubin.length} B cubin${r.cached ? " (cache)" : ""}` +
            (rep ? `, ${rep.registers} registers, ${rep.spillBytes} B spills` : ""),
        );
      }
    } else console.log("NVRTC not found: compile skipped.");
    return;
  }

  const gq = await prepareGroupQuant({ K, rowAlign: 4, scaleLayout: "mmajor" });
  using x = Tensor.fromHost("bf16", [M, K], raw);
  const out = gq.allocate(M);
  using _q = out.q, _s = out.scales;
  out.q.fill(0xff);
  out.scales.fill(0xff);
  gq.run(x, out);
  const ok = same(out.q.toHost(), ref.q) && same(out.scales.toHost(), ref.s);
  console.log(
    `GPU ${Device.get().info.name}: codes and scales ${ok ? "bit-exact" : "DIFFER"} vs the reference`,
  );
  if (!ok) throw new Error("group quant differs from the reference");

  // throughput at a prefill-sized shape
  const big = 4096;
  const gbig = await prepareGroupQuant({ K, rowAlign: 4, scaleLayout: "mmajor" });
  using xb = Tensor.fromHost("bf16", [big, K], encodeArray("bf16", rng.normals(big * K)));
  const ob = gbig.allocate(big);
  using _bq = ob.q, _bs = ob.scales;
  const t = await timeKernel(() => gbig.run(xb, ob), { warmup: 5, reps: 30 });
  const bytes = 3 * big * K + (4 * big * K) / 128;
  console.log(
    `M = ${big}: ${t.medianUs.toFixed(1)} µs, ${
      (bytes / t.medianUs / 1e6).toFixed(2)
    } TB/s (2MK + MK + 4MK/128 bytes)`,
  );

  // the two user-scripted programs, one kernel each, checked bit for bit
  for (
    const [p, inputs, params] of [
      [user[0], { x: encodeArray("bf16", rng.normals(M * K)), w: encodeArray("bf16", rng.normals(K, 0.1)) }, {
        eps: 1e-6,
      }],
      [user[1], { x: encodeArray("bf16", rng.normals(M * 4096)) }, {}],
    ] as const
  ) {
    const k = await compileRowProgram(p);
    const tensors = Object.fromEntries(
      Object.entries(inputs).map(([n, r]) => {
        const d = p.inputs.find((i) => i.name === n)!;
        return [n, Tensor.fromHost("bf16", d.kind === "row" ? [M, d.width] : [d.width], r)];
      }),
    );
    const o = k.run({ inputs: tensors, params, rowAlign: 4 });
    const want = interpret(p, { inputs, params, geometry: { m: M, rows: 16 }, tree: k.rowKernel.schedule });
    const exact = Object.keys(o).every((n) => same(o[n].toHost(), want[n]));
    console.log(`${k.kernel.name}: one launch, ${exact ? "bit-exact" : "DIFFERS"} vs the interpreter`);
    [...Object.values(tensors), ...Object.values(o)].forEach((t) => t.dispose());
    if (!exact) throw new Error(`${p.name} differs from the reference`);
  }
}

if (import.meta.main) await main();
