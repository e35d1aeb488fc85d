/**
 * PDL kernels without a GPU: (pure) which kernels are PDL and what `withPdl` does to a source; (compile)
 * the small-M GEMMs (v1, v2) and the PDL group quant compile for every arch they claim without spills,
 * and their sm_90 SASS keeps the PDL rule: one `PREEXIT` (launch_dependents) before one `ACQBULK`
 * (wait), the weight prefetch (`LDG.E.NA.LTC256B.128.CONSTANT`) issued before the wait, no store and
 * no coherent load before it, and no non-coherent 128-bit activation load anywhere (ptxas may move
 * those across the wait). Below sm_90 neither instruction exists.
 */
import assert from "node:assert/strict";
import { archsFor, compileTest } from "../_util.ts";
import { compileFor } from "../../runtime/jit.ts";
import { ptxasReport } from "../../runtime/nvrtc.ts";
import type { KernelSource } from "../../codegen/kernel_source.ts";
import { blockMatmulOp, type BlockMatmulOpOptions } from "../../dsl/ops/block_matmul.ts";
import { smallMConfig, smallMKernel } from "../../codegen/kernels/gemm_small_m.ts";
import { smallMStreamConfig, smallMStreamKernel } from "../../codegen/kernels/gemm_small_m_stream.ts";
import { groupQuantKernel } from "../../codegen/kernels/group_quant.ts";
import { withPdl } from "../../codegen/kernels/_pdl.ts";
import { resolveGroupQuant } from "../../dsl/ops/group_quant.ts";
import { balancedSharedBytes, mmaVariant } from "../../ops/block_matmul.ts";
import { ctasPerSm } from "../../runtime/occupancy.ts";
import { sassHistogram, type SassInstr, sassTool } from "./_sass.ts";

const op = (N: number, K: number, o: Partial<BlockMatmulOpOptions> = {}) => blockMatmulOp({ N, K, ...o });
const gq = (K: number, pdl: boolean) =>
  groupQuantKernel(resolveGroupQuant(K, "bf16", { rowAlign: 4, scaleLayout: "mmajor" }), undefined, { pdl })
    .source;

Deno.test("pdl: block-mode small-M GEMMs are PDL kernels, the other modes and `pdl: false` are not", () => {
  const cfg = smallMConfig(4, 2112, 7168), cfg2 = smallMStreamConfig(4, 2112, 7168);
  assert.equal(smallMKernel(op(2112, 7168), cfg).pdl, true);
  assert.equal(smallMStreamKernel(op(2112, 7168), cfg2).pdl, true);
  for (const mode of ["tensor", "channel", "int8"] as const) {
    const ks = smallMKernel(op(2112, 7168, { mode }), cfg);
    assert.equal(ks.pdl, undefined, `${mode}: its epilogue reads activation scales with __ldg`);
    assert.ok(!ks.source.includes("griddepcontrol"), mode);
  }
  const plain = smallMKernel(op(2112, 7168), cfg, { pdl: false });
  assert.equal(plain.pdl, undefined);
  assert.ok(plain.name.endsWith("_nopdl") && !plain.source.includes("griddepcontrol"));
  assert.ok(smallMStreamKernel(op(2112, 7168), cfg2, { pdl: false }).name.endsWith("_nopdl"));
  // the dispatch's M ≤ 16 kernels (what fp8Linear runs)
  for (const M of [1, 4, 16]) {
    assert.ok(mmaVariant(op(2112, 7168), M).name.startsWith("gemm_smallm_block"), `M=${M}`);
  }
});

Deno.test("pdl: small-M GEMMs cap CTAs per SM at the balanced spread (shared memory), only when needed", () => {
  const h200 = { smCount: 132, maxSharedPerSM: 233472, maxSharedPerBlock: 232448 };
  const fits = (sharedBytes: number, registers: number, threads: number) =>
    ctasPerSm({ threads, registers, sharedBytes, maxSharedPerSM: h200.maxSharedPerSM });
  // 7168×16384 at M 16 (rt 2, nt 2, wk 4: 168 registers → 3 per SM) on 224 CTAs: capped to 2 per SM
  const m16 = { ...h200, grid: 224, threads: 128, registers: 168, sharedBytes: 4608 };
  const s16 = balancedSharedBytes(m16);
  assert.equal(fits(m16.sharedBytes, 168, 128), 3);
  assert.equal(fits(s16, 168, 128), 2);
  assert.ok(s16 <= h200.maxSharedPerBlock);
  // one CTA per SM at most for a grid of ≤ 132
  assert.equal(fits(balancedSharedBytes({ ...m16, grid: 100 }), 168, 128), 1);
  // already balanced (M ≤ 8, wk 8, 120 registers → 2 per SM) or a grid of several waves: unchanged
  assert.equal(balancedSharedBytes({ ...m16, threads: 256, registers: 120 }), 4608);
  assert.equal(balancedSharedBytes({ ...m16, grid: 900 }), 4608);
  // a cap that the opt-in limit cannot reach leaves the kernel's own
  assert.equal(balancedSharedBytes({ ...m16, grid: 100, maxSharedPerBlock: 49152 }), 4608);
});

