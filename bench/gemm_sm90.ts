/**
 * Benchmark of the sm_90a blockwise-FP8 GEMM ladder (issue 6) against torch._scaled_mm with blockwise
 * scales (cuBLASLt), timed in the same run. Every ladder step runs on every shape, plus the default
 * heuristic's kernel and the autotuner's choice when one is stored. Each kernel's output is checked
 * against a float64 reference on sampled rows before it is timed.
 *
 *   deno run -A bench/gemm_sm90.ts               the table
 *   deno run -A bench/gemm_sm90.ts --tune        autotune every shape first (stores the choices), then the table
 *   deno run -A bench/gemm_sm90.ts --only "default,g 256"   just those rows of each shape
 *   deno run -A bench/gemm_sm90.ts --sanitize    one small shape per ladder kernel, validated, no timing
 *                                                (what scripts/sanitize_gemm.sh runs under compute-sanitizer)
 *
 * Napkin math at (4096, 7168, 7168): 421 GFLOP → 213 µs at the 1979 TFLOP/s dense FP8 peak; bytes 29 MB A +
 * 51 MB B + 59 MB out = 140 MB → 33 µs at 4.3 TB/s: compute-bound, so TFLOP/s and % of peak are the
 * figures of merit. Run 1 (H200): a 700–900, b 625–1100, c 795–1072, d ≈ c TFLOP/s — every rung ≈ 55 %
 * tensor efficiency per k-block (the exposed promotion, see codegen/kernels/gemm_sm90/step_e.ts), c/d
 * handicapped by 128×160/192 tiles that quantize badly on 132 SMs. Predictions for the new rungs (model
 * in ops/gemm_sm90.ts, H200): e ≈ 1350–1500 TFLOP/s on the M = 4096 shapes, 1100–1400 at M = 1024; f ≈ e
 * (+0–8 % if L2 binds at K = 1536/2048); c at its model-chosen 128-wide tile ≈ 1000–1070. Target: ≥ 1.10×
 * the peer everywhere (the peer did 1153–1328 TFLOP/s at M = 4096, 558–1044 at M = 1024 in run 1).
 *
 * Step g (c with the math warpgroups decoupled: ping-pong issue order, per-warpgroup epilogue; see
 * codegen/kernels/gemm_sm90/step_g.ts) is predicted at ~1180–1330 TFLOP/s at (4096, 4096, 7168), bench
 * clk/kb ≈ 735–835 against c's 877; the "g nopp" row is g without the turn barriers (0–7 % over c
 * from the shorter k-block alone, if the lock-step reading of c's profile is right).
 *
 * GPU time: ~7 shapes × 10 kernels × 35 launches ≈ 12 s of kernels plus compiles (8 in parallel) and host
 * references; `--tune` adds ~15 candidates × 23 launches per shape.
 *
 * @module
 */
import { Device, type Tensor, timeKernel } from "../mod.ts";
import { bf16Decode, FP8E4M3_VALUES } from "../dsl/dtype.ts";
import { relFrobenius } from "../testing/assert.ts";
import { chooseSm90Config, type GemmSm90Plan, prepareGemmSm90, type Sm90Config } from "../ops/gemm_sm90.ts";
import { sm90Overlap, sm90Persistent } from "../codegen/kernels/gemm_sm90/mod.ts";
import { autotuneGemmSm90, inParallel, lookupTuned, timingOperands } from "../ops/autotune.ts";
import { pct, printTable, type Row, runPeer } from "./_util.ts";

/** (M, N, K) shapes of the issue. */
export const SHAPES: [number, number, number][] = [
  [4096, 4096, 7168],
  [4096, 7168, 2048],
  [4096, 24576, 1536],
  [1024, 4096, 7168],
  [1024, 7168, 2048],
  [4096, 2112, 7168],
  [4096, 7168, 16384],
];
const PEAK_TFLOPS = 1979;
/**
 * One kernel per rung: a and b at 128 × 128 (their measured best), c–f at the tile the model ranks best
 * for that step on the shape (`chooseSm90Config(..., [step])`), so each row is that rung at its best.
 */
