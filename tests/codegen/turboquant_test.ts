/**
 * TurboQuant codegen. Pure: signatures come from the ParamSpec lists, sources are deterministic, names
 * encode the variant; the store kernel's run plan (evaluated from the very expressions the kernel
 * compiles), its stage placement and its run copy reproduce the reference cache with every 2- and
 * 16-byte access aligned, for ragged token counts, odd head counts, negative slots and every head dim;
 * its key lookup table gives `#{i : z ≥ W_i}` for every z. Compile: a representative set of every
 * kernel compiles with NVRTC for the archs it claims, with no spills and no stack; the decode kernel's
 * SASS has its MMAs and no local memory. (The decode kernel's bit tricks are emulated in
 * `turboquant_mma_test.ts`.)
 */
import assert from "node:assert/strict";
import { compileTest } from "../_util.ts";
import { compileFor, ptxasReport } from "../../runtime/mod.ts";
import { renderSignature } from "../../codegen/kernel_source.ts";
import type { KernelSource } from "../../codegen/kernel_source.ts";
import {
  defineTurboQuantPreset,
  encodeSlot,
  nextDown32,
  nextUp32,
  storeReference,
  TURBOQUANT_PRESET_NAMES,
  turboQuantKeyQuantizer,
  turboQuantLayout,
  turboQuantStoreLanes,
  turboQuantStoreStageOrder,
} from "../../dsl/turboquant/mod.ts";
import { fwhtF32 } from "../../dsl/turboquant/hadamard.ts";
import { tqStoreGeometry, tqStoreKernel } from "../../codegen/kernels/tq_store.ts";
import { TQ_STORE_PLAN, tqKeyLut, tqLutCode } from "../../codegen/kernels/tq_store_parts.ts";
import { tqDecodeGeometry, tqDecodeKernel, tqDecodeMmaProblem } from "../../codegen/kernels/tq_decode.ts";
import { tqDecodeSimpleKernel, tqMergeKernel } from "../../codegen/kernels/tq_decode_simple.ts";
import {
  tqDecodeV2Geometry,
  tqDecodeV2Kernel,
  tqDecodeV3Kernel,
  tqDecodeV3Problem,
} from "../../codegen/kernels/tq_decode_v2.ts";
import { cFloat } from "../../dsl/turboquant/f32.ts";
import { Rng } from "../../testing/mod.ts";

const dec = (
  p: string,
  D: number,
  extra: Partial<{ G: number; Hk: number; signs: boolean; f16: boolean }> = {},
) => ({
  layout: turboQuantLayout(p, D),
  inDtype: extra.f16 ? "f16" as const : "bf16" as const,
  numHeads: (extra.G ?? 4) * (extra.Hk ?? 8),
  numKvHeads: extra.Hk ?? 8,
  blockSize: 16,
  signs: extra.signs,
});

