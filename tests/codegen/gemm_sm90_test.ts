/**
 * The sm_90a GEMM ladder, pure + compile tiers: configs are validated, sources are deterministic and
 * their signatures come from the ParamSpec list, the persistent tile order covers every tile once, the
 * epilogue's swizzled stores hit every smem chunk once; and every ladder kernel compiles with NVRTC for
 * sm_90a with 0 spills / 0 stack / no "wgmma serialized" or "wait injected" warnings, with QGMMA + UTMALDG
 * (+ UTMASTG, STSM, USETMAXREG, multicast where the step has them) and no local memory in its SASS; the
 * deferred steps (e, f) keep their wgmma groups asynchronous (`WARPGROUP.DEPBAR.LE gsb0, 0x1` between
 * issue and promotion, a full drain only at chunk ends). Barriers: no CTA-wide barrier inside any loop
 * that issues wgmmas (every step); for c and g the exact named barriers (c: 2 × 256-thread per tile in the
 * epilogue and none in the k-loop; g: 2 × 128-thread per warpgroup per tile, and with ping-pong one
 * 256-thread turn wait before the wgmmas and one turn pass between the last QGMMA and the wgmma wait), and
 * every mbarrier wait's fast path is one try_wait + branch.
 */
import assert from "node:assert/strict";
import { compileTest } from "../_util.ts";
import { compileFor, ptxasReport } from "../../runtime/mod.ts";
import { renderParams } from "../../codegen/kernel_source.ts";
import {
  gemmSm90Kernel,
  SM90_DEFERRED_CHUNK,
  SM90_MAX_SMEM,
  sm90Chunk,
  sm90Cluster,
  type Sm90Config,
  sm90ConfigName,
  sm90ConfigProblems,
  sm90MaxStages,
  sm90Overlap,
  sm90PingPong,
  sm90ScaleBlocksSpanned,
  sm90SmemLayout,
  sm90StoreBox,
  sm90StoreRows,
  sm90Threads,
  sm90Waves,
} from "../../codegen/kernels/gemm_sm90/mod.ts";
import {
  chooseSm90Config,
  sm90Candidates,
  sm90Grid,
  sm90ModelClocks,
  sm90TileGroup,
} from "../../ops/gemm_sm90.ts";
import { loopsContaining, sassBarriers, sassHistogram, type SassInstr, sassTool } from "./_sass.ts";

const C = (o: Partial<Sm90Config>): Sm90Config => ({
  step: "c",
  mode: "block",
  blockM: 128,
  blockN: 128,
  stages: 5,
  epilogue: "tma",
  ...o,
});

/** The representative set the compile tier builds: every step, every scale mode, both epilogues,
 * one- and two-scale-block tiles, one and two math warpgroups (e/f: 128 and 112/96 wide). */
export const LADDER: Sm90Config[] = [
  C({ step: "a", stages: 4, epilogue: "direct" }),
  C({ step: "b", epilogue: "direct" }),
  C({ step: "c" }),
  C({ step: "c", blockN: 160, stages: 5 }),
  C({ step: "c", blockN: 192, stages: 4, mode: "channel" }),
  C({ step: "c", blockM: 64, blockN: 128, stages: 6, mode: "tensor", epilogue: "direct" }),
  C({ step: "d" }),
  C({ step: "d", blockN: 192, stages: 4 }),
  C({ step: "d", blockN: 144, stages: 5, mode: "tensor" }),
  C({ step: "e" }),
  C({ step: "e", blockN: 112, stages: 6 }),
  C({ step: "e", blockM: 64, blockN: 128, stages: 8, mode: "channel", epilogue: "direct" }),
  C({ step: "f" }),
  C({ step: "f", blockN: 96, stages: 7, mode: "tensor" }),
  C({ step: "e", chunk: 2 }),
  C({ step: "g" }),
  C({ step: "g", pingpong: false }),
  C({ step: "g", blockN: 160, stages: 5 }),
  C({ step: "g", blockN: 192, stages: 4, mode: "channel" }),
  C({ step: "g", blockM: 64, blockN: 128, stages: 6, mode: "tensor", epilogue: "direct" }),
  C({ step: "g", blockM: 256, stages: 3 }),
  C({ step: "g", blockM: 256, stages: 3, overlap: false }),
  C({ step: "g", blockN: 160, pingpong: false, overlap: true }),
  C({ step: "g", blockM: 256, stages: 3, multicast: true }),
  C({ step: "g", blockM: 256, blockN: 112, stages: 4, mode: "tensor", epilogue: "direct", multicast: true }),
  C({ step: "g", blockM: 256, blockN: 96, stages: 3, pingpong: false, mode: "tensor" }),
  C({ step: "g", blockM: 256, blockN: 112, stages: 4, mode: "channel", epilogue: "direct" }),
];

