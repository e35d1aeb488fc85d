/**
 * Timing probes of the sm_90 GEMM (step g, 256×128 and 128-row tiles): source-patched copies of the
 * generated kernel, launched through the same plan (results are NOT valid except for "base"; only time
 * counts). Each variant removes or moves one thing to see what a k-block spends on it: `promo16` keeps ¼ of
 * the promotion FFMAs, `noTMA` drops the TMA loads (the producer only arrives), `both`, `ppw0` drops the
 * turn barriers around wave 1, `scBlo` takes the A-scale shared loads off the promotion's path,
 * `sc1early` / `scAllEarly` load the A scales at the top of the k-block, `pureTry` replaces the mbarrier
 * watchdog's slow path by a plain try_wait loop. Findings: bench/RESULTS.md, session 4.
 *
 *   deno run -A scripts/sm90_patch_probe.ts all base,promo16,noTMA     these variants, two shapes
 *   deno run -A scripts/sm90_patch_probe.ts noTMA                      one launch of one variant (for ncu)
 *
 * @module
 */
import { Device, jit, prepareGemmSm90, timeKernel } from "../mod.ts";
import { gemmSm90Kernel } from "../codegen/kernels/gemm_sm90/mod.ts";
import { timingOperands } from "../ops/autotune.ts";
const dev = Device.get();
const patches: Record<string, (s: string) => string> = {
  base: (s) => s,
  // promotion scale from the early-loaded B scale only (no LDS → FMUL dependency): timing only
  scBlo: (s) => s.replace(/const float sr0 = s0(\d), sr1 = s1\1;/g, "const float sr0 = bLo, sr1 = bLo;"),
  // mbarrier slow path without the watchdog's shared load and timer reads (a pure try_wait loop)
  pureTry: (s) =>
    s.replace(
      / {2}while \(!mbar_try\(bar, parity\)\) \{[\s\S]*?\n {2}\}\n\}/,
      "  while (!mbar_try(bar, parity)) {}\n  (void)t0; (void)stuck;\n}",
    ),
  // wave 1's A-scale loads + products at the top of the k-block (after the stage wait), not after its issue
  sc1early: (s) => {
    const re = /const float a01 = [^\n]*\n\s*const float s01 = [^\n]*\n/g;
    const line = (s.match(re) ?? [])[0];
    if (!line) return s;
    return s.replace(re, "").replaceAll(
      "const float* sas = (const float*)(sm + SA_OFF + s * SA_STAGE);",
      (m) => m + "\n        " + line,
    );
  },
  // both waves' A-scale loads at the top
  scAllEarly: (s) => {
    const r0 = /const float a00 = [^\n]*\n\s*const float s00 = [^\n]*\n/g;
    const l0 = (s.match(r0) ?? [])[0];
    const t = patches.sc1early(s);
    if (!l0) return t;
    return t.replace(r0, "").replaceAll(
      "const float* sas = (const float*)(sm + SA_OFF + s * SA_STAGE);",
      (m) => m + "\n        " + l0,
    );
  },
  // turns only around wave 0 (wave 1 issues right after its own promotion, no turn barrier)
  ppw0: (s) =>
    s.replace(
      /(\/\/ wave 1: rows 64–127, through the same temp accumulator\s*)named_bar_sync\(TURN \+ wg, 256u\);[^\n]*\n([\s\S]*?)named_bar_arrive\(TURN \+ \(wg \^ 1u\), 256u\);[^\n]*\n/g,
      "$1$2",
    ),
  promo16: (s) => s.replace(/\n\s*(fin1?)\[4 \* i \+ [123]\] \+= sr[01] \* acc\[4 \* i \+ [123]\];/g, ""),
  noTMA: (s) =>
    s.replace(
      /mbar_expect_tx\(FULL\(s\), TX_BYTES\);[\s\S]*?tma_load_2d\(base \+ SA_OFF[^\n]*\n/,
      "mbar_arrive(FULL(s));\n",
    ),
  both: (s) => patches.noTMA(patches.promo16(s)),
};
const rows: string[] = [];
const orig = new Map<unknown, (...a: never[]) => void>(); // the unpatched launch of each cached kernel
const only = Deno.args[0] === "all" ? undefined : Deno.args[0]; // one variant (for ncu)
const pick = Deno.args[1]?.split(","); // variants to time (default: all)
const shapes = only ? [[4096, 4096, 7168]] : [[4096, 4096, 7168], [4096, 7168, 2048]];
for (const [M, N, K] of shapes) {
  for (
    const cfg of [{ step: "g", blockM: 256, blockN: 128 }, { step: "g", blockM: 128, blockN: 128 }, {
      step: "g",
      blockM: 128,
      blockN: 192,
      pingpong: false,
    }].slice(0, only ? 1 : 3) as { step: "g"; blockM: 256; blockN: number }[]
  ) {
    const plan = await prepareGemmSm90({ M, N, K }, { config: cfg, tuned: false });
    const ops = [0, 1].map((i) => timingOperands({ M, N, K }, "block", 101 + i));
    for (
      const [name, patch] of Object.entries(patches).filter(([n]) =>
        (!only || n === only) && (!pick || pick.includes(n))
      )
    ) {
      const ks = gemmSm90Kernel(plan.config);
      const src = patch(ks.source);
      if (name !== "base" && src === ks.source) {
        rows.push(`${name}: patch did not apply`);
        continue;
      }
      const k = await jit({ ...ks, source: src, name: ks.name + "_" + name, entry: ks.entry }, {
        device: dev,
      });
      const launch = k === plan.kernel ? orig.get(k) ?? k.launch.bind(k) : k.launch.bind(k);
      if (!orig.has(plan.kernel)) orig.set(plan.kernel, plan.kernel.launch.bind(plan.kernel));
      (plan.kernel as unknown as { launch: unknown }).launch = launch;
      const t = await timeKernel((i) => {
        const [a, sa, b, sb, out] = ops[i % 2];
        plan.run(a, sa, b, sb, out);
      }, { warmup: only ? 1 : 5, reps: only ? 2 : 30 });
      const tiles = Math.ceil(M / plan.config.blockM) * Math.ceil(N / 128), waves = Math.ceil(tiles / 132);
      rows.push(
        `${M}x${N}x${K} ${plan.config.blockM}x128 ${name.padEnd(8)} ${t.medianUs.toFixed(1)} us ${
          (2 * M * N * K / t.medianUs / 1e6).toFixed(0)
        } TFLOP/s  clk/kb(1.83) per 128 rows ${
          (t.medianUs * 1830 / (waves * K / 128) / (plan.config.blockM / 128)).toFixed(0)
        }`,
      );
      console.log(rows.at(-1));
    }
    ops.flat().forEach((t) => t.dispose());
  }
}
console.log(rows.join("\n"));
