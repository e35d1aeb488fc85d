import assert from "node:assert/strict";
import { gpuTest } from "../_util.ts";
import { ArgumentError, Device, Graph, Tensor } from "../../runtime/mod.ts";
import { decodeArray, encodeArray, ue8m0EncodeCeil } from "../../dsl/dtype.ts";
import { blockMatmulOp, type BlockMatmulOpOptions, type ScaleMode } from "../../dsl/ops/block_matmul.ts";
import {
  blockScaledMatmul,
  checkGemmInputs,
  checkGemmOut,
  type GemmBackendChoice,
  type GemmTensorLike,
  prepareBlockScaledMatmul,
  type SmallMVersion,
} from "../../ops/block_matmul.ts";
import { Rng } from "../../testing/random.ts";
import {
  checkOutput,
  type HostProblem,
  hostProblem,
  sampleCols,
  SampledReference,
  sampleRows,
} from "./_gemm_data.ts";

const MS = [1, 2, 3, 4, 5, 7, 13, 16, 31, 64, 128, 1024, 4096];
const SHAPES: [number, number][] = [[4096, 7168], [7168, 2048], [24576, 1536], [2112, 7168], [7168, 16384], [
  256,
  512,
]];

/** The host problem on the device: A `[rows, K]`, its scales (block: `[K/128, P]`), B, B scales. */
function upload(p: HostProblem, aScaleDtype: "f32" | "ue8m0" = "f32", bScaleDtype: "f32" | "ue8m0" = "f32") {
  const q = p.mode === "int8" ? "i8" : "fp8e4m3";
  const KB = p.K / 128;
  const scales = (v: Float32Array, shape: number[], dt: "f32" | "ue8m0") =>
    dt === "f32"
      ? Tensor.fromHost("f32", shape, v)
      : Tensor.fromHost("ue8m0", shape, Uint8Array.from(v, ue8m0EncodeCeil));
  return {
    a: Tensor.fromHost(q, [p.M, p.K], p.mode === "int8" ? new Int8Array(p.a.buffer) : p.a),
    sa: scales(p.aScales, p.mode === "block" ? [KB, p.P] : [p.aScales.length], aScaleDtype),
    b: Tensor.fromHost(q, [p.N, p.K], p.mode === "int8" ? new Int8Array(p.b.buffer) : p.b),
    sb: scales(p.bScales, p.mode === "block" ? [Math.ceil(p.N / 128), KB] : [p.bScales.length], bScaleDtype),
    dispose() {
      for (const t of [this.a, this.sa, this.b, this.sb]) t.dispose();
    },
  };
}

/** Every M of the list on one (N, K), block mode, against one sampled float64 reference. */
async function sweep(
  N: number,
  K: number,
  backend: GemmBackendChoice,
  ms: readonly number[],
  smallM?: SmallMVersion,
) {
  const rng = new Rng();
  const maxM = Math.max(...ms);
  const p = hostProblem(rng, "block", N, K, maxM);
  const rows = [...new Set(ms.flatMap((m) => sampleRows(m, rng)))].sort((x, y) => x - y);
  const ref = new SampledReference(p, rows, sampleCols(N, K, rng));
  const d = upload(p);
  try {
    const gemm = await prepareBlockScaledMatmul({ N, K, mValues: ms, backend, smallM });
    for (const M of ms) {
      using out = Tensor.empty("bf16", [M, N]).fill(0xff);
      gemm.run(d.a, d.sa, d.b, d.sb, { m: M, out });
      const e = checkOutput(
        out.toHost() as Uint16Array,
        "bf16",
        M,
        N,
        ref,
        `${gemm.variantFor(M)} M=${M} N=${N} K=${K} seed ${rng.seed}`,
      );
      assert.ok(e < 2e-3);
    }
  } finally {
    d.dispose();
  }
}

for (const [N, K] of SHAPES) {
  gpuTest(
    `block-scaled GEMM (mma.sync kernels: v2 small-M to 32, v1 at 64, tiled above) at N=${N} K=${K} for M in ${
      MS.join(",")
    }: rel error ≤ 2e-3, every element written`,
    () => sweep(N, K, "mma", MS, 2),
  );
}
gpuTest("the v1 small-M kernel (the default for M ≤ 16) is correct for M ≤ 64", async () => {
  await sweep(2112, 7168, "mma", [1, 5, 16, 31, 64], 1);
  await sweep(24576, 1536, "mma", [1, 13, 64], 1);
  await sweep(256, 512, "mma", [3, 16], 1);
});
gpuTest(
  "block-scaled GEMM through the default dispatch (v1 small-M to 16, sm_90 wgmma above where supported)",
  async () => {
    await sweep(2112, 7168, "auto", [1, 16, 31, 48, 128, 1024]);
    await sweep(7168, 2048, "auto", [4, 32, 64, 4096]);
  },
);