Deno.test("pdl: withPdl waits first, launders every pointer, makes every load coherent and renames", () => {
  const base = gq(7168, false), ks = gq(7168, true);
  assert.equal(base.pdl, undefined);
  assert.equal(ks.pdl, true);
  assert.equal(ks.entry, `${base.entry}_pdl`);
  assert.equal(ks.name, `${base.name}_pdl`);
  assert.deepEqual(ks.params, base.params);
  assert.ok(base.source.includes("ld.global.nc."), "the plain quant streams with ld.global.nc");
  assert.ok(!/ld\.global\.nc\./.test(ks.source), "no non-coherent load left");
  const body = ks.source.slice(ks.source.indexOf(`${ks.entry}(`));
  const head = body.slice(body.indexOf("{\n") + 2).split("\n").slice(0, 4).map((l) => l.trim());
  assert.deepEqual(head, [
    "kiln_pdl_launch_dependents();",
    "kiln_pdl_wait();",
    "i_x = kiln_pdl_after(i_x);", // the read-only pointers; outputs keep their STG stores
    "const int lane = threadIdx.x & 3;",
  ]);
  assert.equal(withPdl(ks), ks, "idempotent");
  assert.throws(
    () => withPdl({ ...base, source: base.source.replace("{\n", "{\n  (void)__ldg(i_x);\n") }),
    /__ldg/,
  );
  assert.throws(() => withPdl({ ...base, entry: "nope" }), /no signature/);
  assert.equal(gq(7168, true).source, ks.source, "deterministic");
});

/** Index of the only instruction `op`, asserting there is exactly one. */
function only(instrs: SassInstr[], op: string, what: string): number {
  const at = instrs.flatMap((x, i) => (x.op === op ? [i] : []));
  assert.equal(at.length, 1, `${what}: ${at.length} × ${op}`);
  return at[0];
}

const STORES = /^(STG|ST|RED|ATOM|ATOMG)(\.|$)/;

/** The sm_90 SASS order of a PDL GEMM: `prefetch` weight loads before the wait, nothing else global. */
function checkGemmSass(instrs: SassInstr[], name: string, prefetch: number): void {
  const pre = only(instrs, "PREEXIT", name), wait = only(instrs, "ACQBULK", name);
  assert.ok(pre < wait, `${name}: launch_dependents before wait`);
  const before = instrs.slice(0, wait);
  const weight = (x: SassInstr) =>
    x.op.startsWith("LDG") && x.op.includes(".NA.") && x.op.endsWith(".CONSTANT");
  const nW = before.filter(weight).length;
  assert.ok(nW >= prefetch, `${name}: ${nW} weight loads before the wait, want ≥ ${prefetch}`);
  for (const x of before) {
    assert.ok(!STORES.test(x.op), `${name}: ${x.op} at ${x.addr.toString(16)} before the wait`);
    assert.ok(
      !x.op.startsWith("LDG") || x.op.endsWith(".CONSTANT"),
      `${name}: coherent ${x.op} before the wait`,
    );
  }
  // activations: coherent 128-bit loads after the wait; never a non-coherent one without .NA (old ld_keep16)
  assert.ok(
    instrs.slice(wait).some((x) => x.op === "LDG.E.128"),
    `${name}: no coherent A load after the wait`,
  );
  assert.ok(!instrs.some((x) => x.op === "LDG.E.128.CONSTANT"), `${name}: a non-coherent activation load`);
}