Deno.test("turboquant codegen: signatures from ParamSpec, deterministic sources, variant names", () => {
  const all: KernelSource[] = [];
  for (const p of TURBOQUANT_PRESET_NAMES) {
    all.push(tqStoreKernel({ layout: turboQuantLayout(p, 128), inDtype: "bf16", numKvHeads: 8 }));
    all.push(tqDecodeKernel(dec(p, 128)));
    all.push(tqDecodeV2Kernel(dec(p, 128)), tqDecodeV3Kernel(dec(p, 128)));
    all.push(tqDecodeSimpleKernel(dec(p, 128)));
  }
  all.push(
    tqStoreKernel({
      layout: turboQuantLayout("turboquant_4bit_nc", 128),
      inDtype: "f16",
      numKvHeads: 8,
      signs: true,
    }),
  );
  all.push(tqMergeKernel({ headDim: 128, inDtype: "bf16" }));
  for (const ks of all) {
    assert.ok(
      ks.source.includes(renderSignature(ks).split("(")[1].split(")")[0]),
      `${ks.name}: signature from params`,
    );
    assert.equal(ks.entry, ks.name);
  }
  assert.equal(new Set(all.map((k) => k.name)).size, all.length, "names are unique per variant");
  assert.equal(
    tqDecodeKernel(dec("turboquant_3bit_nc", 128)).source,
    tqDecodeKernel(dec("turboquant_3bit_nc", 128)).source,
  );
  assert.match(
    tqStoreKernel({
      layout: turboQuantLayout("turboquant_4bit_nc", 128),
      inDtype: "f16",
      numKvHeads: 8,
      signs: true,
    }).name,
    /_f16_hk8_signs$/,
  );
  // geometry: 8 KV heads per CTA at Hk 8, G ≤ 8 in one n-tile, rows padded to 16 mod 128 bytes
  const g = tqDecodeGeometry(dec("turboquant_4bit_nc", 128));
  assert.deepEqual([g.headsPerCta, g.headGroups, g.nTiles, g.rowPitch % 128], [8, 1, 1, 16]);
  assert.ok(g.rowPitch >= 8 * 134 + 14);
  assert.equal(tqDecodeGeometry(dec("turboquant_k8v4", 128, { Hk: 12, G: 12 })).headsPerCta, 6);
  assert.deepEqual([64, 96, 128, 256].map(turboQuantStoreLanes), [2, 4, 4, 8]);
  // the store's FWHT stage order: the lane's own bits, then (after the transpose) the former lane bits
  assert.deepEqual(turboQuantStoreStageOrder(128), [0, 1, 2, 5, 6, 3, 4]);
  assert.deepEqual(turboQuantStoreStageOrder(64), [0, 1, 2, 4, 5, 3]);
  assert.deepEqual(turboQuantStoreStageOrder(256), [0, 1, 2, 6, 7, 3, 4, 5]);
  assert.deepEqual(turboQuantStoreStageOrder(32), [0, 1, 2, 3, 4]);
  // any order is the same transform up to float32 rounding; a non-permutation is refused
  const xs = Float32Array.from({ length: 128 }, (_, i) => Math.sin(i * 1.7) * 3);
  const a = fwhtF32(xs.slice()), b = fwhtF32(xs.slice(), turboQuantStoreStageOrder(128));
  assert.ok(a.every((v, i) => Math.abs(v - b[i]) <= 1e-5 * 30), "stage orders agree to rounding");
  assert.throws(() => fwhtF32(new Float32Array(8), [0, 1, 1]), /permutation of 0..2, got \[0,1,1\]/);
  // v2: per-warp stages, rows an odd number of 16-byte chunks apart, 2 CTAs of 8 warps per SM at D 128
  for (const p of TURBOQUANT_PRESET_NAMES) {
    const g2 = tqDecodeV2Geometry(dec(p, 128));
    assert.equal((g2.rowPitch / 16) % 2, 1, `${p}: odd chunk pitch`);
    assert.ok(g2.rowPitch >= 16 * g2.maxChunks && g2.scratchInStage && g2.headsPerCta === 8, p);
    assert.ok(2 * (g2.sharedBytes + 1024) <= 228 * 1024, `${p}: ${g2.sharedBytes} B of shared memory`);
  }
});

Deno.test("turboquant codegen: which presets the tensor-core decode takes", () => {
  for (const p of TURBOQUANT_PRESET_NAMES) {
    for (const D of [64, 128, 256]) assert.equal(tqDecodeMmaProblem(dec(p, D)), undefined);
  }
  assert.match(tqDecodeMmaProblem(dec("turboquant_k8v4", 96))!, /head dim 96/);
  assert.match(tqDecodeMmaProblem(dec("turboquant_4bit_nc", 128, { G: 32, Hk: 1 }))!, /≤ 16/);
  assert.match(tqDecodeMmaProblem(dec("turboquant_4bit_nc", 256, { G: 16, Hk: 2 }))!, /≤ 8/);
  const asym = defineTurboQuantPreset({
    name: "asym",
    key: { kind: "centroids", bits: 2, normCorrection: true, codebook: [-2, -0.5, 0.4, 1.7] },
    value: { kind: "uniform", bits: 4 },
  });
  assert.match(
    tqDecodeMmaProblem({ ...dec("turboquant_k8v4", 128), layout: turboQuantLayout(asym, 128) })!,
    /symmetric/,
  );
  assert.throws(() => tqDecodeKernel(dec("turboquant_k8v4", 96)), /head dim 96/);
});

