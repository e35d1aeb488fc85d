/**
 * Decode probe (issue 7): time TurboQuant decode per preset over context length and split count, to
 * separate the per-call fixed cost from the per-tile cost. `deno run -A scripts/tq_probe.ts [preset...]`;
 * `NCU=1` runs one decode per preset (B, L from `SHAPE=B,L`) for a profiler.
 */
import { Device, Tensor, timeKernel } from "../mod.ts";
import { bf16Tensor } from "../bench/turboquant.ts";
import { TURBOQUANT_PRESET_NAMES } from "../dsl/turboquant/mod.ts";
import { prepareTurboQuant } from "../ops/turboquant.ts";
import { Rng } from "../testing/mod.ts";

const D = 128, HK = Number(Deno.env.get("HK") ?? 8), HQ = Number(Deno.env.get("HQ") ?? 32), BS = 16;
const rng = new Rng(3);
const presets = Deno.args.length ? Deno.args : [...TURBOQUANT_PRESET_NAMES];
const kernel = (Deno.env.get("KERNEL") ?? "auto") as "auto" | "mma" | "mma1";
const bf16 = (shape: number[]) => bf16Tensor(rng, shape);
const maxTokens = 64 * 8192;
for (const preset of presets) {
  using tq = await prepareTurboQuant({
    preset,
    headDim: D,
    numKvHeads: HK,
    numHeads: HQ,
    pageSize: BS,
    decodeKernel: kernel,
    maxBatch: 64,
    maxSplits: 64,
  });
  using cache = tq.allocateCache(maxTokens / BS);
  {
    const T = 65536;
    using k = bf16([T, HK, D]), v = bf16([T, HK, D]);
    for (let t0 = 0; t0 < maxTokens; t0 += T) {
      using s = Tensor.fromHost("i32", [T], Int32Array.from({ length: T }, (_, i) => t0 + i));
      tq.store(k, v, s, cache);
    }
  }
  const run = async (B: number, L: number, S?: number) => {
    const pages = Int32Array.from({ length: B * (L / BS) }, (_, i) => (i * 7919) % (maxTokens / BS));
    using bt = Tensor.fromHost("i32", [B, L / BS], pages),
      sl = Tensor.fromHost("i32", [B], new Int32Array(B).fill(L));
    using q = bf16([B, HQ, D]), out = Tensor.empty("bf16", [B, HQ, D]);
    if (Deno.env.get("NCU")) {
      tq.decode(q, cache, bt, sl, out, { numSplits: S });
      Device.get().synchronize();
      return 0;
    }
    const t = await timeKernel(() => tq.decode(q, cache, bt, sl, out, { numSplits: S }), {
      warmup: 3,
      reps: 20,
    });
    return t.medianUs;
  };
  if (Deno.env.get("NCU")) {
    const [B, L] = (Deno.env.get("SHAPE") ?? "16,8192").split(",").map(Number);
    await run(B, L);
    continue;
  }
  const line: string[] = [];
  for (const L of [512, 2048, 8192]) line.push(`B16 L${L} ${(await run(16, L)).toFixed(1)}`);
  for (const S of [8, 16, 32]) line.push(`B16x8k S${S} ${(await run(16, 8192, S)).toFixed(1)}`);
  line.push(`B64x8k ${(await run(64, 8192)).toFixed(1)}`);
  for (const S of [2, 4, 8]) line.push(`B64x8k S${S} ${(await run(64, 8192, S)).toFixed(1)}`);
  console.log(`${preset} (${tq.decodeKernel}): ${line.join(" | ")}`);
}
