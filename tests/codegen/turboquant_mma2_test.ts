/**
 * Host emulation of the version-2 tensor-core TurboQuant decode (`codegen/kernels/tq_decode_v2.ts`):
 * the per-warp tile copy (its own C lines evaluated as JS: every 16-byte global read aligned and inside
 * the cache, every shared write inside the warp's stage row), the fragment offsets reading back the
 * slot's key codes, norm, scale and zero, and the value block — its PRMT windows and LOP3 masks run as
 * JS — giving the f16 subnormal `code·2^(p−24)` for every (token, dim) the MMA rows stand for, with the
 * epilogue's 2^(24−p).
 */
import assert from "node:assert/strict";
import { f16Decode } from "../../dsl/dtype.ts";
import { turboQuantLayout, unpackBits } from "../../dsl/turboquant/mod.ts";
import {
  TQ_DECODE2_ROW_OFF,
  tqDecodeV2Geometry,
  tqDecodeV2Kernel,
} from "../../codegen/kernels/tq_decode_v2.ts";
import { valueFields, windowSelector } from "../../codegen/kernels/tq_decode_v2_parts.ts";
import { Rng } from "../../testing/mod.ts";

/** PTX prmt.b32 (default mode). */
function prmt(a: number, b: number, s: number): number {
  const bytes = [0, 8, 16, 24].map((k) => (a >>> k) & 255).concat([0, 8, 16, 24].map((k) => (b >>> k) & 255));
  let r = 0;
  for (let i = 0; i < 4; i++) {
    const sel = (s >>> (4 * i)) & 15;
    r |= (sel & 8 ? (bytes[sel & 7] & 128 ? 255 : 0) : bytes[sel & 7]) << (8 * i);
  }
  return r >>> 0;
}

/** C integer expression → JS (drop casts and u suffixes; `>>` on u32 values is `>>>`). */
const js = (e: string) =>
  e.replace(/\((long long|int|u32|unsigned)\)/g, "").replace(/(0x[0-9a-f]+|\d+)u\b/g, "$1").replace(
    /\blong long\b/g,
    "",
  );
const line = (src: string, re: RegExp) => {
  const m = src.match(re);
  assert.ok(m, `kernel source has ${re}`);
  return m!;
};

