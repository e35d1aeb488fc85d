/**
 * Host emulation of one warp of the tensor-core TurboQuant decode (`codegen/kernels/tq_decode.ts`) on
 * one 16-token tile: every lane's fragments are filled the way the kernel fills them (the permuted key
 * dims, the value rows g / g+8 = low / high nibble, P' through `movmatrix`), the MMAs run with the PTX
 * m16n8k16 fragment layouts, and the epilogue undoes the 2^-24 (f16 subnormal codes) and the ×16 as the kernel
 * does. The result must match attention over the same tile computed directly. This checks the index
 * bookkeeping that a GPU run would otherwise be the first to see (the bit tricks that produce the
 * fragment values are checked in `turboquant_test.ts`).
 */
import assert from "node:assert/strict";
import { f16Decode, f16Encode } from "../../dsl/dtype.ts";
import { packBits, turboQuantLayout, unpackBits } from "../../dsl/turboquant/mod.ts";
import { TQ_DECODE_ROW_OFF, tqDecodeGeometry, tqDecodeKernel } from "../../codegen/kernels/tq_decode.ts";
import { Rng } from "../../testing/mod.ts";

const h16 = (x: number) => f16Decode(f16Encode(x));
const dec = (p: string, D: number) => ({
  layout: turboQuantLayout(p, D),
  inDtype: "bf16" as const,
  numHeads: 32,
  numKvHeads: 8,
  blockSize: 16,
});
type Frag = number[]; // per lane: values (each f16 pair as two numbers)

/** PTX mma.m16n8k16 (row.col): lanes' A (4 pairs), B (2 pairs), C (4) → D, in float64. */
function mma(A: Frag[], B: Frag[], C: number[][]): number[][] {
  const a = Array.from({ length: 16 }, () => new Array(16).fill(0));
  const b = Array.from({ length: 16 }, () => new Array(8).fill(0));
  for (let lane = 0; lane < 32; lane++) {
    const g = lane >> 2, c = lane & 3;
    const [a0, a0h, a1, a1h, a2, a2h, a3, a3h] = A[lane];
    [a[g][2 * c], a[g][2 * c + 1]] = [a0, a0h];
    [a[g + 8][2 * c], a[g + 8][2 * c + 1]] = [a1, a1h];
    [a[g][2 * c + 8], a[g][2 * c + 9]] = [a2, a2h];
    [a[g + 8][2 * c + 8], a[g + 8][2 * c + 9]] = [a3, a3h];
    const [b0, b0h, b1, b1h] = B[lane];
    [b[2 * c][g], b[2 * c + 1][g]] = [b0, b0h];
    [b[2 * c + 8][g], b[2 * c + 9][g]] = [b1, b1h];
  }
  return C.map((cl, lane) => {
    const g = lane >> 2, c = lane & 3;
    const dot = (r: number, n: number) => a[r].reduce((s, x, k) => s + x * b[k][n], 0);
    return [
      cl[0] + dot(g, 2 * c),
      cl[1] + dot(g, 2 * c + 1),
      cl[2] + dot(g + 8, 2 * c),
      cl[3] + dot(g + 8, 2 * c + 1),
    ];
  });
}

/** movmatrix.m8n8.trans.b16: lane (g, c) holds row g, cols 2c, 2c+1 → the transpose's. */
function movtrans(x: [number, number][]): [number, number][] {
  const m = Array.from({ length: 8 }, () => new Array(8).fill(0));
  x.forEach(([lo, hi], lane) => {
    m[lane >> 2][2 * (lane & 3)] = lo;
    m[lane >> 2][2 * (lane & 3) + 1] = hi;
  });
  return x.map((_, lane) => [m[2 * (lane & 3)][lane >> 2], m[2 * (lane & 3) + 1][lane >> 2]]);
}

