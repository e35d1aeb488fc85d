/**
 * TurboQuant benchmark (issue 7): the store kernel against the copy bandwidth measured in the same run
 * (and vLLM's eager PyTorch store as the peer), decode attention per preset against bf16
 * `scaled_dot_product_attention` (GQA) timed in the same run, and cache capacity per preset.
 * Every kernel is validated against the TypeScript reference before it is timed.
 *
 *   deno run -A bench/turboquant.ts            all tables
 *
 * Napkin math, H200 (4.8 TB/s datasheet, ~4.1 TB/s copy):
 * - store, 65536 tokens × Hk 8 × D 128: reads 268 MB of bf16 K+V, writes 51–101 MB of slots → 320–370 MB
 *   ≈ 78–90 µs at 4.1 TB/s. The rotated presets run ~1000 instructions per tile of 8 vectors (~62 µs of
 *   issue over the whole GPU), overlapped with the loads by the kernel's cp.async pipeline: expect
 *   ~85–95 µs (≥ 85% of copy); k8v4 streams at the memory rate.
 * - decode, Hq 32, Hk 8, D 128: bf16 reads B·L·8·512 B (537 MB at B 16 × 8k → 128 µs; the peer measured
 *   135–139 µs). TurboQuant reads 196/134/118/102 B per token-head instead of 512: floors of 49/33/30/25 µs.
 *   Version 1 ran 75/88/94/96 µs there (a ~18 µs fixed cost per call + an issue-bound loop of 440–785
 *   instructions per 16-token tile); version 2 cut the loop to 353/556/625/636 instructions but stayed
 *   at 81–93 µs (ALU pipe, L2 over-fetch of its per-warp chunks, late data); version 3 (the default on
 *   sm_90: key table, whole-tile bulk copies) runs 487–503 instructions per tile and measured 62–66 µs
 *   (2.2–2.35× SDPA). The older versions run at B 16 × 8k in the same run; the default at every shape.
 * A preset whose validation fails prints FAILED in its rows and the bench goes on.
 *
 * @module
 */
import { Device, Tensor, timeKernel } from "../mod.ts";
import { bf16Decode, bf16Encode } from "../dsl/dtype.ts";
import {
  decodeReference,
  storeReference,
  TURBOQUANT_PRESET_NAMES,
  turboQuantCapacity,
  turboQuantLayout,
} from "../dsl/turboquant/mod.ts";
import { prepareTurboQuant, type TurboQuant } from "../ops/turboquant.ts";
import { relFrobenius, Rng } from "../testing/mod.ts";
import { copyBandwidth, pct, printTable, type Row, runPeer } from "./_util.ts";

const D = 128, HK = 8, HQ = 32, BS = 16;
const STORE_T = 65536;
const DECODE: [number, number][] = [[16, 8192], [64, 8192], [16, 32768], [64, 32768]];

/** A bf16 tensor of N(0, scale²) values (also used by scripts/tq_*probe.ts). */
export function bf16Tensor(rng: Rng, shape: number[], scale = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const raw = new Uint16Array(n);
  for (let i = 0; i < n; i++) raw[i] = bf16Encode(rng.normal() * scale);
  return Tensor.fromHost("bf16", shape, raw);
}

/** Store a small batch and compare the cache bytes with the reference. */
function validateStore(tq: TurboQuant, rng: Rng): void {
  const T = 40, n = T * HK * D;
  const k = Float32Array.from({ length: n }, () => bf16Decode(bf16Encode(rng.normal())));
  const v = Float32Array.from({ length: n }, () => bf16Decode(bf16Encode(rng.normal() * 2)));
  using kt = Tensor.fromFloat("bf16", [T, HK, D], k), vt = Tensor.fromFloat("bf16", [T, HK, D], v);
  using cache = tq.allocateCache(4).fill(0xff);
  const slots = Int32Array.from({ length: T }, (_, t) => (t * 7) % 64);
  tq.store(kt, vt, slots, cache);
  const got = cache.toHost() as Uint8Array, ref = new Uint8Array(got.length).fill(0xff);
  storeReference(tq.layout, { numBlocks: 4, blockSize: BS, numKvHeads: HK }, k, v, slots, ref);
  const bad = got.findIndex((x, i) => x !== ref[i]);
  if (bad >= 0) {
    throw new Error(`${tq.layout.preset.name} store: byte ${bad} is ${got[bad]}, reference ${ref[bad]}`);
  }
}