Deno.test("turboquant decode v2 (emulated): per-warp tile copy and fragment offsets read back every slot", () => {
  const rng = new Rng();
  const cases = [
    ["turboquant_4bit_nc", 128, 8, 4, 16],
    ["turboquant_k8v4", 128, 8, 4, 32],
    ["turboquant_k3v4_nc", 64, 6, 2, 16],
    ["turboquant_3bit_nc", 256, 2, 4, 64],
    ["turboquant_3bit_nc", 128, 3, 4, 16],
  ] as const;
  for (const [preset, D, Hk, G, BS] of cases) {
    const l = turboQuantLayout(preset, D), SLOT = l.slotBytesAligned, rowbytes = Hk * SLOT;
    const o = { layout: l, inDtype: "bf16" as const, numHeads: Hk * G, numKvHeads: Hk, blockSize: BS };
    const src = tqDecodeV2Kernel(o).source, geo = tqDecodeV2Geometry(o);
    const RPW = geo.rowPitch, WST = geo.warpStage, numBlocks = 3;
    const cache = new Uint8Array(numBlocks * BS * rowbytes).map(() => rng.int(0, 256));
    // the kernel's own per-lane copy plan
    const lrowE = js(line(src, /const int lrow = (.+?);/)[1]);
    const lmisE = line(src, /const int lmis = (.+?), lnch = (.+?);/);
    const lsrcE = js(line(src, /const unsigned char\* lsrc = cache \+ \((.+?)\);/)[1]);
    const ldstE = js(line(src, /const u32 ldst = smem_u32\(wsm\) \+ (.+?);/)[1]);
    const fromE = js(line(src, /const unsigned char\* from = lsrc \+ (.+?);/)[1]);
    const [, kN, minK] = line(
      src,
      /for \(int k = 0; k < (\d+); \+\+k\).*\n\s+if \(k < (\d+) \|\| lj \+ 2 \* k < lnch\)/,
    );
    const ev = (e: string, env: Record<string, number>) =>
      new Function(...Object.keys(env), `return ${e};`)(...Object.values(env)) as number;
    const starts = [...src.matchAll(/const int (\w+) = (.+?); const u32 \1_sh = (.+?);/g)]
      .map(([, n, e, sh]) => [n, js(e), js(sh)] as const);
    for (let h = 0; h < Hk; h++) {
      for (const [page, tb] of [[1, 0], [2, BS - 16]]) {
        const stage = new Uint8Array(WST).fill(0xee);
        const written = new Uint8Array(WST);
        for (let lane = 0; lane < 32; lane++) {
          const env: Record<string, number> = {
            lane,
            lr: lane >> 1,
            lj: lane & 1,
            h,
            rowbytes,
            SLOT,
            RPW,
            BS,
            tb,
          };
          env.lrow = ev(lrowE, env);
          env.lmis = ev(js(lmisE[1]), env);
          env.lnch = ev(js(lmisE[2]), env);
          const lsrc = ev(lsrcE, env), ldst = ev(ldstE, env), from = lsrc + ev(fromE, { ...env, page });
          for (let k = 0; k < Number(kN); k++) {
            if (!(k < Number(minK) || env.lj + 2 * k < env.lnch)) continue;
            const s = from + 32 * k,
              d = ldst + 32 * k,
              what = `${preset} D=${D} Hk=${Hk} h=${h} lane ${lane} k ${k}`;
            assert.equal(s % 16, 0, `${what}: global address ${s} not 16-byte aligned`);
            assert.ok(s >= 0 && s + 16 <= cache.length, `${what}: global read [${s}, +16) outside the cache`);
            assert.ok(d + 16 <= (env.lr + 1) * RPW, `${what}: shared write [${d}, +16) past row ${env.lr}`);
            for (let i = 0; i < 16; i++) {
              assert.equal(written[d + i]++, 0, `${what}: byte ${d + i} written twice`);
            }
            stage.set(cache.subarray(s, s + 16), d);
          }
        }
        // every byte of the slot in each row arrived, where TQ_DECODE2_ROW_OFF says
        const slotAt = (r: number) => (page * BS + (tb % BS) + r) * rowbytes + h * SLOT;
        const rowOff = (r: number) => ev(js(TQ_DECODE2_ROW_OFF), { r, RPW, rowbytes, h, SLOT });
        for (let r = 0; r < 16; r++) {
          assert.deepEqual(
            stage.subarray(rowOff(r), rowOff(r) + SLOT),
            cache.subarray(slotAt(r), slotAt(r) + SLOT),
            `${preset} h=${h} row ${r}`,
          );
          if (l.keyFp8) assert.equal(rowOff(r) % 4, 0, "fp8 keys are read 4 bytes at a time");
        }
        // fragment starts (the kernel's group-start lines) point at the right codes
        for (let lane = 0; lane < 32; lane++) {
          const g = lane >> 2, c = lane & 3;
          const env: Record<string, number> = { g, c, o_k0: rowOff(g), o_k1: rowOff(g + 8) };
          const rowOffF = (r: number) => rowOff(r);
          for (const [n, e, sh] of starts) {
            env[n] = new Function(...Object.keys(env), "row_off", `return ${e};`)(
              ...Object.values(env),
              rowOffF,
            );
            env[`${n}_sh`] = new Function(...Object.keys(env), "row_off", `return ${sh};`)(
              ...Object.values(env),
              rowOffF,
            );
          }
          const vb = l.valueBits;
          for (
            const [v, row] of [["va", 2 * c], ["vb", 2 * c + 1], ["vc", 2 * c + 8], [
              "vd",
              2 * c + 9,
            ]] as const
          ) {
            for (let i2 = 0; i2 < D / 64; i2++) {
              const gi = g + 8 * i2, want = unpackBits(cache, D, vb, slotAt(row) + l.offsets.valueCodes);
              const at = env[v] + 8 * vb * i2;
              assert.equal(at % 2, 0, "value groups are read 2 bytes at a time");
              const w = vb === 3
                ? prmt(stage[at] | (stage[at + 1] << 8), stage[at + 2] | (stage[at + 3] << 8), env[`${v}_sh`])
                : (stage[at] | (stage[at + 1] << 8) | (stage[at + 2] << 16) | (stage[at + 3] << 24)) >>> 0;
              for (let i = 0; i < 8; i++) {
                assert.equal(
                  (w >>> (vb * i)) & ((1 << vb) - 1),
                  want[8 * gi + i],
                  `${preset} value ${gi}.${i} row ${row}`,
                );
              }
            }
          }
        }
      }
    }
  }
});