Deno.test("turboquant decode (emulated warp): fragments, movmatrix and epilogue give the tile's attention", () => {
  const rng = new Rng();
  for (const [D, G, nc] of [[128, 4, true], [64, 8, false], [256, 3, true]] as const) {
    const NK = D / 16, NGV = D / 64, T = 16, valid = 13;
    const C = Array.from({ length: 16 }, (_, i) => h16((i - 7.5) * 0.17)); // any table of f16 centroids
    const kc = Array.from({ length: T }, () => Array.from({ length: D }, () => rng.int(0, 16)));
    const vc = Array.from({ length: T }, () => Array.from({ length: D }, () => rng.int(0, 16)));
    const n = Array.from({ length: T }, () => h16(1 + rng.next()));
    const s = Array.from({ length: T }, () => h16(0.1 + rng.next() * 0.2)),
      z = Array.from({ length: T }, () => h16(rng.normal()));
    const q = Array.from({ length: G }, () => Array.from({ length: D }, () => h16(rng.normal())));
    const scale = 0.3;
    // ---- what the kernel computes
    const lanes = [...Array(32).keys()];
    const dk = (kk: number, c: number) => 8 * (c + 4 * (kk >> 1)) + 4 * (kk & 1);
    let sacc = lanes.map(() => [0, 0, 0, 0]), nacc = lanes.map(() => [0, 0, 0, 0]);
    for (let kk = 0; kk < NK; kk++) {
      const A = lanes.map((l) => {
        const g = l >> 2, d0 = dk(kk, l & 3);
        const k0 = kc[g], k1 = kc[g + 8];
        return [
          C[k0[d0]],
          C[k0[d0 + 1]],
          C[k1[d0]],
          C[k1[d0 + 1]],
          C[k0[d0 + 2]],
          C[k0[d0 + 3]],
          C[k1[d0 + 2]],
          C[k1[d0 + 3]],
        ];
      });
      const B = lanes.map((l) => {
        const g = l >> 2, d0 = dk(kk, l & 3);
        return g < G ? [q[g][d0], q[g][d0 + 1], q[g][d0 + 2], q[g][d0 + 3]] : [0, 0, 0, 0];
      });
      sacc = mma(A, B, sacc);
      nacc = mma(A.map((f) => f.map((x) => h16(x * x))), lanes.map(() => [1, 1, 1, 1]), nacc);
    }
    // softmax of this single tile (running state starts empty: m = −inf, α = 0)
    const x = lanes.map((l) => {
      const g = l >> 2;
      const f0 = n[g] * (nc ? 1 / Math.sqrt(nacc[l][0]) : 1) * scale,
        f1 = n[g + 8] * (nc ? 1 / Math.sqrt(nacc[l][2]) : 1) * scale;
      const ok0 = g < valid, ok1 = g + 8 < valid;
      return [
        ok0 ? sacc[l][0] * f0 : -Infinity,
        ok0 ? sacc[l][1] * f0 : -Infinity,
        ok1 ? sacc[l][2] * f1 : -Infinity,
        ok1 ? sacc[l][3] * f1 : -Infinity,
      ];
    });
    const colMax = (l: number, e: number) =>
      Math.max(...lanes.filter((o) => (o & 3) === (l & 3)).flatMap((o) => [x[o][e], x[o][2 + e]]));
    const m = lanes.map((l) => [colMax(l, 0), colMax(l, 1)]);
    const p = lanes.map((l) => [0, 1, 2, 3].map((i) => 2 ** (x[l][i] - m[l][i & 1])));
    const l2 = lanes.map((l) => [p[l][0] + p[l][2], p[l][1] + p[l][3]]);
    const plo = lanes.map((
      l,
    ) => [p[l][0] * z[l >> 2] + p[l][2] * z[(l >> 2) + 8], p[l][1] * z[l >> 2] + p[l][3] * z[(l >> 2) + 8]]);
    const b0 = movtrans(lanes.map((l) => [h16(p[l][0] * s[l >> 2]), h16(p[l][1] * s[l >> 2])]));
    const b1 = movtrans(lanes.map((l) => [h16(p[l][2] * s[(l >> 2) + 8]), h16(p[l][3] * s[(l >> 2) + 8])]));
    const PB = lanes.map((l) => [...b0[l], ...b1[l]]);
    const oacc: number[][][] = [];
    for (let i2 = 0; i2 < NGV; i2++) {
      for (let k = 0; k < 4; k++) {
        const A = lanes.map((l) => {
          const g = l >> 2, c = l & 3, d = 8 * (g + 8 * i2) + 2 * k;
          const [ta, tb, tc, td] = [2 * c, 2 * c + 1, 2 * c + 8, 2 * c + 9];
          return [
            vc[ta][d] * 2 ** -24,
            vc[tb][d] * 2 ** -24,
            16 * vc[ta][d + 1] * 2 ** -24,
            16 * vc[tb][d + 1] * 2 ** -24,
            vc[tc][d] * 2 ** -24,
            vc[td][d] * 2 ** -24,
            16 * vc[tc][d + 1] * 2 ** -24,
            16 * vc[td][d + 1] * 2 ** -24,
          ];
        });
        oacc[4 * i2 + k] = mma(A, PB, lanes.map(() => [0, 0, 0, 0]));
      }
    }
    const out = Array.from({ length: G }, () => new Array(D).fill(NaN));
    for (const l of lanes) {
      const g = l >> 2, c = l & 3;
      for (let e = 0; e < 2; e++) {
        const col = 2 * c + e;
        if (col >= G) continue;
        const sameCol = lanes.filter((o) => (o & 3) === c);
        const L = sameCol.reduce((a, o) => a + l2[o][e], 0), pz = sameCol.reduce((a, o) => a + plo[o][e], 0);
        for (let i2 = 0; i2 < NGV; i2++) {
          for (let k = 0; k < 4; k++) {
            const d0 = 8 * (g + 8 * i2);
            out[col][d0 + 2 * k] = (oacc[4 * i2 + k][l][e] * 2 ** 24 + pz) / L;
            out[col][d0 + 2 * k + 1] = (oacc[4 * i2 + k][l][2 + e] * 2 ** 20 + pz) / L;
          }
        }
      }
    }
    // ---- direct attention over the tile
    for (let h = 0; h < G; h++) {
      const sc = kc.map((kr, t) => {
        const cv = kr.map((i) => C[i]);
        const norm = nc ? Math.sqrt(cv.reduce((a, v) => a + h16(v * v), 0)) : 1;
        return t < valid ? (n[t] / norm) * cv.reduce((a, v, d) => a + v * q[h][d], 0) * scale : -Infinity;
      });
      const mx = Math.max(...sc), w = sc.map((v) => 2 ** (v - mx)), W = w.reduce((a, b) => a + b, 0);
      for (let d = 0; d < D; d++) {
        const ref = w.reduce((a, wt, t) => a + wt * (vc[t][d] * s[t] + z[t]), 0) / W;
        assert.ok(
          Math.abs(out[h][d] - ref) <= 2e-3 * (1 + Math.abs(ref)),
          `D=${D} G=${G} head ${h} dim ${d}: ${out[h][d]} vs ${ref} (seed ${rng.seed})`,
        );
      }
    }
  }
});