Deno.test("gemm_sm90 config: bad configs are refused with every reason", () => {
  assert.deepEqual(sm90ConfigProblems(C({})), []);
  const p = sm90ConfigProblems(
    { step: "z", mode: "row", blockM: 96, blockN: 100, stages: 1, epilogue: "smem" } as never,
  );
  assert.equal(p.length, 6, p.join("\n"));
  assert.match(sm90ConfigProblems(C({ step: "e", blockN: 144 })).join(), /3·blockN\/2/);
  assert.match(sm90ConfigProblems(C({ step: "f", blockN: 160 })).join(), /3·blockN\/2/);
  assert.deepEqual(sm90ConfigProblems(C({ step: "f", blockN: 128 })), []);
  assert.match(sm90ConfigProblems(C({ step: "c", chunk: 2 })).join(), /chunk is a setting of steps e and f/);
  assert.match(sm90ConfigProblems(C({ step: "e", chunk: 9 })).join(), /chunk must be/);
  assert.equal(
    sm90ConfigName(C({ step: "e", chunk: 4 })),
    sm90ConfigName(C({ step: "e" })),
    "default chunk: same kernel",
  );
  assert.match(sm90ConfigName(C({ step: "e", chunk: 2 })), /_u2$/);
  assert.match(sm90ConfigProblems(C({ blockN: 176 })).join(), /straddle 3 scale blocks/);
  assert.match(sm90ConfigProblems(C({ blockN: 256 })).join(), /> 192 accumulator registers/);
  assert.match(sm90ConfigProblems(C({ step: "b", epilogue: "tma" })).join(), /TMA store starts at step c/);
  assert.match(sm90ConfigProblems(C({ stages: 9 })).join(), /shared memory/);
});

Deno.test("gemm_sm90 config: scale-block span, store boxes and smem layout", () => {
  assert.equal(sm90ScaleBlocksSpanned(128), 1);
  assert.equal(sm90ScaleBlocksSpanned(64), 1);
  for (const n of [96, 112, 144, 160, 192, 256]) assert.equal(sm90ScaleBlocksSpanned(n), 2, `blockN ${n}`);
  for (const n of [176, 208, 224, 240]) assert.equal(sm90ScaleBlocksSpanned(n), 3, `blockN ${n}`);
  assert.deepEqual(sm90StoreBox(128), { cols: 64, swizzleBytes: 128 });
  assert.deepEqual(sm90StoreBox(160), { cols: 32, swizzleBytes: 64 });
  assert.deepEqual(sm90StoreBox(144), { cols: 16, swizzleBytes: 32 });
  for (const c of LADDER) {
    const L = sm90SmemLayout(c);
    assert.ok(L.request <= SM90_MAX_SMEM, sm90ConfigName(c));
    assert.equal(L.a % 1024, 0);
    assert.equal(L.b % 1024, 0);
    assert.equal(L.bStage % 1024, 0, "every B stage starts on a 1024-byte swizzle atom");
    assert.equal(L.d % 1024, 0);
    assert.equal(L.sa % 128, 0);
    assert.equal(L.bars % 8, 0);
    assert.equal(L.txBytes, c.blockM * 128 + c.blockN * 128 + (c.mode === "block" ? c.blockM * 4 : 0));
  }
  assert.equal(sm90MaxStages({ step: "c", mode: "block", blockM: 128, blockN: 128, epilogue: "tma" }), 5);
});

