/**
 * Benchmark of the block-scaled FP8 GEMM as users get it (`prepareBlockScaledMatmul`, default dispatch:
 * v1 small-M kernel for M ≤ 16, wgmma on sm_90 above / mma.sync elsewhere), against torch._scaled_mm with
 * blockwise scales (cuBLASLt) timed in the same run, plus the v2 (register-ring stream) small-M kernel at
 * M ∈ {1, 4, 16, 32} for comparison.
 *
 *   deno run -A bench/gemm.ts           the table (~60–90 s on an H200, peer included)
 *   deno run -A bench/gemm.ts --mma     the same with only the mma.sync kernels (no wgmma)
 *
 * Two clocks per row: `ev µs` is the project's convention (median of per-launch device-event intervals,
 * launches queued behind a spin kernel) and includes each launch's own start-up on the device; `µs` is the
 * mean per call of a CUDA-graph replay of 20 back-to-back calls with rotating weights — the peer's method
 * (decode runs in graphs). TB/s, % copy, TFLOP/s and × peer use `µs`. An empty kernel timed both ways is
 * printed under the table: it is the floor below which no kernel of either clock can go.
 *
 * Napkin math (weights at the copy rate, 4.1 TB/s on H200): 4096×7168 29.4 MB → 7.2 µs; 7168×2048
 * 14.7 MB → 3.6 µs; 24576×1536 37.7 MB → 9.2 µs; 2112×7168 15.1 MB → 3.7 µs; 7168×16384 117 MB → 28.6 µs;
 * 256×512 0.13 MB → latency-bound (a DRAM round trip + an epilogue ≈ 2 µs of kernel). Predictions for v2 at
 * M ≤ 16 (kernel ≈ 1 µs of first-load latency + bytes / 4 TB/s + 0.1 µs per tile epilogue, see
 * `smallMStreamModelUs`): 8.4, 4.8, 10.5, 4.9, 30.5 and ~2.3 µs + the graph gap per call.
 *
 * Programmatic dependent launch (sm_90): the small-M kernels are PDL kernels (their first weight loads go
 * out while the kernel before them runs). `µs` is the default (PDL on); `µs no-PDL` replays the same
 * graph of the same kernels launched the plain way, in the same run. A second table times fp8Linear
 * (group quant + GEMM, two launches per call, graph of 20 calls) at M = 1, 4, 16 with PDL on / off.
 * Predicted (see gemm_small_m_stream.ts): ~1 µs saved per GEMM call after a GEMM, ~1.2 µs per fp8Linear.
 *
 * Each kernel is validated (sampled rows and columns, float64 reference, poisoned output) before timing.
 * @module
 */
import { Device, Event, Graph, jit, spin, Tensor, timeKernel } from "../mod.ts";
import type { KernelSource } from "../codegen/kernel_source.ts";
import { type GemmBackendChoice, prepareBlockScaledMatmul } from "../ops/block_matmul.ts";
import { benchFp8Linear } from "./_gemm_fp8_linear.ts";
import { Rng } from "../testing/random.ts";
import { checkOutput, hostProblem, sampleCols, SampledReference } from "../tests/ops/_gemm_data.ts";
import { copyBandwidth, pct, printTable, type Row, runPeer } from "./_util.ts";

/** (N, K) shapes of the issue. */
export const GEMM_SHAPES: [number, number][] = [
  [4096, 7168],
  [7168, 2048],
  [24576, 1536],
  [2112, 7168],
  [7168, 16384],
  [256, 512],
];
/** M values: every test M ≤ 16, then 32, 64, 128, 1024, 4096. */
export const GEMM_MS = [1, 2, 3, 4, 5, 7, 13, 16, 32, 64, 128, 1024, 4096];
/** M values that also get a row for the v2 small-M kernel (the default is v1 to 16, wgmma above). */
export const ALT_MS = [1, 4, 16, 32];
const GRAPH_CALLS = 20;

