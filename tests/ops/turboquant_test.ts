/**
 * TurboQuant on the GPU. Store: the cache bytes equal `storeReference` exactly (poisoned cache, every
 * preset, ragged token counts, runs that cross warps, f16, strided K/V, sign vectors), untouched slots
 * stay poisoned, and the kernel's codes disagree with a float64 matrix-product rotation on at most
 * 1e-4 of the coordinates. Decode: both kernels against the float64 reference (GQA, block tables in
 * random order, ragged lengths, an empty sequence, one split and many), every output written; a CUDA
 * graph replays it. Bad input: clear errors before any launch.
 */
import assert from "node:assert/strict";
import { gpuTest } from "../_util.ts";
import { ArgumentError, Graph, Tensor } from "../../runtime/mod.ts";
import { bf16Decode, bf16Encode, f16Decode, f16Encode } from "../../dsl/dtype.ts";
import {
  bucketize,
  decodeReference,
  randomSigns,
  rotateF64,
  storeReference,
  TURBOQUANT_PRESET_NAMES,
  turboQuantLayout,
  unpackBits,
} from "../../dsl/turboquant/mod.ts";
import { prepareTurboQuant, type TurboQuantOptions } from "../../ops/turboquant.ts";
import { tqDecodeV3Problem } from "../../codegen/kernels/tq_decode_v2.ts";
import { assertAllFinite, assertClose, assertExactlyEqual, relFrobenius, Rng } from "../../testing/mod.ts";

/** Values exactly representable in `dtype`. */
function values(rng: Rng, n: number, dtype: "bf16" | "f16", scale = 1): Float32Array {
  return rng.normals(n, scale).map((
    x,
  ) => (dtype === "bf16" ? bf16Decode(bf16Encode(x)) : f16Decode(f16Encode(x))));
}

/** Distinct random slots, some −1. */
function slotMapping(rng: Rng, T: number, numSlots: number): Int32Array {
  const perm = Array.from({ length: numSlots }, (_, i) => i).sort(() => rng.next() - 0.5);
  return Int32Array.from({ length: T }, (_, t) => (rng.next() < 0.1 ? -1 : perm[t]));
}

async function storeCase(
  o: TurboQuantOptions & { T: number; numBlocks: number; kvStride?: number },
  rng: Rng,
): Promise<{ codes: Uint8Array; ref: Uint8Array; k: Float32Array; slots: Int32Array }> {
  using tq = await prepareTurboQuant(o);
  const D = o.headDim, Hk = o.numKvHeads, dtype = o.dtype ?? "bf16", T = o.T;
  const row = o.kvStride ?? Hk * D;
  const k = values(rng, T * Hk * D, dtype), v = values(rng, T * Hk * D, dtype, 3);
  const pad = (x: Float32Array) => {
    const a = new Float32Array(Math.max(T * row, 1));
    for (let t = 0; t < T; t++) a.set(x.subarray(t * Hk * D, (t + 1) * Hk * D), t * row);
    return a;
  };
  using kt = Tensor.fromFloat(dtype, [Math.max(T * row, 1)], pad(k));
  using vt = Tensor.fromFloat(dtype, [Math.max(T * row, 1)], pad(v));
  const view = (t: Tensor) => t.strided([T, Hk, D], [row, D, 1], 0);
  const slots = slotMapping(rng, T, o.numBlocks * (o.pageSize ?? 16));
  using cache = tq.allocateCache(o.numBlocks).fill(0xff);
  tq.store(view(kt), view(vt), slots, cache);
  tq.checkStatus();
  const codes = cache.toHost() as Uint8Array;
  const ref = new Uint8Array(codes.length).fill(0xff);
  const geom = { numBlocks: o.numBlocks, blockSize: o.pageSize ?? 16, numKvHeads: Hk };
  storeReference(tq.layout, geom, k, v, slots, ref, o.signs);
  return { codes, ref, k, slots };
}

