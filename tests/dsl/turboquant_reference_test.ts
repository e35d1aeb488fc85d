/**
 * TurboQuant references: vLLM's single-token store → decode round trip (cosine > 0.95 for fp8 keys,
 * > 0.85 for centroid keys), the reconstruction quality of spec §7, how often the butterfly rotation's
 * codes differ from the float64 matrix product's, the paged scatter (negative slots skipped, slots past
 * the cache refused), decode attention = full attention over the dequantized cache (GQA, block tables,
 * ragged lengths), and each preset's attention error against full precision.
 */
import assert from "node:assert/strict";
import {
  attentionReference,
  bucketize,
  cosine,
  decodeReference,
  defineTurboQuantPreset,
  dequantizeSlot,
  encodeKeyCentroids,
  encodeSlot,
  encodeValueCodes,
  rotateF64,
  storeReference,
  TURBOQUANT_PRESET_NAMES,
  type TurboQuantLayout,
  turboQuantLayout,
} from "../../dsl/turboquant/mod.ts";
import { bf16Decode, bf16Encode } from "../../dsl/dtype.ts";
import { relFrobenius, Rng } from "../../testing/mod.ts";

/** Gaussian values rounded to bf16, as the kernels would read them. */
function bf16Normals(rng: Rng, n: number, scale = 1): Float32Array {
  return rng.normals(n, scale).map((x) => bf16Decode(bf16Encode(x)));
}

Deno.test("turboquant reference: single-token round trip (vLLM's store → decode test)", () => {
  const rng = new Rng(123);
  const D = 128, Hk = 4, BS = 16;
  for (const name of TURBOQUANT_PRESET_NAMES) {
    for (const G of [1, 4]) {
      const l = turboQuantLayout(name, D);
      const k = bf16Normals(rng, Hk * D), v = bf16Normals(rng, Hk * D);
      const cache = new Uint8Array(BS * Hk * l.slotBytesAligned);
      storeReference(l, { numBlocks: 1, blockSize: BS, numKvHeads: Hk }, k, v, [0], cache);
      const q = new Float32Array(Hk * G * D);
      for (let h = 0; h < Hk; h++) {
        for (let g = 0; g < G; g++) q.set(k.subarray(h * D, (h + 1) * D), (h * G + g) * D);
      }
      const out = decodeReference(l, {
        q,
        numHeads: Hk * G,
        cache,
        geom: { numBlocks: 1, blockSize: BS, numKvHeads: Hk },
        blockTables: [0],
        blockTableStride: 1,
        seqLens: [1],
      });
      for (let hq = 0; hq < Hk * G; hq++) {
        const h = Math.floor(hq / G);
        const c = cosine(out.subarray(hq * D, (hq + 1) * D), v.subarray(h * D, (h + 1) * D));
        assert.ok(c > (l.keyFp8 ? 0.95 : 0.85), `${name} G=${G} head ${hq}: cosine ${c}`);
      }
    }
  }
});

Deno.test("turboquant reference: reconstruction quality at D = 128 (spec §7 bounds)", () => {
  const rng = new Rng();
  const D = 128, N = 1500;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  for (const name of TURBOQUANT_PRESET_NAMES) {
    const l = turboQuantLayout(name, D);
    const kc: number[] = [], vc: number[] = [];
    for (let i = 0; i < N; i++) {
      const k = bf16Normals(rng, D), v = bf16Normals(rng, D);
      const r = dequantizeSlot(l, encodeSlot(l, k, v));
      kc.push(cosine(r.k, k));
      vc.push(cosine(r.v, v));
    }
    const kMin = l.keyFp8 ? 0.999 : l.keyBits === 3 ? 0.98 : 0.994;
    const vMin = l.valueBits === 3 ? 0.97 : 0.99;
    assert.ok(mean(kc) >= kMin, `${name} key cosine ${mean(kc)} (seed ${rng.seed})`);
    assert.ok(mean(vc) >= vMin, `${name} value cosine ${mean(vc)} (seed ${rng.seed})`);
  }
});