function rungs(
  M: number,
  N: number,
  K: number,
  device: Device,
): { label: string; config: Partial<Sm90Config> }[] {
  return [
    { label: "a", config: { step: "a", blockN: 128 } },
    { label: "b", config: { step: "b", blockN: 128 } },
    ...(["c", "d", "e", "f", "g"] as const).map((step) => ({
      label: step,
      config: chooseSm90Config(M, N, K, "block", device, [step]),
    })),
    // g at the same tile without its ping-pong issue order: what the turn barriers themselves bring
    { label: "g nopp", config: { ...chooseSm90Config(M, N, K, "block", device, ["g"]), pingpong: false } },
    // g on 256-row tiles: each math warpgroup runs two 64-row waves per k-block (B read once per 256 rows)
    { label: "g 256", config: { step: "g", blockM: 256, blockN: 128, pingpong: true } },
    // g with the other choice of issuing the next tile's first wgmmas before the epilogue
    (() => {
      const g = chooseSm90Config(M, N, K, "block", device, ["g"]);
      return { label: "g ov±", config: { ...g, overlap: !sm90Overlap(g) } };
    })(),
    // g with 2-CTA clusters along N sharing the A tile by multicast
    { label: "g mc", config: { ...chooseSm90Config(M, N, K, "block", device, ["g"]), multicast: true } },
  ];
}

/** What `--sanitize` runs at 200 × 2112 × 1024: every step, one- and two-scale-block tiles for e/f/g,
 * g with and without its ping-pong turn barriers and with one math warpgroup. */
const SANITIZE: Partial<Sm90Config>[] = [
  { step: "a", blockN: 128 },
  { step: "b", blockN: 128 },
  { step: "c", blockN: 160 },
  { step: "d", blockN: 128 },
  { step: "e", blockN: 128 },
  { step: "e", blockN: 112 },
  { step: "f", blockN: 128 },
  { step: "f", blockN: 96 },
  { step: "g", blockN: 128 },
  { step: "g", blockN: 160 },
  { step: "g", blockN: 128, pingpong: false },
  { step: "g", blockM: 64, blockN: 128 },
  { step: "g", blockM: 256, blockN: 128 },
  { step: "g", blockM: 256, blockN: 96 },
  { step: "g", blockM: 256, blockN: 128, pingpong: false },
  { step: "g", blockM: 256, blockN: 112 },
  { step: "g", blockM: 256, blockN: 128, overlap: false },
  { step: "g", blockN: 160, pingpong: false, overlap: true },
  { step: "g", blockM: 256, blockN: 128, multicast: true },
  { step: "g", blockM: 256, blockN: 96, multicast: true },
  { step: "g", blockN: 128, multicast: true },
];

/** Host copy of one operand set, for the sampled-row reference. */
function hostOperands(ops: Tensor[]): { a: Uint8Array; sa: Float32Array; b: Uint8Array; sb: Float32Array } {
  const [a, sa, b, sb] = ops;
  return {
    a: a.toHost() as Uint8Array,
    sa: sa.toHost() as Float32Array,
    b: b.toHost() as Uint8Array,
    sb: sb.toHost() as Float32Array,
  };
}

/** float64 reference of row r (block scales), all N columns. */
function refRow(
  h: ReturnType<typeof hostOperands>,
  M: number,
  N: number,
  K: number,
  r: number,
): Float64Array {
  const kb = K / 128, mPad = Math.ceil(M / 4) * 4;
  const af = Float64Array.from(h.a.subarray(r * K, (r + 1) * K), (c) => FP8E4M3_VALUES[c]);
  const out = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let total = 0;
    for (let q = 0; q < kb; q++) {
      let dot = 0;
      for (let k = q * 128; k < q * 128 + 128; k++) dot += af[k] * FP8E4M3_VALUES[h.b[n * K + k]];
      total += h.sa[q * mPad + r] * h.sb[Math.floor(n / 128) * kb + q] * dot;
    }
    out[n] = total;
  }
  return out;
}