/** PTX prmt.b32 (default mode): byte i of the result = byte s_i of {b, a} (bit 3 of s_i replicates the sign). */
function prmt(a: number, b: number, s: number): number {
  const bytes = [0, 8, 16, 24].map((k) => (a >>> k) & 255).concat([0, 8, 16, 24].map((k) => (b >>> k) & 255));
  let r = 0;
  for (let i = 0; i < 4; i++) {
    const sel = (s >>> (4 * i)) & 15;
    r |= (sel & 8 ? (bytes[sel & 7] & 128 ? 255 : 0) : bytes[sel & 7]) << (8 * i);
  }
  return r >>> 0;
}

Deno.test("turboquant decode (emulated stage): every lane's key and value groups read back the slot's codes", () => {
  const rng = new Rng();
  const cases = [
    ["turboquant_k3v4_nc", 128, 8, 4, 16],
    ["turboquant_3bit_nc", 64, 3, 2, 32],
    ["turboquant_3bit_nc", 256, 2, 4, 16],
    ["turboquant_4bit_nc", 128, 6, 4, 32],
  ] as const;
  for (const [preset, D, Hk, G, BS] of cases) {
    const l = turboQuantLayout(preset, D), kb = l.keyBits, vb = l.valueBits, SLOT = l.slotBytesAligned;
    const o = { layout: l, inDtype: "bf16" as const, numHeads: Hk * G, numKvHeads: Hk, blockSize: BS };
    const src = tqDecodeKernel(o).source, geo = tqDecodeGeometry(o);
    const HG = geo.headsPerCta, RP = geo.rowPitch, rowbytes = Hk * SLOT, numBlocks = 3;
    // the kernel's own group-start lines (C integer expressions that are valid JS once the u suffixes go)
    const starts = [...src.matchAll(/const int (\w+) = (.+?); const u32 \1_sh = (.+?);/g)]
      .map(([, n, e, sh]) => [n, e, sh.replace(/(0x[0-9a-f]+|\d+)u\b/g, "$1")] as const);
    assert.deepEqual(starts.map(([n]) => n), ["q0", "q1", "va", "vb", "vc", "vd"]);
    // the loader's body: its load statement evaluated as JS (u32: >> is >>>), then its spread steps
    const body = (fn: string) =>
      src.slice(src.indexOf(`u32 ${fn}(`), src.indexOf("return w;", src.indexOf(`u32 ${fn}(`)));
    const loader = (fn: string, st: Uint8Array, pe: number, sel: number) => {
      const b = body(fn),
        load = b.match(/u32 w = (.+?);/)![1].replace(/(0x[0-9a-f]+|\d+)u\b/g, "$1")
          .replace(/>>(?!>)/g, ">>>");
      const ld2 = (p: number) => {
        assert.equal(p % 2, 0, `${fn}: 2-byte shared load at odd offset ${p}`);
        return st[p] | (st[p + 1] << 8);
      };
      let w = new Function("pe", "sel", "sh", "ld2", "prmt", `return (${load}) >>> 0;`)(
        pe,
        sel,
        sel,
        ld2,
        prmt,
      );
      for (const m of b.matchAll(/w \+= \(w & (0x[0-9a-f]+)u\) \* (\d+)u;/g)) {
        w = (w + Math.imul(w & Number(m[1]), Number(m[2]))) >>> 0;
      }
      return Array.from({ length: 8 }, (_, i) => (w >>> (4 * i)) & 15);
    };
    const cache = new Uint8Array(numBlocks * BS * rowbytes).map(() => rng.int(0, 256));
    for (let hgrp = 0; hgrp < Hk / HG; hgrp++) {
      const hoff = hgrp * HG * SLOT;
      for (const [blk, tb] of [[1, 0], [2, BS - 16]]) {
        // load_tile: row lr of the stage holds cache[src − mis, +16·nch), garbage around it
        const stage = new Uint8Array(16 * RP).map(() => rng.int(0, 256));
        for (let lr = 0; lr < 16; lr++) {
          const s = blk * BS * rowbytes + ((tb % BS) + lr) * rowbytes + hoff, mis = s & 15;
          const nch = (mis + HG * SLOT + 15) >> 4;
          stage.set(cache.subarray(s - mis, s - mis + 16 * nch), lr * RP);
        }
        for (let warp = 0; warp < HG; warp++) {
          const h = hgrp * HG + warp;
          const slotAt = (row: number) => (blk * BS + (tb % BS) + row) * rowbytes + h * SLOT;
          const keys = (row: number) => unpackBits(cache, D, kb, slotAt(row) + l.offsets.keyCodes);
          const vals = (row: number) => unpackBits(cache, D, vb, slotAt(row) + l.offsets.valueCodes);
          for (let lane = 0; lane < 32; lane++) {
            const g = lane >> 2, c = lane & 3;
            const env: Record<string, number> = { RP, rowbytes, hoff, warp, SLOT, g, c };
            const rowOff = (r: number) =>
              new Function(...Object.keys(env), "r", `return ${TQ_DECODE_ROW_OFF};`)(
                ...Object.values(env),
                r,
              );
            Object.assign(env, { o_k0: rowOff(g), o_k1: rowOff(g + 8) });
            for (const [n, e, sh] of starts) {
              const f = (x: string) =>
                new Function(...Object.keys(env), "row_off", `return ${x};`)(...Object.values(env), rowOff);
              const [at, sel] = [f(e), f(sh)];
              env[n] = at;
              env[`${n}_sh`] = sel;
            }
            const what = `${preset} D=${D} Hk=${Hk} head ${h} lane ${lane} (seed ${rng.seed})`;
            for (let i = 0; i < D / 32; i++) {
              for (const [q, row] of [["q0", g], ["q1", g + 8]] as const) {
                const got = loader("key_group", stage, env[q] + 4 * kb * i, env[`${q}_sh`]);
                const want = Array.from(keys(row).subarray(8 * (c + 4 * i), 8 * (c + 4 * i) + 8));
                assert.deepEqual(got, want, `${what}: key group ${c + 4 * i} of row ${row}`);
              }
            }
            for (let i2 = 0; i2 < D / 64; i2++) {
              for (
                const [v, row] of [["va", 2 * c], ["vb", 2 * c + 1], ["vc", 2 * c + 8], [
                  "vd",
                  2 * c + 9,
                ]] as const
              ) {
                const got = loader("val_group", stage, env[v] + 8 * vb * i2, env[`${v}_sh`]);
                const want = Array.from(vals(row).subarray(8 * (g + 8 * i2), 8 * (g + 8 * i2) + 8));
                assert.deepEqual(got, want, `${what}: value group ${g + 8 * i2} of row ${row}`);
              }
            }
          }
        }
      }
    }
  }
});

// ---- host emulation of the decode kernel's bit tricks
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

Deno.test("turboquant codegen: emulated value operand — x & mask is the f16 subnormal code·2^-24 (low) / 16·code·2^-24 (high)", () => {
  for (let a = 0; a < 256; a += 7) {
    for (let b = 0; b < 256; b += 13) {
      const x = (a | (b << 16)) >>> 0;
      const lo = (x & 0x000f000f) >>> 0, hi = (x & 0x00f000f0) >>> 0;
      assert.equal(f16Decode(lo & 0xffff) * 2 ** 24, a & 15);
      assert.equal(f16Decode(lo >>> 16) * 2 ** 24, b & 15);
      assert.equal(f16Decode(hi & 0xffff) * 2 ** 20, a >> 4);
      assert.equal(f16Decode(hi >>> 16) * 2 ** 20, b >> 4);
    }
  }
});
