import assert from "node:assert/strict";
import {
  aScaleShape,
  type BlockMatmulData,
  blockMatmulOp,
  blockMatmulReference,
  bScaleShape,
  checkBlockMatmulOp,
  decodeScales,
  quantizeGroups,
  quantizeRows,
  quantizeTensor,
  quantizeWeightBlocks,
  scaleFor,
  type ScaleMode,
} from "../../dsl/ops/block_matmul.ts";
import { f32Bits, FP8E4M3_VALUES, ue8m0EncodeCeil } from "../../dsl/dtype.ts";
import { Rng } from "../../testing/random.ts";
import { assertRelError } from "../../testing/assert.ts";

/** Dequantize then multiply, one element at a time: the definition, independent of the K-block loop. */
function naive(d: BlockMatmulData): Float64Array {
  const { M, N, K } = d, lda = d.lda ?? K, P = d.aScaleStride ?? M, KB = K / 128;
  const val = (src: Uint8Array | Int8Array, i: number) =>
    d.mode === "int8" ? (src[i] << 24) >> 24 : FP8E4M3_VALUES[src[i]];
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let acc = 0;
      for (let k = 0; k < K; k++) {
        let sa: number, sb: number;
        if (d.mode === "block") {
          sa = d.aScales[Math.floor(k / 128) * P + m];
          sb = d.bScales[Math.floor(n / 128) * KB + Math.floor(k / 128)];
        } else if (d.mode === "tensor") [sa, sb] = [d.aScales[0], d.bScales[0]];
        else [sa, sb] = [d.aScales[m], d.bScales[n]];
        acc += val(d.a, m * lda + k) * sa * (val(d.b, n * K + k) * sb);
      }
      out[m * N + n] = acc + (d.bias ? d.bias[n] : 0);
    }
  }
  return out;
}

/** Random operands of `mode` built with the host quantizers (never zeros). */
function operands(
  rng: Rng,
  mode: ScaleMode,
  M: number,
  N: number,
  K: number,
  P = M,
  lda = K,
): BlockMatmulData {
  const x = rng.normals(M * K, 2), w = rng.normals(N * K, 0.05);
  let a: Uint8Array, aScales: Float32Array, b: Uint8Array, bScales: Float32Array;
  if (mode === "block") {
    ({ q: a, scales: aScales } = quantizeGroups(x, M, K, { stride: P }));
    ({ q: b, scales: bScales } = quantizeWeightBlocks(w, N, K));
  } else if (mode === "tensor") {
    ({ q: a, scales: aScales } = quantizeTensor(x));
    ({ q: b, scales: bScales } = quantizeTensor(w));
  } else {
    const dt = mode === "int8" ? "i8" : "fp8e4m3";
    ({ q: a, scales: aScales } = quantizeRows(x, M, K, dt));
    ({ q: b, scales: bScales } = quantizeRows(w, N, K, dt));
  }
  if (lda !== K) {
    const wide = new Uint8Array(Math.max(M, 1) * lda);
    for (let m = 0; m < M; m++) wide.set(a.subarray(m * K, (m + 1) * K), m * lda);
    a = wide;
  }
  return { mode, M, N, K, a, lda, aScales, aScaleStride: P, b, bScales, bias: rng.normals(N) };
}

Deno.test("block matmul reference equals dequantize-then-multiply in every mode, ragged shapes", () => {
  const rng = new Rng();
  for (const mode of ["block", "tensor", "channel", "int8"] as const) {
    for (const [M, N, K, P, lda] of [[1, 3, 128, 1, 128], [3, 130, 256, 4, 384], [5, 257, 384, 8, 384]]) {
      const d = operands(rng, mode, M, N, K, P, lda);
      const ref = blockMatmulReference(d), want = naive(d);
      assertRelError(ref, want, 1e-12, `${mode} ${M}x${N}x${K} (seed ${rng.seed})`);
    }
  }
});

Deno.test("block matmul reference: row/column samples are the same numbers as the full product", () => {
  const rng = new Rng();
  const d = operands(rng, "block", 7, 300, 256, 8);
  const full = blockMatmulReference(d);
  const rows = [6, 0, 3], cols = [299, 0, 128, 127];
  const part = blockMatmulReference(d, { rows, cols });
  rows.forEach((m, i) =>
    cols.forEach((n, j) => assert.equal(part[i * 4 + j], full[m * 300 + n], `seed ${rng.seed}`))
  );
});

Deno.test("block matmul: the scaled product approximates the float product (quantization error only)", () => {
  const rng = new Rng();
  const [M, N, K] = [4, 200, 512];
  const x = rng.normals(M * K), w = rng.normals(N * K, 0.02);
  const a = quantizeGroups(x, M, K), b = quantizeWeightBlocks(w, N, K);
  const got = blockMatmulReference({
    mode: "block",
    M,
    N,
    K,
    a: a.q,
    aScales: a.scales,
    b: b.q,
    bScales: b.scales,
  });
  const exact = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
      exact[m * N + n] = s;
    }
  }
  // e4m3 has 3 mantissa bits: each operand is off by ≤ 2^-4 relative, so the product by a few %
  assertRelError(got, exact, 0.08, `seed ${rng.seed}`);
});