/** Run once into a poisoned output and compare two sampled rows with the reference; throws on error. */
function validate(
  plan: GemmSm90Plan,
  ops: Tensor[],
  refs: Map<number, Float64Array>,
  M: number,
  N: number,
): number {
  const [a, sa, b, sb, out] = ops;
  out.fill(0xff);
  plan.run(a, sa, b, sb, out);
  const raw = out.toHost() as Uint16Array;
  let unwritten = 0, stuck = 0;
  for (let i = 0; i < M * N; i++) {
    if (raw[i] === 0xffff) unwritten++;
    if (raw[i] === 0x7fff) stuck++;
  }
  if (stuck) {
    throw new Error(`${plan.kernel.name}: mbarrier watchdog fired (${stuck} NaN outputs): pipeline hang`);
  }
  if (unwritten) throw new Error(`${plan.kernel.name}: ${unwritten} outputs not written`);
  const got: number[] = [], want: number[] = [];
  for (const [r, ref] of refs) {
    for (let n = 0; n < N; n++) got.push(bf16Decode(raw[r * N + n])), want.push(ref[n]);
  }
  const err = relFrobenius(got, want);
  if (!(err <= 2e-3)) {
    throw new Error(`${plan.kernel.name}: relative error ${err} > 2e-3 against the float64 reference`);
  }
  return err;
}

const label = (c: Sm90Config) => {
  const reg = c.epilogue === "direct" && sm90Persistent(c) ? " reg" : "";
  const pp = c.pingpong === false ? " nopp" : "";
  const ov = (c.overlap === undefined ? "" : c.overlap ? " ov" : " noov") + (c.multicast ? " mc" : "");
  return `${c.step} ${c.blockM}x${c.blockN} s${c.stages}${reg}${c.chunk ? ` u${c.chunk}` : ""}${pp}${ov}`;
};

/** SM clocks (1.83 GHz basis) per 128-deep k-block of one tile: what SM90_STEP_MODEL is fitted to. */
function clkPerKBlock(c: Sm90Config, M: number, N: number, K: number, us: number, sms: number): number {
  const waves = Math.ceil((Math.ceil(M / c.blockM) * Math.ceil(N / c.blockN)) / sms);
  return Math.round((us * 1830) / (waves * (K / 128)));
}

/** The benchmark table (what `deno task bench` calls); `only`: the row labels to run (all by default). */
export async function bench(only?: string[]): Promise<void> {
  const device = Device.get();
  if (device.info.cc !== 90) {
    console.log(`\n## gemm_sm90: skipped (${device.info.name} is not sm_90)`);
    return;
  }
  const peer = await runPeer("scaled_mm_big.py", { shapes: SHAPES, l2_bytes: device.info.l2Bytes, reps: 30 });
  const peerUs = new Map<string, number>();
  for (const r of (peer?.results as { shape: number[]; us?: number; error?: string }[] | undefined) ?? []) {
    if (r.us) peerUs.set(r.shape.join("x"), r.us);
    else if (r.error) console.error(`peer ${r.shape.join("x")}: ${r.error}`);
  }
  const rows: Row[] = [];
  for (const [M, N, K] of SHAPES) {
    const flop = 2 * M * N * K;
    const setBytes = M * K + N * K + 2 * M * N;
    const sets = Math.max(1, Math.min(4, Math.ceil((2 * device.info.l2Bytes) / setBytes)));
    const ops = Array.from({ length: sets }, (_, i) => timingOperands({ M, N, K }, "block", 101 + i));
    try {
      const h = hostOperands(ops[0]);
      const refs = new Map([0, M - 1].map((r) => [r, refRow(h, M, N, K, r)] as const));
      const tuned = await lookupTuned(device.info.name, { M, N, K }, "block");
      const runs = [
        ...rungs(M, N, K, device),
        { label: "default", config: chooseSm90Config(M, N, K, "block", device) },
        ...(tuned ? [{ label: "tuned", config: tuned }] : []),
      ].filter((r) => !only || only.includes(r.label));
      const pUs = peerUs.get(`${M}x${N}x${K}`);
      // compile the shape's kernels several at a time (NVRTC runs off the main thread), then time in order
      const plans = await inParallel(
        runs,
        8,
        (run) => prepareGemmSm90({ M, N, K }, { config: run.config, device }).catch((e: Error) => e),
      );
      for (const [i, run] of runs.entries()) {
        let plan: GemmSm90Plan | undefined;
        try {
          const built = plans[i];
          if (built instanceof Error) throw built;
          plan = built;
          const p = plan;
          const err = validate(p, ops[0], refs, M, N);
          const t = await timeKernel((i) => {
            const [a, sa, b, sb, out] = ops[i % sets];
            p.run(a, sa, b, sb, out);
          }, { warmup: 5, reps: 30 });
          const tflops = flop / (t.medianUs * 1e-6) / 1e12;
          rows.push({
            shape: `${M}x${N}x${K}`,
            kernel: run.label,
            config: label(p.config),
            us: t.medianUs,
            "TFLOP/s": Math.round(tflops),
            "% peak": pct(tflops, PEAK_TFLOPS),
            "peer TFLOP/s": pUs ? Math.round(flop / (pUs * 1e-6) / 1e12) : "n/a",
            "× peer": pUs ? (pUs / t.medianUs).toFixed(2) : "n/a",
            "rel err": err.toExponential(1),
            "clk/kb": clkPerKBlock(p.config, M, N, K, t.medianUs, device.info.smCount),
          });
        } catch (e) {
          // one broken rung must not hide the others: report it in the table and go on
          rows.push({
            shape: `${M}x${N}x${K}`,
            kernel: run.label,
            config: plan ? label(plan.config) : "?",
            us: `FAILED: ${(e as Error).message.split("\n")[0].slice(0, 120)}`,
          });
          Device.get().synchronize();
        }
      }
    } finally {
      ops.flat().forEach((t) => t.dispose());
    }
  }
  printTable(
    `gemm_sm90: blockwise FP8 GEMM ladder vs torch._scaled_mm (${device.info.name}, peak ${PEAK_TFLOPS} TFLOP/s)`,
    rows,
  );
  if (peer?.torch) console.log(`peer: torch ${peer.torch}, ${peer.device}`);
}