Deno.test("turboquant reference: butterfly + scaled thresholds vs the float64 matrix product — index flip rate", () => {
  const rng = new Rng();
  for (const name of ["turboquant_4bit_nc", "turboquant_k3v4_nc"]) {
    for (const D of [64, 128, 256]) {
      const l = turboQuantLayout(name, D);
      let flips = 0, total = 0;
      for (let i = 0; i < 800; i++) {
        const k = bf16Normals(rng, D, 0.5 + rng.next() * 4);
        const { codes } = encodeKeyCentroids(l, k);
        const n = Math.hypot(...k);
        const y = rotateF64(k).map((x) => x / (n + 1e-8)); // vLLM: H·(k/(‖k‖+ε)), then bucketize
        for (let d = 0; d < D; d++) {
          if (codes[d] !== bucketize(y[d], l.midpoints!)) flips++;
          total++;
        }
      }
      // float32 roundings move y by ~1e-7 relative: a flip needs y within that of a boundary
      assert.ok(flips / total <= 1e-4, `${name} D=${D}: ${flips} flips in ${total} (seed ${rng.seed})`);
    }
  }
});

Deno.test("turboquant reference: store skips negative slots, refuses slots past the cache, handles zero vectors", () => {
  const rng = new Rng();
  const l = turboQuantLayout("turboquant_k3v4_nc", 64), S = l.slotBytesAligned;
  const geom = { numBlocks: 2, blockSize: 16, numKvHeads: 2 };
  const cache = new Uint8Array(2 * 16 * 2 * S).fill(0xab);
  const k = bf16Normals(rng, 3 * 2 * 64), v = bf16Normals(rng, 3 * 2 * 64);
  k.fill(0, 0, 64); // token 0 head 0 all zeros
  storeReference(l, geom, k, v, [5, -1, 31], cache);
  const touched = new Set<number>();
  for (const slot of [5, 31]) {
    for (let h = 0; h < 2; h++) for (let b = 0; b < l.slotBytes; b++) touched.add((slot * 2 + h) * S + b);
  }
  for (let i = 0; i < cache.length; i++) {
    if (!touched.has(i)) assert.equal(cache[i], 0xab, `byte ${i} changed`);
  }
  const zero = dequantizeSlot(l, cache, 5 * 2 * S);
  assert.ok(zero.k.every((x) => x === 0), "a zero key decodes to zero (norm 0)");
  assert.throws(
    () => storeReference(l, geom, k, v, [0, 1, 64], cache),
    /slotMapping\[2\] = 64 is past the cache/,
  );
  // constant value vector: scale clamps to 1e-8, codes 0, decodes to the constant
  const c = encodeValueCodes(4, new Float32Array(64).fill(1.5));
  assert.ok(c.codes.every((x) => x === 0) && c.min === 1.5 && c.scale === Math.fround(1e-8));
});

function randomCache(l: TurboQuantLayout, rng: Rng, seqLens: number[], Hk: number, BS: number) {
  const B = seqLens.length, D = l.headDim;
  const perSeq = seqLens.map((L) => Math.ceil(L / BS));
  const stride = Math.max(1, ...perSeq);
  const numBlocks = perSeq.reduce((a, b) => a + b, 0) + 2;
  const ids = Array.from({ length: numBlocks }, (_, i) => i).sort(() => rng.next() - 0.5);
  const blockTables = new Int32Array(B * stride).fill(-1);
  const geom = { numBlocks, blockSize: BS, numKvHeads: Hk };
  const cache = new Uint8Array(numBlocks * BS * Hk * l.slotBytesAligned);
  const ks: Float32Array[] = [], vs: Float32Array[] = [];
  let next = 0;
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < perSeq[b]; j++) blockTables[b * stride + j] = ids[next++];
    const k = bf16Normals(rng, seqLens[b] * Hk * D), v = bf16Normals(rng, seqLens[b] * Hk * D);
    const slots = Array.from(
      { length: seqLens[b] },
      (_, t) => blockTables[b * stride + Math.floor(t / BS)] * BS + (t % BS),
    );
    storeReference(l, geom, k, v, slots, cache);
    ks.push(k);
    vs.push(v);
  }
  return { cache, geom, blockTables, stride, ks, vs };
}

