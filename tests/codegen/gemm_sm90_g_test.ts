/**
 * Step g of the sm_90a GEMM ladder (c with decoupled math warpgroups), pure tier: config and names, the
 * ping-pong turn protocol (a TS mirror of the named-barrier semantics: no deadlock, strict alternation,
 * no arrival left over), the order of the generated k-block (turn wait → wgmmas → commit → turn pass →
 * wgmma wait → release), the heuristic keeping c until g's constants are refitted, and the SASS helpers
 * the compile tier's barrier checks rely on. The compile tier itself is in gemm_sm90_test.ts (LADDER).
 */
import assert from "node:assert/strict";
import {
  gemmSm90Kernel,
  SM90_STEP_MODEL,
  sm90Cluster,
  type Sm90Config,
  sm90ConfigName,
  sm90ConfigProblems,
  sm90Grid,
  sm90MathThreads,
  sm90MaxStages,
  sm90Overlap,
  sm90PingPong,
  sm90SharedOperand,
  sm90StoreRows,
  sm90Threads,
  sm90Waves,
} from "../../codegen/kernels/gemm_sm90/mod.ts";
import { chooseSm90Config, resolveSm90Config } from "../../ops/gemm_sm90.ts";
import { tuneCandidates } from "../../ops/autotune.ts";
import { loopsContaining, sassBarriers, sassInstructions } from "./_sass.ts";

const G = (o: Partial<Sm90Config> = {}): Sm90Config => ({
  step: "g",
  mode: "block",
  blockM: 128,
  blockN: 128,
  stages: 5,
  epilogue: "tma",
  ...o,
});