Deno.test("gemm_sm90 codegen: deterministic, named by variant, signature from the ParamSpec list", () => {
  const names = new Set<string>();
  for (const c of LADDER) {
    const a = gemmSm90Kernel(c), b = gemmSm90Kernel({ ...c });
    assert.equal(a.source, b.source, "codegen is deterministic");
    assert.equal(a.entry, sm90ConfigName(c));
    assert.ok(a.source.includes(`${a.entry}(${renderParams(a.params)})`), "signature rendered from params");
    assert.ok(!a.source.includes("#include"), "no headers");
    assert.equal(a.archSpecific, true);
    assert.deepEqual(a.cluster, sm90Cluster(c) > 1 ? [2, 1, 1] : undefined);
    names.add(a.name);
  }
  assert.equal(names.size, LADDER.length);
});

/** TS mirror of the kernels' `tile_coords` (the C text is compiled below; this checks the order). */
function tileCoords(t: number, numM: number, numN: number, group: number): [number, number] {
  const per = group * numM, g = Math.floor(t / per), first = g * group;
  const w = Math.min(group, numN - first), local = t - g * per;
  return [Math.floor(local / w), first + (local % w)];
}

Deno.test("gemm_sm90 persistent tile order: every tile exactly once, for ragged groups", () => {
  for (const [numM, numN, group] of [[32, 56, 11], [8, 17, 16], [1, 5, 3], [3, 1, 4], [7, 33, 8]]) {
    const seen = new Set<string>();
    for (let t = 0; t < numM * numN; t++) {
      const [mb, nb] = tileCoords(t, numM, numN, group);
      assert.ok(mb >= 0 && mb < numM && nb >= 0 && nb < numN, `tile ${t} → (${mb}, ${nb})`);
      seen.add(`${mb},${nb}`);
    }
    assert.equal(seen.size, numM * numN);
  }
});

Deno.test("gemm_sm90 epilogue: stmatrix addresses cover each swizzled 16-byte chunk exactly once", () => {
  // mirrors tmaEpilogue's address math for every (thread, ip) of a 128 × BN tile
  for (const bn of [128, 160, 144, 192]) {
    const { cols, swizzleBytes: sw } = sm90StoreBox(bn);
    const hits = new Map<number, string>();
    for (let tid = 0; tid < 256; tid++) {
      const wg = tid >> 7, warp = tid >> 5, lane = tid & 31, mat = lane >> 3;
      const row = wg * 64 + (warp & 3) * 16 + (lane & 7) + ((mat & 1) << 3);
      for (let ip = 0; ip < bn / 16; ip++) {
        const col = (2 * ip + (mat >> 1)) * 8, box = Math.floor(col / cols), chunk = (col % cols) / 8;
        const addr = box * 128 * sw + row * sw + ((chunk ^ (((row * sw) >> 7) & (sw / 16 - 1))) << 4);
        const who = `row ${row} col ${col}`;
        assert.ok(!hits.has(addr), `${who} and ${hits.get(addr)} share smem chunk ${addr}`);
        assert.ok(addr >= box * 128 * sw && addr < (box + 1) * 128 * sw, `${who} leaves its box`);
        hits.set(addr, who);
      }
    }
    assert.equal(hits.size, (128 * bn * 2) / 16, `blockN ${bn}: all chunks written`);
  }
});

