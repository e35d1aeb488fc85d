/**
 * `deno task demo`: the tour of kiln. Runs on any machine: without a GPU it shows the generated CUDA,
 * compiles it with NVRTC when NVRTC is there, and runs the TypeScript references; with a GPU it runs
 * the kernels and checks them against those references.
 *
 * @module
 */
import { devices, hasNvrtc, nvrtcVersion } from "../mod.ts";

const found = devices();
console.log("# kiln demo\n");
if (found.devices.length) {
  for (const d of found.devices) console.log(`GPU ${d.ordinal}: ${d.name} (sm_${d.cc}, ${d.smCount} SMs)`);
} else {
  console.log(
    `no GPU here (${found.reason}): kernels are generated and compiled, references run on the CPU.`,
  );
}
console.log(
  hasNvrtc()
    ? `NVRTC ${nvrtcVersion().major}.${nvrtcVersion().minor} found\n`
    : "NVRTC not found: compile steps are skipped\n",
);

const steps: [string, string][] = [
  ["1. plan a real HF quantization config", "./inspect_config.ts"],
  ["2. row-padded per-token-group FP8 quantization", "./group_quant.ts"],
  ["3. FP8 block-scaled linear (group quant + GEMM, two launches)", "./fp8_linear.ts"],
  ["4. TurboQuant KV cache: rotate + quantize, decode attention", "./kv_turboquant.ts"],
];
let failed = 0;
for (const [title, path] of steps) {
  console.log(`\n## ${title}\n`);
  let mod: { main?: () => Promise<void> | void };
  try {
    mod = await import(path);
  } catch (e) {
    console.log(`(not available yet: ${(e as Error).message.split("\n")[0]})`);
    continue;
  }
  try {
    await mod.main?.();
  } catch (e) {
    failed++;
    console.log(`FAILED: ${(e as Error).stack ?? e}`);
  }
}
if (failed) Deno.exit(1);