gpuTest(
  "turboquant: bad input gives ArgumentError naming the argument, before any launch (runs first: no kernel)",
  async () => {
    await assert.rejects(
      () => prepareTurboQuant({ preset: "turboquant_2bit", headDim: 128, numKvHeads: 8 }),
      /preset: .*Unknown TurboQuant preset/,
    );
    await assert.rejects(
      () => prepareTurboQuant({ preset: "turboquant_4bit_nc", headDim: 96, numKvHeads: 8 }),
      /headDim: .*power-of-two/,
    );
    await assert.rejects(
      () => prepareTurboQuant({ preset: "turboquant_k8v4", headDim: 128, numKvHeads: 8, pageSize: 24 }),
      /pageSize/,
    );
    await assert.rejects(
      () => prepareTurboQuant({ preset: "turboquant_k8v4", headDim: 128, numKvHeads: 8, numHeads: 12 }),
      /numHeads/,
    );
    await assert.rejects(
      () => prepareTurboQuant({ preset: "turboquant_k8v4", headDim: 96, numKvHeads: 8, decodeKernel: "mma" }),
      /decodeKernel/,
    );
    await assert.rejects(
      () =>
        prepareTurboQuant({ preset: "turboquant_k8v4", headDim: 96, numKvHeads: 8, decodeKernel: "mma1" }),
      /decodeKernel/,
    );
    await assert.rejects(
      () =>
        prepareTurboQuant({
          preset: "turboquant_k8v4",
          headDim: 128,
          numKvHeads: 8,
          decodeKernel: "mma9" as "mma",
        }),
      /decodeKernel/,
    );
    using tq = await prepareTurboQuant({
      preset: "turboquant_4bit_nc",
      headDim: 64,
      numKvHeads: 2,
      numHeads: 4,
    });
    using cache = tq.allocateCache(2);
    using k = Tensor.fromFloat("bf16", [3, 2, 64], new Float32Array(384).fill(1));
    using kf = Tensor.fromFloat("f16", [3, 2, 64], new Float32Array(384).fill(1));
    using wrong = Tensor.empty("u8", [2, 16, 2, 64]);
    assert.throws(
      () => tq.store(kf, kf, new Int32Array(3), cache),
      (e) => e instanceof ArgumentError && e.argument === "k",
    );
    assert.throws(
      () => tq.store(k, k, new Int32Array(2), cache),
      (e) => e instanceof ArgumentError && e.argument === "slotMapping",
    );
    assert.throws(() => tq.store(k, k, new Int32Array([0, 1, 32]), cache), /slotMapping\[2\] = 32/);
    assert.throws(
      () => tq.store(k, k, new Int32Array(3), wrong),
      (e) => e instanceof ArgumentError && e.argument === "cache",
    );
    using q = Tensor.empty("bf16", [2, 2, 64]);
    using bt = Tensor.fromHost("i32", [2, 1], new Int32Array([0, 1]));
    using sl = Tensor.fromHost("i32", [2], new Int32Array([3, 3]));
    assert.throws(() => tq.decode(q, cache, bt, sl), (e) => e instanceof ArgumentError && e.argument === "q");
    // misaligned views: K/V rows and the cache must be 16-byte aligned (the kernels use 16-byte accesses)
    using flat = Tensor.fromFloat("bf16", [3 * 128 + 4], new Float32Array(3 * 128 + 4).fill(1));
    assert.throws(
      () => tq.store(flat.strided([3, 2, 64], [128, 64, 1], 4), k, new Int32Array(3), cache),
      (e) => e instanceof ArgumentError && e.argument === "k",
    );
    using raw = Tensor.empty("u8", [cache.numel + 2]);
    const shifted = raw.strided(cache.shape, cache.strides, 2);
    assert.throws(
      () => tq.store(k, k, new Int32Array(3), shifted),
      (e) => e instanceof ArgumentError && e.argument === "cache",
    );
  },
);

gpuTest("turboquant store: one token, one head, every preset (the smallest launch)", async () => {
  const rng = new Rng();
  for (const preset of TURBOQUANT_PRESET_NAMES) {
    const { codes, ref } = await storeCase({ preset, headDim: 128, numKvHeads: 1, T: 1, numBlocks: 1 }, rng);
    assertExactlyEqual(codes, ref, `${preset} (seed ${rng.seed})`);
  }
});

gpuTest("turboquant store: cache bytes equal the reference exactly, every preset", async () => {
  const rng = new Rng();
  for (const preset of TURBOQUANT_PRESET_NAMES) {
    const { codes, ref } = await storeCase({ preset, headDim: 128, numKvHeads: 4, T: 37, numBlocks: 4 }, rng);
    assertExactlyEqual(codes, ref, `${preset} (seed ${rng.seed})`);
  }
});