Deno.test("gemm_sm90 per-warpgroup epilogue (e/f/g): each warpgroup's stmatrix covers its own boxes once", () => {
  // mirrors deferredTmaEpilogue: warpgroup wg owns [D + wg·64·BN·2, +64·BN·2), boxes of 64 rows × STORE_COLS
  for (const bn of [128, 112, 96, 64, 144, 160, 192]) {
    const { cols, swizzleBytes: sw } = sm90StoreBox(bn);
    const rows = sm90StoreRows({
      step: bn > 128 ? "g" : "e",
      mode: "block",
      blockM: 128,
      blockN: bn,
      stages: 4,
      epilogue: "tma",
    });
    assert.equal(rows, 64);
    const hits = new Map<number, string>();
    for (let tid = 0; tid < 256; tid++) {
      const wg = tid >> 7, warp = tid >> 5, lane = tid & 31, mat = lane >> 3;
      const row = (warp & 3) * 16 + (lane & 7) + ((mat & 1) << 3);
      const dwg = wg * 64 * bn * 2;
      for (let ip = 0; ip < bn / 16; ip++) {
        const col = (2 * ip + (mat >> 1)) * 8, box = Math.floor(col / cols), chunk = (col % cols) / 8;
        const addr = dwg + box * rows * sw + row * sw + ((chunk ^ (((row * sw) >> 7) & (sw / 16 - 1))) << 4);
        const who = `wg ${wg} row ${row} col ${col}`;
        assert.ok(!hits.has(addr), `${who} and ${hits.get(addr)} share smem chunk ${addr}`);
        assert.ok(
          addr >= dwg + box * rows * sw && addr < dwg + (box + 1) * rows * sw,
          `${who} leaves its box`,
        );
        hits.set(addr, who);
      }
    }
    assert.equal(hits.size, (128 * bn * 2) / 16, `blockN ${bn}: all chunks written`);
    // TMA needs each box base aligned to its swizzle atom (8 rows × swizzle bytes)
    assert.equal((64 * bn * 2) % (8 * sw), 0, `blockN ${bn}: warpgroup halves keep the swizzle alignment`);
  }
});

/**
 * TS mirror of the deferred math loop of steps e/f (parts_e.ts deferredIssue, step_e.ts turn/chunk): the
 * issue cursor, the two slots, dummies past the end, chunks of SM90_DEFERRED_CHUNK, warpgroup 1's half
 * chunk. Returns what one warpgroup did, in order.
 */
function deferredSchedule(
  numTiles: number,
  tileStart: number,
  tileStep: number,
  nK: number,
  wg: number,
  U = SM90_DEFERRED_CHUNK,
) {
  let ti = tileStart, kbi = 0, it = 0, done = false;
  const slot = [0, 1].map(() => ({ ok: false, tl: 0, kb: 0, it: 0, last: false }));
  const released: number[] = [], stored: { tile: number; kbs: number[] }[] = [];
  let fin: number[] = [], dummies = 0, pending = 0, maxPending = 0;
  const issue = (p: number) => {
    if (ti < numTiles) {
      slot[p] = { ok: true, tl: ti, kb: kbi, it, last: kbi === nK - 1 };
      it++;
      if (++kbi === nK) [kbi, ti] = [0, ti + tileStep];
    } else {
      slot[p] = { ...slot[p], ok: false, last: false };
      done = true;
      dummies++;
    }
    maxPending = Math.max(maxPending, ++pending);
  };
  const turn = (p: number, issueNext: boolean) => {
    if (issueNext) issue(1 - p);
    pending = issueNext ? 1 : 0; // wait_group 1 / 0
    if (!slot[p].ok) return;
    released.push(slot[p].it);
    fin.push(slot[p].tl * 1e6 + slot[p].kb);
    if (slot[p].last) {
      stored.push({ tile: slot[p].tl, kbs: fin.map((x) => x - slot[p].tl * 1e6) });
      fin = [];
    }
  };
  const chunk = (u: number) => {
    issue(0);
    for (let i = 0; i < u; i++) turn(i % 2, i < u - 1);
    assert.equal(pending, 0, "a chunk ends drained");
  };
  if (wg === 1) chunk(Math.floor(U / 2));
  while (!done) chunk(U);
  return { released, stored, dummies, maxPending, finLeft: fin.length };
}

