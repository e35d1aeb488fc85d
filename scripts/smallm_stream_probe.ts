/**
 * Probes (sm_90, issue 5) behind the session-5 small-M findings in bench/RESULTS.md. Graph of 20 calls with
 * PDL, weights rotated past L2, copy bandwidth measured in the same run.
 *   deno run -A scripts/smallm_stream_probe.ts stream   # the memory system's ceiling for a GEMM-shaped stream
 *   deno run -A scripts/smallm_stream_probe.ts conv     # v1 with its weight conversion removed / replaced
 *   deno run -A scripts/smallm_stream_probe.ts trace    # v1's timeline in a call (globaltimer stamps)
 * - stream: each CTA bulk-copies (cp.async.bulk, COPY bytes per copy, default 16 KB) its contiguous slice
 *   of an N×K byte tensor into shared memory before the PDL wait, reads one "token" after it, XORs its
 *   slice and writes one word per warp. Grids of 132–792 CTAs, residency capped at the balanced count and
 *   above it. Nothing but the bytes: what a small-M GEMM could reach per call.
 * - conv: the default v1 kernel as shipped, with the weights passed to the HMMAs unconverted (wrong numbers,
 *   same traffic), and with the shift-based conversion of the v2 kernel (ALU) for all or half of them.
 * - trace: the default v1 kernel with globaltimer stamps (warp 0 of every CTA: start, PDL wait, each K block
 *   done, loop end, split-K reduced, end; the last warp's loop end) in the last call of a graph of 20.
 *
 * @module
 */
import { Device, jit, Tensor } from "../mod.ts";
import { PDL_PRELUDE } from "../codegen/kernels/_pdl.ts";
import { MBAR_HELPERS } from "../codegen/kernels/gemm_sm90/ptx.ts";
import { blockMatmulOp } from "../dsl/ops/block_matmul.ts";
import { smallMConfig, smallMGrid, smallMKernel } from "../codegen/kernels/gemm_small_m.ts";
import { cappedShared, stampStats, uploadSmallM } from "./_smallm.ts";
import { graphUs } from "../bench/gemm.ts";
import { Rng } from "../testing/random.ts";
import { copyBandwidth, printTable, type Row } from "../bench/_util.ts";