gpuTest(
  "turboquant store: D 64/96/256, runs across warps, f16, strided K/V, signs, page size 32",
  async () => {
    const rng = new Rng();
    const cases: (TurboQuantOptions & { T: number; numBlocks: number; kvStride?: number })[] = [
      { preset: "turboquant_4bit_nc", headDim: 64, numKvHeads: 3, T: 29, numBlocks: 3, dtype: "f16" },
      { preset: "turboquant_k8v4", headDim: 96, numKvHeads: 5, T: 11, numBlocks: 2, kvStride: 5 * 96 + 8 },
      { preset: "turboquant_3bit_nc", headDim: 256, numKvHeads: 2, T: 50, numBlocks: 2, pageSize: 32 },
      {
        preset: "turboquant_k3v4_nc",
        headDim: 128,
        numKvHeads: 8,
        T: 9,
        numBlocks: 1,
        signs: randomSigns(128, 11),
      },
      { preset: "turboquant_4bit_nc", headDim: 128, numKvHeads: 1, T: 1, numBlocks: 1, kvStride: 3 * 128 },
    ];
    for (const c of cases) {
      const { codes, ref } = await storeCase(c, rng);
      assertExactlyEqual(codes, ref, `${c.preset} D=${c.headDim} Hk=${c.numKvHeads} (seed ${rng.seed})`);
    }
  },
);

gpuTest("turboquant store: codes vs a float64 matrix-product rotation — index flips ≤ 1e-4", async () => {
  const rng = new Rng();
  const D = 128, Hk = 8, T = 512;
  const { codes, k, slots } = await storeCase({
    preset: "turboquant_4bit_nc",
    headDim: D,
    numKvHeads: Hk,
    T,
    numBlocks: 32,
  }, rng);
  const l = turboQuantLayout("turboquant_4bit_nc", D), S = l.slotBytesAligned;
  let flips = 0, total = 0;
  for (let t = 0; t < T; t++) {
    if (slots[t] < 0) continue;
    for (let h = 0; h < Hk; h++) {
      const x = k.subarray((t * Hk + h) * D, (t * Hk + h + 1) * D);
      const n = Math.hypot(...x);
      const y = rotateF64(x).map((e) => e / (n + 1e-8));
      const got = unpackBits(codes, D, 4, (slots[t] * Hk + h) * S);
      for (let d = 0; d < D; d++, total++) if (got[d] !== bucketize(y[d], l.midpoints!)) flips++;
    }
  }
  console.log(`store index flips vs float64 matrix product: ${flips} of ${total}`);
  assert.ok(flips / total <= 1e-4, `${flips} flips in ${total} (seed ${rng.seed})`);
});

/**
 * A random paged cache built by the reference (blocks in shuffled order); queries; the float64 reference
 * output. `dtype` is the K/V/q element type (default bf16), `signs` a per-layer sign vector.
 */
function decodeCase(
  o: {
    preset: string;
    D: number;
    Hk: number;
    G: number;
    BS: number;
    seqLens: number[];
    dtype?: "bf16" | "f16";
    signs?: Int8Array;
  },
  rng: Rng,
) {
  const dt = o.dtype ?? "bf16";
  const l = turboQuantLayout(o.preset, o.D), D = o.D, Hk = o.Hk, B = o.seqLens.length;
  const per = o.seqLens.map((L) => Math.ceil(L / o.BS));
  const stride = Math.max(1, ...per) + 1;
  const numBlocks = per.reduce((a, b) => a + b, 0) + 3;
  const ids = Array.from({ length: numBlocks }, (_, i) => i).sort(() => rng.next() - 0.5);
  const bt = new Int32Array(B * stride);
  let next = 0;
  const geom = { numBlocks, blockSize: o.BS, numKvHeads: Hk };
  const cache = new Uint8Array(numBlocks * o.BS * Hk * l.slotBytesAligned);
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < per[b]; j++) bt[b * stride + j] = ids[next++];
    const L = o.seqLens[b];
    const slots = Array.from(
      { length: L },
      (_, t) => bt[b * stride + Math.floor(t / o.BS)] * o.BS + (t % o.BS),
    );
    storeReference(
      l,
      geom,
      values(rng, L * Hk * D, dt),
      values(rng, L * Hk * D, dt, 2),
      slots,
      cache,
      o.signs,
    );
  }
  const q = values(rng, B * Hk * o.G * D, dt, 1.5);
  const ref = decodeReference(l, {
    q,
    numHeads: Hk * o.G,
    cache,
    geom,
    blockTables: bt,
    blockTableStride: stride,
    seqLens: o.seqLens,
    signs: o.signs,
  });
  return { l, cache, bt, stride, q, ref, numBlocks };
}