Deno.test("weight block quant: scale = max(amax, eps)/448 per 128x128 block, ragged edges, codes within half a step", () => {
  const rng = new Rng();
  const [N, K] = [300, 384];
  const w = rng.normals(N * K, 0.1);
  w[5 * K + 7] = 3.5; // a large outlier in block (0, 0)
  const { q, scales } = quantizeWeightBlocks(w, N, K);
  assert.equal(scales.length, 3 * 3);
  for (let nb = 0; nb < 3; nb++) {
    for (let kb = 0; kb < 3; kb++) {
      let amax = 0;
      for (let n = nb * 128; n < Math.min(N, nb * 128 + 128); n++) {
        for (let k = kb * 128; k < kb * 128 + 128; k++) amax = Math.max(amax, Math.abs(w[n * K + k]));
      }
      const s = scales[nb * 3 + kb];
      assert.equal(s, Math.fround(Math.fround(amax) / 448), `block (${nb}, ${kb}) seed ${rng.seed}`);
      for (let n = nb * 128; n < Math.min(N, nb * 128 + 128); n++) {
        for (let k = kb * 128; k < kb * 128 + 128; k++) {
          const x = w[n * K + k] / s, got = FP8E4M3_VALUES[q[n * K + k]];
          assert.ok(Math.abs(got - x) <= Math.abs(x) / 16 + 2 ** -10, `(${n}, ${k}): ${got} vs ${x}`);
        }
      }
    }
  }
  assert.equal(FP8E4M3_VALUES[q[5 * K + 7]], 448, "the block's absmax maps to ±448");
});

Deno.test("weight block quant: ue8m0 scales are the next power of two; an all-zero block gets eps/448 and zero codes", () => {
  const [N, K] = [130, 256];
  const w = new Float32Array(N * K);
  const rng = new Rng();
  for (let i = 0; i < 128 * K; i++) w[i] = rng.normal() * (1 + (i % 7));
  const { q, scales } = quantizeWeightBlocks(w, N, K, { ue8m0: true });
  for (const s of scales) assert.equal(f32Bits(s) & 0x7fffff, 0, `${s} is a power of two`);
  const plain = quantizeWeightBlocks(w, N, K);
  for (let i = 0; i < scales.length; i++) {
    assert.ok(scales[i] >= plain.scales[i] && scales[i] < 2 * plain.scales[i]);
  }
  assert.equal(scales[2], 2 ** (ue8m0EncodeCeil(Math.fround(1e-4) / 448) - 127), "rows 128..129 are zero");
  for (let i = 128 * K; i < N * K; i++) assert.equal(q[i], 0);
  assert.equal(scaleFor(0, 448, 1e-4), Math.fround(Math.fround(1e-4) / 448));
});

Deno.test("group quant helper: M-major scales with stride P, padding rows zero", () => {
  const rng = new Rng();
  const [M, K, P] = [3, 256, 8];
  const x = rng.normals(M * K);
  const { q, scales } = quantizeGroups(x, M, K, { stride: P });
  assert.equal(q.length, P * K);
  assert.equal(scales.length, 2 * P);
  for (let m = M; m < P; m++) {
    assert.equal(scales[m], 0);
    assert.equal(scales[P + m], 0);
  }
  assert.ok(q.subarray(M * K).every((c) => c === 0));
  let amax = 0;
  for (let k = 128; k < 256; k++) amax = Math.max(amax, Math.abs(x[2 * K + k]));
  assert.equal(scales[P + 2], Math.fround(Math.fround(amax) / 448));
});

Deno.test("op descriptor: defaults, shapes of the scale tensors, and every bad field named", () => {
  const op = blockMatmulOp({ N: 2112, K: 7168 });
  assert.deepEqual([op.mode, op.outDtype, op.aScaleDtype, op.bScaleDtype, op.bias], [
    "block",
    "bf16",
    "f32",
    "f32",
    undefined,
  ]);
  assert.deepEqual(bScaleShape("block", 2112, 7168), [17, 56]);
  assert.deepEqual(aScaleShape("block", 3, 7168, 4), [56, 4]);
  assert.deepEqual(bScaleShape("channel", 2112, 7168), [2112]);
  assert.deepEqual(aScaleShape("tensor", 3, 7168), [1]);
  const bad = (o: Parameters<typeof blockMatmulOp>[0]) =>
    checkBlockMatmulOp({ ...blockMatmulOp({ N: 1, K: 128 }), ...o });
  assert.equal(bad({ N: 1, K: 100 })[0].argument, "K");
  assert.equal(bad({ N: 0, K: 128 })[0].argument, "N");
  assert.equal(bad({ N: 1, K: 128, mode: "channel", aScaleDtype: "ue8m0" })[0].argument, "aScaleDtype");
  assert.equal(bad({ N: 1, K: 128, outDtype: "f32" as "bf16" })[0].argument, "outDtype");
  assert.throws(() => blockMatmulOp({ N: 8, K: 64 }), /K: expected a positive multiple of 128, got 64/);
  assert.deepEqual([...decodeScales("ue8m0", Uint8Array.of(127, 128, 120))], [1, 2, 2 ** -7]);
});
