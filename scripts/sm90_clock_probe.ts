/**
 * clock64 probe of the default sm_90 GEMM at 4096×4096×7168: an instrumented copy of the kernel stamps each
 * wave's turn, issue, wgmma wait and promotion for k-blocks 8–23 of the first tile (warps 0 and 4 of CTA 0)
 * and writes the stamps into the B-scale buffer at exit (the output of that launch is not valid). The
 * stamps slow the k-block; the intervals still show where it waits. Findings: bench/RESULTS.md, session 4.
 *
 *   deno run -A scripts/sm90_clock_probe.ts            on the GPU host
 *   deno run -A scripts/sm90_clock_probe.ts --compile  compile the instrumented kernel only (no device)
 *
 * @module
 */
import { compileFor, Device, jit, prepareGemmSm90, ptxasReport } from "../mod.ts";
import { chooseSm90Config, gemmSm90Kernel } from "../codegen/kernels/gemm_sm90/mod.ts";
import { timingOperands } from "../ops/autotune.ts";
const [M, N, K] = [4096, 4096, 7168];
const ks = gemmSm90Kernel(chooseSm90Config(M, N, K, "block"));
let src = ks.source;
const loopAt = src.indexOf("for (int kb = 1; kb < nK; ++kb) {");
const endAt = src.indexOf("if (++s == STAGES)", loopAt);
let loop = src.slice(loopAt, endAt);
const TS = (e: number) => `\n        TS_(${e});\n`;
const ins = (s: string, after: string, e: number, nth: number) => {
  let i = -1;
  for (let k = 0; k <= nth; k++) i = s.indexOf(after, i + 1);
  if (i < 0) throw new Error(`no ${after} #${nth}`);
  const j = s.indexOf("\n", i);
  return s.slice(0, j) + TS(e) + s.slice(j);
};
// order of insertion from the end so indices stay valid
loop = ins(loop, "fin1[4 * i + 3] += sr1 * acc[4 * i + 3];\n        }", 7, 0);
loop = ins(loop, "wgmma_wait0();", 6, 1);
loop = ins(loop, "named_bar_arrive(TURN + (wg ^ 1u), 256u);", 5, 1);
loop = ins(loop, "named_bar_sync(TURN + wg, 256u);", 4, 1);
loop = ins(loop, "fin[4 * i + 3] += sr1 * acc[4 * i + 3];\n        }", 3, 0);
loop = ins(loop, "wgmma_wait0();", 2, 0);
loop = ins(loop, "named_bar_arrive(TURN + (wg ^ 1u), 256u);", 1, 0);
loop = ins(loop, "named_bar_sync(TURN + wg, 256u);", 0, 0);
src = src.slice(0, loopAt) + loop + src.slice(endAt);
const pre = `
__shared__ unsigned long long ts_[2][16][8];
__device__ __forceinline__ unsigned long long clk_() { unsigned long long x; asm volatile("mov.u64 %0, %%clock64;" : "=l"(x) :: "memory"); return x; }
#define TS_(e) do { if (blockIdx.x == 0 && lane == 0 && (warp == 0 || warp == 4) && t == tileStart && kb >= 8 && kb < 24) ts_[warp >> 2][kb - 8][e] = clk_(); } while (0)
`;
const sigAt = src.indexOf('extern "C" __global__');
src = src.slice(0, sigAt) + pre + src.slice(sigAt);
const last = src.lastIndexOf("}");
src = src.slice(0, last) + `  __syncthreads();
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    unsigned long long* o = (unsigned long long*)(void*)sb;
    for (int i = 0; i < 2 * 16 * 8; ++i) o[i] = (&ts_[0][0][0])[i];
  }
}
`;
if (Deno.args[0] === "--compile") {
  const r = await compileFor({ ...ks, source: src, name: ks.name + "_probe" }, "sm_90a");
  console.log(JSON.stringify(ptxasReport(r.log ?? "")), r.log?.match(/C75\d\d[^\n]*/g));
  Deno.exit(0);
}
const dev = Device.get();
const plan = await prepareGemmSm90({ M, N, K }, { tuned: false });
const k = await jit({ ...ks, source: src, name: ks.name + "_probe" }, { device: dev });
const ops = timingOperands({ M, N, K }, "block", 101);
const [a, sa, b, sb, out] = ops;
for (let i = 0; i < 3; i++) plan.run(a, sa, b, sb, out); // warm (real kernel)
dev.synchronize();
(plan.kernel as unknown as { launch: unknown }).launch = k.launch.bind(k);
plan.run(a, sa, b, sb, out);
dev.synchronize();
const raw = new BigUint64Array((sb.toHost() as Float32Array).buffer.slice(0, 2 * 16 * 8 * 8));
const T = (w: number, kb: number, e: number) => Number(raw[(w * 16 + kb) * 8 + e] - raw[0]);
const names = ["turn0", "iss0", "wait0", "prom0", "turn1", "iss1", "wait1", "prom1"];
console.log("kb  " + ["WG0", "WG1"].map((w) => names.map((n) => `${w}.${n}`).join(" ")).join(" "));
for (let kb = 0; kb < 16; kb++) {
  console.log(
    String(kb).padStart(2) + " " +
      [0, 1].map((w) => names.map((_, e) => String(T(w, kb, e)).padStart(9)).join("")).join(" |"),
  );
}
// averages of the intervals
const avg = (f: (kb: number) => number) =>
  (Array.from({ length: 14 }, (_, i) => f(i + 1)).reduce((x, y) => x + y) / 14).toFixed(0);
for (const w of [0, 1]) {
  console.log(
    `WG${w}: per kb ${avg((kb) => T(w, kb + 1, 0) - T(w, kb, 0))}; turn0→iss0 ${
      avg((kb) => T(w, kb, 1) - T(w, kb, 0))
    }, iss0→wait0 ${avg((kb) => T(w, kb, 2) - T(w, kb, 1))}, promote0 ${
      avg((kb) => T(w, kb, 3) - T(w, kb, 2))
    }, prom0→turn1 ${avg((kb) => T(w, kb, 4) - T(w, kb, 3))}, turn1→iss1 ${
      avg((kb) => T(w, kb, 5) - T(w, kb, 4))
    }, iss1→wait1 ${avg((kb) => T(w, kb, 6) - T(w, kb, 5))}, promote1 ${
      avg((kb) => T(w, kb, 7) - T(w, kb, 6))
    }, prom1→next turn0 ${avg((kb) => T(w, kb + 1, 0) - T(w, kb, 7))}`,
  );
}
console.log(
  `WG1.iss0 - WG0.iss0 ${avg((kb) => T(1, kb, 1) - T(0, kb, 1))}, WG0.iss1 - WG1.iss0 ${
    avg((kb) => T(0, kb, 5) - T(1, kb, 1))
  }, WG0.wait0 - WG0.iss0 ${avg((kb) => T(0, kb, 2) - T(0, kb, 1))}, WG1.wait0 - WG0.wait0 ${
    avg((kb) => T(1, kb, 2) - T(0, kb, 2))
  }`,
);
ops.forEach((t) => t.dispose());
