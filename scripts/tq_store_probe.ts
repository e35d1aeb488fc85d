/**
 * Store probe (issue 7): one TurboQuant store of 65536 tokens × Hk 8 × D 128 per preset, for a profiler
 * (`ncu -k regex:tq_store deno run -A scripts/tq_store_probe.ts turboquant_3bit_nc`), or timed when
 * `TIME=1`.
 */
import { Device, Tensor, timeKernel } from "../mod.ts";
import { bf16Tensor } from "../bench/turboquant.ts";
import { TURBOQUANT_PRESET_NAMES } from "../dsl/turboquant/mod.ts";
import { prepareTurboQuant } from "../ops/turboquant.ts";
import { Rng } from "../testing/mod.ts";

const T = 65536, HK = 8, D = 128, rng = new Rng(5);
using k = bf16Tensor(rng, [T, HK, D]), v = bf16Tensor(rng, [T, HK, D], 2);
using slots = Tensor.fromHost("i32", [T], Int32Array.from({ length: T }, (_, i) => i));
for (const preset of Deno.args.length ? Deno.args : TURBOQUANT_PRESET_NAMES) {
  using tq = await prepareTurboQuant({ preset, headDim: D, numKvHeads: HK, numHeads: 32, pageSize: 16 });
  using cache = tq.allocateCache(T / 16);
  if (Deno.env.get("TIME")) {
    const t = await timeKernel(() => tq.store(k, v, slots, cache), { warmup: 3, reps: 20 });
    const bytes = 2 * T * HK * D * 2 + T * HK * tq.slotBytes;
    console.log(`${preset}: ${t.medianUs.toFixed(1)} µs, ${(bytes / t.medianUs / 1e6).toFixed(3)} TB/s`);
  } else {
    tq.store(k, v, slots, cache);
    Device.get().synchronize();
  }
}
