/**
 * The v2 small-M kernel without a GPU: (1) the integer-pipe e4m3 → f16 conversion is exact (× 2^-8) for
 * every finite code; (2) a lane-by-lane emulation of the kernel's data flow — the persistent tile schedule,
 * the register ring's (tile, K block) order, each lane's 16-byte chunks, the conversions and their k order,
 * the mma.sync fragment layouts from the PTX ISA (m16n8k16 f16 on sm_90, m16n8k32 raw on Ada / int8), the
 * promotion, the split-K partials in shared memory and the epilogue's (row, token) → (fragment, lane) map —
 * reproduces the float64 reference and writes every output exactly once; (3) the chooser's shapes fit.
 * @module
 */
import assert from "node:assert/strict";
import { f16Decode, FP8E4M3_VALUES } from "../../dsl/dtype.ts";
import { blockMatmulOp, blockMatmulReference, type ScaleMode } from "../../dsl/ops/block_matmul.ts";
import {
  type SmallMStreamConfig,
  smallMStreamConfig,
  smallMStreamKernel,
  smallMStreamModelUs,
  streamTiles,
} from "../../codegen/kernels/gemm_small_m_stream.ts";
import { compileFor } from "../../runtime/jit.ts";
import { ptxasReport } from "../../runtime/nvrtc.ts";
import { compileTest } from "../_util.ts";
import { Rng } from "../../testing/random.ts";
import { hostProblem } from "../ops/_gemm_data.ts";

/** The kernel's `e4m3x4_to_f16_int` on one 32-bit word: [even, odd] f16x2 bit patterns. */
function cvtInt(w: number): [number, number] {
  const even = (((w << 8) & 0x80008000) | ((w << 7) & 0x3f803f80)) >>> 0;
  const odd = ((w & 0x80008000) | ((w >>> 1) & 0x3f803f80)) >>> 0;
  return [even, odd];
}

Deno.test("integer-pipe e4m3 → f16 is exact × 2^-8 for every finite code, normals and denormals", () => {
  for (let c = 0; c < 256; c++) {
    if ((c & 0x7f) === 0x7f) continue; // NaN codes: never produced by the quantizers
    const want = FP8E4M3_VALUES[c] * 2 ** -8;
    for (const pos of [0, 1, 2, 3]) {
      const [even, odd] = cvtInt(c << (8 * pos));
      const half = pos === 0
        ? even & 0xffff
        : pos === 2
        ? even >>> 16
        : pos === 1
        ? odd & 0xffff
        : odd >>> 16;
      assert.equal(f16Decode(half), want, `code 0x${c.toString(16)} in byte ${pos}`);
      // the other halves stay zero
      const others = [even & 0xffff, even >>> 16, odd & 0xffff, odd >>> 16].filter((h) => h !== half);
      for (const h of others) assert.equal(h & 0x7fff, 0, `byte ${pos} leaks into another half`);
    }
  }
});

/** Values of one lane's four bytes at `off` of `src`, split the way the kernel pairs them. */
type Path = "int" | "raw"; // int: sm_90 (bit move for weights, prmt + F2FP for tokens); raw: k32 fragments

/**
 * Emulate the v2 kernel on host operands. Returns the output (NaN where never written) and a write count.
 * `path` picks the sm_90 conversion path or the raw k32 path (Ada e4m3 / int8).
 */
