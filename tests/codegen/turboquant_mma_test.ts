/**
 * Host emulation of one warp of the tensor-core TurboQuant decode (`codegen/kernels/tq_decode.ts`) on
 * one 16-token tile: every lane's fragments are filled the way the kernel fills them (the permuted key
 * dims, the value rows g / g+8 = low / high nibble, P' through `movmatrix`), the MMAs run with the PTX
 * m16n8k16 fragment layouts, and the epilogue undoes the 1024 offset and the ×16 exactly as the kernel
 * does. The result must match attention over the same tile computed directly. This checks the index
 * bookkeeping that a GPU run would otherwise be the first to see (the bit tricks that produce the
 * fragment values are checked in `turboquant_test.ts`).
 */
import assert from "node:assert/strict";
import { f16Decode, f16Encode } from "../../dsl/dtype.ts";
import { Rng } from "../../testing/mod.ts";

const h16 = (x: number) => f16Decode(f16Encode(x));
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
            1024 + vc[ta][d],
            1024 + vc[tb][d],
            1024 + 16 * vc[ta][d + 1],
            1024 + 16 * vc[tb][d + 1],
            1024 + vc[tc][d],
            1024 + vc[td][d],
            1024 + 16 * vc[tc][d + 1],
            1024 + 16 * vc[td][d + 1],
          ];
        });
        oacc[4 * i2 + k] = mma(A, PB, lanes.map(() => [0, 0, 0, 0]));
      }
    }
    const one = mma(lanes.map(() => new Array(8).fill(1024)), PB, lanes.map(() => [0, 0, 0, 0]));
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
            out[col][d0 + 2 * k] = (oacc[4 * i2 + k][l][e] - one[l][e] + pz) / L;
            out[col][d0 + 2 * k + 1] = ((oacc[4 * i2 + k][l][2 + e] - one[l][e]) / 16 + pz) / L;
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
