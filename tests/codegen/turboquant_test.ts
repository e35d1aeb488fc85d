/**
 * TurboQuant codegen. Pure: signatures come from the ParamSpec lists, sources are deterministic, names
 * encode the variant, the decode kernel's bit tricks (3-bit → nibble spreading, the PRMT centroid
 * lookup with signs, the 1024 + code value operand) decode to the right numbers when emulated on the
 * host. Compile: a representative set of every kernel compiles with NVRTC for the archs it claims, with
 * no spills and no stack; the decode kernel's SASS has its MMAs and no local memory.
 */
import assert from "node:assert/strict";
import { compileTest } from "../_util.ts";
import { compileFor, ptxasReport } from "../../runtime/mod.ts";
import { renderSignature } from "../../codegen/kernel_source.ts";
import type { KernelSource } from "../../codegen/kernel_source.ts";
import { f16Decode, f16Encode } from "../../dsl/dtype.ts";
import {
  defineTurboQuantPreset,
  packBits,
  TURBOQUANT_PRESET_NAMES,
  turboQuantLayout,
  turboQuantStoreLanes,
} from "../../dsl/turboquant/mod.ts";
import { tqStoreKernel } from "../../codegen/kernels/tq_store.ts";
import { tqDecodeGeometry, tqDecodeKernel, tqDecodeMmaProblem } from "../../codegen/kernels/tq_decode.ts";
import { tqDecodeSimpleKernel, tqMergeKernel } from "../../codegen/kernels/tq_decode_simple.ts";
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

// ---- host emulation of the decode kernel's bit tricks
const prmt = (a: number, b: number, s: number) => {
  const bytes = [
    a & 255,
    (a >>> 8) & 255,
    (a >>> 16) & 255,
    a >>> 24,
    b & 255,
    (b >>> 8) & 255,
    (b >>> 16) & 255,
    b >>> 24,
  ];
  let r = 0;
  for (let i = 0; i < 4; i++) {
    const sel = (s >>> (4 * i)) & 15;
    const v = sel & 8 ? (bytes[sel & 7] & 128 ? 255 : 0) : bytes[sel & 7];
    r |= v << (8 * i);
  }
  return r >>> 0;
};
/** The C `key_group` spread (3 steps) read back from the generated source's masks. */
function spreadFromSource(src: string, bits: number, w: number): number {
  const re = /w \+= \(w & (0x[0-9a-f]+)u\) \* (\d+)u;/g;
  const fn = src.slice(src.indexOf(bits === 3 ? "u32 key_group" : "u32 val_group"));
  const body = fn.slice(0, fn.indexOf("return w;"));
  for (const m of body.matchAll(re)) w = (w + (w & Number(m[1])) * Number(m[2])) >>> 0;
  return w >>> 0;
}

Deno.test("turboquant codegen: emulated kdeq (PRMT table + sign) and 3-bit spreading decode the right centroids", () => {
  const rng = new Rng();
  for (
    const [p, D] of [["turboquant_4bit_nc", 128], ["turboquant_k3v4_nc", 64], [
      "turboquant_3bit_nc",
      256,
    ]] as const
  ) {
    const l = turboQuantLayout(p, D), kb = l.keyBits, half = 2 ** kb / 2;
    const src = tqDecodeKernel(dec(p, D)).source;
    const kdeq = src.slice(src.indexOf("void kdeq"));
    const grab = (name: string) => {
      const m = kdeq.match(new RegExp(`${name} = prmt\\((0x[0-9a-f]+)u, (0x[0-9a-f]+)u, m\\)`))!;
      return [Number(m[1]), Number(m[2])];
    };
    const tl = grab("lo0"), th = grab("hi0");
    for (let trial = 0; trial < 200; trial++) {
      const codes = Array.from({ length: 8 }, () => rng.int(0, 2 ** kb));
      let w = 0;
      const packed = packBits(codes, kb);
      for (let i = 0; i < packed.length; i++) w |= packed[i] << (8 * i);
      w = kb === 3 ? spreadFromSource(src, 3, w >>> 0) : w >>> 0;
      for (let i = 0; i < 8; i++) assert.equal((w >>> (4 * i)) & 15, codes[i], "spread to nibbles");
      // the C kdeq, step by step
      const sb = ~w & (0x88888888 >>> (4 - kb));
      const m = ((w ^ Math.imul(sb >>> (kb - 1), half - 1)) & (0x11111111 * (half - 1))) >>> 0;
      const mh = m >>> 16;
      const na = (sb << (8 - kb)) >>> 0, nb = (sb << (4 - kb)) >>> 0;
      const lo0 = prmt(tl[0], tl[1], m), lo1 = prmt(tl[0], tl[1], mh);
      const hi0 = (prmt(th[0], th[1], m) | (prmt(na, nb, 0x5140) & 0x80808080)) >>> 0;
      const hi1 = (prmt(th[0], th[1], mh) | (prmt(na, nb, 0x7362) & 0x80808080)) >>> 0;
      const h = [
        prmt(lo0, hi0, 0x5140),
        prmt(lo0, hi0, 0x7362),
        prmt(lo1, hi1, 0x5140),
        prmt(lo1, hi1, 0x7362),
      ];
      for (let i = 0; i < 8; i++) {
        const got = f16Decode((h[i >> 1] >>> (16 * (i & 1))) & 0xffff);
        const want = f16Decode(f16Encode(l.centroids![codes[i]] * Math.sqrt(D)));
        assert.equal(got, want, `${p}: code ${codes[i]} (nibble ${i}), seed ${rng.seed}`);
      }
      void half;
    }
  }
});

Deno.test("turboquant codegen: emulated value operand — (x & mask) | 0x6400 is 1024 + code (low) / 1024 + 16·code (high)", () => {
  for (let a = 0; a < 256; a += 7) {
    for (let b = 0; b < 256; b += 13) {
      const x = (a | (b << 16)) >>> 0;
      const lo = ((x & 0x000f000f) | 0x64006400) >>> 0, hi = ((x & 0x00f000f0) | 0x64006400) >>> 0;
      assert.equal(f16Decode(lo & 0xffff), 1024 + (a & 15));
      assert.equal(f16Decode(lo >>> 16), 1024 + (b & 15));
      assert.equal(f16Decode(hi & 0xffff), 1024 + 16 * (a >> 4));
      assert.equal(f16Decode(hi >>> 16), 1024 + 16 * (b >> 4));
    }
  }
});

/** Compile `ks` for `archs`; check 0 spills and 0 stack; return the sm_90a cubin. */
async function compiles(ks: KernelSource, archs: string[]): Promise<Uint8Array | undefined> {
  let cubin: Uint8Array | undefined;
  for (const arch of archs) {
    const r = await compileFor(ks, arch);
    const rep = ptxasReport(r.log ?? "").find((x) => x.fn === ks.entry);
    if (rep) {
      assert.equal(rep.spillBytes, 0, `${ks.name} ${arch}: ${rep.spillBytes} spill bytes`);
      assert.equal(rep.stackBytes, 0, `${ks.name} ${arch}: ${rep.stackBytes} stack bytes`);
      assert.ok(rep.registers <= 255);
    }
    if (arch === "sm_90a") cubin = r.cubin;
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
    // 8 score + 8 norm + 8 value + 1 offset MMAs per tile (fp8 keys: no norm MMAs)
    assert.deepEqual(sassMma, [17, 25, 25, 25].map((n) => n), `HMMA per kernel: ${sassMma}`);
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

/** Static count of an opcode in a cubin's SASS (0 when cuobjdump is missing: the check is skipped). */
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
  if (!tool) return -1;
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