/** One GEMM in a given mode / dtype combination against the full float64 reference. */
async function variantCase(
  o: Partial<BlockMatmulOpOptions> & { mode: ScaleMode },
  M: number,
  N: number,
  K: number,
  extra: { ldc?: number; padRows?: number; smallM?: SmallMVersion } = {},
) {
  const rng = new Rng();
  const rowsA = M + (extra.padRows ?? 0);
  const p = hostProblem(rng, o.mode, N, K, rowsA);
  const biasHost = o.bias ? encodeArray(o.bias, rng.normals(N, 0.5)) : undefined;
  const biasValues = o.bias ? decodeArray(o.bias, biasHost!, N) : undefined;
  const d = upload(p, o.aScaleDtype, o.bScaleDtype);
  if (o.aScaleDtype === "ue8m0") {
    p.aScales = Float32Array.from(p.aScales, (s) => 2 ** (ue8m0EncodeCeil(s) - 127));
  }
  if (o.bScaleDtype === "ue8m0") {
    p.bScales = Float32Array.from(p.bScales, (s) => 2 ** (ue8m0EncodeCeil(s) - 127));
  }
  const ref = new SampledReference({ ...p, bias: biasValues }, sampleRows(M, rng), sampleCols(N, K, rng));
  using biasT = o.bias ? Tensor.fromHost(o.bias, [N], biasHost!) : undefined;
  const outDtype = o.outDtype ?? "bf16";
  const ldc = extra.ldc ?? N;
  // the output lives inside a bigger poisoned buffer: rows ≥ M and columns ≥ N must stay untouched
  using big = Tensor.empty(outDtype, [M + 2, ldc]).fill(0xff);
  const out = big.rows(0, M).strided([M, N], [ldc, 1]);
  try {
    const gemm = await prepareBlockScaledMatmul({
      ...o,
      N,
      K,
      mValues: [M],
      backend: "mma",
      smallM: extra.smallM,
    });
    gemm.run(d.a, d.sa, d.b, d.sb, { m: M, out, bias: biasT });
    const raw = big.toHost() as Uint16Array;
    checkOutput(
      raw,
      outDtype,
      M,
      N,
      ref,
      `${gemm.variantFor(M)} ${JSON.stringify(o)} M=${M} seed ${rng.seed}`,
      2e-3,
      ldc,
    );
    for (let i = M * ldc; i < raw.length; i++) {
      assert.equal(raw[i], 0xffff, `guard row element ${i} was written`);
    }
    for (let m = 0; m < M; m++) {
      for (let n = N; n < ldc; n++) {
        assert.equal(raw[m * ldc + n], 0xffff, `guard column (${m}, ${n}) was written`);
      }
    }
  } finally {
    d.dispose();
  }
}

gpuTest(
  "scale modes tensor / channel / int8 with biases, f16 output, ue8m0 scales, strided output and padded A (v2 and v1 small-M)",
  async () => {
    for (const M of [1, 5, 16, 29, 33, 200]) {
      await variantCase({ mode: "tensor", bias: "f32" }, M, 300, 512, { ldc: 304 });
      await variantCase({ mode: "channel", bias: "bf16", outDtype: "f16" }, M, 2112, 1024);
      await variantCase({ mode: "int8", bias: "f16" }, M, 520, 768, { padRows: 3 });
      await variantCase({ mode: "block", aScaleDtype: "ue8m0", bScaleDtype: "ue8m0" }, M, 2112, 1024, {
        padRows: 3,
        ldc: 2120,
      });
    }
    // the v1 small-M kernel on the same variants
    await variantCase({ mode: "int8", bias: "f16" }, 5, 520, 768, { padRows: 3, smallM: 1 });
    await variantCase({ mode: "channel", bias: "bf16", outDtype: "f16" }, 16, 2112, 1024, { smallM: 1 });
  },
);

