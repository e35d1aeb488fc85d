/**
 * TurboQuant KV-cache compression, end to end on the TypeScript reference (no GPU needed): compress a
 * small paged KV cache with every preset, then print bytes per token, reconstruction quality of keys
 * and values, and the decode-attention error against full precision. With a CUDA device it also runs
 * the same store + decode on the GPU and reports the kernels' difference from the reference.
 *
 *   deno run -A examples/kv_turboquant.ts
 *
 * @module
 */
import {
  attentionReference,
  cosine,
  decodeReference,
  dequantizeSlot,
  storeReference,
  TURBOQUANT_PRESET_NAMES,
  turboQuantCapacity,
  turboQuantLayout,
} from "../dsl/turboquant/mod.ts";
import { bf16Decode, bf16Encode } from "../dsl/dtype.ts";
import { relFrobenius, Rng } from "../testing/mod.ts";

/** Keys with a few heavy channels, like real ones (RoPE'd keys have outlier dims); values plain. */
function kvData(rng: Rng, tokens: number, heads: number, D: number): { k: Float32Array; v: Float32Array } {
  const k = new Float32Array(tokens * heads * D), v = new Float32Array(tokens * heads * D);
  for (let i = 0; i < k.length; i++) {
    const d = i % D;
    k[i] = bf16Decode(bf16Encode(rng.normal() * (d % 16 === 3 ? 6 : 1)));
    v[i] = bf16Decode(bf16Encode(rng.normal()));
  }
  return { k, v };
}

/** Print the per-preset table; returns the rows (for tests). */
export async function main(): Promise<Record<string, string | number>[]> {
  const rng = new Rng(2026);
  const D = 128, Hk = 4, G = 4, BS = 16, seqLens = [300, 77];
  const B = seqLens.length, stride = Math.ceil(Math.max(...seqLens) / BS);
  const blockTables = Int32Array.from({ length: B * stride }, (_, i) => i);
  const numBlocks = B * stride;
  const data = seqLens.map((L) => kvData(rng, L, Hk, D));
  const q = Float32Array.from({ length: B * Hk * G * D }, () => bf16Decode(bf16Encode(rng.normal())));
  const full = attentionReference(q, data.map((x) => x.k), data.map((x) => x.v), {
    numHeads: Hk * G,
    numKvHeads: Hk,
    headDim: D,
  });

  const rows: Record<string, string | number>[] = [];
  const caches = new Map<string, Uint8Array>();
  for (const preset of TURBOQUANT_PRESET_NAMES) {
    const l = turboQuantLayout(preset, D);
    const geom = { numBlocks, blockSize: BS, numKvHeads: Hk };
    const cache = new Uint8Array(numBlocks * BS * Hk * l.slotBytesAligned);
    let kc = 0, vc = 0, n = 0;
    for (let b = 0; b < B; b++) {
      const slots = Array.from(
        { length: seqLens[b] },
        (_, t) => blockTables[b * stride + Math.floor(t / BS)] * BS + (t % BS),
      );
      storeReference(l, geom, data[b].k, data[b].v, slots, cache);
      for (let t = 0; t < seqLens[b]; t++) {
        for (let h = 0; h < Hk; h++) {
          const r = dequantizeSlot(l, cache, (slots[t] * Hk + h) * l.slotBytesAligned);
          const at = (t * Hk + h) * D;
          kc += cosine(r.k, data[b].k.subarray(at, at + D));
          vc += cosine(r.v, data[b].v.subarray(at, at + D));
          n++;
        }
      }
    }
    caches.set(preset, cache);
    const out = decodeReference(l, {
      q,
      numHeads: Hk * G,
      cache,
      geom,
      blockTables,
      blockTableStride: stride,
      seqLens,
    });
    rows.push({
      preset,
      "bytes/token/head": l.slotBytesAligned,
      "vs bf16": `${turboQuantCapacity(l, Hk).ratio.toFixed(2)}×`,
      "key cosine": (kc / n).toFixed(4),
      "value cosine": (vc / n).toFixed(4),
      "attention rel. error": relFrobenius(out, full).toFixed(4),
    });
  }
  console.log(
    `TurboQuant, D ${D}, ${Hk} KV heads × ${G} query heads, sequences of ${
      seqLens.join(" and ")
    } tokens (bf16 = ${4 * D} B/token/head)`,
  );
  console.table(rows);
  await onGpu(caches, { q, blockTables, stride, seqLens, D, Hk, G, BS, numBlocks, data });
  return rows;
}

/** With a GPU: store the same K/V and decode the same caches with the kernels; compare with the reference. */
async function onGpu(
  caches: Map<string, Uint8Array>,
  x: {
    q: Float32Array;
    blockTables: Int32Array;
    stride: number;
    seqLens: number[];
    D: number;
    Hk: number;
    G: number;
    BS: number;
    numBlocks: number;
    data: { k: Float32Array; v: Float32Array }[];
  },
): Promise<void> {
  const { hasGpu } = await import("../runtime/mod.ts");
  if (!hasGpu()) {
    console.log("(no CUDA device: the GPU kernels were not run)");
    return;
  }
  const { Tensor } = await import("../runtime/mod.ts");
  const { prepareTurboQuant } = await import("../ops/turboquant.ts");
  const B = x.seqLens.length, Hq = x.Hk * x.G;
  for (const [preset, cache] of caches) {
    using tq = await prepareTurboQuant({
      preset,
      headDim: x.D,
      numKvHeads: x.Hk,
      numHeads: Hq,
      pageSize: x.BS,
    });
    // store every sequence's K/V on the GPU: the cache bytes must equal the reference's
    using gpuCache = tq.allocateCache(x.numBlocks);
    for (let b = 0; b < B; b++) {
      const L = x.seqLens[b];
      using kt = Tensor.fromFloat("bf16", [L, x.Hk, x.D], x.data[b].k);
      using vt = Tensor.fromFloat("bf16", [L, x.Hk, x.D], x.data[b].v);
      const slots = Int32Array.from(
        { length: L },
        (_, t) => x.blockTables[b * x.stride + Math.floor(t / x.BS)] * x.BS + (t % x.BS),
      );
      tq.store(kt, vt, slots, gpuCache);
    }
    tq.checkStatus();
    const stored = gpuCache.toHost() as Uint8Array;
    const differ = stored.reduce((n, byte, i) => n + (byte !== cache[i] ? 1 : 0), 0);
    using ct = Tensor.fromHost("u8", [x.numBlocks, x.BS, x.Hk, tq.slotBytes], cache);
    using qt = Tensor.fromFloat("bf16", [B, Hq, x.D], x.q);
    using bt = Tensor.fromHost("i32", [B, x.stride], x.blockTables),
      sl = Tensor.fromHost("i32", [B], Int32Array.from(x.seqLens));
    using out = tq.decode(qt, ct, bt, sl);
    const ref = decodeReference(tq.layout, {
      q: x.q,
      numHeads: Hq,
      cache,
      geom: { numBlocks: x.numBlocks, blockSize: x.BS, numKvHeads: x.Hk },
      blockTables: x.blockTables,
      blockTableStride: x.stride,
      seqLens: x.seqLens,
    });
    console.log(
      `${preset}: GPU store ${differ === 0 ? "= reference (every byte)" : `differs in ${differ} bytes`}; ` +
        `GPU decode (${tq.decodeKernel}) vs reference: rel. error ${
          relFrobenius(out.toFloat32(), ref).toExponential(2)
        }`,
    );
  }
}

if (import.meta.main) await main();