Deno.test("gemm_sm90 deferred schedule (e/f): every k-block promoted and released once, every tile stored once", () => {
  for (
    const [numTiles, grid, nK] of [[1, 1, 1], [5, 2, 1], [7, 3, 2], [17, 4, 3], [64, 132, 56], [300, 132, 12]]
  ) {
    for (let b = 0; b < Math.min(grid, numTiles); b++) {
      for (const [wg, U] of [[0, 4], [1, 4], [0, 2], [1, 2], [1, 3], [0, 8], [1, 8]]) {
        const r = deferredSchedule(numTiles, b, grid, nK, wg, U);
        const mine = Array.from({ length: Math.ceil((numTiles - b) / grid) }, (_, i) => b + i * grid);
        assert.deepEqual(r.stored.map((x) => x.tile), mine, "tiles stored in walk order, each once");
        for (const s of r.stored) {
          assert.deepEqual(
            s.kbs,
            Array.from({ length: nK }, (_, k) => k),
            "all k-blocks, in order",
          );
        }
        assert.deepEqual(
          r.released,
          Array.from({ length: mine.length * nK }, (_, i) => i),
          "each stage use released once",
        );
        assert.equal(r.finLeft, 0);
        assert.ok(r.dummies >= 1 && r.dummies <= U, `dummies ${r.dummies}`);
        assert.ok(r.maxPending <= 2, "at most two groups in flight");
      }
    }
  }
});

Deno.test("gemm_sm90 heuristic: candidates are valid, deferred steps stay ≤ 128 wide, per-step choices", () => {
  for (const [M, N] of [[4096, 7168], [1024, 2112], [64, 4096], [200, 2111]]) {
    for (const c of sm90Candidates(M, N, "block", ["b", "c", "d", "e", "f"])) {
      assert.deepEqual(sm90ConfigProblems(c), [], JSON.stringify(c));
      if (c.step === "e" || c.step === "f") assert.ok(c.blockN <= 128);
    }
  }
  for (const step of ["b", "c", "d", "e", "f"] as const) {
    assert.equal(chooseSm90Config(4096, 7168, 7168, "block", undefined, [step]).step, step);
  }
  // 1024 × 7168: 128-wide tiles make 448 tiles = 3.4 waves, 112-wide 512 tiles = 3.9 waves
  assert.equal(chooseSm90Config(1024, 7168, 2048, "block", undefined, ["e"]).blockN, 112);
});

Deno.test("gemm_sm90 heuristic: valid configs for the benchmark shapes, sane grids and groups", () => {
  const shapes = [
    [4096, 4096, 7168],
    [4096, 7168, 2048],
    [4096, 24576, 1536],
    [1024, 4096, 7168],
    [1024, 7168, 2048],
    [
      4096,
      2112,
      7168,
    ],
    [4096, 7168, 16384],
    [1, 4096, 7168],
    [3, 2112, 7168],
    [64, 256, 512],
  ];
  for (const [M, N, K] of shapes) {
    for (const mode of ["block", "tensor", "channel"] as const) {
      const c = chooseSm90Config(M, N, K, mode);
      assert.deepEqual(sm90ConfigProblems(c), [], `${M}x${N}x${K} ${mode}: ${JSON.stringify(c)}`);
      assert.ok(sm90ModelClocks(c, M, N, K) > 0);
      const g = sm90Grid(c, M, N);
      if (sm90Cluster(c) > 1) assert.equal(g[0] % 2, 0, "cluster launches need an even grid");
      if (c.step !== "a" && c.step !== "b") assert.ok(g[0] <= 132 && g[0] >= 1);
      const grp = sm90TileGroup(c, M, N);
      assert.ok(grp >= 1 && grp <= Math.ceil(N / c.blockN));
    }
  }
  assert.equal(chooseSm90Config(4095, 2111, 256, "block").epilogue, "direct", "N % 8 ≠ 0: no TMA store");
});