const mode = Deno.args[0] ?? "stream";
const dev = Device.get(), copy = await copyBandwidth();
const SHAPES = JSON.parse(
  Deno.env.get("SHAPES") ?? "[[7168,2048],[2112,7168],[4096,7168],[24576,1536],[7168,16384]]",
) as [number, number][];
const rows: Row[] = [];
const pct = (bytes: number, us: number) => (100 * bytes / (us * 1e-6) / copy).toFixed(1);
if (mode === "stream") {
  const CH = 16384, COPY = Number(Deno.env.get("COPY") ?? CH), WARPS = 4;
  const source = `typedef unsigned int u32;
${MBAR_HELPERS}${PDL_PRELUDE}
extern "C" __global__ void __launch_bounds__(${WARPS * 32}) stream_probe(const unsigned char* __restrict__ w,
    const float* __restrict__ x, float* __restrict__ out, long long slice_, long long total) {
  extern __shared__ __align__(128) unsigned char sm[];
  __shared__ __align__(8) unsigned long long bars[64];
  __shared__ u32 stuck;
  const long long slice = min(slice_, total - (long long)blockIdx.x * slice_);
  const int nch = (int)((slice + ${CH} - 1) / ${CH});
  const unsigned char* s = w + (long long)blockIdx.x * slice_;
  const u32 b0 = (u32)__cvta_generic_to_shared(bars), d0 = (u32)__cvta_generic_to_shared(sm);
  if (threadIdx.x == 0) {
    stuck = 0;
    for (int c = 0; c < nch; c++) mbar_init(b0 + 8 * c, 1);
    mbar_init_fence();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int c = 0; c < nch; c++) {
      const u32 sz = (u32)min((long long)${CH}, slice - (long long)c * ${CH});
      mbar_expect_tx(b0 + 8 * c, sz);
      for (u32 o = 0; o < sz; o += ${COPY})
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
          :: "r"(d0 + c * ${CH} + o), "l"(s + (long long)c * ${CH} + o), "r"(min(${COPY}u, sz - o)), "r"(b0 + 8 * c) : "memory");
    }
  }
  kiln_pdl_launch_dependents();
  kiln_pdl_wait();
  const float* xp = kiln_pdl_after(x);
  float xv;
  asm volatile("ld.global.f32 %0, [%1];" : "=f"(xv) : "l"(xp));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  u32 acc = 0;
  for (int c = warp; c < nch; c += ${WARPS}) {
    mbar_wait(b0 + 8 * c, 0, (u32)__cvta_generic_to_shared(&stuck));
    const u32 sz = (u32)min((long long)${CH}, slice - (long long)c * ${CH});
    for (u32 o = lane * 16; o < sz; o += 512) {
      u32 p, q, r, t;
      asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(p), "=r"(q), "=r"(r), "=r"(t) : "r"(d0 + c * ${CH} + o));
      acc ^= p ^ q ^ r ^ t;
    }
  }
  for (int o = 16; o; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane == 0) out[blockIdx.x * ${WARPS} + warp] = __uint_as_float(acc & 0x3fffffffu) + xv;
}
`;
  const k = await jit({
    name: `stream_probe_cp${COPY}`,
    source,
    entry: "stream_probe",
    params: [
      { name: "w", kind: "ptr", dtype: "fp8e4m3", readonly: true },
      { name: "x", kind: "ptr", dtype: "f32", readonly: true },
      { name: "out", kind: "ptr", dtype: "f32" },
      { name: "slice", kind: "i64" },
      { name: "total", kind: "i64" },
    ],
    block: [WARPS * 32, 1, 1],
    sharedBytes: 0,
    pdl: true,
    minArch: 90,
  });
  using x = Tensor.fromHost("f32", [4], new Float32Array([1, 2, 3, 4]));
  for (const [N, K] of SHAPES) {
    const B = N * K, sets = Math.max(1, Math.min(16, Math.ceil((2 * dev.info.l2Bytes) / B)));
    const bufs = Array.from({ length: sets }, () => Tensor.empty("fp8e4m3", [N, K]).fill(0x11));
    for (const G of [132, 264, 396, 528, 792]) {
      const slice = Math.ceil(B / G / 16) * 16;
      if (slice > 200 * 1024 || Math.ceil(slice / CH) > 64) continue;
      using out = Tensor.empty("f32", [G * WARPS]);
      const natural = Math.min(Math.floor(dev.info.maxSharedPerSM / (slice + 2048)), 32);
      for (
        const perSm of [...new Set([Math.ceil(G / 132), Math.ceil(G / 132) + 1, natural])].filter((c) =>
          c <= natural
        )
      ) {
        const sh = Math.min(
          Math.max(slice, Math.floor(dev.info.maxSharedPerSM / (perSm + 1)) - 2048 + 16),
          dev.info.maxSharedPerBlockOptin - 1024,
        );
        const run = (i: number) =>
          k.launch(G, [bufs[i % sets], x, out, BigInt(slice), BigInt(B)], { sharedBytes: sh });
        const us = Math.min(await graphUs(run), await graphUs(run));
        rows.push({
          shape: `${N}x${K}`,
          CTAs: G,
          "slice KB": (slice / 1024).toFixed(1),
          "per SM": perSm,
          "µs": us.toFixed(2),
          "% copy": pct(B, us),
        });
        console.error(JSON.stringify(rows.at(-1)));
      }
    }
    for (const b of bufs) b.dispose();
  }
  printTable(
    `bulk-copy stream probe (${dev.info.name}, copy ${(copy / 1e12).toFixed(2)} TB/s, ${COPY} B per copy)`,
    rows,
  );
} else if (mode === "trace") {
  const rng = new Rng(3);
  const stamp = (i: number | string, who = "warp == 0") =>
    `if (${who} && lane == 0) { unsigned long long t_; asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t_)); ` +
    `((unsigned long long*)(((unsigned long long)(out + 16LL * ldc) + 7) & ~7ull))[blockIdx.x * 16 + (${i})] = t_; }\n`;
  for (const [N, K, M] of [[2112, 7168, 1], [7168, 2048, 1], [4096, 7168, 16]]) {
    const d = uploadSmallM(dev, N, K, rng), { p, sets, bs, sb, a, sa } = d;
    const cfg = smallMConfig(M, N, K, dev.info.smCount), base = smallMKernel(blockMatmulOp({ N, K }), cfg);
    let src = base.source;
    const patch = (from: string, to: string) => {
      if (!src.includes(from)) throw new Error(`the v1 trace anchor moved: ${from}`);
      src = src.replace(from, to);
    };
    patch(
      "  const int n0 = blockIdx.x * (16 * RT);\n",
      "  const int n0 = blockIdx.x * (16 * RT);\n" + stamp(0),
    );
    patch("  xp = (const unsigned char*)a + 16 * t;", stamp(1) + "  xp = (const unsigned char*)a + 16 * t;");
    patch("    compute(s0, it);\n", "    compute(s0, it);\n    if (it < 8) { " + stamp("2 + it") + " }\n");
    patch(
      "    compute(s1, it + 1);\n",
      "    compute(s1, it + 1);\n    if (it < 8) { " + stamp("3 + it") + " }\n",
    );
    patch("  // Split-K reduction", stamp(11) + stamp(12, "warp == WK - 1") + "  // Split-K reduction");
    patch("  // Write out[m][n0 + row]", stamp(13) + "  // Write out[m][n0 + row]");
    src = src.replace(/\n}\n$/, "\n" + stamp(14) + "}\n");
    const ks = { ...base, name: `${base.name}_trace`, source: src };
    const k = await jit(ks), grid = smallMGrid(N, cfg), sh = cappedShared(dev, k, ks, grid);
    using out = Tensor.empty("bf16", [96, N]);
    const run = (i: number) =>
      k.launch(grid, [a, sa, bs[i % sets], sb, out, M, N, K, K, p.P, N], { sharedBytes: sh });
    out.fill(0);
    const us = await graphUs(run);
    const names = ["start", "pdl wait", ...Array.from({ length: 8 }, (_, i) => `K block ${i} done`)];
    names.push("", "loop end", "last warp end", "reduced", "end");
    console.log(
      `${M}x${N}x${K} ${base.name}: ${
        us.toFixed(2)
      } µs per call; µs after the first CTA's start (median, max):`,
    );
    stampStats(out.toHost() as Uint16Array, N, grid, 15).forEach((st, s) => {
      if (st && names[s]) console.log(`  ${names[s].padEnd(15)} ${st.med.toFixed(2)}  ${st.max.toFixed(2)}`);
    });
    d.dispose();
  }
} else {
  const A_CONV = `  e4m3x4_to_f16(a0, f.h[0], f.h[2]);
  e4m3x4_to_f16(a1, f.h[1], f.h[3]);
  e4m3x4_to_f16(a2, f.h[4], f.h[6]);
  e4m3x4_to_f16(a3, f.h[5], f.h[7]);`;
  const alu = (w: string, lo: string, hi: string) =>
    `${lo} = (${w} & 0x80008000u) | ((${w} >> 1) & 0x3f803f80u); ${hi} = ((${w} << 8) & 0x80008000u) | ((${w} << 7) & 0x3f803f80u);`;
  const VARIANTS: [string, string][] = [
    ["base", A_CONV],
    [
      "noconv",
      `  f.h[0] = a0; f.h[2] = a0 >> 8; f.h[1] = a1; f.h[3] = a1 >> 8; f.h[4] = a2; f.h[6] = a2 >> 8; f.h[5] = a3; f.h[7] = a3 >> 8;`,
    ],
    [
      "alu",
      [
        alu("a0", "f.h[0]", "f.h[2]"),
        alu("a1", "f.h[1]", "f.h[3]"),
        alu("a2", "f.h[4]", "f.h[6]"),
        alu("a3", "f.h[5]", "f.h[7]"),
      ].join("\n"),
    ],
    [
      "half",
      `${A_CONV.split("\n").slice(0, 2).join("\n")}\n${alu("a2", "f.h[4]", "f.h[6]")}\n${
        alu("a3", "f.h[5]", "f.h[7]")
      }`,
    ],
  ];
  const rng = new Rng(3);
  for (const [N, K] of SHAPES) {
    const d = uploadSmallM(dev, N, K, rng), { p, sets, bs, sb, a, sa } = d;
    for (const M of [1, 16]) {
      const cfg = smallMConfig(M, N, K, dev.info.smCount), base = smallMKernel(blockMatmulOp({ N, K }), cfg);
      if (!base.source.includes(A_CONV)) throw new Error("the v1 conversion anchor moved");
      const row: Row = { shape: `${M}x${N}x${K}`, cfg: `rt${cfg.rt} nt${cfg.nt} wk${cfg.wk}` };
      for (const [tag, rep] of VARIANTS) {
        const ks = { ...base, name: `${base.name}_${tag}`, source: base.source.replace(A_CONV, rep) };
        const k = await jit(ks), grid = smallMGrid(N, cfg), sh = cappedShared(dev, k, ks, grid);
        using out = Tensor.empty("bf16", [M, N]);
        const run = (i: number) =>
          k.launch(grid, [a, sa, bs[i % sets], sb, out, M, N, K, K, p.P, N], { sharedBytes: sh });
        const us = Math.min(await graphUs(run), await graphUs(run));
        row[tag] = `${us.toFixed(2)} (${pct(N * K, us)}%)`;
      }
      rows.push(row);
      console.error(JSON.stringify(row));
    }
    d.dispose();
  }
  printTable(
    `v1 weight-conversion probe (${dev.info.name}, copy ${(copy / 1e12).toFixed(2)} TB/s): µs (% copy)`,
    rows,
  );
}