function emulate(
  mode: ScaleMode,
  N: number,
  K: number,
  M: number,
  cfg: SmallMStreamConfig,
  d: { a: Uint8Array; lda: number; sa: Float32Array; sas: number; b: Uint8Array; sb: Float32Array },
  path: Path,
): { out: Float64Array; writes: Uint8Array } {
  const KBN = K / 128, W = cfg.wk, IT = KBN / W, ROWS = 16 * cfg.rt, TILES = streamTiles(N, cfg);
  const RT = cfg.rt, NT = cfg.nt, NFRAG = RT * NT * 4, CH = RT * NT === 1 ? 2 : 1;
  const wscale = path === "int" ? 256 : 1;
  const val = (code: number) => mode === "int8" ? (code << 24) >> 24 : FP8E4M3_VALUES[code];
  const out = new Float64Array(M * N).fill(NaN), writes = new Uint8Array(M * N);
  const word = (src: Uint8Array, off: number) =>
    (src[off] | (src[off + 1] << 8) | (src[off + 2] << 16) | (src[off + 3] << 24)) >>> 0;
  for (let blk = 0; blk < cfg.ctas; blk++) {
    const Q = (Math.floor((TILES - 1 - blk) / cfg.ctas) + 1) * IT;
    const acc = Array.from({ length: W }, () => Array.from({ length: 32 }, () => new Float64Array(NFRAG)));
    const smem = [0, 1].map(() => new Float64Array(W * NFRAG * 32));
    let lTile = blk, lJ = 0, cJ = 0, cTile = blk, buf = 0;
    for (let q = 0; q < Q; q++) {
      const tile = lTile, j = lJ; // the ring is FIFO: chunk q is computed from load q
      if (++lJ === IT) [lJ, lTile] = [0, lTile + cfg.ctas];
      for (let warp = 0; warp < W; warp++) {
        const kb = warp + W * j, n0 = tile * ROWS;
        const tmp = Array.from(
          { length: CH },
          () => Array.from({ length: 32 }, () => new Float64Array(NFRAG)),
        );
        // one mma step: A[16 rows][kk], B[kk][8 tokens] from per-lane (row, slot) and (slot, token) writers
        const mma = (
          ch: number,
          r: number,
          nt: number,
          kk: number,
          fill: (lane: number, A: Float64Array[], B: Float64Array[]) => void,
        ) => {
          const A = Array.from({ length: 16 }, () => new Float64Array(kk));
          const B = Array.from({ length: kk }, () => new Float64Array(8));
          for (let lane = 0; lane < 32; lane++) fill(lane, A, B);
          for (let lane = 0; lane < 32; lane++) {
            const g = lane >> 2, t = lane & 3;
            for (let e = 0; e < 4; e++) {
              const row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
              let s = 0;
              for (let k = 0; k < kk; k++) s += A[row][k] * B[k][col];
              tmp[ch][lane][(r * NT + nt) * 4 + e] += s;
            }
          }
        };
        const wOff = (lane: number, r: number, h: number, c: number) =>
          Math.min(n0 + 16 * r + 8 * h + (lane >> 2), N - 1) * K + 16 * (lane & 3) + kb * 128 + 64 * c;
        const xOff = (lane: number, nt: number, c: number) =>
          Math.min(8 * nt + (lane >> 2), M - 1) * d.lda + 16 * (lane & 3) + kb * 128 + 64 * c;
        for (let c = 0; c < 2; c++) {
          if (path === "int") {
            for (let jw = 0; jw < 4; jw++) {
              for (let nt = 0; nt < NT; nt++) {
                for (let r = 0; r < RT; r++) {
                  mma(c % CH, r, nt, 16, (lane, A, B) => {
                    const g = lane >> 2, t = lane & 3;
                    for (let h = 0; h < 2; h++) {
                      const [ev, od] = cvtInt(word(d.b, wOff(lane, r, h, c) + 4 * jw));
                      // a0/a1 = even (k 2t, 2t+1) of rows g / g+8; a2/a3 = odd (k 2t+8, 2t+9)
                      A[g + 8 * h][2 * t] = f16Decode(ev & 0xffff);
                      A[g + 8 * h][2 * t + 1] = f16Decode(ev >>> 16);
                      A[g + 8 * h][2 * t + 8] = f16Decode(od & 0xffff);
                      A[g + 8 * h][2 * t + 9] = f16Decode(od >>> 16);
                    }
                    // tokens: prmt 0x3120 → bytes (0, 2, 1, 3), F2FP low byte → low half (exact values)
                    const o = xOff(lane, nt, c) + 4 * jw;
                    B[2 * t][g] = val(d.a[o]);
                    B[2 * t + 1][g] = val(d.a[o + 2]);
                    B[2 * t + 8][g] = val(d.a[o + 1]);
                    B[2 * t + 9][g] = val(d.a[o + 3]);
                  });
                }
              }
            }
          } else {
            for (let jj = 0; jj < 2; jj++) {
              for (let nt = 0; nt < NT; nt++) {
                for (let r = 0; r < RT; r++) {
                  mma(c % CH, r, nt, 32, (lane, A, B) => {
                    const g = lane >> 2, t = lane & 3;
                    for (let h = 0; h < 2; h++) {
                      const o = wOff(lane, r, h, c) + 8 * jj; // words 2jj (k 4t..) and 2jj+1 (k 16+4t..)
                      for (let i = 0; i < 4; i++) {
                        A[g + 8 * h][4 * t + i] = val(d.b[o + i]);
                        A[g + 8 * h][16 + 4 * t + i] = val(d.b[o + 4 + i]);
                      }
                    }
                    const o = xOff(lane, nt, c) + 8 * jj;
                    for (let i = 0; i < 4; i++) {
                      B[4 * t + i][g] = val(d.a[o + i]);
                      B[16 + 4 * t + i][g] = val(d.a[o + 4 + i]);
                    }
                  });
                }
              }
            }
          }
        }
        // promotion
        for (let lane = 0; lane < 32; lane++) {
          const t = lane & 3;
          for (let r = 0; r < RT; r++) {
            for (let nt = 0; nt < NT; nt++) {
              for (let e = 0; e < 4; e++) {
                const i = (r * NT + nt) * 4 + e;
                const v = tmp[0][lane][i] + (CH === 2 ? tmp[1][lane][i] : 0);
                if (mode === "block") {
                  const sb = d.sb[(n0 >> 7) * KBN + kb] * wscale;
                  const sa = d.sa[kb * d.sas + Math.min(8 * nt + 2 * t + (e & 1), M - 1)];
                  acc[warp][lane][i] += v * sb * sa;
                } else acc[warp][lane][i] += v;
              }
            }
          }
        }
      }
      if (++cJ === IT) {
        cJ = 0;
        for (let warp = 0; warp < W; warp++) {
          for (let lane = 0; lane < 32; lane++) {
            for (let i = 0; i < NFRAG; i++) {
              smem[buf][(warp * NFRAG + i) * 32 + lane] = acc[warp][lane][i];
              acc[warp][lane][i] = 0;
            }
          }
        }
        const n0 = cTile * ROWS;
        for (let e = 0; e < 8 * NT * (ROWS / 2); e++) {
          const m = Math.floor(e / (ROWS / 2)), row = 2 * (e % (ROWS / 2)), n = n0 + row;
          if (!(m < M && n < N)) continue;
          const r = row >> 4, gg = row & 7, jh = (row >> 3) & 1, nt = m >> 3, tt = (m & 7) >> 1, jl = m & 1;
          const i0 = ((r * NT + nt) << 2) | (jh << 1) | jl, ln0 = (gg << 2) | tt;
          let v0 = 0, v1 = 0;
          for (let w = 0; w < W; w++) {
            v0 += smem[buf][(w * NFRAG + i0) * 32 + ln0];
            v1 += smem[buf][(w * NFRAG + i0) * 32 + ln0 + 4];
          }
          const post = (v: number, col: number) => {
            if (mode === "block") return v;
            const s = mode === "tensor" ? d.sa[0] * d.sb[0] : d.sa[m] * d.sb[col];
            return v * wscale * s;
          };
          out[m * N + n] = post(v0, n);
          writes[m * N + n]++;
          if (n + 1 < N) {
            out[m * N + n + 1] = post(v1, n + 1);
            writes[m * N + n + 1]++;
          }
        }
        buf ^= 1;
        cTile += cfg.ctas;
      }
    }
  }
  return { out, writes };
}