const EMPTY: KernelSource = {
  name: "kiln_bench_empty",
  entry: "kiln_bench_empty",
  source: `extern "C" __global__ void kiln_bench_empty(int x) { (void)x; }`,
  params: [{ name: "x", kind: "i32" }],
  block: [32, 1, 1],
  sharedBytes: 0,
};

/** Mean µs per call of `calls` launches of `fn` captured in one graph and replayed (median of 3). */
export async function graphUs(fn: (i: number) => void, calls = GRAPH_CALLS): Promise<number> {
  const dev = Device.get();
  using g = Graph.capture(() => {
    for (let i = 0; i < calls; i++) fn(i);
  });
  g.launch();
  dev.synchronize();
  const us: number[] = [];
  for (let r = 0; r < 3; r++) {
    using e0 = new Event(), e1 = new Event();
    await spin(300, dev); // the GPU waits while the host submits: the interval is GPU time only
    e0.record(dev.stream);
    g.launch();
    e1.record(dev.stream);
    us.push((e1.elapsedSince(e0) * 1000) / calls);
  }
  return us.sort((a, b) => a - b)[1];
}

/** Short kernel tag: `v2 nt1 w8 s3 c256`, `v1 rt1 nt1 wk8`, `sm90c 64x64 s8`, `mma bm128`. */
export function kernelTag(name: string): string {
  let m = name.match(/smallm2_.*_rt(\d)_nt(\d)_w(\d+)_s(\d)_c(\d+)$/);
  if (m) return `v2 ${m[1] === "1" ? "" : `rt${m[1]} `}nt${m[2]} w${m[3]} s${m[4]} c${m[5]}`;
  m = name.match(/smallm_.*_rt(\d)_nt(\d)_wk(\d+)$/);
  if (m) return `v1 rt${m[1]} nt${m[2]} wk${m[3]}`;
  m = name.match(/sm90(\w)_.*_(\d+)x(\d+)x128_s(\d+)/);
  if (m) return `sm90${m[1]} ${m[2]}x${m[3]} s${m[4]}`;
  m = name.match(/gemm_mma_.*_bm(\d+)_s(\d)/);
  return m ? `mma bm${m[1]}` : name;
}