Deno.test("gemm_sm90 g config: pingpong belongs to g, names, per-warpgroup store rows", () => {
  assert.deepEqual(sm90ConfigProblems(G()), []);
  assert.deepEqual(sm90ConfigProblems(G({ pingpong: false })), []);
  assert.match(
    sm90ConfigProblems(G({ step: "c", pingpong: true })).join(),
    /pingpong is a setting of step g/,
  );
  assert.match(sm90ConfigProblems(G({ pingpong: 1 as never })).join(), /pingpong must be true or false/);
  assert.equal(sm90ConfigName(G()), "gemm_sm90g_fp8e4m3_bf16_block_128x128x128_s5_tma");
  assert.equal(sm90ConfigName(G({ pingpong: true })), sm90ConfigName(G()), "default: same kernel");
  assert.match(sm90ConfigName(G({ pingpong: false })), /_nopp$/);
  assert.equal(sm90StoreRows(G()), 64, "each warpgroup stores its own 64 rows");
  assert.equal(sm90StoreRows(G({ step: "c" })), 128);
  assert.equal(sm90PingPong(G()), true);
  assert.equal(sm90PingPong(G({ pingpong: false })), false);
  assert.equal(sm90PingPong(G({ blockM: 64 })), false, "one math warpgroup has nobody to alternate with");
  assert.equal(sm90PingPong(G({ step: "c" })), false);
  // 256-row tiles: two math warpgroups of 128 rows, each run as two 64-row waves; step g only, ≤ 128 wide
  const big = G({ blockM: 256, stages: 3 });
  assert.deepEqual(sm90ConfigProblems(big), []);
  assert.equal(sm90Waves(big), 2);
  assert.equal(sm90MathThreads(big), 256);
  assert.equal(sm90Threads(big), 384);
  assert.equal(sm90PingPong(big), true);
  assert.equal(sm90StoreRows(big), 64);
  assert.equal(sm90ConfigName(big), "gemm_sm90g_fp8e4m3_bf16_block_256x128x128_s3_tma");
  assert.equal(sm90MaxStages(big), 3, "A 32 KB + B 16 KB + scales per stage, 64 KB output tile");
  assert.match(sm90ConfigProblems(G({ step: "c", blockM: 256 })).join(), /blockM 256 .* is a tile of step g/);
  assert.match(sm90ConfigProblems(G({ blockM: 256, blockN: 160 })).join(), /blockN 160 > 128 would spill/);
  assert.match(sm90ConfigProblems(G({ blockM: 192 as never })).join(), /blockM must be 64, 128 or 256/);
  // overlap (the next tile's first wave issued before the epilogue): on by default for 256-row tiles only;
  // only a non-default choice shows in the name
  assert.equal(sm90Overlap(big), true);
  assert.equal(sm90Overlap(G()), false);
  assert.equal(sm90Overlap(G({ overlap: true })), true);
  assert.equal(sm90Overlap(G({ step: "c" })), false);
  assert.equal(sm90ConfigName({ ...big, overlap: true }), sm90ConfigName(big));
  assert.match(sm90ConfigName({ ...big, overlap: false }), /_noov$/);
  assert.match(sm90ConfigName(G({ overlap: true })), /_ov$/);
  assert.match(sm90ConfigProblems(G({ step: "c", overlap: true })).join(), /overlap is a setting of step g/);
  assert.match(sm90ConfigProblems(G({ overlap: "yes" as never })).join(), /overlap must be true or false/);
  // multicast: 2-CTA clusters along N sharing A (step g only, ≥ 128 rows)
  const mc = { ...big, multicast: true };
  assert.deepEqual(sm90ConfigProblems(mc), []);
  assert.equal(sm90Cluster(mc), 2);
  assert.equal(sm90SharedOperand(mc), "a");
  assert.equal(sm90SharedOperand(G({ step: "d" })), "b");
  assert.equal(sm90SharedOperand(big), undefined);
  assert.match(sm90ConfigName(mc), /_mc$/);
  assert.match(
    sm90ConfigProblems(G({ step: "d", multicast: true })).join(),
    /multicast is a setting of step g/,
  );
  assert.match(sm90ConfigProblems(G({ blockM: 64, multicast: true })).join(), /blockM must be ≥ 128/);
  // the grid pairs N tiles (17 N tiles → 9 pairs, the last with a dummy partner) and stays even
  assert.deepEqual(sm90Grid(mc, 256, 2112), [18, 1, 1]);
  assert.deepEqual(sm90Grid(mc, 4096, 4096), [132, 1, 1]);
  const src = gemmSm90Kernel(mc).source;
  assert.ok(src.includes("tma_load_2d_multicast(base + A_OFF"), "A halves are multicast");
  assert.ok(src.includes("mbar_arrive_cluster(EMPTY(s), 1)"), "stages are released on both CTAs");
  assert.ok(src.includes("min(n0, N - 1) / 128"), "a dummy N tile reads an existing scale row");
  assert.equal(gemmSm90Kernel(mc).cluster?.[0], 2);
  assert.equal(sm90Waves(G()), 1);
  assert.equal(sm90MathThreads(G()), 256);
  assert.equal(sm90MathThreads(G({ blockM: 64 })), 128);
  // resolve: the switch stays with g, and leaves with a step change
  const c = chooseSm90Config(4096, 4096, 7168);
  assert.equal(resolveSm90Config(c, { step: "g", pingpong: false }, "block", 4096).pingpong, false);
  assert.equal(resolveSm90Config(G({ pingpong: false }), { step: "c" }, "block", 4096).pingpong, undefined);
  assert.equal(resolveSm90Config(G({ pingpong: false }), { blockN: 160 }, "block", 4096).pingpong, false);
});

type Op = { kind: "sync" | "arrive"; bar: number } | { kind: "issue"; kb: number };

/** What each warp of warpgroup w executes in step g's math branch (step_g.ts), turns and issues only. */
function program(w: number, kblocks: number, pp: boolean, opts: { grant?: boolean; drain?: boolean } = {}) {
  const ops: Op[] = [];
  if (pp && w === 1 && opts.grant !== false) ops.push({ kind: "arrive", bar: 0 });
  for (let kb = 0; kb < kblocks; kb++) {
    if (pp) ops.push({ kind: "sync", bar: w });
    ops.push({ kind: "issue", kb });
    if (pp) ops.push({ kind: "arrive", bar: 1 - w });
  }
  if (pp && w === 0 && opts.drain !== false) ops.push({ kind: "sync", bar: 0 });
  return ops;
}

/**
 * Runs the 8 math warps (warps 0–3: warpgroup 0's program, 4–7: warpgroup 1's) under hardware
 * named-barrier rules — every bar.sync / bar.arrive of a warp adds 32 threads, a barrier completes at 256
 * and resets, bar.sync blocks its warp until then — picking the next warp at random. Each barrier
 * operation carries its ordinal among its warp's operations on that barrier; a completing generation whose
 * arrivals disagree on it would mix two turns. Returns each warp's issue times, or what went wrong.
 */
