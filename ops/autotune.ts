/**
 * Autotuner for the sm_90a GEMM ladder: times every candidate tile shape × pipeline depth × step (b–g) on
 * random inputs, keeps the fastest, and stores the choice on disk as JSON next to the kernel cache
 * (`<cacheDir>/autotune/gemm_sm90.json`), keyed by (device name, M bucket, N, K, scale mode). A progress
 * line is redrawn on stderr while it runs. `prepareGemmSm90` consults the file on every prepare.
 *
 * @example
 * ```ts ignore
 * import { autotuneGemmSm90 } from "./autotune.ts";
 * const r = await autotuneGemmSm90({ M: 4096, N: 7168, K: 7168 });
 * console.log(r.best, r.bestUs, r.defaultUs); // the heuristic must be within 10 % of r.bestUs
 * ```
 * @module
 */
import { cacheDir, Device, Tensor, timeKernel } from "../runtime/mod.ts";
import {
  type Sm90Config,
  sm90ConfigProblems,
  sm90MaxStages,
  type Sm90ScaleMode,
} from "../codegen/kernels/gemm_sm90/mod.ts";
import {
  chooseSm90Config,
  type GemmSm90Plan,
  type GemmSm90Shape,
  prepareGemmSm90,
  sm90Candidates,
  sm90ModelClocks,
} from "./gemm_sm90.ts";

/** One stored choice. */
export interface TunedEntry {
  config: Sm90Config;
  us: number;
  tflops: number;
  /** Time of the default heuristic's config in the same run. */
  defaultUs: number;
  M: number;
  candidates: number;
  date: string;
}

/** The M bucket a choice is stored under: the next power of two (≥ 16). */
export function mBucket(M: number): number {
  return Math.max(16, 2 ** Math.ceil(Math.log2(Math.max(1, M))));
}

/** The key of a choice. */
export function tuneKey(device: string, s: GemmSm90Shape, mode: Sm90ScaleMode): string {
  return `${device}|m${mBucket(s.M)}|n${s.N}|k${s.K}|${mode}`;
}

function tuneFile(): string | undefined {
  const d = cacheDir();
  return d ? `${d}/autotune/gemm_sm90.json` : undefined;
}

async function readAll(): Promise<Record<string, TunedEntry>> {
  const f = tuneFile();
  if (!f) return {};
  try {
    const j = JSON.parse(await Deno.readTextFile(f));
    return j && typeof j === "object" ? j : {};
  } catch {
    return {}; // absent or unreadable: no choices (a corrupt file is rewritten by the next tune)
  }
}

/** The stored choice for this device / shape bucket / mode, when there is a valid one. */
export async function lookupTuned(
  device: string,
  s: GemmSm90Shape,
  mode: Sm90ScaleMode,
): Promise<Sm90Config | undefined> {
  const e = (await readAll())[tuneKey(device, s, mode)];
  if (!e || !e.config || sm90ConfigProblems({ ...e.config, mode }).length) return undefined;
  return { ...e.config, mode };
}

async function store(key: string, e: TunedEntry): Promise<void> {
  const f = tuneFile();
  if (!f) return;
  const all = await readAll();
  all[key] = e;
  await Deno.mkdir(f.slice(0, f.lastIndexOf("/")), { recursive: true });
  const tmp = `${f}.tmp-${Deno.pid}`;
  await Deno.writeTextFile(tmp, JSON.stringify(all, null, 1) + "\n");
  await Deno.rename(tmp, f);
}

/**
 * The candidates the tuner times: for each step b–g (and each tile height of g: 128 and 256 rows), the
 * two configs {@linkcode sm90ModelClocks} ranks best for this shape (b: its one 128×128 tile), each at the deepest ring that fits, plus three variants
 * of (e)'s best tile (chunks of 2 and 8, register epilogue) and (g)'s best tile without its ping-pong
 * order — about fifteen kernels, so a tune of the seven bench shapes stays around a minute of GPU time.
 */
