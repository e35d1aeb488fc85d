/**
 * Run one sm_90 GEMM configuration a few times, for a profiler (ncu) or sanitizer to look at:
 *   deno run -A scripts/sm90_one.ts M N K [step blockN stages]
 */
import { Device, prepareGemmSm90, Tensor } from "../mod.ts";
import type { Sm90Config } from "../codegen/kernels/gemm_sm90/config.ts";

const [M, N, K] = Deno.args.slice(0, 3).map(Number);
const step = (Deno.args[3] ?? "c") as Sm90Config["step"];
const blockN = Number(Deno.args[4] ?? 128), stages = Number(Deno.args[5] ?? 5);
const config: Sm90Config = { step, mode: "block", blockM: 128, blockN, stages, epilogue: "tma" };
const plan = await prepareGemmSm90({ M, N, K }, { config, tuned: false });
const P = Math.ceil(M / 4) * 4;
using a = Tensor.empty("fp8e4m3", [P, K]).fill(0x38);
using sa = Tensor.fromFloat("f32", [K / 128, P], new Float32Array((K / 128) * P).fill(1));
using b = Tensor.empty("fp8e4m3", [N, K]).fill(0x30);
using sb = Tensor.fromFloat("f32", [Math.ceil(N / 128), K / 128], new Float32Array(Math.ceil(N / 128) * (K / 128)).fill(1));
using out = Tensor.empty("bf16", [M, N]);
for (let i = 0; i < 5; i++) plan.run(a, sa, b, sb, out);
Device.get().synchronize();
console.log(`ran ${plan.kernel.name} 5 times`);