/** Autotune every shape (stores the choices) and report default vs tuned, plus each step's best tile. */
async function tune(): Promise<void> {
  const rows: Row[] = [];
  for (const [M, N, K] of SHAPES) {
    const r = await autotuneGemmSm90({ M, N, K });
    const perStep = ["b", "c", "d", "e", "f", "g"].map((step) => {
      const best = r.table.find((x) => x.config.step === step); // the table is sorted, fastest first
      const direct = best?.config.epilogue === "direct" && step !== "b" ? "r" : ""; // register epilogue
      const u = best?.config.chunk ? `u${best.config.chunk}` : "";
      const pp = best?.config.pingpong === false ? "np" : ""; // g without its ping-pong order
      return best ? `${step}${best.config.blockN}${direct}${u}${pp}:${best.us.toFixed(0)}` : `${step}:-`;
    });
    rows.push({
      shape: `${M}x${N}x${K}`,
      tuned: label(r.best),
      "tuned µs": r.bestUs,
      "default µs": r.defaultUs,
      "default/tuned": (r.defaultUs / r.bestUs).toFixed(3),
      "within 10%": r.defaultUs <= 1.1 * r.bestUs ? "yes" : "NO",
      "best per step (N-tile:µs)": perStep.join(" "),
    });
  }
  printTable("gemm_sm90 autotune: default heuristic vs tuned", rows);
}

/** One small ragged shape per ladder kernel (SANITIZE), validated, for compute-sanitizer (racecheck / memcheck). */
async function sanitize(): Promise<void> {
  const [M, N, K] = [200, 2112, 1024];
  const ops = timingOperands({ M, N, K }, "block", 7);
  try {
    const h = hostOperands(ops);
    const refs = new Map([0, 77, M - 1].map((r) => [r, refRow(h, M, N, K, r)] as const));
    for (const config of SANITIZE) {
      const plan = await prepareGemmSm90({ M, N, K }, { config });
      const err = validate(plan, ops, refs, M, N);
      Device.get().synchronize();
      console.log(`sanitize ${plan.kernel.name} (${M}x${N}x${K}): ok, rel err ${err.toExponential(2)}`);
    }
  } finally {
    ops.forEach((t) => t.dispose());
  }
}

if (import.meta.main) {
  if (Deno.args.includes("--sanitize")) await sanitize();
  else {
    if (Deno.args.includes("--tune")) await tune();
    const at = Deno.args.indexOf("--only"); // e.g. --only "default,g,g 256": just those rows
    await bench(at >= 0 ? Deno.args[at + 1].split(",") : undefined);
  }
}