export function tuneCandidates(s: GemmSm90Shape, mode: Sm90ScaleMode, perStep = 2): Sm90Config[] {
  const out: Sm90Config[] = [];
  for (const step of ["b", "c", "d", "e", "f", "g"] as const) {
    const ranked = sm90Candidates(s.M, s.N, mode, [step])
      .map((c) => ({ c, t: sm90ModelClocks(c, s.M, s.N, s.K) }))
      .sort((x, y) => x.t - y.t);
    // step g: the best of each tile height (128 rows, and 256 rows run as two waves) is timed
    for (const bm of new Set(ranked.map((r) => r.c.blockM))) {
      out.push(...ranked.filter((r) => r.c.blockM === bm).slice(0, perStep).map((r) => r.c));
    }
  }
  // structural variants of (e)'s best tile: drained chunks of 2 and 8 k-blocks instead of 4, and the
  // register epilogue (no smem output tile, so one more ring stage)
  const e = out.find((c) => c.step === "e");
  if (e) {
    const base = { ...e, epilogue: "direct" as const };
    for (const v of [{ ...e, chunk: 2 }, { ...e, chunk: 8 }, { ...base, stages: sm90MaxStages(base) }]) {
      if (sm90ConfigProblems(v).length === 0) out.push(v);
    }
  }
  // (g)'s best tile with the math warpgroups issuing freely (only the per-warpgroup epilogue and the
  // leaner k-block left): tells the ping-pong order's share of g's gain
  const g = out.find((c) => c.step === "g" && c.blockM === 128);
  if (g) out.push({ ...g, pingpong: false });
  return out;
}

/** Run `fn` over `items` with at most `limit` in flight (NVRTC compiles run on FFI threads). */
export async function inParallel<T, R>(items: T[], limit: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Random fp8 codes (finite: the e4m3 NaN codes 0x7f/0xff are avoided) from a fast xorshift stream. */
export function randomFp8(n: number, seed = 0x9e3779b9): Uint8Array {
  const out = new Uint8Array(n);
  const w = new Uint32Array(out.buffer, 0, n >> 2);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < w.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    w[i] = (x >>> 0) & 0xbfbfbfbf; // clear bit 6 of every byte: exponent ≤ 7, |v| ≤ 1.875, never NaN
  }
  return out;
}

/** Operands of one problem for timing (random codes, positive random scales). */
export function timingOperands(s: GemmSm90Shape, mode: Sm90ScaleMode, seed: number): Tensor[] {
  const mPad = Math.ceil(s.M / 4) * 4, kb = s.K / 128;
  const scales = (n: number) =>
    Float32Array.from({ length: n }, (_, i) => 0.5 + ((i * 2654435761 + seed) % 1000) / 1000);
  const a = Tensor.fromHost("fp8e4m3", [mPad, s.K], randomFp8(mPad * s.K, seed));
  const b = Tensor.fromHost("fp8e4m3", [s.N, s.K], randomFp8(s.N * s.K, seed ^ 0x5bd1e995));
  const sa = mode === "block" ? [kb, mPad] : mode === "tensor" ? [1] : [mPad];
  const sb = mode === "block" ? [Math.ceil(s.N / 128), kb] : mode === "tensor" ? [1] : [s.N];
  const fa = Tensor.fromHost("f32", sa, scales(sa.reduce((x, y) => x * y, 1)));
  const fb = Tensor.fromHost("f32", sb, scales(sb.reduce((x, y) => x * y, 1)));
  const out = Tensor.empty("bf16", [s.M, s.N]);
  return [a, fa, b, fb, out];
}

/** Result of {@linkcode autotuneGemmSm90}. */
export interface TuneResult extends TunedEntry {
  best: Sm90Config;
  bestUs: number;
  /** Every timed candidate, fastest first. */
  table: { config: Sm90Config; us: number }[];
}

/**
 * Time every candidate for (M, N, K, mode) on this device and store the fastest. Inputs are rotated
 * over enough sets to exceed L2 so each launch reads operands from DRAM like a real layer would.
 *
 * @example
 * ```ts ignore
 * import { autotuneGemmSm90 } from "./autotune.ts";
 * const r = await autotuneGemmSm90({ M: 4096, N: 7168, K: 2048 }, { mode: "block" });
 * console.log(r.best, r.bestUs, r.defaultUs / r.bestUs);
 * ```
 */
