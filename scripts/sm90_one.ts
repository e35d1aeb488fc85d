/**
 * Run one sm_90 GEMM configuration a few times, for a profiler (ncu) or sanitizer to look at:
 *   deno run -A scripts/sm90_one.ts M N K [step blockN stages] [--nopp] [--const] [--reps n]
 * (blockN may be written blockMxblockN, e.g. 256x128, for a tile other than 128 rows)
 * Inputs are random fp8 codes and scales (like the bench: a tensor core's power, hence its clock, depends
 * on the data), or constant ones with `--const`. `--nopp` turns step g's ping-pong issue order off.
 */
import { Device, prepareGemmSm90, Tensor } from "../mod.ts";
import type { Sm90Config } from "../codegen/kernels/gemm_sm90/config.ts";
import { timingOperands } from "../ops/autotune.ts";

const flags = new Set(Deno.args.filter((a) => a.startsWith("--")));
const repsAt = Deno.args.indexOf("--reps");
const reps = repsAt >= 0 ? Number(Deno.args[repsAt + 1]) : 5;
const pos = Deno.args.filter((a, i) => !a.startsWith("--") && !(repsAt >= 0 && i === repsAt + 1));
const [M, N, K] = pos.slice(0, 3).map(Number);
const step = (pos[3] ?? "c") as Sm90Config["step"];
const [blockM, blockN] = String(pos[4] ?? 128).includes("x")
  ? String(pos[4]).split("x").map(Number)
  : [128, Number(pos[4] ?? 128)];
const stages = Number(pos[5] ?? 5);
const config = { step, mode: "block", blockM, blockN, stages, epilogue: "tma" } as Sm90Config;
if (flags.has("--nopp")) config.pingpong = false;
const plan = await prepareGemmSm90({ M, N, K }, { config, tuned: false });
const P = Math.ceil(M / 4) * 4;
let ops: Tensor[];
if (flags.has("--const")) {
  const nb = Math.ceil(N / 128), kb = K / 128;
  ops = [
    Tensor.empty("fp8e4m3", [P, K]).fill(0x38),
    Tensor.fromFloat("f32", [kb, P], new Float32Array(kb * P).fill(1)),
    Tensor.empty("fp8e4m3", [N, K]).fill(0x30),
    Tensor.fromFloat("f32", [nb, kb], new Float32Array(nb * kb).fill(1)),
    Tensor.empty("bf16", [M, N]),
  ];
} else ops = timingOperands({ M, N, K }, "block", 11);
try {
  const [a, sa, b, sb, out] = ops;
  for (let i = 0; i < reps; i++) plan.run(a, sa, b, sb, out);
  Device.get().synchronize();
  console.log(`ran ${plan.kernel.name} ${reps} times`);
} finally {
  ops.forEach((t) => t.dispose());
}