/** The benchmark table (what `deno task bench` calls). */
export async function bench(backend: GemmBackendChoice = "auto"): Promise<void> {
  const device = Device.get();
  const copy = await copyBandwidth();
  const l2 = device.info.l2Bytes;
  const shapes = GEMM_SHAPES.flatMap(([N, K]) => GEMM_MS.map((M) => [M, N, K]));
  const peer = await runPeer("scaled_mm.py", { shapes, l2_bytes: l2, reps: GRAPH_CALLS });
  const peerUs = new Map<string, { us?: number; padded?: boolean }>();
  let refusal = "";
  for (
    const r of (peer?.results as { shape: number[]; us?: number; error?: string; padded_m?: number }[]) ?? []
  ) {
    if (r.error && !refusal) refusal = r.error.slice(0, 70);
    peerUs.set(r.shape.join("x"), { us: r.us, padded: r.padded_m !== undefined && r.padded_m !== null });
  }
  const empty = await jit(EMPTY);
  const floorEv = (await timeKernel(() => empty.launch(1, [0]), { warmup: 5, reps: 40 })).medianUs;
  const floorGraph = await graphUs(() => empty.launch(1, [0]));

  const rows: Row[] = [];
  const rng = new Rng(5);
  for (const [N, K] of GEMM_SHAPES) {
    const maxM = Math.max(...GEMM_MS);
    const p = hostProblem(rng, "block", N, K, maxM);
    const cols = sampleCols(N, K, rng, 4e6);
    // weights rotate over enough copies that every timed call streams them from DRAM
    const sets = Math.max(1, Math.min(16, Math.ceil((2 * l2) / (N * K))));
    const bs = Array.from({ length: sets }, () => Tensor.fromHost("fp8e4m3", [N, K], p.b));
    const sb = Tensor.fromHost("f32", [Math.ceil(N / 128), K / 128], p.bScales);
    const a = Tensor.fromHost("fp8e4m3", [maxM, K], p.a);
    const sa = Tensor.fromHost("f32", [K / 128, p.P], p.aScales);
    try {
      const gemm = await prepareBlockScaledMatmul({ N, K, mValues: GEMM_MS, backend, device });
      const alt = await prepareBlockScaledMatmul({
        N,
        K,
        mValues: ALT_MS,
        backend: "mma",
        smallM: 2,
        device,
      });
      type Run = {
        M: number;
        kernel: string;
        pdl: boolean;
        run: (b: Tensor, out: Tensor, pdl?: boolean) => void;
      };
      const of = (g: typeof gemm, M: number): Run => ({
        M,
        kernel: kernelTag(g.variantFor(M)),
        pdl: device.info.cc >= 90 && /^gemm_smallm2?_block/.test(g.variantFor(M)),
        run: (b, out, pdl) => g.run(a, sa, b, sb, { m: M, out, pdl }),
      });
      const runs: Run[] = GEMM_MS.flatMap((M) =>
        ALT_MS.includes(M) ? [of(gemm, M), of(alt, M)] : [of(gemm, M)]
      );
      for (const { M, kernel, pdl, run } of runs) {
        using out = Tensor.empty("bf16", [M, N]);
        const shape = `${M}x${N}x${K}`;
        try {
          out.fill(0xff);
          run(bs[0], out);
          const ref = new SampledReference(p, M === 1 ? [0] : [0, M - 1], cols);
          const err = checkOutput(out.toHost() as Uint16Array, "bf16", M, N, ref, `${kernel} ${shape}`);
          const call = (i: number) => run(bs[i % sets], out);
          const ev = (await timeKernel(call, { warmup: 5, reps: 40 })).medianUs;
          const us = await graphUs(call);
          const plainUs = pdl ? await graphUs((i) => run(bs[i % sets], out, false)) : undefined;
          const bw = (N * K) / (us * 1e-6);
          const pr = peerUs.get(shape);
          rows.push({
            shape,
            kernel,
            "ev µs": ev.toFixed(2),
            "µs": us.toFixed(2),
            "µs no-PDL": plainUs ? plainUs.toFixed(2) : "—",
            "PDL gain": plainUs ? `${(plainUs - us).toFixed(2)}` : "—",
            "TB/s": (bw / 1e12).toFixed(2),
            "% copy": pct(bw, copy),
            "TFLOP/s": ((2 * M * N * K) / (us * 1e-6) / 1e12).toPrecision(3),
            "peer µs": pr?.us ? `${pr.us.toFixed(2)}${pr.padded ? "*" : ""}` : "n/a",
            "× peer": pr?.us ? (pr.us / us).toFixed(2) : "n/a",
            err: err.toExponential(1),
          });
        } catch (e) {
          rows.push({ shape, kernel, "ev µs": `FAILED: ${(e as Error).message.slice(0, 140)}` });
          device.synchronize();
        }
      }
    } finally {
      for (const t of [...bs, sb, a, sa]) t.dispose();
    }
  }
  printTable(
    `gemm: block-scaled FP8 GEMM (${backend === "mma" ? "mma.sync kernels only" : "default dispatch"}) vs ` +
      `torch._scaled_mm, ${device.info.name}, copy ${(copy / 1e12).toFixed(2)} TB/s (read+write)`,
    rows,
  );
  console.log(
    `µs = graph replay of ${GRAPH_CALLS} calls, mean per call (the peer's method); ev µs = median event ` +
      `interval per launch. Empty kernel: ${floorGraph.toFixed(2)} µs (graph), ${
        floorEv.toFixed(2)
      } µs (events).`,
  );
  if (refusal) {
    console.log(`* peer refused this M (${refusal}); timed at M padded to a multiple of 4, as vLLM pads.`);
  }
  if (peer?.torch) console.log(`peer: torch ${peer.torch}, ${peer.device}; graph replay, mean per call`);
  if (backend === "auto") await benchFp8Linear(copy, graphUs, GEMM_SHAPES);
}

if (import.meta.main) await bench(Deno.args.includes("--mma") ? "mma" : "auto");