Deno.test("turboquant reference: decode = full attention over the dequantized cache (GQA, block tables, ragged)", () => {
  const rng = new Rng();
  const seqLens = [1, 17, 40, 0], Hk = 2, G = 4, BS = 16;
  for (const name of [...TURBOQUANT_PRESET_NAMES, "k2v2"]) {
    const preset = name === "k2v2"
      ? defineTurboQuantPreset({
        name: "k2v2",
        key: { kind: "centroids", bits: 2, normCorrection: false },
        value: { kind: "uniform", bits: 2 },
      })
      : name;
    const l = turboQuantLayout(preset, 64), D = 64;
    const { cache, geom, blockTables, stride } = randomCache(l, rng, seqLens, Hk, BS);
    const q = bf16Normals(rng, seqLens.length * Hk * G * D);
    const out = decodeReference(l, {
      q,
      numHeads: Hk * G,
      cache,
      geom,
      blockTables,
      blockTableStride: stride,
      seqLens,
    });
    // dequantize every cached token back to the original basis and attend with the unrotated query
    const kd: Float64Array[] = [], vd: Float64Array[] = [];
    for (let b = 0; b < seqLens.length; b++) {
      const kk = new Float64Array(seqLens[b] * Hk * D), vv = new Float64Array(seqLens[b] * Hk * D);
      for (let t = 0; t < seqLens[b]; t++) {
        for (let h = 0; h < Hk; h++) {
          const slot = blockTables[b * stride + Math.floor(t / BS)] * BS + (t % BS);
          const r = dequantizeSlot(l, cache, (slot * Hk + h) * l.slotBytesAligned);
          kk.set(r.k, (t * Hk + h) * D);
          vv.set(r.v, (t * Hk + h) * D);
        }
      }
      kd.push(kk);
      vd.push(vv);
    }
    const ref = attentionReference(q, kd, vd, { numHeads: Hk * G, numKvHeads: Hk, headDim: D });
    assert.ok(relFrobenius(out, ref) < 1e-9, `${name}: ${relFrobenius(out, ref)}`);
    assert.ok(out.subarray(3 * Hk * G * D).every((x) => x === 0), "an empty sequence gives zeros");
  }
});

Deno.test("turboquant reference: attention error against full precision, per preset", () => {
  const rng = new Rng();
  const seqLens = [200, 64], Hk = 2, G = 4, BS = 32, D = 128;
  const errs: Record<string, number> = {};
  for (const name of TURBOQUANT_PRESET_NAMES) {
    const l = turboQuantLayout(name, D);
    const { cache, geom, blockTables, stride, ks, vs } = randomCache(l, new Rng(rng.seed), seqLens, Hk, BS);
    const q = bf16Normals(new Rng(rng.seed + 1), seqLens.length * Hk * G * D, 1);
    const out = decodeReference(l, {
      q,
      numHeads: Hk * G,
      cache,
      geom,
      blockTables,
      blockTableStride: stride,
      seqLens,
    });
    const full = attentionReference(q, ks, vs, { numHeads: Hk * G, numKvHeads: Hk, headDim: D });
    errs[name] = relFrobenius(out, full);
  }
  // more bits, less error. On unstructured Gaussian K/V the value codes dominate (4-bit uniform ≈ 10%
  // relative error per vector, which attention averages like the signal); 3-bit keys add ~10%.
  const bound: Record<string, number> = {
    turboquant_k8v4: 0.15,
    turboquant_4bit_nc: 0.2,
    turboquant_k3v4_nc: 0.32,
    turboquant_3bit_nc: 0.4,
  };
  assert.ok(errs.turboquant_k8v4 < errs.turboquant_4bit_nc + 0.02, JSON.stringify(errs));
  assert.ok(errs.turboquant_4bit_nc < errs.turboquant_3bit_nc, JSON.stringify(errs));
  for (const [n, e] of Object.entries(errs)) assert.ok(e < bound[n], `${n}: ${e} (seed ${rng.seed})`);
});