gpuTest(
  "turboquant decode: store → decode round trip (vLLM's test: cosine > 0.95 fp8 keys, > 0.85 centroids) and a graph replay",
  async () => {
    const rng = new Rng(123);
    const D = 128, Hk = 4;
    for (const preset of TURBOQUANT_PRESET_NAMES) {
      for (const G of [1, 4]) {
        using tq = await prepareTurboQuant({
          preset,
          headDim: D,
          numKvHeads: Hk,
          numHeads: Hk * G,
          maxBatch: 1,
        });
        const k = values(rng, Hk * D, "bf16"), v = values(rng, Hk * D, "bf16");
        using kt = Tensor.fromFloat("bf16", [1, Hk, D], k);
        using vt = Tensor.fromFloat("bf16", [1, Hk, D], v);
        using cache = tq.allocateCache(1);
        tq.store(kt, vt, new Int32Array([0]), cache);
        const q = new Float32Array(Hk * G * D);
        for (let h = 0; h < Hk; h++) {
          for (let g = 0; g < G; g++) q.set(k.subarray(h * D, (h + 1) * D), (h * G + g) * D);
        }
        using qt = Tensor.fromFloat("bf16", [1, Hk * G, D], q);
        using bt = Tensor.fromHost("i32", [1, 1], new Int32Array([0]));
        using sl = Tensor.fromHost("i32", [1], new Int32Array([1]));
        using out = Tensor.empty("bf16", [1, Hk * G, D]);
        const graph = Graph.capture(() => tq.decode(qt, cache, bt, sl, out, { numSplits: 4 }));
        try {
          graph.launch();
          const got = out.toFloat32();
          for (let hq = 0; hq < Hk * G; hq++) {
            const a = got.subarray(hq * D, (hq + 1) * D),
              b = v.subarray(Math.floor(hq / G) * D, (Math.floor(hq / G) + 1) * D);
            let ab = 0, aa = 0, bb = 0;
            for (let d = 0; d < D; d++) [ab, aa, bb] = [ab + a[d] * b[d], aa + a[d] * a[d], bb + b[d] * b[d]];
            const cos = ab / Math.sqrt(aa * bb);
            assert.ok(
              cos > (preset === "turboquant_k8v4" ? 0.95 : 0.85),
              `${preset} G=${G} head ${hq}: cosine ${cos}`,
            );
          }
        } finally {
          graph.dispose();
        }
      }
    }
  },
);

gpuTest(
  "turboquant decode: every kernel (mma v3, v2, v1, simple) vs the float64 reference (GQA, block tables, ragged, splits; launches back to back: the in-kernel merge counters reset)",
  async () => {
    const rng = new Rng(), failures: string[] = [];
    const cases = [
      { preset: "turboquant_4bit_nc", D: 128, Hk: 4, G: 4, BS: 16, seqLens: [1, 17, 100, 0, 333] },
      { preset: "turboquant_k8v4", D: 128, Hk: 2, G: 8, BS: 32, seqLens: [64, 5, 250] },
      { preset: "turboquant_k3v4_nc", D: 64, Hk: 8, G: 2, BS: 16, seqLens: [40, 129] },
      { preset: "turboquant_3bit_nc", D: 256, Hk: 2, G: 4, BS: 64, seqLens: [200, 3] },
      { preset: "turboquant_4bit_nc", D: 128, Hk: 1, G: 16, BS: 128, seqLens: [300] },
      // version 3 needs HG·slot ≡ 0 (mod 16): 8 KV heads per CTA
      { preset: "turboquant_4bit_nc", D: 128, Hk: 8, G: 4, BS: 16, seqLens: [700, 1, 33, 0, 250] },
      { preset: "turboquant_k8v4", D: 128, Hk: 8, G: 4, BS: 32, seqLens: [97, 400] },
      { preset: "turboquant_3bit_nc", D: 128, Hk: 16, G: 2, BS: 16, seqLens: [161, 500] },
      { preset: "turboquant_k3v4_nc", D: 256, Hk: 8, G: 8, BS: 64, seqLens: [300, 15] },
    ];
    for (const c of cases) {
      const { l, cache, bt, stride, q, ref } = decodeCase(c, rng);
      const B = c.seqLens.length, Hq = c.Hk * c.G;
      using ct = Tensor.fromHost("u8", [
        cache.length / (c.BS * c.Hk * l.slotBytesAligned),
        c.BS,
        c.Hk,
        l.slotBytesAligned,
      ], cache);
      using qt = Tensor.fromFloat("bf16", [B, Hq, c.D], q);
      using btt = Tensor.fromHost("i32", [B, stride], bt);
      using sl = Tensor.fromHost("i32", [B], Int32Array.from(c.seqLens));
      const rms = Math.sqrt(ref.reduce((a, x) => a + x * x, 0) / ref.length);
      const v3 = !tqDecodeV3Problem({
        layout: l,
        inDtype: "bf16",
        numHeads: Hq,
        numKvHeads: c.Hk,
        blockSize: c.BS,
      });
      for (
        const kernel of v3 ? ["mma3", "mma", "mma1", "simple"] as const : ["mma", "mma1", "simple"] as const
      ) {
        using tq = await prepareTurboQuant({
          preset: c.preset,
          headDim: c.D,
          numKvHeads: c.Hk,
          numHeads: Hq,
          pageSize: c.BS,
          decodeKernel: kernel,
        });
        for (const numSplits of [1, 3, undefined, 64]) {
          using out = Tensor.empty("bf16", [B, Hq, c.D]).fill(0xff);
          tq.decode(qt, ct, btt, sl, out, { numSplits });
          const got = out.toFloat32();
          const what = `${c.preset} D=${c.D} G=${c.G} ${kernel} splits=${
            numSplits ?? "auto"
          } (seed ${rng.seed})`;
          try { // every kernel and case runs; the failures are reported together
            assertAllFinite(got, what);
            assert.ok(relFrobenius(got, ref) < 5e-3, `${what}: rel. error ${relFrobenius(got, ref)}`);
            assertClose(got, ref, { rtol: 1e-2, atol: 1e-2 * rms, what });
          } catch (e) {
            failures.push((e as Error).message.slice(0, 300));
          }
        }
      }
    }
    assert.deepEqual(failures, []);
  },
);