function simulate(progs: Op[][], seed: number): { issued: Map<string, number[]>; error?: string } {
  let x = seed >>> 0 || 1;
  const rand = () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), (x >>> 0) / 2 ** 32);
  const count = [0, 0], gen: number[][] = [[], []], waiting = new Array<number | undefined>(8);
  const pc = new Array(8).fill(0), nth = Array.from({ length: 8 }, () => [0, 0]);
  const issued = new Map<string, number[]>(); // "w:kb" → clock of each of its 4 warps' issue
  let clock = 0;
  for (;;) {
    const ready = [...Array(8).keys()].filter((v) =>
      pc[v] < progs[v >> 2].length && waiting[v] === undefined
    );
    if (ready.length === 0) break;
    const v = ready[Math.floor(rand() * ready.length)];
    const op = progs[v >> 2][pc[v]++];
    clock++;
    if (op.kind === "issue") {
      const k = `${v >> 2}:${op.kb}`;
      issued.set(k, [...(issued.get(k) ?? []), clock]);
      continue;
    }
    if (op.kind === "sync") waiting[v] = op.bar;
    gen[op.bar].push(nth[v][op.bar]++);
    count[op.bar] += 32;
    if (count[op.bar] < 256) continue;
    if (new Set(gen[op.bar]).size !== 1) return { issued, error: `turns mixed on barrier ${op.bar}` };
    count[op.bar] = 0;
    gen[op.bar] = [];
    let woke = 0;
    for (let u = 0; u < 8; u++) if (waiting[u] === op.bar) (waiting[u] = undefined), woke++;
    if (woke !== 4) return { issued, error: `barrier ${op.bar} completed with ${woke} warps waiting` };
  }
  if (pc.some((p, v) => p < progs[v >> 2].length)) return { issued, error: "deadlock" };
  if (count.some((c) => c !== 0)) return { issued, error: `arrivals left over: ${count}` };
  return { issued };
}

const warps = (p0: Op[], p1: Op[]) => [p0, p1]; // programs by warpgroup; simulate runs 4 warps of each

Deno.test("gemm_sm90 g ping-pong turns: no deadlock, whole groups alternate, nothing left over", () => {
  for (const n of [1, 2, 3, 56, 3 * 56]) {
    for (let seed = 1; seed <= 30; seed++) {
      const r = simulate(warps(program(0, n, true), program(1, n, true)), seed * 7919 + n);
      assert.equal(r.error, undefined, `n=${n} seed=${seed}: ${r.error}`);
      // every warp of warpgroup 1 issues k-block i after all of 0's did, and 0's i+1 after all of 1's i
      for (let kb = 0; kb < n; kb++) {
        const a = r.issued.get(`0:${kb}`)!, b = r.issued.get(`1:${kb}`)!, a2 = r.issued.get(`0:${kb + 1}`);
        assert.equal(a.length + b.length, 8);
        assert.ok(Math.max(...a) < Math.min(...b), `k-block ${kb}: warpgroup 1 issued inside 0's group`);
        if (a2) assert.ok(Math.max(...b) < Math.min(...a2), `k-block ${kb + 1}: 0 issued inside 1's group`);
      }
    }
  }
  // the mirror can fail: without the first grant it deadlocks, without the last take a turn is left over
  const noGrant = simulate(warps(program(0, 3, true), program(1, 3, true, { grant: false })), 5);
  assert.equal(noGrant.error, "deadlock");
  const noDrain = simulate(warps(program(0, 3, true, { drain: false }), program(1, 3, true)), 5);
  assert.match(noDrain.error ?? "", /left over/);
  // without ping-pong the two warpgroups' issues interleave
  let interleaved = false;
  for (let seed = 1; seed <= 20 && !interleaved; seed++) {
    const r = simulate(warps(program(0, 4, false), program(1, 4, false)), seed);
    interleaved = [0, 1, 2, 3].some((kb) =>
      Math.max(...r.issued.get(`0:${kb}`)!) > Math.min(...r.issued.get(`1:${kb}`)!)
    );
  }
  assert.ok(interleaved);
});