// ---- host emulation of the store kernel's placement: plan → stage → runs → cache
const planFns = TQ_STORE_PLAN.map(([, n, e]) => [n, e] as const);
function evalPlan(env: Record<string, number | boolean>): Record<string, number> {
  const out: Record<string, number> = {};
  const helpers = { imax: Math.max, imin: Math.min, idiv: (a: number, b: number) => Math.trunc(a / b) };
  for (const [n, e] of planFns) {
    const scope = { ...helpers, ...env, ...out };
    out[n] = new Function(...Object.keys(scope), `return ${e};`)(...Object.values(scope));
  }
  return out;
}

Deno.test("turboquant store (emulated): plan, stage and run copy rebuild the reference cache, every access aligned", () => {
  const rng = new Rng();
  const cases = [
    ["turboquant_4bit_nc", 128, 4, 37, 16],
    ["turboquant_k8v4", 128, 4, 37, 16],
    ["turboquant_k3v4_nc", 128, 3, 29, 16],
    ["turboquant_3bit_nc", 128, 1, 19, 32],
    ["turboquant_4bit_nc", 64, 3, 29, 16],
    ["turboquant_k8v4", 96, 5, 11, 16],
    ["turboquant_3bit_nc", 256, 2, 50, 32],
    ["turboquant_k3v4_nc", 128, 8, 9, 16],
    ["turboquant_4bit_nc", 128, 6, 23, 64],
  ] as const;
  for (const [preset, D, HK, T, BS] of cases) {
    const l = turboQuantLayout(preset, D), SLOT = l.slotBytesAligned, geo = tqStoreGeometry(l);
    const src = tqStoreKernel({ layout: l, inDtype: "bf16", numKvHeads: HK }).source;
    for (const [, n, e] of TQ_STORE_PLAN) {
      assert.ok(src.includes(`${n} = ${e};`), `kernel computes ${n} as planned`);
    }
    const VW = geo.vectorsPerTile, P = 32 / VW, JUNK = Number(src.match(/#define JUNK (\d+)/)![1]);
    const numBlocks = Math.ceil(T / BS) + 1, numSlots = numBlocks * BS;
    const perm = Array.from({ length: numSlots }, (_, i) => i).sort(() => rng.next() - 0.5);
    const slots = Int32Array.from({ length: T }, (_, t) => (rng.next() < 0.15 ? -1 : perm[t]));
    const kv = () => rng.normals(T * HK * D);
    const k = kv(), v = kv();
    const ref = new Uint8Array(numSlots * HK * SLOT).fill(0xff), got = ref.slice();
    storeReference(l, { numBlocks, blockSize: BS, numKvHeads: HK }, k, v, slots, ref);
    const what = `${preset} D=${D} Hk=${HK} T=${T} (seed ${rng.seed})`;
    const cacheBase = 4096; // any 16-byte aligned address
    for (let tile = 0; tile * VW < T * HK; tile++) {
      const v0 = tile * VW, stage = new Uint8Array(geo.stageBytes).fill(0xee);
      const lanes: Record<string, number>[] = [];
      for (let qv = 0; qv < VW; qv++) {
        const vec = v0 + qv, live = vec < T * HK, t = live ? Math.floor(vec / HK) : 0;
        const slot = live ? slots[t] : -1, valid = slot >= 0;
        const p = evalPlan({ v0, qv, t, slot, valid, cache_lo: cacheBase & 15, HK, SLOT, VW, JUNK });
        assert.equal(p.my_off % 2, 0, `${what}: stage offset of vector ${vec} is even (u16 stores)`);
        assert.ok(
          p.my_off >= 0 && p.my_off + SLOT <= geo.stageBytes,
          `${what}: vector ${vec} inside the stage`,
        );
        if (valid) {
          assert.ok(p.my_off + SLOT <= JUNK, `${what}: runs stay before the junk slot`);
          const h = vec - t * HK, at = (t * HK + h) * D;
          stage.set(
            encodeSlot(l, k.subarray(at, at + D), v.subarray(at, at + D)).subarray(0, l.slotBytes),
            p.my_off,
          );
        }
        lanes.push({ ...p, valid: valid ? 1 : 0, qv });
      }
      // ballot of run leaders, then copy_run by the 32 lanes
      for (const ld of lanes.filter((x) => x.valid && x.qv === x.q_first)) {
        const dst = cacheBase + ld.dst_off, s = ld.run_stage, len = ld.run_len;
        assert.equal((dst - s) % 16, 0, `${what}: run of vector ${v0 + ld.qv}: stage ≡ cache (mod 16)`);
        const head = Math.min((16 - (dst & 15)) & 15, len), nv = (len - head) >> 4;
        const put = (o: number, n: number) => {
          assert.equal((dst + o) % (n === 16 ? 16 : 2), 0, `${what}: ${n}-byte store aligned`);
          assert.equal((s + o) % (n === 16 ? 16 : 2), 0, `${what}: ${n}-byte shared load aligned`);
          got.set(stage.subarray(s + o, s + o + n), dst - cacheBase + o);
        };
        for (let lane = 0; lane < 32; lane++) {
          if (2 * lane < head) put(2 * lane, 2);
          for (let i = lane; i < nv; i += 32) put(head + 16 * i, 16);
          const tail = head + 16 * nv + 2 * lane;
          if (tail < len) put(tail, 2);
        }
      }
      void P;
    }
    for (let i = 0; i < ref.length; i++) {
      if ((i % SLOT) >= l.slotBytes) got[i] = ref[i]; // the padding byte is never written
    }
    assert.deepEqual(got, ref, what);
  }
});

Deno.test("turboquant store: the key lookup table counts thresholds exactly (every z, both sides of each W_i)", () => {
  const rng = new Rng();
  for (const p of ["turboquant_4bit_nc", "turboquant_k3v4_nc"]) {
    for (const D of [64, 128, 256]) {
      const l = turboQuantLayout(p, D), q = turboQuantKeyQuantizer(l), lut = tqKeyLut(l)!;
      assert.ok(lut.cells <= 17, `${p} D=${D}: ${lut.cells} cells`);
      const src = tqStoreKernel({ layout: l, inDtype: "bf16", numKvHeads: 8 }).source;
      assert.ok(
        src.includes(cFloat(lut.ncs)) && src.includes(`{${lut.w[1]}u, ${lut.e0[1]}u}`),
        "table in the source",
      );
      const zs = [0, 1, 0.5, nextDown32(1), ...Array.from({ length: 3000 }, () => Math.fround(rng.next()))];
      for (const w of q.W) zs.push(w, nextUp32(w), nextDown32(w));
      for (const z of zs) {
        const want = q.W.filter((w) => z >= w).length;
        assert.equal(tqLutCode(lut, l.keyBits, z), want, `${p} D=${D} z=${z}`);
      }
    }
  }
  // user codebooks: 1 and 5 bits, an asymmetric 2-bit one
  const users = [
    { bits: 1, codebook: undefined },
    { bits: 5, codebook: undefined },
    { bits: 2, codebook: [-2, -0.5, 0.4, 1.7] },
  ].map(({ bits, codebook }) =>
    turboQuantLayout(
      defineTurboQuantPreset({
        name: `u${bits}`,
        key: { kind: "centroids", bits, normCorrection: true, codebook },
        value: { kind: "uniform", bits: 4 },
      }),
      64,
    )
  );
  for (const l of users) {
    const q = turboQuantKeyQuantizer(l), lut = tqKeyLut(l)!;
    for (const z of [0, 1, ...q.W, ...Array.from({ length: 2000 }, () => Math.fround(rng.next()))]) {
      assert.equal(tqLutCode(lut, l.keyBits, z), q.W.filter((w) => z >= w).length, `${l.preset.name} z=${z}`);
    }
  }
  // a 6-bit codebook needs more than 64 cells: no table, the kernel searches
  const k6 = defineTurboQuantPreset({
    name: "k6",
    key: { kind: "centroids", bits: 6, normCorrection: true },
    value: { kind: "uniform", bits: 4 },
  });
  const l6 = turboQuantLayout(k6, 128);
  assert.equal(tqKeyLut(l6) === undefined, turboQuantKeyQuantizer(l6).cells === 0);
});

/** Compile `ks` for `archs`; check 0 spills and 0 stack; return the sm_90a cubin. */
async function compiles(ks: KernelSource, archs: string[]): Promise<Uint8Array | undefined> {
  let cubin: Uint8Array | undefined;
  // Hopper: the arch the runtime picks (sm_90 unless the kernel is arch-specific) — ptxas differs between
  // the two (a 48 KB + 64 B static shared array passed for sm_90a and failed for sm_90)
  for (const a of archs) {
    const arch = a === "sm_90a" && !ks.archSpecific ? "sm_90" : a;
    const r = await compileFor(ks, arch);
    const rep = ptxasReport(r.log ?? "").find((x) => x.fn === ks.entry);
    if (rep) {
      assert.equal(rep.spillBytes, 0, `${ks.name} ${arch}: ${rep.spillBytes} spill bytes`);
      assert.equal(rep.stackBytes, 0, `${ks.name} ${arch}: ${rep.stackBytes} stack bytes`);
      assert.ok(rep.registers <= 255);
    }
    if (arch.startsWith("sm_90")) cubin = r.cubin;
  }
  return cubin;
}

compileTest(
  "turboquant store kernels (every preset at D 128; D 64/96/256, f16, signs; sm_80/89/90a)",
  async () => {
    const L = (p: string, D: number) => turboQuantLayout(p, D);
    for (const p of TURBOQUANT_PRESET_NAMES) {
      await compiles(tqStoreKernel({ layout: L(p, 128), inDtype: "bf16", numKvHeads: 8 }), ["sm_90a"]);
    }
    await compiles(
      tqStoreKernel({ layout: L("turboquant_4bit_nc", 64), inDtype: "f16", numKvHeads: 2, signs: true }),
      ["sm_80", "sm_90a"],
    );
    await compiles(tqStoreKernel({ layout: L("turboquant_3bit_nc", 256), inDtype: "bf16", numKvHeads: 4 }), [
      "sm_90a",
    ]);
    await compiles(tqStoreKernel({ layout: L("turboquant_k8v4", 96), inDtype: "bf16", numKvHeads: 3 }), [
      "sm_89",
      "sm_90a",
    ]);
    const k5 = defineTurboQuantPreset({
      name: "k5v6",
      key: { kind: "centroids", bits: 5, normCorrection: false },
      value: { kind: "uniform", bits: 6 },
    });
    await compiles(tqStoreKernel({ layout: turboQuantLayout(k5, 128), inDtype: "bf16", numKvHeads: 8 }), [
      "sm_90a",
    ]);
  },
);

compileTest(
  "turboquant tensor-core decode kernels (every preset at D 128; D 64/256, G 8/16, signs; sm_80/89/90a)",
  async () => {
    const sassMma: number[] = [];
    for (const p of TURBOQUANT_PRESET_NAMES) {
      const ks = tqDecodeKernel(dec(p, 128));
      const archs = p === "turboquant_k8v4"
        ? ["sm_80", "sm_89", "sm_90a"]
        : p === "turboquant_4bit_nc"
        ? ["sm_80", "sm_90a"]
        : ["sm_90a"];
      const cubin = await compiles(ks, archs);
      if (cubin) sassMma.push(countOpcode(cubin, "HMMA"));
    }
    await compiles(tqDecodeKernel(dec("turboquant_3bit_nc", 64, { G: 8, Hk: 4, signs: true })), ["sm_90a"]);
    await compiles(tqDecodeKernel(dec("turboquant_4bit_nc", 128, { G: 16, Hk: 2, f16: true })), ["sm_90a"]);
    await compiles(tqDecodeKernel(dec("turboquant_k3v4_nc", 256, { G: 8, Hk: 8 })), ["sm_90a"]);
    // 8 score + 8 norm + 8 value MMAs per tile (fp8 keys: no norm MMAs); −1: no cuobjdump / --allow-run
    if (!sassMma.includes(-1)) assert.deepEqual(sassMma, [16, 24, 24, 24], `HMMA per kernel: ${sassMma}`);
  },
);

/** `dec`'s options with a page size of `BS` tokens (the v2/v3 tensor-core decode kernels take any). */
const paged = (p: string, D: number, x: Parameters<typeof dec>[2], BS: number) => ({
  ...dec(p, D, x),
  blockSize: BS,
});

compileTest(
  "turboquant tensor-core decode v2 kernels (every preset at D 128; D 64/256, G 1/8/16, Hk 1/2/3, pages 32-128, signs, f16)",
  async () => {
    const sassMma: number[] = [];
    for (const p of TURBOQUANT_PRESET_NAMES) {
      const archs = p === "turboquant_k8v4" || p === "turboquant_4bit_nc" ? ["sm_80", "sm_90a"] : ["sm_90a"];
      const cubin = await compiles(tqDecodeV2Kernel(dec(p, 128)), archs);
      if (cubin) sassMma.push(countOpcode(cubin, "HMMA"));
    }
    await compiles(tqDecodeV2Kernel(paged("turboquant_3bit_nc", 64, { G: 8, Hk: 4, signs: true }, 16)), [
      "sm_90a",
    ]);
    await compiles(tqDecodeV2Kernel(paged("turboquant_4bit_nc", 128, { G: 16, Hk: 2, f16: true }, 32)), [
      "sm_90a",
    ]);
    await compiles(tqDecodeV2Kernel(paged("turboquant_k3v4_nc", 256, { G: 8, Hk: 8 }, 64)), ["sm_90a"]);
    await compiles(tqDecodeV2Kernel(paged("turboquant_k8v4", 256, { G: 4, Hk: 3 }, 128)), ["sm_90a"]);
    await compiles(tqDecodeV2Kernel(paged("turboquant_4bit_nc", 64, { G: 1, Hk: 1 }, 16)), ["sm_90a"]);
    // the same MMAs per tile as version 1
    if (!sassMma.includes(-1)) assert.deepEqual(sassMma, [16, 24, 24, 24], `HMMA per kernel: ${sassMma}`);
  },
);

compileTest(
  "turboquant tensor-core decode v3 kernels (bulk copies + mbarriers; every preset at D 128 Hk 8; D 64/256, G 2/8, pages 32-128; sm_90)",
  async () => {
    const sass: number[] = [];
    for (const p of TURBOQUANT_PRESET_NAMES) {
      const cubin = await compiles(tqDecodeV3Kernel(dec(p, 128)), ["sm_90a"]);
      if (cubin) sass.push(countOpcode(cubin, "HMMA"));
    }
    await compiles(tqDecodeV3Kernel(paged("turboquant_3bit_nc", 64, { G: 2, Hk: 16, signs: true }, 32)), [
      "sm_90a",
    ]);
    await compiles(tqDecodeV3Kernel(paged("turboquant_k3v4_nc", 256, { G: 8, Hk: 8, f16: true }, 128)), [
      "sm_90a",
    ]);
    await compiles(tqDecodeV3Kernel(paged("turboquant_k8v4", 128, { G: 4, Hk: 8 }, 64)), ["sm_90a"]);
    if (!sass.includes(-1)) assert.deepEqual(sass, [16, 24, 24, 24], `HMMA per kernel: ${sass}`);
    // 12 KV heads: 6 per CTA × 134-byte slots = 804 bytes per row copy, not whole 16-byte units; with every
    // head in the CTA (Hk 4) a tile is 16 whole page rows, always fine
    assert.match(tqDecodeV3Problem(dec("turboquant_4bit_nc", 128, { G: 2, Hk: 12 })) ?? "", /16-byte/);
    assert.throws(() => tqDecodeV3Kernel(dec("turboquant_4bit_nc", 128, { G: 2, Hk: 12 })), /16-byte/);
    assert.equal(tqDecodeV3Problem(dec("turboquant_4bit_nc", 128, { G: 4, Hk: 4 })), undefined);
    await compiles(tqDecodeV3Kernel(dec("turboquant_4bit_nc", 128, { G: 8, Hk: 4 })), ["sm_90a"]);
  },
);

compileTest(
  "turboquant plain decode and merge kernels (fp8 and 3-bit keys; D 96; a 5-bit asymmetric user preset)",
  async () => {
    for (const p of ["turboquant_k8v4", "turboquant_3bit_nc"]) {
      await compiles(tqDecodeSimpleKernel(dec(p, 128)), ["sm_90a"]);
    }
    await compiles(tqDecodeSimpleKernel(dec("turboquant_k8v4", 96, { G: 4, Hk: 4, f16: true })), [
      "sm_80",
      "sm_90a",
    ]);
    const odd = defineTurboQuantPreset({
      name: "k5a_v6",
      key: {
        kind: "centroids",
        bits: 5,
        normCorrection: true,
        codebook: Array.from({ length: 32 }, (_, i) => (i - 15.3) / 8),
      },
      value: { kind: "uniform", bits: 6 },
    });
    await compiles(
      tqDecodeSimpleKernel({ ...dec("turboquant_k8v4", 64), layout: turboQuantLayout(odd, 64), signs: true }),
      ["sm_90a"],
    );
    await compiles(tqMergeKernel({ headDim: 128, inDtype: "bf16" }), ["sm_80", "sm_90a"]);
  },
);

/** Static count of an opcode in a cubin's SASS (−1 without cuobjdump or run permission: the check is skipped). */
function countOpcode(cubin: Uint8Array, op: string): number {
  const tool = [
    "/usr/local/cuda/bin/cuobjdump",
    ...(Deno.env.get("PATH") ?? "").split(":").map((d) => `${d}/cuobjdump`),
  ]
    .find((c) => {
      try {
        return Deno.statSync(c).isFile;
      } catch {
        return false;
      }
    });
  if (!tool || Deno.permissions.querySync({ name: "run", command: tool }).state !== "granted") return -1;
  const f = Deno.makeTempFileSync({ suffix: ".cubin" });
  try {
    Deno.writeFileSync(f, cubin);
    const out = new Deno.Command(tool, { args: ["-sass", f], stdout: "piped" }).outputSync();
    const text = new TextDecoder().decode(out.stdout);
    assert.ok(!/\b(LDL|STL)\b/.test(text), "no local memory");
    return text.split("\n").filter((l) => new RegExp(`\\s${op}\\.`).test(l)).length;
  } finally {
    Deno.removeSync(f);
  }
}