Deno.test("turboquant decode v2 (emulated): the value block's PRMT windows and masks give the f16 subnormal code·2^(p−24)", () => {
  const rng = new Rng();
  for (const vb of [4, 3, 2, 1]) {
    const f = valueFields(vb);
    for (let i = 0; i < 8; i++) {
      assert.ok(
        ((1 << vb) - 1) * 2 ** f[i].p < 1024,
        `${vb}-bit code ${i}: an f16 subnormal (zero exponent)`,
      );
    }
    const preset = vb === 3 ? "turboquant_3bit_nc" : "turboquant_4bit_nc";
    const src = vb > 2
      ? tqDecodeV2Kernel({
        layout: turboQuantLayout(preset, 128),
        inDtype: "bf16",
        numHeads: 32,
        numKvHeads: 8,
        blockSize: 16,
      }).source
      : undefined;
    if (src) {
      // the epilogue undoes 2^(p−24) row by row: v[2j] ← code 2j (row g), v[2j+1] ← code 2j+1 (row g+8)
      for (
        const m of src.matchAll(
          /v\[(\d)\] = \(oacc\[nt\]\[4 \* i2 \+ (\d)\]\[(2 \+ )?e\] \* 0x1\.000000p(-?\d+)f/g,
        )
      ) {
        const [k, j, hi, ex] = [Number(m[1]), Number(m[2]), !!m[3], Number(m[4])];
        assert.equal(k, 2 * j + (hi ? 1 : 0), `${vb}-bit epilogue line v[${k}]`);
        assert.equal(ex, 24 - f[k].p, `${vb}-bit epilogue scale of code ${k}`);
      }
      assert.equal([...src.matchAll(/\]\[(2 \+ )?e\] \* 0x1\.000000p/g)].length, 8, "8 epilogue scales");
    }
    for (let trial = 0; trial < 50; trial++) {
      // four tokens' 8-code groups (a, b = tokens 2c, 2c+1; c, d = 2c+8, 2c+9)
      const codes = Array.from({ length: 4 }, () => Array.from({ length: 8 }, () => rng.int(0, 1 << vb)));
      const word = codes.map((cs) => cs.reduce((w, x, i) => w + x * 2 ** (vb * i), 0));
      const ops: number[][] = [];
      if (src) {
        // run the generated block: loads → windows → operands
        const blk = src.slice(src.indexOf("for (int i2 = 0; i2 < NGV; ++i2) {  // value"));
        const env: Record<string, number> = {};
        const T = ["va", "vb", "vc", "vd"];
        T.forEach((t, j) => {
          env[`${t}w`] = word[j];
          env[`${t}l`] = word[j] & 0xffff;
          env[`${t}h`] = word[j] >>> 16;
        });
        for (const m of blk.matchAll(/const u32 (x\w+) = prmt\((\w+), (\w+), (0x[0-9a-f]+)u\);/g)) {
          env[m[1]] = prmt(env[m[2]], env[m[3]], Number(m[4]));
        }
        for (const m of blk.matchAll(/const u32 a0 = (.+?), a1 = (.+?), a2 = (.+?), a3 = (.+?);/g)) {
          ops.push([1, 2, 3, 4].map((k) => {
            const v = m[k].match(/^\((\w+) & (0x[0-9a-f]+)u\)$/)!;
            return (env[v[1]] & Number(v[2])) >>> 0;
          }));
          if (ops.length === 4) break;
        }
      } else {
        // 1- and 2-bit widths (no built-in preset): the plan itself
        for (let j = 0; j < 4; j++) {
          ops.push([[0, 2 * j], [0, 2 * j + 1], [1, 2 * j], [1, 2 * j + 1]].map(([pr, i]) => {
            const x = prmt(word[2 * pr], word[2 * pr + 1], windowSelector(f[i].k));
            return (x & ((((1 << vb) - 1) << f[i].p) * 0x10001)) >>> 0;
          }));
        }
      }
      assert.equal(ops.length, 4);
      for (let j = 0; j < 4; j++) {
        // a0: row g (code 2j) of tokens a | b; a1: row g+8 (code 2j+1); a2 / a3: tokens c | d
        for (const [k, pr, i] of [[0, 0, 2 * j], [1, 0, 2 * j + 1], [2, 1, 2 * j], [3, 1, 2 * j + 1]]) {
          const lo = f16Decode(ops[j][k] & 0xffff), hi = f16Decode(ops[j][k] >>> 16);
          const what = `${vb}-bit pair ${j} operand ${k} (seed ${rng.seed})`;
          assert.equal(lo * 2 ** (24 - f[i].p), codes[2 * pr][i], what);
          assert.equal(hi * 2 ** (24 - f[i].p), codes[2 * pr + 1][i], what);
        }
      }
    }
  }
});

