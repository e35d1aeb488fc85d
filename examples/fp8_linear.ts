/**
 * FP8 block-scaled linear, end to end: quantize a bf16 weight to FP8 128×128 blocks, run `y = x·Wᵀ` as
 * group quant + GEMM (two launches), compare with the bf16 reference, print the error and the speed.
 * Without a GPU it runs the TypeScript reference of the same math (and compiles the kernels when NVRTC
 * is there), and says so.
 *
 *   deno run -A examples/fp8_linear.ts
 *
 * @module
 */
import { bf16Decode, encodeArray } from "../dsl/dtype.ts";
import {
  blockMatmulOp,
  blockMatmulReference,
  quantizeGroups,
  quantizeWeightBlocks,
} from "../dsl/ops/block_matmul.ts";
import { weightQuantKernel } from "../codegen/kernels/weight_quant.ts";
import { smallMConfig, smallMKernel } from "../codegen/kernels/gemm_small_m.ts";
import { tiledConfig, tiledKernel } from "../codegen/kernels/gemm_mma.ts";
import { compileFor, Device, hasGpu, hasNvrtc, ptxasReport, Tensor, timeKernel } from "../runtime/mod.ts";
import { assertExactlyEqual, relFrobenius, Rng } from "../testing/mod.ts";

/** The demo step: a DeepSeek-V3 `q_a_proj`-sized layer (N = 2112 is not a multiple of 128) at M = 4 tokens. */
export async function main(): Promise<void> {
  const [M, N, K] = [4, 2112, 7168];
  const rng = new Rng(2024);
  const wRaw = encodeArray("bf16", rng.normals(N * K, 0.02)) as Uint16Array;
  const xRaw = encodeArray("bf16", rng.normals(M * K)) as Uint16Array;
  const w = Float32Array.from(wRaw, bf16Decode), x = Float32Array.from(xRaw, bf16Decode);
  // what the layer means: the bf16 product, in float64
  const exact = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
      exact[m * N + n] = s;
    }
  }
  const wq = quantizeWeightBlocks(w, N, K);
  console.log(
    `y[${M}, ${N}] = x[${M}, ${K}] · Wᵀ, W as e4m3 + ${Math.ceil(N / 128)}×${K / 128} block scales`,
  );

  if (!hasGpu()) {
    const xq = quantizeGroups(x, M, K, { stride: 4 });
    const y = blockMatmulReference({
      mode: "block",
      M,
      N,
      K,
      a: xq.q,
      aScales: xq.scales,
      aScaleStride: 4,
      b: wq.q,
      bScales: wq.scales,
    });
    console.log(
      "no GPU here: ran the TypeScript reference of the same math (group quant + block-scaled GEMM)",
    );
    console.log(
      `relative error vs the bf16 product: ${relFrobenius(y, exact).toExponential(2)} (FP8 quantization)`,
    );
    if (hasNvrtc()) {
      const op = blockMatmulOp({ N, K });
      // the small-M kernel the dispatch picks for this M (sm_90 hosts use wgmma only above M = 16)
      const small = smallMKernel(op, smallMConfig(M, N, K));
      const kernels = [weightQuantKernel({ inDtype: "bf16" }), small, tiledKernel(op, tiledConfig(4096, N))];
      for (const ks of kernels) {
        const r = await compileFor(ks, "sm_90a");
        const rep = ptxasReport(r.log ?? "")[0];
        console.log(
          `compiled ${ks.name} for sm_90a: ${rep?.registers} registers, ${rep?.spillBytes} B spilled`,
        );
      }
    }
    return;
  }

  const { prepareFp8Linear, quantizeWeightFp8Block } = await import("../ops/fp8_linear.ts");
  const device = Device.get();
  using wT = Tensor.fromHost("bf16", [N, K], wRaw);
  using xT = Tensor.fromHost("bf16", [M, K], xRaw);
  using weight = await quantizeWeightFp8Block(wT);
  assertExactlyEqual(weight.weight.toHost() as Uint8Array, wq.q, "GPU weight codes vs the reference");
  assertExactlyEqual(weight.scales.toHost() as Float32Array, wq.scales, "GPU weight scales vs the reference");
  console.log(`weight quantized on ${device.info.name}: codes and scales bit-exact with the reference`);
  using lin = await prepareFp8Linear({ N, K, mValues: [M] });
  using y = Tensor.empty("bf16", [M, N]);
  lin.run(xT, weight, { out: y });
  const err = relFrobenius(y.toFloat32(), exact);
  console.log(
    `fp8Linear (${lin.gemm.variantFor(M)}): relative error vs the bf16 product ${err.toExponential(2)}`,
  );
  const t = await timeKernel(() => lin.run(xT, weight, { out: y }), { warmup: 5, reps: 50 });
  const tb = (N * K) / (t.medianUs * 1e-6) / 1e12;
  console.log(
    `time: ${t.medianUs.toFixed(1)} µs per call (group quant + GEMM), ${tb.toFixed(2)} TB/s on the weights`,
  );
}

if (import.meta.main) await main();