interface Case {
  ks: KernelSource;
  /** Weight loads the prefetch issues per thread (stages × 4 chunks × rt). */
  prefetch: number;
}
const v1 = (M: number, N: number, K: number, o: Partial<BlockMatmulOpOptions> = {}): Case => {
  const cfg = smallMConfig(M, N, K);
  return { ks: smallMKernel(op(N, K, o), cfg), prefetch: 2 * 4 * cfg.rt };
};
const v2 = (M: number, N: number, K: number, o: Partial<BlockMatmulOpOptions> = {}): Case => {
  const cfg = smallMStreamConfig(M, N, K);
  return { ks: smallMStreamKernel(op(N, K, o), cfg), prefetch: cfg.stages * 4 * cfg.rt };
};
/** The dispatch's kernels at M = 1, 4, 16 of the shapes (v1), v2 and the scale / output variants. */
const CASES: Case[] = [
  v1(1, 2112, 7168),
  v1(16, 4096, 7168),
  v1(16, 24576, 1536, { aScaleDtype: "ue8m0", bScaleDtype: "ue8m0", outDtype: "f16", bias: "bf16" }),
  v1(32, 7168, 7168), // nt 4: tokens read in compute, after the wait
  v2(4, 2112, 7168),
  v2(16, 24576, 1536, { aScaleDtype: "ue8m0", bias: "f32" }),
];

for (const { ks, prefetch } of CASES) {
  const archs = archsFor(ks.minArch ?? 89);
  compileTest(
    `pdl: ${ks.name} on ${archs.join(", ")}: no spills; sm_90 SASS prefetches B before ACQBULK`,
    async () => {
      const tool = sassTool();
      for (const arch of archs) {
        const { cubin, log } = await compileFor(ks, arch);
        const rep = ptxasReport(log ?? "");
        assert.equal(rep.length, 1, log);
        assert.equal(rep[0].spillBytes + rep[0].stackBytes, 0, `${arch}: spills / stack\n${log}`);
        assert.ok(!/warning/i.test(log ?? ""), `${arch}: warnings\n${log}`);
        if (!tool) continue;
        const { h, instrs } = await sassHistogram(cubin, tool);
        if (arch.startsWith("sm_90")) checkGemmSass(instrs, `${ks.name} ${arch}`, prefetch);
        else assert.ok(!h.has("ACQBULK") && !h.has("PREEXIT"), `${arch}: PDL instructions below sm_90`);
      }
      if (!tool) console.log("cuobjdump not found: SASS order not checked");
    },
  );
}

compileTest(
  "pdl: the PDL group quant waits before any global access; loads coherent (sm_89, sm_90)",
  async () => {
    const tool = sassTool();
    const more = [
      { fuseSiluMul: true, ue8m0: true, packUe8m0: true }, // fused silu·up, packed ue8m0
      { groupSize: 7168 }, // per-token: a CTA-wide team
      { masked: true, rowAlign: 1 }, // masked experts: masked_m read through a laundered pointer
    ].map((o) =>
      withPdl(
        groupQuantKernel(resolveGroupQuant(7168, "bf16", { rowAlign: 4, scaleLayout: "mmajor", ...o }))
          .source,
      )
    );
    for (const ks of [gq(7168, true), ...more]) {
      for (const arch of archsFor(ks.minArch ?? 89)) {
        const { cubin, log } = await compileFor(ks, arch);
        const rep = ptxasReport(log ?? "");
        assert.equal(rep[0].spillBytes + rep[0].stackBytes, 0, `${ks.name} ${arch}\n${log}`);
        if (!tool) continue;
        const { h, instrs } = await sassHistogram(cubin, tool);
        const what = `${ks.name} ${arch}`;
        if (!arch.startsWith("sm_90")) {
          assert.ok(!h.has("ACQBULK") && !h.has("PREEXIT"), what);
          continue;
        }
        const wait = only(instrs, "ACQBULK", what);
        assert.ok(only(instrs, "PREEXIT", what) < wait, what);
        assert.ok(
          instrs.slice(0, wait).every((x) => !/^(LDG|STG|ST|RED|ATOM)/.test(x.op)),
          `${what}: global access before the wait`,
        );
        assert.ok(
          !instrs.some((x) => x.op.startsWith("LDG") && x.op.endsWith(".CONSTANT")),
          `${what}: .nc load`,
        );
        assert.ok((h.get("LDG") ?? 0) > 0 && (h.get("STG") ?? 0) > 0, what);
      }
    }
  },
);