/** The named barriers steps c and g may execute, as "sync|arrive threads" → instructions ("all": CTA-wide). */
function expectedBarriers(c: Sm90Config): Map<string, number> | undefined {
  if (c.step !== "c" && c.step !== "g") return undefined;
  // the entry __syncthreads after the barrier inits (a cluster barrier with clusters, and one before exit)
  const e = new Map<string, number>([["sync all", sm90Cluster(c) > 1 ? 2 : 1]]);
  const add = (k: string, n: number) => e.set(k, (e.get(k) ?? 0) + n);
  // TMA-store epilogue: before the stmatrix and before the store; c over both math warpgroups, g per warpgroup
  if (c.epilogue === "tma") add(`sync ${c.step === "c" ? (c.blockM / 64) * 128 : 128}`, 2);
  if (sm90PingPong(c)) {
    // a turn per wave issue: the k-loop's, and with overlap the ahead issues before the loop and before
    // each epilogue plus wave 1 of the peeled first k-block
    const issues = sm90Waves(c) + (sm90Overlap(c) ? 2 + sm90Waves(c) - 1 : 0);
    add("sync 256", issues + 1); // each issue's turn wait + warpgroup 0 taking the last turn
    add("arrive 256", issues + 1); // warpgroup 1's first grant + each issue's turn pass
  }
  return e;
}

/**
 * No loop that issues wgmmas holds a CTA-wide barrier (every step); for c and g the exact barrier set,
 * the k-loop's own barriers (c: none; g: the turn wait before the wgmmas, the turn pass between the last
 * QGMMA and the wgmma wait) and single-try_wait fast paths on every mbarrier wait.
 */
function checkBarriers(c: Sm90Config, instrs: SassInstr[]): void {
  const bars = sassBarriers(instrs);
  const cta = (b: { threads: number | undefined }) => b.threads === undefined || b.threads >= sm90Threads(c);
  const loops = loopsContaining(instrs, /^QGMMA/);
  assert.ok(loops.length > 0, "a loop issues the wgmmas");
  for (const l of loops) {
    const inside = bars.filter((b) => b.index >= l.start && b.index <= l.end && cta(b));
    assert.deepEqual(inside, [], "a CTA-wide barrier inside a loop that issues wgmmas");
  }
  const want = expectedBarriers(c);
  if (!want) return;
  const got = new Map<string, number>();
  for (const b of bars) {
    const k = `${b.kind} ${b.threads ?? "all"}`;
    got.set(k, (got.get(k) ?? 0) + 1);
  }
  assert.deepEqual(got, want, "named barriers");
  const k = loops[0]; // innermost: the k-loop
  const inLoop = bars.filter((b) => b.index >= k.start && b.index <= k.end);
  const at = (re: RegExp) =>
    instrs.flatMap((x, i) => (i >= k.start && i <= k.end && re.test(x.op) ? [i] : []));
  const qg = at(/^QGMMA/), dep = at(/^WARPGROUP\.DEPBAR/), waves = sm90Waves(c);
  assert.equal(qg.length, 4 * waves);
  assert.equal(dep.length, waves);
  if (sm90PingPong(c)) {
    assert.deepEqual(
      inLoop.map((b) => `${b.kind} ${b.threads}`),
      Array(waves).fill(["sync 256", "arrive 256"]).flat(),
    );
    for (let w = 0; w < waves; w++) {
      const [wait, pass] = [inLoop[2 * w].index, inLoop[2 * w + 1].index];
      assert.ok(
        wait < qg[4 * w] && (w === 0 || dep[w - 1] < wait),
        `wave ${w}: the turn wait comes before its wgmmas`,
      );
      assert.ok(qg[4 * w + 3] < pass && pass < dep[w], `wave ${w}: the turn passes before the wgmma wait`);
    }
  } else assert.deepEqual(inLoop, [], "no barrier in the k-loop");
  const tries = instrs.flatMap((x, i) => (/^SYNCS\.PHASECHK\..*TRYWAIT/.test(x.op) ? [i] : []));
  const fullWaits = sm90Overlap(c) ? 3 : 1; // with overlap also the waits before the two ahead issues
  assert.equal(
    tries.length,
    2 * (fullWaits + 1),
    "full waits + the empty wait, each a fast try_wait and the watchdog loop's",
  );
  for (const i of tries) {
    assert.ok(/^BRA/.test(instrs[i + 1].op) && instrs[i + 1].pred !== "", "try_wait → branch (fast path)");
  }
}