Deno.test("turboquant decode v2 (emulated): the key pair table's addresses and contents give (C̃[2j], C̃[2j+1]) per lane bank", () => {
  const rng = new Rng();
  for (const preset of ["turboquant_4bit_nc", "turboquant_k3v4_nc", "turboquant_3bit_nc"]) {
    const layout = turboQuantLayout(preset, 128), kb = layout.keyBits;
    const o = { layout, inDtype: "bf16" as const, numHeads: 32, numKvHeads: 8, blockSize: 16 };
    const src = tqDecodeV2Kernel(o).source, geo = tqDecodeV2Geometry(o);
    assert.equal(geo.tableBytes, 128 << (2 * kb), `${preset}: table bytes`);
    assert.ok(geo.sharedBytes * 2 <= 227 * 1024, `${preset}: two CTAs per SM (${geo.sharedBytes} B)`);
    // the centroid constants and the fill loop, as the kernel writes them
    const kcent = line(src, /__constant__ u16 KCENT\[(\d+)\] = \{([^}]*)\}/)[2].split(",").map((x) =>
      Number(x.trim())
    );
    assert.equal(kcent.length, 1 << kb);
    kcent.forEach((h, c) => {
      const want = layout.centroids![c] * Math.sqrt(128);
      assert.ok(Math.abs(f16Decode(h) - want) <= Math.abs(want) * 2 ** -11, `${preset} C̃[${c}]`);
    });
    // the fill: 16-byte quad i holds 4 copies of entry i >> 3 (32 copies = 8 quads per entry)
    const fill = line(
      src,
      /const int i = [^;]*, e = i >> (\d+);\s*const u32 v = \(u32\)KCENT\[e & (\d+)\] \| \(\(u32\)KCENT\[e >> (\d+)\] << 16\);\s*if \(i < (\d+)\) \(\(uint4\*\)smem\)\[i\] = make_uint4\(v, v, v, v\);/,
    );
    const [qs, fm, fs, nq] = [Number(fill[1]), Number(fill[2]), Number(fill[3]), Number(fill[4])];
    assert.equal(nq * 16, geo.tableBytes, `${preset}: the fill covers the table`);
    const table = new Uint32Array(geo.tableBytes / 4);
    for (let i = 0; i < table.length; i++) {
      const e = (i >> 2) >> qs;
      table[i] = (kcent[e & fm] | (kcent[e >> fs] << 16)) >>> 0;
    }
    // the four loads of kpair, run as JS
    const loads = [
      ...src.matchAll(/h\[(\d)\] = \*\(const u32\*\)\(tab \+ andor<(0x[0-9a-f]+)u>\(([^,]+), lane4\)\);/g),
    ];
    assert.equal(loads.length, 4, `${preset}: 4 pair loads`);
    for (let trial = 0; trial < 200; trial++) {
      const codes = Array.from({ length: 8 }, () => rng.int(0, 1 << kb));
      const w = codes.reduce((a, x, i) => a + x * 2 ** (kb * i), 0) >>> 0;
      const lane = rng.int(0, 32);
      for (const m of loads) {
        const j = Number(m[1]), mask = Number(m[2]);
        const x = new Function("w", `return (${js(m[3]).replace(/>>/g, ">>>")}) >>> 0;`)(w) as number;
        const addr = ((x & mask) | (lane * 4)) >>> 0;
        assert.ok(addr + 4 <= geo.tableBytes, `${preset}: address ${addr} inside the table`);
        assert.equal((addr >> 2) & 31, lane, `${preset}: lane ${lane} reads its own bank`);
        const got = table[addr >> 2];
        assert.equal(got & 0xffff, kcent[codes[2 * j]], `${preset} pair ${j} low half (w ${w.toString(16)})`);
        assert.equal(got >>> 16, kcent[codes[2 * j + 1]], `${preset} pair ${j} high half`);
      }
    }
  }
});