function check(mode: ScaleMode, N: number, K: number, M: number, cfg: SmallMStreamConfig, path: Path) {
  const rng = new Rng();
  const rows = M + 3; // A is row-padded: rows ≥ M are never read for real tokens
  const p = hostProblem(rng, mode, N, K, rows);
  const { out, writes } = emulate(mode, N, K, M, cfg, {
    a: new Uint8Array(p.a.buffer, p.a.byteOffset, p.a.length),
    lda: K,
    sa: p.aScales,
    sas: p.P,
    b: new Uint8Array(p.b.buffer, p.b.byteOffset, p.b.length),
    sb: p.bScales,
  }, path);
  for (let i = 0; i < M * N; i++) {
    assert.equal(
      writes[i],
      1,
      `out[${Math.floor(i / N)}, ${i % N}] written ${writes[i]} times (seed ${rng.seed})`,
    );
  }
  const ref = blockMatmulReference({ ...p, M });
  let num = 0, den = 0;
  for (let i = 0; i < M * N; i++) [num, den] = [num + (out[i] - ref[i]) ** 2, den + ref[i] ** 2];
  assert.ok(Math.sqrt(num / den) < 1e-12, `${JSON.stringify(cfg)} ${path}: rel err ${Math.sqrt(num / den)}`);
}