for (const c of LADDER) {
  compileTest(
    `gemm_sm90 ${sm90ConfigName(c)}: sm_90a, 0 spills, QGMMA + TMA in SASS, no local memory`,
    async (t) => {
      const ks = gemmSm90Kernel(c);
      const r = await compileFor(ks, "sm_90a");
      const log = r.log ?? "";
      const rep = ptxasReport(log);
      assert.equal(rep.length, 1, log);
      assert.equal(rep[0].spillBytes, 0, `spills:\n${log}`);
      assert.equal(rep[0].stackBytes, 0, `stack:\n${log}`);
      assert.ok(
        !/C75(08|09|1\d)/.test(log),
        `ptxas warned (setmaxnreg ignored / wgmma serialized / wait injected):\n${log}`,
      );
      const tool = sassTool();
      if (!tool) {
        console.log(
          "skipped SASS checks: no cuobjdump (set KILN_CUOBJDUMP, or pip install nvidia-cuda-cuobjdump)",
        );
        return;
      }
      if (Deno.permissions.querySync({ name: "run", command: tool }).state !== "granted") {
        console.log(`skipped SASS checks: no permission to run ${tool} (deno test --allow-run)`);
        return;
      }
      const { h, text, instrs } = await sassHistogram(r.cubin, tool);
      await t.step("SASS barriers", () => checkBarriers(c, instrs));
      await t.step("SASS", () => {
        const need = ["QGMMA", "UTMALDG", "SYNCS"];
        if (c.epilogue === "tma") need.push("UTMASTG", "STSM");
        if (sm90Threads(c) === 384) need.push("USETMAXREG");
        if (sm90Cluster(c) > 1) need.push("UTMALDG.2D.MULTICAST", "UCGABAR_ARV");
        for (const op of need) {
          assert.ok((h.get(op) ?? 0) > 0, `${op} missing; SASS has ${[...h.keys()].join(" ")}`);
        }
        for (const op of ["LDL", "STL"]) {
          assert.equal(h.get(op) ?? 0, 0, `${op}: local memory in the kernel`);
        }
        const waits = (n: number) =>
          (text.match(new RegExp(`WARPGROUP\\.DEPBAR\\.LE gsb0, 0x${n}\\b`, "g")) ?? []).length;
        if (c.step === "e" || c.step === "f") {
          // issues: the main chunk (U) + warpgroup 1's half chunk (U/2) with two math warpgroups
          const U = sm90Chunk(c), half = c.blockM === 128 ? Math.floor(U / 2) : 0;
          assert.equal(h.get("QGMMA"), 4 * (U + half), "4 × wgmma k32 per issued k-block");
          assert.equal(waits(1), U - 1 + Math.max(0, half - 1), "deferred waits (wait_group 1) kept");
          assert.equal(waits(0), half ? 2 : 1, "a full drain only at chunk ends (else ptxas serialized)");
          return;
        }
        // one k-block = 4 × wgmma k32 per wave, unrolled once; with overlap also the two ahead issues
        // and wave 1 of the peeled first k-block
        const w = sm90Waves(c), extra = sm90Overlap(c) ? 4 * (2 + w - 1) : 0;
        assert.equal(h.get("QGMMA"), 4 * w + extra, "wgmma k32 count");
      });
    },
  );
}