/** Decode a small ragged batch (built by the reference) and compare with the float64 reference. */
function validateDecode(tq: TurboQuant, rng: Rng): number {
  const l = tq.layout, seqLens = [700, 33], B = 2, stride = 44, numBlocks = 90, S = l.slotBytesAligned;
  const cache = new Uint8Array(numBlocks * BS * HK * S);
  const bt = Int32Array.from({ length: B * stride }, (_, i) => (i * 37) % numBlocks);
  const geom = { numBlocks, blockSize: BS, numKvHeads: HK };
  for (let b = 0; b < B; b++) {
    const L = seqLens[b], n = L * HK * D;
    const kv = () => Float32Array.from({ length: n }, () => bf16Decode(bf16Encode(rng.normal())));
    const slots = Array.from({ length: L }, (_, t) => bt[b * stride + Math.floor(t / BS)] * BS + (t % BS));
    storeReference(l, geom, kv(), kv(), slots, cache);
  }
  const q = Float32Array.from({ length: B * HQ * D }, () => bf16Decode(bf16Encode(rng.normal())));
  const ref = decodeReference(l, {
    q,
    numHeads: HQ,
    cache,
    geom,
    blockTables: bt,
    blockTableStride: stride,
    seqLens,
  });
  using ct = Tensor.fromHost("u8", [numBlocks, BS, HK, S], cache);
  using qt = Tensor.fromFloat("bf16", [B, HQ, D], q);
  using btt = Tensor.fromHost("i32", [B, stride], bt),
    sl = Tensor.fromHost("i32", [B], Int32Array.from(seqLens));
  using out = tq.decode(qt, ct, btt, sl);
  const err = relFrobenius(out.toFloat32(), ref);
  if (!(err < 5e-3)) {
    throw new Error(`${l.preset.name} decode (${tq.decodeKernel}): relative error ${err} vs the reference`);
  }
  return err;
}