Deno.test("v2 emulation matches the float64 reference: every tile shape, ragged N and M, both paths", () => {
  // ragged N (last tile clamped), several tiles per CTA (persistent loop, both smem buffers), IT > 1 and IT = 1
  check("block", 200, 512, 3, { rt: 1, nt: 1, wk: 2, stages: 3, perSm: 1, ctas: 5 }, "int");
  check("block", 200, 512, 8, { rt: 1, nt: 1, wk: 4, stages: 2, perSm: 1, ctas: 13 }, "int");
  check("block", 130, 256, 13, { rt: 1, nt: 2, wk: 1, stages: 3, perSm: 1, ctas: 3 }, "int");
  check("block", 96, 384, 16, { rt: 2, nt: 2, wk: 3, stages: 2, perSm: 1, ctas: 2 }, "int");
  check("block", 70, 256, 29, { rt: 1, nt: 4, wk: 2, stages: 2, perSm: 1, ctas: 2 }, "int");
  check("tensor", 72, 256, 5, { rt: 2, nt: 1, wk: 1, stages: 2, perSm: 1, ctas: 2 }, "int");
  check("channel", 40, 256, 11, { rt: 1, nt: 2, wk: 2, stages: 2, perSm: 1, ctas: 1 }, "int");
  check("block", 200, 512, 7, { rt: 1, nt: 1, wk: 2, stages: 3, perSm: 1, ctas: 5 }, "raw");
  check("int8", 100, 256, 12, { rt: 2, nt: 2, wk: 1, stages: 2, perSm: 1, ctas: 3 }, "raw");
  check("block", 256, 512, 1, smallMStreamConfig(1, 256, 512), "int");
});

Deno.test("v2 chooser: shapes divide K, fit the register file and cover every tile; the model prefers it to v1's waves", () => {
  for (const [N, K] of [[4096, 7168], [7168, 2048], [24576, 1536], [2112, 7168], [7168, 16384], [256, 512]]) {
    for (const M of [1, 2, 3, 4, 5, 7, 8, 13, 16, 17, 31, 32]) {
      const c = smallMStreamConfig(M, N, K);
      assert.ok(8 * c.nt >= M, `${M}x${N}x${K}: nt ${c.nt}`);
      assert.equal((K / 128) % c.wk, 0);
      assert.ok(c.ctas <= streamTiles(N, c) && c.ctas <= c.perSm * 132);
      assert.ok(c.wk * c.perSm <= 16);
      assert.ok(Number.isFinite(smallMStreamModelUs(N, K, c)));
    }
  }
  const c = smallMStreamConfig(1, 2112, 7168);
  assert.equal(c.ctas, 132, "2112 rows: one 16-row tile per SM");
  // 15 MB streams in ≤ 1.4× its 4 TB/s time by the model (latency + epilogue on top)
  assert.ok(smallMStreamModelUs(2112, 7168, c) < 1.4 * (2112 * 7168) / 4e6);
});

compileTest("v2 kernels of the benchmark shapes (M = 1, 16) compile for sm_90a without spills", async () => {
  for (const [N, K] of [[4096, 7168], [7168, 2048], [24576, 1536], [2112, 7168], [7168, 16384], [256, 512]]) {
    for (const M of [1, 16]) {
      const ks = smallMStreamKernel(blockMatmulOp({ N, K }), smallMStreamConfig(M, N, K));
      const { log } = await compileFor(ks, "sm_90a");
      const rep = ptxasReport(log ?? "");
      assert.equal(rep.length, 1, log);
      assert.equal(rep[0].spillBytes, 0, `${ks.name}: spills\n${log}`);
      assert.equal(rep[0].stackBytes, 0, `${ks.name}: stack\n${log}`);
      assert.ok(!/warning/i.test(log ?? ""), `${ks.name}: warnings\n${log}`);
    }
  }
});
