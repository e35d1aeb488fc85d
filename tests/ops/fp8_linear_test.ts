import assert from "node:assert/strict";
import { gpuTest } from "../_util.ts";
import { ArgumentError, Graph, LoadedKernel, Tensor } from "../../runtime/mod.ts";
import { decodeArray, encodeArray, type HostArray } from "../../dsl/dtype.ts";
import { quantizeWeightBlocks } from "../../dsl/ops/block_matmul.ts";
import { Fp8BlockWeight, fp8Linear, prepareFp8Linear, quantizeWeightFp8Block } from "../../ops/fp8_linear.ts";
import { groupQuant } from "../../ops/group_quant.ts";
import { Rng } from "../../testing/random.ts";
import { assertExactlyEqual } from "../../testing/assert.ts";
import {
  checkOutput,
  randomCodes,
  randomScales,
  sampleCols,
  SampledReference,
  sampleRows,
} from "./_gemm_data.ts";

const MS = [1, 2, 3, 4, 5, 7, 13, 16, 31, 64, 128, 1024, 4096];
const SHAPES: [number, number][] = [[4096, 7168], [7168, 2048], [24576, 1536], [2112, 7168], [7168, 16384], [
  256,
  512,
]];

/** Random bf16 activations `[rows, K]`, fast: N(0, 1) codes from a pool, a few per-row outliers. */
function activations(rng: Rng, rows: number, K: number): Uint16Array {
  const pool = encodeArray("bf16", rng.normals(8192)) as Uint16Array;
  const out = new Uint16Array(rows * K);
  for (let i = 0; i < out.length; i++) out[i] = pool[rng.int(0, 8192)];
  for (let r = 0; r < rows; r++) {
    out[r * K + rng.int(0, K)] = encodeArray("bf16", [rng.normal() * 40])[0] as number;
  }
  return out;
}

/** A random FP8 block weight on the device (codes and scales generated on the host). */
function randomWeight(rng: Rng, N: number, K: number) {
  const q = randomCodes(rng, N * K), s = randomScales(rng, Math.ceil(N / 128) * (K / 128), 2 ** -10);
  return {
    q,
    s,
    w: new Fp8BlockWeight(
      Tensor.fromHost("fp8e4m3", [N, K], q),
      Tensor.fromHost("f32", [Math.ceil(N / 128), K / 128], s),
    ),
  };
}

/**
 * The A operand fp8Linear's first launch makes, from a standalone group quant of the same rows (the
 * kernel is deterministic and per-row): codes `[P, K]` and M-major scales `[K/128, P]` on the host.
 */
async function quantizedRows(x: Tensor): Promise<{ q: Uint8Array; scales: Float32Array; P: number }> {
  const r = await groupQuant(x, { groupSize: 128, dtype: "fp8e4m3", rowAlign: 4, scaleLayout: "mmajor" });
  try {
    return { q: r.q.toHost() as Uint8Array, scales: r.scales.toHost() as Float32Array, P: r.mPad };
  } finally {
    r.q.dispose();
    r.scales.dispose();
  }
}

for (const [N, K] of SHAPES) {
  gpuTest(
    `fp8Linear at N=${N} K=${K} for M in ${MS.join(",")}: rel error ≤ 2e-3 vs the dequantized operands`,
    async () => {
      const rng = new Rng();
      const maxM = Math.max(...MS);
      using x = Tensor.fromHost("bf16", [maxM, K], activations(rng, maxM, K));
      const { q: bq, s: bs, w } = randomWeight(rng, N, K);
      using _w = w;
      const a = await quantizedRows(x);
      const rows = [...new Set(MS.flatMap((m) => sampleRows(m, rng)))].sort((p, q) => p - q);
      const ref = new SampledReference(
        {
          mode: "block",
          M: maxM,
          N,
          K,
          a: a.q,
          aScales: a.scales,
          aScaleStride: a.P,
          b: bq,
          bScales: bs,
        },
        rows,
        sampleCols(N, K, rng),
      );
      using lin = await prepareFp8Linear({ N, K, mValues: MS });
      for (const M of MS) {
        using out = Tensor.empty("bf16", [M, N]).fill(0xff);
        lin.run(x.rows(0, M), w, { out });
        checkOutput(
          out.toHost() as Uint16Array,
          "bf16",
          M,
          N,
          ref,
          `fp8Linear ${lin.gemm.variantFor(M)} M=${M} seed ${rng.seed}`,
        );
      }
    },
  );
}