/** A random permutation of 0..n−1 (Fisher–Yates). */
function permutation(rng: Rng, n: number): Int32Array {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

const failed = (e: unknown) => `FAILED: ${(e as Error).message.slice(0, 100)}`;

/** The benchmark entry point `bench/main.ts` calls. */
export async function bench(): Promise<void> {
  const dev = Device.get(), copy = await copyBandwidth(), rng = new Rng(7);
  const peer = await runPeer("sdpa_decode.py", {
    decode: DECODE.map(([B, L]) => [B, L, HQ, HK, D]),
    store: [[STORE_T, HK, D]],
  });
  const peerStore = (peer?.store as { us?: number; bytes?: number }[] | undefined)?.[0];

  // ---- store
  const storeRows: Row[] = [];
  using k = bf16Tensor(rng, [STORE_T, HK, D]), v = bf16Tensor(rng, [STORE_T, HK, D], 2);
  using slots = Tensor.fromHost("i32", [STORE_T], Int32Array.from({ length: STORE_T }, (_, i) => i));
  for (const preset of TURBOQUANT_PRESET_NAMES) {
    using tq = await prepareTurboQuant({ preset, headDim: D, numKvHeads: HK, numHeads: HQ, pageSize: BS });
    const bytes = 2 * STORE_T * HK * D * 2 + STORE_T * HK * tq.slotBytes;
    const row: Row = { preset, "T×Hk×D": `${STORE_T}×${HK}×${D}`, "MB moved": bytes / 1e6, "µs": "" };
    try {
      validateStore(tq, rng);
    } catch (e) {
      storeRows.push({ ...row, "µs": failed(e) });
      continue;
    }
    using cache = tq.allocateCache(STORE_T / BS);
    const t = await timeKernel(() => tq.store(k, v, slots, cache), { warmup: 3, reps: 20 });
    storeRows.push({
      ...row,
      "µs": t.medianUs,
      "TB/s": bytes / (t.medianUs * 1e-6) / 1e12,
      "% of copy": pct(bytes / (t.medianUs * 1e-6), copy),
      "eager torch µs (4bit_nc)": peerStore?.us ?? "n/a",
      "× vs eager": peerStore?.us ? peerStore.us / t.medianUs : "n/a",
    });
  }
  printTable(`turboquant store (${dev.info.name}; copy ${(copy / 1e12).toFixed(2)} TB/s)`, storeRows);

  // ---- decode: every preset × B × context; a preset whose validation fails prints FAILED rows
  const peerDecode = (peer?.decode ?? []) as { shape: number[]; us?: number; error?: string }[];
  const rows: Row[] = [];
  const maxTokens = Math.max(...DECODE.map(([B, L]) => B * L));
  const tables = DECODE.map(([B, L]) => permutation(rng, (B * L) / BS)); // the same pages for every preset
  for (const preset of TURBOQUANT_PRESET_NAMES) {
    // the default ("auto": the faster tensor-core version for the key format) at every shape; the other
    // version at B 16 × 8k only, to compare in the same run
    let chosen: string | undefined;
    for (const kernel of ["auto", "mma", "mma1"] as const) {
      if (kernel === chosen) continue;
      using tq = await prepareTurboQuant({
        preset,
        headDim: D,
        numKvHeads: HK,
        numHeads: HQ,
        pageSize: BS,
        decodeKernel: kernel,
        maxBatch: 64,
      });
      if (kernel === "auto") chosen = tq.decodeKernel;
      let err: number | string;
      try {
        err = validateDecode(tq, rng);
      } catch (e) {
        err = failed(e);
      }
      const tokens = kernel !== "auto" ? DECODE[0][0] * DECODE[0][1] : maxTokens;
      using cache = tq.allocateCache(tokens / BS);
      if (typeof err === "number") {
        for (let t0 = 0; t0 < tokens; t0 += STORE_T) {
          using s = Tensor.fromHost("i32", [STORE_T], Int32Array.from({ length: STORE_T }, (_, i) => t0 + i));
          tq.store(k, v, s, cache);
        }
      }
      for (const [i, [B, L]] of DECODE.entries()) {
        if (kernel !== "auto" && (B > 16 || L > 8192)) continue;
        const bytes = B * L * HK * tq.slotBytes;
        const p = peerDecode.find((r) => r.shape[0] === B && r.shape[1] === L);
        const row: Row = {
          preset,
          kernel: kernel === "auto" ? `${tq.decodeKernel} (default)` : kernel,
          B,
          context: L,
          "µs": "",
          "cache MB": bytes / 1e6,
          "bf16 SDPA µs": p?.us ?? p?.error ?? "n/a",
        };
        if (typeof err === "string") {
          rows.push({ ...row, "µs": err });
          continue;
        }
        using bt = Tensor.fromHost("i32", [B, L / BS], tables[i]),
          sl = Tensor.fromHost("i32", [B], new Int32Array(B).fill(L));
        using q = bf16Tensor(rng, [B, HQ, D]), out = Tensor.empty("bf16", [B, HQ, D]);
        const t = await timeKernel(() => tq.decode(q, cache, bt, sl, out), { warmup: 3, reps: 20 });
        rows.push({
          ...row,
          "µs": t.medianUs,
          "TB/s": bytes / (t.medianUs * 1e-6) / 1e12,
          "% of copy": pct(bytes / (t.medianUs * 1e-6), copy),
          "× vs bf16": p?.us ? p.us / t.medianUs : "n/a",
          "rel. err": err,
        });
      }
    }
  }
  printTable(
    `turboquant decode, Hq ${HQ} Hk ${HK} D ${D}, page ${BS} (peer: torch ${
      peer?.torch ?? "n/a"
    } SDPA bf16, enable_gqa; TB/s on the compressed cache bytes)`,
    rows,
  );

  // ---- capacity
  printTable(
    `turboquant capacity per layer (Hk ${HK}, D ${D}; bf16 K+V = ${4 * D * HK} B/token)`,
    TURBOQUANT_PRESET_NAMES.map((preset) => {
      const c = turboQuantCapacity(turboQuantLayout(preset, D), HK);
      return {
        preset,
        "bytes/token": turboQuantLayout(preset, D).slotBytesAligned * HK,
        "tokens/GiB": c.tokensPerGiB,
        "bf16 tokens/GiB": c.bf16TokensPerGiB,
        "× bf16": c.ratio,
      };
    }),
  );
}

if (import.meta.main) await bench();