gpuTest("a prepared GEMM runs inside a CUDA graph and replays to the same result", async () => {
  const rng = new Rng();
  const [M, N, K] = [3, 2112, 7168];
  const p = hostProblem(rng, "block", N, K, 4);
  const d = upload(p);
  try {
    const gemm = await prepareBlockScaledMatmul({ N, K, mValues: [M] });
    using out = Tensor.empty("bf16", [M, N]);
    using g = Graph.capture(() => gemm.run(d.a, d.sa, d.b, d.sb, { m: M, out }));
    out.fill(0xff);
    g.launch();
    const ref = new SampledReference(p, [0, 1, 2], sampleCols(N, K, rng));
    checkOutput(out.toHost() as Uint16Array, "bf16", M, N, ref, `graph replay seed ${rng.seed}`);
    const first = out.toHost();
    out.fill(0xff);
    g.launch();
    assert.deepEqual(
      out.toHost(),
      first,
      "replays are bit-identical (no atomics: the split-K sum is ordered)",
    );
    // the one-shot form infers the op from the tensors
    using y = await blockScaledMatmul(d.a, d.sa, d.b, d.sb, { m: M });
    assert.deepEqual(y.toHost(), first);
  } finally {
    d.dispose();
    Device.get().synchronize();
  }
});

// ---------------------------------------------------------------------------------------------
// Argument checks (pure: fake tensors, no device)

function fake(
  dtype: GemmTensorLike["dtype"],
  shape: number[],
  strides?: number[],
  ptr = 0x10000n,
): GemmTensorLike {
  const s = strides ?? shape.map((_, i) => shape.slice(i + 1).reduce((x, y) => x * y, 1));
  return { dtype, shape, strides: s, ptr };
}

Deno.test("scaled GEMM argument checks name the argument and say what was expected", () => {
  const op = blockMatmulOp({ N: 2112, K: 7168 });
  const ok = {
    a: fake("fp8e4m3", [4, 7168]),
    aScales: fake("f32", [56, 4]),
    b: fake("fp8e4m3", [2112, 7168]),
    bScales: fake("f32", [17, 56]),
  };
  assert.deepEqual(checkGemmInputs(op, ok, 3), { M: 3, lda: 7168, aScaleStride: 4 });
  assert.deepEqual(checkGemmInputs(op, { ...ok, aScales: fake("f32", [4, 56], [1, 4]) }).aScaleStride, 4);
  const bad = (
    patch: Partial<typeof ok> & { bias?: GemmTensorLike },
    m: number | undefined,
    arg: string,
    re: RegExp,
  ) => {
    assert.throws(() => checkGemmInputs(op, { ...ok, ...patch }, m), (e: unknown) => {
      assert.ok(e instanceof ArgumentError, String(e));
      assert.equal(e.argument, arg);
      assert.match(e.message, re);
      return true;
    });
  };
  bad({ a: fake("bf16", [4, 7168]) }, undefined, "a", /fp8e4m3/);
  bad({ a: fake("fp8e4m3", [4, 7040]) }, undefined, "a", /\[rows, 7168\]/);
  bad({ a: fake("fp8e4m3", [4, 7168], [7168, 1], 0x10008n) }, undefined, "a", /16-byte aligned/);
  bad({}, 0, "m", /M ≥ 1/);
  bad({}, 5, "m", /M ≤ 4/);
  bad({ b: fake("fp8e4m3", [2048, 7168]) }, undefined, "b", /\[2112, 7168\]/);
  bad({ aScales: fake("f32", [56, 2]) }, 3, "aScales", /P ≥ 3/);
  bad({ aScales: fake("f32", [4, 56]) }, undefined, "aScales", /M-major/);
  bad({ bScales: fake("f32", [16, 56]) }, undefined, "bScales", /\[17, 56\]/);
  bad({ bScales: fake("ue8m0", [17, 56]) }, undefined, "bScales", /f32/);
  bad({ bias: fake("f32", [2112]) }, undefined, "bias", /no bias/);
  const withBias = blockMatmulOp({ N: 2112, K: 7168, mode: "channel", bias: "bf16" });
  assert.throws(
    () => checkGemmInputs(withBias, { ...ok, aScales: fake("f32", [4]), bScales: fake("f32", [2112]) }),
    /bias/,
  );
  assert.throws(
    () =>
      checkGemmInputs(withBias, {
        ...ok,
        aScales: fake("f32", [2]),
        bScales: fake("f32", [2112]),
        bias: fake("bf16", [2112]),
      }),
    /aScales: expected a contiguous vector of ≥ 4 elements/,
  );
  assert.equal(checkGemmOut(op, fake("bf16", [3, 2112], [2120, 1]), 3), 2120);
  assert.throws(() => checkGemmOut(op, fake("bf16", [4, 2112]), 3), /out: expected an bf16 \[3, 2112\]/);
  assert.throws(() => checkGemmOut(op, fake("f16", [3, 2112]), 3), /out: expected a bf16 tensor/);
  const int8 = blockMatmulOp({ N: 256, K: 512, mode: "int8" });
  assert.throws(
    () => checkGemmInputs(int8, { ...ok, a: fake("fp8e4m3", [4, 512]) }),
    /a: expected a i8 tensor/,
  );
});
