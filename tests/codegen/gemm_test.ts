import assert from "node:assert/strict";
import { archsFor, compileTest } from "../_util.ts";
import { compileFor } from "../../runtime/jit.ts";
import { ptxasReport } from "../../runtime/nvrtc.ts";
import { type KernelSource, renderParams } from "../../codegen/kernel_source.ts";
import { blockMatmulOp, type BlockMatmulOpOptions } from "../../dsl/ops/block_matmul.ts";
import {
  smallMConfig,
  smallMGrid,
  smallMKernel,
  smallMSharedBytes,
} from "../../codegen/kernels/gemm_small_m.ts";
import { smallMStreamConfig, smallMStreamKernel } from "../../codegen/kernels/gemm_small_m_stream.ts";
import { tiledConfig, tiledGrid, tiledKernel } from "../../codegen/kernels/gemm_mma.ts";
import { weightQuantKernel } from "../../codegen/kernels/weight_quant.ts";
import { mBuckets, mmaVariant } from "../../ops/block_matmul.ts";

const op = (o: Partial<BlockMatmulOpOptions> = {}) => blockMatmulOp({ N: 7168, K: 7168, ...o });

/** A representative set: every scale mode, both scale dtypes, both outputs, each bias kind, each token-tile count. */
const REPRESENTATIVE: { ks: KernelSource; maxRegs: number }[] = [
  { ks: smallMKernel(op(), { rt: 1, nt: 1, wk: 16 }), maxRegs: 96 },
  {
    ks: smallMKernel(op({ aScaleDtype: "ue8m0", bScaleDtype: "ue8m0", outDtype: "f16", bias: "bf16" }), {
      rt: 2,
      nt: 2,
      wk: 4,
    }),
    maxRegs: 200,
  },
  { ks: smallMKernel(op({ mode: "channel", bias: "f32" }), { rt: 1, nt: 4, wk: 8 }), maxRegs: 128 },
  { ks: smallMKernel(op({ mode: "tensor", bias: "f16" }), { rt: 1, nt: 8, wk: 4 }), maxRegs: 255 },
  { ks: smallMKernel(op({ mode: "int8" }), { rt: 2, nt: 1, wk: 2 }), maxRegs: 128 },
  // v2 small-M: the shapes the chooser picks must not spill under their __launch_bounds__ register cap
  { ks: smallMStreamKernel(op({ N: 2112 }), smallMStreamConfig(1, 2112, 7168)), maxRegs: 128 },
  {
    ks: smallMStreamKernel(
      op({ N: 24576, K: 1536, aScaleDtype: "ue8m0", bScaleDtype: "ue8m0", outDtype: "f16", bias: "bf16" }),
      smallMStreamConfig(16, 24576, 1536),
    ),
    maxRegs: 168,
  },
  {
    ks: smallMStreamKernel(op({ mode: "channel", bias: "f32" }), smallMStreamConfig(32, 7168, 7168)),
    maxRegs: 200,
  },
  {
    ks: smallMStreamKernel(
      op({ mode: "tensor", bias: "f16", N: 300, K: 512 }),
      smallMStreamConfig(5, 300, 512),
    ),
    maxRegs: 168,
  },
  {
    ks: smallMStreamKernel(op({ mode: "int8", N: 520, K: 768 }), smallMStreamConfig(13, 520, 768)),
    maxRegs: 168,
  },
  { ks: tiledKernel(op(), { bm: 128, stages: 3 }), maxRegs: 255 },
  {
    ks: tiledKernel(op({ mode: "int8", bias: "bf16", outDtype: "f16" }), { bm: 64, stages: 3 }),
    maxRegs: 200,
  },
  { ks: weightQuantKernel({ inDtype: "bf16" }), maxRegs: 96 },
  { ks: weightQuantKernel({ inDtype: "f16", ue8m0: true }), maxRegs: 96 },
];

for (const { ks, maxRegs } of REPRESENTATIVE) {
  const archs = archsFor(ks.minArch ?? 89).filter((a) => a !== "sm_80" || ks.minArch === 80);
  compileTest(`${ks.name} compiles for ${archs.join(", ")} without spills`, async () => {
    for (const arch of archs) {
      const { log } = await compileFor(ks, arch);
      const rep = ptxasReport(log ?? "");
      assert.equal(rep.length, 1, `${arch}: one entry in the ptxas report\n${log}`);
      assert.equal(rep[0].fn, ks.entry);
      assert.equal(rep[0].spillBytes, 0, `${arch}: spills\n${log}`);
      assert.equal(rep[0].stackBytes, 0, `${arch}: stack frame\n${log}`);
      assert.ok(rep[0].registers <= maxRegs, `${arch}: ${rep[0].registers} registers > ${maxRegs}`);
      assert.ok(!/warning/i.test(log ?? ""), `${arch}: warnings\n${log}`);
    }
  });
}