Deno.test("gemm_sm90 g source: turn wait → wgmmas → commit → turn pass → wait → release, per-warpgroup epilogue", () => {
  const src = gemmSm90Kernel(G()).source;
  const math = src.slice(src.indexOf("__shfl_sync"));
  const at = (s: string) => {
    const i = math.indexOf(s);
    assert.ok(i >= 0, `missing: ${s}`);
    return i;
  };
  const seq = [
    "if (wg == 1u) named_bar_arrive(TURN + 0u, 256u)",
    "mbar_wait(FULL(s), ph, STUCK)",
    "named_bar_sync(TURN + wg, 256u)",
    "wgmma_fence()",
    "wgmma_commit()",
    "named_bar_arrive(TURN + (wg ^ 1u), 256u)",
    "wgmma_wait0()",
    "mbar_arrive(EMPTY(s))",
    "named_bar_sync(2u + wg, 128u)",
    "if (wg == 0u) named_bar_sync(TURN + 0u, 256u)",
  ];
  for (let i = 1; i < seq.length; i++) {
    assert.ok(at(seq[i - 1]) < at(seq[i]), `${seq[i - 1]} before ${seq[i]}`);
  }
  assert.ok(!src.includes("named_bar_sync(1, MATH_THREADS)"), "no barrier over both math warpgroups");
  assert.ok(!src.includes("__syncthreads();", src.indexOf("__shfl_sync")), "no CTA barrier after the entry");
  const nopp = gemmSm90Kernel(G({ pingpong: false })).source;
  assert.ok(!/named_bar_(sync|arrive)\(TURN/.test(nopp), "pingpong: false emits no turn barrier");
  assert.ok(!/named_bar_(sync|arrive)\(TURN/.test(gemmSm90Kernel(G({ blockM: 64 })).source));
  // two waves: each takes its own turn over its own 64 A rows; the stage is released once, after wave 1
  const big = gemmSm90Kernel(G({ blockM: 256, stages: 3 })).source;
  const loop = big.slice(big.indexOf("for (int kb = 0"), big.indexOf("if (++s == STAGES)"));
  const count = (x: string) => loop.split(x).length - 1;
  assert.equal(count("named_bar_sync(TURN + wg, 256u)"), 2);
  assert.equal(count("wgmma_wait0()"), 2);
  assert.equal(count("mbar_arrive(EMPTY(s))"), 1);
  assert.ok(
    loop.lastIndexOf("wgmma_wait0()") < loop.indexOf("mbar_arrive(EMPTY(s))"),
    "released after wave 1",
  );
  assert.ok(loop.includes("(wg * 128u) * BK") && loop.includes("(wg * 128u + 64u) * BK"), "wave A rows");
  assert.ok(loop.indexOf("fin[4 * i + 0]") < loop.indexOf("fin1[4 * i + 0]"), "wave 0 → fin, wave 1 → fin1");
});

Deno.test("gemm_sm90 g heuristic: measured faster than c (run 3), so the default is g at large M", () => {
  assert.ok(SM90_STEP_MODEL.g.colClk < SM90_STEP_MODEL.c.colClk);
  const shapes = [
    [4096, 4096, 7168],
    [4096, 7168, 2048],
    [4096, 24576, 1536],
    [1024, 4096, 7168],
    [
      1024,
      7168,
      2048,
    ],
    [4096, 2112, 7168],
    [4096, 7168, 16384],
    [200, 2111, 512],
  ];
  for (const [M, N, K] of shapes) {
    for (const mode of ["block", "tensor", "channel"] as const) {
      const def = chooseSm90Config(M, N, K, mode);
      if (M >= 1024) assert.equal(def.step, "g", `${M}x${N}x${K} ${mode}`);
    }
    assert.equal(chooseSm90Config(M, N, K, "block", undefined, ["g"]).step, "g");
    const cands = tuneCandidates({ M, N, K }, "block");
    assert.ok(cands.some((c) => c.step === "g" && c.pingpong === undefined), "g is tuned");
    if (M > 64) {
      assert.ok(cands.some((c) => c.step === "g" && c.pingpong === false), "and g without ping-pong");
    }
  }
});

Deno.test("gemm_sm90 SASS helpers: loops that issue wgmmas and the barriers inside them", () => {
  const line = (a: number, ins: string) => `        /*${a.toString(16).padStart(4, "0")}*/  ${ins} ;`;
  const text = [
    line(0x00, "BAR.SYNC.DEFER_BLOCKING 0x0"),
    line(0x10, "SYNCS.PHASECHK.TRANS64.TRYWAIT P0, [UR9+0x30a00], R8"),
    line(0x20, "@P0 BRA 0x40"),
    line(0x30, "@!P0 BRA 0x10"),
    line(0x40, "BAR.SYNC.DEFER_BLOCKING R4, 0x100"),
    line(0x50, "QGMMA.64x128x32.F32.E4M3.E4M3 R24, gdesc[UR16], R24, gsb0"),
    line(0x60, "BAR.ARV R137, 0x100"),
    line(0x70, "WARPGROUP.DEPBAR.LE gsb0, 0x0"),
    line(0x80, "@!P0 BRA 0x10"),
    line(0x90, "BAR.SYNC.DEFER_BLOCKING 0x1, 0x100"),
    line(0xa0, "@!P1 BRA 0x0"),
    line(0xb0, "EXIT"),
  ].join("\n");
  const ins = sassInstructions(text);
  assert.equal(ins.length, 12);
  assert.deepEqual(ins[2], { addr: 0x20, pred: "@P0", op: "BRA", args: "0x40" });
  const loops = loopsContaining(ins, /^QGMMA/);
  assert.deepEqual(
    loops,
    [{ start: 1, end: 8 }, { start: 0, end: 10 }],
    "innermost first; the wait loop is not one",
  );
  const bars = sassBarriers(ins);
  assert.deepEqual(bars.map((b) => [b.kind, b.id, b.threads]), [
    ["sync", "0x0", undefined],
    ["sync", "R4", 256],
    ["arrive", "R137", 256],
    ["sync", "0x1", 256],
  ]);
  // the outer loop holds a CTA-wide barrier: what checkBarriers in gemm_sm90_test.ts rejects
  assert.ok(
    bars.some((b) => b.threads === undefined && b.index >= loops[1].start && b.index <= loops[1].end),
  );
});

Deno.test("gemm_sm90 heuristic: the default is session 4's tuned config on every bench shape (issue 6: within 10%)", () => {
  // tuned on the H200 (bench/RESULTS.md, session 4): step g, the tile the autotuner kept, rows × columns
  const tuned: [number, number, number, string][] = [
    [4096, 4096, 7168, "256x128"],
    [4096, 7168, 2048, "256x128"],
    [4096, 24576, 1536, "256x128"],
    [1024, 4096, 7168, "256x128"],
    [1024, 7168, 2048, "256x128"],
    [4096, 2112, 7168, "128x192"],
    [4096, 7168, 16384, "256x128"],
  ];
  for (const [M, N, K, tile] of tuned) {
    const c = chooseSm90Config(M, N, K, "block");
    assert.equal(`${c.step} ${c.blockM}x${c.blockN}`, `g ${tile}`, `${M}x${N}x${K}`);
  }
  // 256-row tiles need M to fill them: small M keeps 128 (or 64) rows
  assert.equal(chooseSm90Config(256, 7168, 7168, "block").blockM, 128);
  assert.equal(chooseSm90Config(64, 7168, 7168, "block").blockM, 64);
});

Deno.test("gemm_sm90 heuristic: g keeps ping-pong at 128-wide tiles and drops it at ≥ 160 (measured, session 2)", () => {
  assert.notEqual(chooseSm90Config(4096, 4096, 7168, "block").pingpong, false);
  const wide = chooseSm90Config(4096, 2112, 7168, "block");
  assert.equal(`${wide.blockN} ${wide.pingpong}`, "192 false");
  // 256-row tiles keep it (session 4, same run: 1.02–1.07× the peer with, 0.93–1.01× without)
  const big = chooseSm90Config(1024, 7168, 2048, "block");
  assert.equal(`${big.blockM} ${big.pingpong}`, "256 undefined");
  assert.equal(sm90Overlap(big), true, "and issue the next tile's first wave before the epilogue");
  assert.equal(sm90Overlap(wide), false);
});