gpuTest(
  "turboquant decode: per-layer sign vector and f16 q/out, every tensor-core kernel vs the reference",
  async () => {
    const rng = new Rng(), failures: string[] = [];
    for (
      const c of [
        { preset: "turboquant_4bit_nc", Hk: 8, G: 4, BS: 16, seqLens: [300, 45] },
        { preset: "turboquant_3bit_nc", Hk: 4, G: 2, BS: 32, seqLens: [77, 250, 1] },
      ]
    ) {
      const D = 128, Hq = c.Hk * c.G, B = c.seqLens.length;
      const signs = randomSigns(D, 7 + c.Hk);
      const { l, cache, bt, stride, q, ref, numBlocks } = decodeCase({ ...c, D, dtype: "f16", signs }, rng);
      using ct = Tensor.fromHost("u8", [numBlocks, c.BS, c.Hk, l.slotBytesAligned], cache);
      using qt = Tensor.fromFloat("f16", [B, Hq, D], q);
      using btt = Tensor.fromHost("i32", [B, stride], bt);
      using sl = Tensor.fromHost("i32", [B], Int32Array.from(c.seqLens));
      for (const kernel of ["mma3", "mma", "mma1"] as const) {
        using tq = await prepareTurboQuant({
          preset: c.preset,
          headDim: D,
          numKvHeads: c.Hk,
          numHeads: Hq,
          pageSize: c.BS,
          dtype: "f16",
          signs,
          decodeKernel: kernel,
        });
        using out = Tensor.empty("f16", [B, Hq, D]).fill(0xff);
        tq.decode(qt, ct, btt, sl, out);
        const got = out.toFloat32(), err = relFrobenius(got, ref);
        if (
          !(err < 5e-3) || got.some((x) => !Number.isFinite(x))
        ) {
          failures.push(`${c.preset} Hk ${c.Hk} ${kernel}: rel. error ${err} (seed ${rng.seed})`);
        }
      }
    }
    assert.deepEqual(failures, []);
  },
);

gpuTest("turboquant store: a device slot mapping past the cache is skipped and reported", async () => {
  using tq = await prepareTurboQuant({
    preset: "turboquant_4bit_nc",
    headDim: 64,
    numKvHeads: 2,
    numHeads: 4,
  });
  using cache = tq.allocateCache(2);
  using k = Tensor.fromFloat("bf16", [3, 2, 64], new Float32Array(384).fill(1));
  using dev = Tensor.fromHost("i32", [3], new Int32Array([0, 40, 1]));
  tq.store(k, k, dev, cache);
  assert.throws(() => tq.checkStatus(), /slots past it; first: token 1, slot 40/);
  tq.checkStatus(); // the report was reset
});