Deno.test("gemm codegen is deterministic and renders its signature from its ParamSpec list", () => {
  for (const { ks } of REPRESENTATIVE) {
    assert.ok(
      ks.source.includes(`${ks.entry}(${renderParams(ks.params)}) {`),
      `${ks.name}: signature from params`,
    );
    assert.equal(ks.name, ks.entry);
    assert.ok(!ks.source.includes("#include"), `${ks.name}: NVRTC gets no include path`);
  }
  const a = smallMKernel(op({ bias: "f32" }), { rt: 2, nt: 2, wk: 8 });
  const b = smallMKernel(op({ bias: "f32" }), { rt: 2, nt: 2, wk: 8 });
  assert.equal(a.source, b.source);
  assert.deepEqual(a.params.map((p) => p.name), [
    "a",
    "sa",
    "b",
    "sb",
    "bias",
    "out",
    "M",
    "N",
    "K",
    "lda",
    "sas",
    "ldc",
  ]);
  assert.deepEqual(
    smallMKernel(op(), { rt: 1, nt: 1, wk: 8 }).params.map((p) => p.name).includes("bias"),
    false,
  );
  assert.equal(a.name, "gemm_smallm_block_bf16_biasf32_rt2_nt2_wk8");
  assert.equal(
    smallMKernel(op({ aScaleDtype: "ue8m0" }), { rt: 1, nt: 1, wk: 8 }).name,
    "gemm_smallm_block_ue8m0a_bf16_rt1_nt1_wk8",
  );
  assert.equal(a.sharedBytes, smallMSharedBytes({ rt: 2, nt: 2, wk: 8 }));
});

Deno.test("small-M heuristic: 32 rows per CTA for wide N, 16 for N = 2112 (132 CTAs of 16 warps), warps ≤ K blocks", () => {
  assert.equal(smallMConfig(4, 24576, 1536).rt, 2);
  assert.equal(smallMConfig(4, 2112, 7168).rt, 1);
  assert.equal(smallMConfig(4, 2112, 7168).wk, 16, "one CTA per SM: 16 warps keep 32 KB in flight");
  assert.equal(smallMGrid(2112, smallMConfig(1, 2112, 7168)), 132);
  // one token tile wants 32 KB in flight per SM: 4096×7168 takes 32 rows × 16 warps (measured faster)
  assert.deepEqual(smallMConfig(4, 4096, 7168), { rt: 2, nt: 1, wk: 16 });
  assert.deepEqual(smallMConfig(16, 7168, 2048), { rt: 2, nt: 2, wk: 4 });
  assert.equal(smallMConfig(16, 7168, 7168).nt, 2);
  assert.equal(smallMConfig(17, 7168, 7168).nt, 4);
  assert.equal(smallMConfig(64, 7168, 7168).nt, 8);
  assert.ok(smallMConfig(1, 256, 512).wk <= 4);
  for (const [N, K] of [[4096, 7168], [7168, 2048], [24576, 1536], [2112, 7168], [7168, 16384], [256, 512]]) {
    for (const M of [1, 2, 3, 4, 5, 7, 13, 16, 31, 64]) {
      const c = smallMConfig(M, N, K);
      assert.ok(8 * c.nt >= M && smallMGrid(N, c) * 16 * c.rt >= N, `${M}x${N}x${K}`);
    }
  }
});

Deno.test("tiled kernel: tile height fills the SMs, grid covers M and N", () => {
  assert.equal(tiledConfig(4096, 7168).bm, 128);
  assert.equal(tiledConfig(128, 7168).bm, 64);
  assert.deepEqual(tiledGrid(4096, 2112, { bm: 128, stages: 3 }), [17, 32, 1]);
  assert.equal(mmaVariant(op(), 16).name.startsWith("gemm_smallm_"), true); // v1 is the default
  assert.equal(mmaVariant(op(), 16, 132, 2).name.startsWith("gemm_smallm2_"), true);
  assert.equal(mmaVariant(op(), 32, 132, 2).name.startsWith("gemm_smallm2_"), true);
  assert.equal(mmaVariant(op(), 33, 132, 2).name.startsWith("gemm_smallm_"), true);
  assert.equal(mmaVariant(op(), 64).name.startsWith("gemm_smallm_"), true);
  assert.equal(mmaVariant(op(), 65).name.startsWith("gemm_mma_"), true);
  assert.deepEqual(mBuckets(16384), [1, 2, 4, 8, 16, 32, 64, 256, 1024, 4096, 16384]);
  assert.deepEqual(mBuckets(5), [1, 2, 4, 5]);
});