gpuTest(
  "fp8Linear is exactly two kernel launches (no pad / copy / memset), graph-capturable, padding rows never written",
  async () => {
    const rng = new Rng();
    const [N, K] = [2112, 7168];
    const { w } = randomWeight(rng, N, K);
    using _w = w;
    using lin = await prepareFp8Linear({ N, K, maxM: 64 });
    for (const M of [1, 3, 13, 64]) {
      using x = Tensor.fromHost("bf16", [M, K], activations(rng, M, K));
      // the output is a view into a bigger poisoned buffer: rows ≥ M must stay untouched
      using big = Tensor.empty("bf16", [M + 4, N]).fill(0xff);
      const out = big.rows(0, M);
      const launch = LoadedKernel.prototype.launch, fill = Tensor.prototype.fill;
      let launches = 0, fills = 0;
      LoadedKernel.prototype.launch = function (...args) {
        launches++;
        return launch.apply(this, args);
      };
      Tensor.prototype.fill = function (...args) {
        fills++;
        return fill.apply(this, args);
      };
      try {
        lin.run(x, w, { out });
      } finally {
        LoadedKernel.prototype.launch = launch;
        Tensor.prototype.fill = fill;
      }
      assert.equal(launches, 2, `M=${M}: launches`);
      assert.equal(fills, 0, `M=${M}: memsets`);
      const direct = big.toHost() as Uint16Array;
      for (let i = M * N; i < direct.length; i++) {
        assert.equal(direct[i], 0xffff, `M=${M}: padding row element ${i} written`);
      }
      big.fill(0xff);
      using g = Graph.capture(() => lin.run(x, w, { out }));
      g.launch();
      assert.deepEqual(big.toHost(), direct, `M=${M}: graph replay equals the direct call`);
    }
  },
);

gpuTest(
  "quantizeWeightFp8Block matches the reference bit for bit (bf16 / f16, ragged N, ue8m0)",
  async () => {
    const rng = new Rng();
    for (
      const [N, K, dtype, ue8m0] of [[2112, 7168, "bf16", false], [300, 512, "f16", false], [
        130,
        1024,
        "bf16",
        true,
      ]] as const
    ) {
      const raw = encodeArray(dtype, rng.normals(N * K, 0.05)) as HostArray;
      const values = decodeArray(dtype, raw, N * K);
      values[rng.int(0, N * K)] = 0; // and a row of zeros in the ragged tail
      for (let k = 0; k < K; k++) values[(N - 1) * K + k] = 0;
      const codes = encodeArray(dtype, values);
      using wt = Tensor.fromHost(dtype, [N, K], codes);
      using w = await quantizeWeightFp8Block(wt, { ue8m0 });
      const ref = quantizeWeightBlocks(values, N, K, { ue8m0 });
      assertExactlyEqual(
        w.scales.toHost() as Float32Array,
        ref.scales,
        `${dtype} ${N}x${K} scales (seed ${rng.seed})`,
      );
      assertExactlyEqual(
        w.weight.toHost() as Uint8Array,
        ref.q,
        `${dtype} ${N}x${K} codes (seed ${rng.seed})`,
      );
    }
  },
);

gpuTest(
  "fp8Linear with a bias, f16 output and the one-shot form; bad inputs are refused before any launch",
  async () => {
    const rng = new Rng();
    const [N, K, M] = [520, 1024, 5];
    const { w } = randomWeight(rng, N, K);
    using _w = w;
    using x = Tensor.fromHost("bf16", [M, K], activations(rng, M, K));
    const a = await quantizedRows(x);
    const bias = rng.normals(N);
    using biasT = Tensor.fromFloat("f32", [N], bias);
    const ref = new SampledReference(
      {
        mode: "block",
        M,
        N,
        K,
        a: a.q,
        aScales: a.scales,
        aScaleStride: a.P,
        b: w.weight.toHost() as Uint8Array,
        bScales: w.scales.toHost() as Float32Array,
        bias,
      },
      sampleRows(M, rng),
      sampleCols(N, K, rng),
    );
    using lin = await prepareFp8Linear({ N, K, maxM: 16, bias: "f32", outDtype: "f16" });
    using y = lin.run(x, w, { bias: biasT });
    checkOutput(y.toHost() as Uint16Array, "f16", M, N, ref, `bias + f16 seed ${rng.seed}`);
    using y2 = await fp8Linear(x, w, { bias: biasT, outDtype: "f16" });
    assert.deepEqual(y2.toHost(), y.toHost(), "the one-shot form gives the same numbers");
    using x17 = Tensor.empty("bf16", [17, K]);
    assert.throws(
      () => lin.run(x17, w, { bias: biasT }),
      (e) => e instanceof ArgumentError && /maxM/.test(e.message),
    );
    using xk = Tensor.empty("bf16", [2, 512]);
    assert.throws(
      () => lin.run(xk, w, { bias: biasT }),
      (e) => e instanceof ArgumentError && e.argument === "x",
    );
    assert.throws(() => lin.run(x, w), (e) => e instanceof ArgumentError && e.argument === "bias");
  },
);