export async function autotuneGemmSm90(
  s: GemmSm90Shape,
  opts: {
    mode?: Sm90ScaleMode;
    candidates?: Sm90Config[];
    reps?: number;
    device?: Device;
    quiet?: boolean;
    /** Compiles in flight at once (default 8). */
    compileJobs?: number;
  } = {},
): Promise<TuneResult> {
  const mode = opts.mode ?? "block";
  const device = opts.device ?? Device.get();
  const def = chooseSm90Config(s.M, s.N, s.K, mode, device);
  const cands = opts.candidates ?? tuneCandidates(s, mode);
  if (!cands.some((c) => JSON.stringify(c) === JSON.stringify(def))) cands.unshift(def);
  const setBytes = s.M * s.K + s.N * s.K + 2 * s.M * s.N;
  const sets = Math.max(1, Math.min(4, Math.ceil((2 * device.info.l2Bytes) / setBytes)));
  const ops = Array.from({ length: sets }, (_, i) => timingOperands(s, mode, 17 + i));
  const flop = 2 * s.M * s.N * s.K;
  const table: { config: Sm90Config; us: number }[] = [];
  const enc = new TextEncoder();
  const say = (t: string) => opts.quiet || Deno.stderr.writeSync(enc.encode(`\r\x1b[2K${t}`));
  const label = (c: Sm90Config) =>
    `${c.step} ${c.blockM}x${c.blockN} s${c.stages}${c.chunk ? ` u${c.chunk}` : ""}${
      c.pingpong === false ? " nopp" : ""
    }${c.epilogue === "direct" && c.step !== "a" && c.step !== "b" ? " reg" : ""}`;
  try {
    // compile every candidate first, several at a time (NVRTC runs off the main thread)
    say(`autotune gemm_sm90 ${s.M}x${s.N}x${s.K} ${mode}: compiling ${cands.length} candidates`);
    const plans = await inParallel(
      cands,
      opts.compileJobs ?? 8,
      (c) => prepareGemmSm90(s, { mode, config: c, device }).catch((e: Error) => e),
    );
    for (let i = 0; i < cands.length; i++) {
      const c = cands[i];
      const best = table.length ? table.reduce((x, y) => (y.us < x.us ? y : x)) : undefined;
      say(
        `autotune gemm_sm90 ${s.M}x${s.N}x${s.K} ${mode}: ${i + 1}/${cands.length} ${label(c)}` +
          (best ? ` | best ${label(best.config)} ${best.us.toFixed(1)} µs` : ""),
      );
      const built = plans[i];
      if (built instanceof Error) {
        console.error(`\nautotune: ${label(c)} failed to build: ${built.message.split("\n")[0]}`);
        continue;
      }
      const plan: GemmSm90Plan = built;
      const t = await timeKernel((r) => {
        const [a, fa, b, fb, out] = ops[r % sets];
        plan.run(a, fa, b, fb, out);
      }, { warmup: 3, reps: opts.reps ?? 20, device });
      table.push({ config: c, us: t.medianUs });
    }
  } finally {
    ops.flat().forEach((t) => t.dispose());
    say("");
  }
  if (table.length === 0) throw new Error(`autotune ${tuneKey(device.info.name, s, mode)}: no candidate ran`);
  table.sort((x, y) => x.us - y.us);
  const defaultUs = table.find((r) => JSON.stringify(r.config) === JSON.stringify(def))?.us ?? NaN;
  const entry: TunedEntry = {
    config: table[0].config,
    us: table[0].us,
    tflops: flop / (table[0].us * 1e-6) / 1e12,
    defaultUs,
    M: s.M,
    candidates: table.length,
    date: new Date().toISOString(),
  };
  await store(tuneKey(device.info.name, s, mode), entry);
  if (!opts.quiet) {
    console.error(
      `autotune ${s.M}x${s.N}x${s.K} ${mode}: best ${label(entry.config)} ${entry.us.toFixed(1)} µs ` +
        `(${entry.tflops.toFixed(0)} TFLOP/s), default ${label(def)} ${defaultUs.toFixed(1)} µs`,
    );
  }
  return { ...entry, best: entry.config, bestUs: entry.us, table };
}
