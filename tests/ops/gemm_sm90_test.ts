/**
 * The sm_90a GEMM ladder on the GPU: part 1's correctness suite (relative Frobenius error ≤ 2e-3 against a
 * float64 reference of the dequantized operands) on every step a–g, for M ∈ {1, 3, 64, 128, 1024, 4096}
 * × the DeepSeek (N, K) shapes; outputs poisoned before each run, every element of rows < M written, rows
 * ≥ M of the buffer untouched; the other scale modes; a CUDA-graph replay; argument errors before launch.
 * Big shapes compare sampled rows (all N columns of each) — a float64 reference of 4096 × 24576 × 1536
 * in TypeScript would take minutes.
 */
import assert from "node:assert/strict";
import { gpuTest } from "../_util.ts";
import { ArgumentError, Device, Graph, Tensor } from "../../runtime/mod.ts";
import { bf16Decode, fp8e4m3Encode } from "../../dsl/dtype.ts";
import { blockMatmulReference } from "../../dsl/ops/block_matmul.ts";
import { Rng } from "../../testing/random.ts";
import { assertRelError } from "../../testing/assert.ts";
import { lookupTuned, mBucket, tuneCandidates, tuneKey } from "../../ops/autotune.ts";
import { sm90ConfigProblems } from "../../codegen/kernels/gemm_sm90/mod.ts";
import {
  type GemmSm90Plan,
  prepareGemmSm90,
  type Sm90Config,
  type Sm90ScaleMode,
} from "../../ops/gemm_sm90.ts";

const MS = [1, 3, 64, 128, 1024, 4096];
const SHAPES: [number, number][] = [[4096, 7168], [7168, 2048], [24576, 1536], [2112, 7168], [7168, 16384], [
  256,
  512,
]];
/** One kernel per rung of the ladder (tile 128 × 128 so the rungs differ only in what each step adds). */
const LADDER: Partial<Sm90Config>[] = [
  { step: "a", blockN: 128 },
  { step: "b", blockN: 128 },
  { step: "c", blockN: 128 },
  { step: "d", blockN: 128 },
  { step: "e", blockN: 128 },
  { step: "f", blockN: 128 },
  { step: "e", blockN: 112 }, // two scale blocks per tile, 32-byte store boxes
  { step: "g", blockN: 128 },
  { step: "g", blockN: 128, pingpong: false },
  { step: "g", blockM: 256, blockN: 128 }, // two 64-row waves per math warpgroup
];
const sm90 = (() => {
  try {
    return Device.get().info.cc === 90;
  } catch {
    return false;
  }
})();

/** fp8 codes of normals, drawn through a 64K table so 100M-element weights take a fraction of a second. */
function fp8Codes(n: number, rng: Rng): Uint8Array {
  const table = new Uint8Array(65536).map(() => fp8e4m3Encode(rng.normal()));
  const out = new Uint8Array(n);
  let x = (rng.next() * 2 ** 32) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = table[(x >>> 0) & 0xffff];
  }
  return out;
}

/** Host operands of one (N, K) shape at the largest M; smaller M take leading rows. */
interface Problem {
  N: number;
  K: number;
  a: Uint8Array; // [maxM, K]
  sa: Float32Array; // [K/128, maxM] (block) | [maxM] (channel) | [1] (tensor)
  b: Uint8Array; // [N, K]
  sb: Float32Array; // [ceil(N/128), K/128] | [N] | [1]
  mode: Sm90ScaleMode;
  maxM: number;
}

function problem(N: number, K: number, maxM: number, mode: Sm90ScaleMode, rng: Rng): Problem {
  const kb = K / 128;
  const pos = (n: number) => Float32Array.from({ length: n }, () => 2 ** (rng.next() * 4 - 6)); // [2^-6, 2^-2)
  const sa = pos(mode === "block" ? kb * maxM : mode === "channel" ? maxM : 1);
  const sb = pos(mode === "block" ? Math.ceil(N / 128) * kb : mode === "channel" ? N : 1);
  return { N, K, a: fp8Codes(maxM * K, rng), sa, b: fp8Codes(N * K, rng), sb, mode, maxM };
}

/** Device operands for the first M rows (A padded to M_pad = ceil(M/4)·4 rows, scales re-laid for M_pad). */
function upload(p: Problem, M: number): Tensor[] {
  const mPad = Math.ceil(M / 4) * 4, kb = p.K / 128;
  const a = Tensor.fromHost("fp8e4m3", [mPad, p.K], p.a.subarray(0, mPad * p.K));
  let sa: Tensor;
  if (p.mode === "block") {
    const s = new Float32Array(kb * mPad);
    for (let k = 0; k < kb; k++) for (let r = 0; r < mPad; r++) s[k * mPad + r] = p.sa[k * p.maxM + r];
    sa = Tensor.fromHost("f32", [kb, mPad], s);
  } else if (p.mode === "channel") sa = Tensor.fromHost("f32", [mPad], p.sa.subarray(0, mPad));
  else sa = Tensor.fromHost("f32", [1], p.sa);
  const b = Tensor.fromHost("fp8e4m3", [p.N, p.K], p.b);
  const sbShape = p.mode === "block" ? [Math.ceil(p.N / 128), kb] : p.mode === "channel" ? [p.N] : [1];
  const sb = Tensor.fromHost("f32", sbShape, p.sb);
  return [a, sa, b, sb];
}

/** float64 references (part 1's `blockMatmulReference`) of the sampled rows, keyed by row. */
function references(p: Problem, rows: number[]): Map<number, Float64Array> {
  const ref = blockMatmulReference({
    mode: p.mode,
    M: p.maxM,
    N: p.N,
    K: p.K,
    a: p.a,
    aScales: p.sa,
    aScaleStride: p.maxM,
    b: p.b,
    bScales: p.sb,
  }, { rows });
  return new Map(rows.map((r, i) => [r, ref.subarray(i * p.N, (i + 1) * p.N)] as const));
}

/** Rows to compare: all of them for small problems, else first, last and a few random ones. */
function sampleRows(M: number, N: number, K: number, rng: Rng): number[] {
  if (M * N * K <= 2 ** 29) return Array.from({ length: M }, (_, i) => i);
  const n = N * K > 5e7 ? 4 : 6;
  const rows = new Set([0, M - 1]);
  while (rows.size < Math.min(M, n)) rows.add(rng.int(0, M));
  return [...rows].sort((x, y) => x - y);
}

/**
 * Run `plan` for the first M rows of `p` into a poisoned buffer with 8 spare rows, check every element of
 * rows < M was written and rows ≥ M were not, and compare sampled rows with the reference.
 */
function check(
  plan: GemmSm90Plan,
  p: Problem,
  M: number,
  ops: Tensor[],
  refs: Map<number, Float64Array>,
  what: string,
) {
  using buf = Tensor.empty("bf16", [M + 8, p.N]);
  buf.fill(0xff);
  plan.run(ops[0], ops[1], ops[2], ops[3], buf.rows(0, M));
  const raw = buf.toHost() as Uint16Array;
  let unwritten = 0, clobbered = 0, stuck = 0;
  for (let i = 0; i < M * p.N; i++) {
    if (raw[i] === 0xffff) unwritten++;
    if (raw[i] === 0x7fff) stuck++; // the kernel's mbarrier watchdog fired (a pipeline protocol bug)
  }
  assert.equal(stuck, 0, `${what}: ${stuck} outputs carry the watchdog's NaN: an mbarrier wait timed out`);
  for (let i = M * p.N; i < raw.length; i++) if (raw[i] !== 0xffff) clobbered++;
  assert.equal(unwritten, 0, `${what}: ${unwritten} outputs of rows < ${M} not written (or NaN)`);
  assert.equal(clobbered, 0, `${what}: ${clobbered} elements of rows ≥ M written`);
  const got: number[] = [], want: number[] = [];
  for (const [r, ref] of refs) {
    for (let n = 0; n < p.N; n++) {
      got.push(bf16Decode(raw[r * p.N + n]));
      want.push(ref[n]);
    }
  }
  assertRelError(got, want, 2e-3, what);
}

for (const [N, K] of SHAPES) {
  gpuTest(`gemm_sm90 ladder a–g, block scales, (N, K) = (${N}, ${K}), M ∈ {${MS}}`, async (t) => {
    if (!sm90) return void console.log("skipped: not an sm_90 device");
    const seed = (Math.random() * 2 ** 32) >>> 0;
    const rng = new Rng(seed);
    const p = problem(N, K, Math.max(...MS), "block", rng);
    const plans = await Promise.all(LADDER.map((c) => prepareGemmSm90({ M: 4096, N, K }, { config: c })));
    for (const M of MS) {
      const refs = references(p, sampleRows(M, N, K, rng));
      const ops = upload(p, M);
      try {
        for (const plan of plans) {
          await t.step(
            `M=${M} ${plan.kernel.name}`,
            () => check(plan, p, M, ops, refs, `seed ${seed} M=${M} ${plan.kernel.name}`),
          );
        }
      } finally {
        ops.forEach((x) => x.dispose());
      }
    }
  });
}

gpuTest(
  "gemm_sm90 per-tensor and per-token × per-channel scales on steps b–g and the default config",
  async (t) => {
    if (!sm90) return;
    const seed = (Math.random() * 2 ** 32) >>> 0;
    const rng = new Rng(seed);
    for (const mode of ["tensor", "channel"] as const) {
      for (const [N, K] of [[2112, 7168], [256, 512]] as const) {
        const p = problem(N, K, 1024, mode, rng);
        const configs: (Partial<Sm90Config> | undefined)[] = [
          { step: "b" },
          { step: "c", blockN: 160 },
          { step: "d" },
          { step: "e", blockN: 128 },
          { step: "f", blockN: 112 },
          { step: "g", blockN: 128 },
          { step: "g", blockN: 192 },
          { step: "g", blockM: 256, blockN: 128 },
          { step: "g", blockM: 256, blockN: 112, epilogue: "direct" },
          { step: "g", blockM: 256, blockN: 128, multicast: true },
          undefined,
        ];
        for (const M of [3, 1024]) {
          const refs = references(p, sampleRows(M, N, K, rng));
          const ops = upload(p, M);
          try {
            for (const c of configs) {
              const plan = await prepareGemmSm90({ M, N, K }, { mode, config: c });
              await t.step(
                `${mode} M=${M} N=${N} ${plan.kernel.name}`,
                () => check(plan, p, M, ops, refs, `seed ${seed} ${plan.kernel.name}`),
              );
            }
          } finally {
            ops.forEach((x) => x.dispose());
          }
        }
      }
    }
  },
);

gpuTest(
  "gemm_sm90 block scales with 2-block tiles (blockN 96–192), one math warpgroup (blockM 64) and two waves (blockM 256)",
  async (t) => {
    if (!sm90) return;
    const seed = (Math.random() * 2 ** 32) >>> 0;
    const rng = new Rng(seed);
    const [N, K] = [2112, 1536];
    const p = problem(N, K, 1024, "block", rng);
    for (const M of [5, 1000]) {
      const refs = references(p, sampleRows(M, N, K, rng));
      const ops = upload(p, M);
      try {
        const configs: Partial<Sm90Config>[] = [
          { step: "c", blockN: 160 },
          { step: "d", blockN: 192 },
          { step: "c", blockM: 64, blockN: 96 },
          { step: "b", blockN: 144 },
          { step: "e", blockN: 96 },
          { step: "f", blockN: 112 },
          { step: "e", blockM: 64, blockN: 128 },
          { step: "e", blockN: 64 },
          { step: "g", blockN: 160 },
          { step: "g", blockN: 96, pingpong: false },
          { step: "g", blockM: 64, blockN: 128 },
          { step: "g", blockM: 256, blockN: 96 },
          { step: "g", blockM: 256, blockN: 112, pingpong: false },
          { step: "g", blockM: 256, blockN: 128, multicast: true }, // 17 N tiles: a dummy partner
          { step: "g", blockM: 256, blockN: 96, multicast: true },
          { step: "g", blockM: 128, blockN: 128, multicast: true },
        ];
        for (const c of configs) {
          const plan = await prepareGemmSm90({ M, N, K }, { config: c });
          await t.step(
            `M=${M} ${plan.kernel.name}`,
            () => check(plan, p, M, ops, refs, `seed ${seed} ${plan.kernel.name}`),
          );
        }
      } finally {
        ops.forEach((x) => x.dispose());
      }
    }
  },
);

gpuTest(
  "gemm_sm90 deferred promotion (e, f) and decoupled warpgroups (g) are bit-identical to c, d at the same tile",
  async (t) => {
    if (!sm90) return;
    // e/f/g run the same wgmma and the same fp32 FFMA promotion sequence per output as c/d, only reordered
    // across k-blocks, tiles and warpgroups, so the bf16 outputs must match exactly (no tolerance)
    const seed = (Math.random() * 2 ** 32) >>> 0;
    const rng = new Rng(seed);
    const [N, K] = [2112, 2048];
    const p = problem(N, K, 1000, "block", rng);
    for (const M of [77, 1000]) {
      const ops = upload(p, M);
      try {
        for (
          const [ref, def] of [
            [{ step: "c", blockN: 128 }, { step: "e", blockN: 128 }],
            [{ step: "c", blockN: 128 }, { step: "e", blockN: 128, chunk: 2 }],
            [{ step: "c", blockN: 128 }, { step: "e", blockN: 128, chunk: 8 }],
            [{ step: "c", blockN: 112 }, { step: "e", blockN: 112 }],
            [{ step: "d", blockN: 96 }, { step: "f", blockN: 96 }],
            [{ step: "c", blockN: 128 }, { step: "g", blockN: 128 }],
            [{ step: "c", blockN: 128 }, { step: "g", blockN: 128, pingpong: false }],
            [{ step: "c", blockN: 160 }, { step: "g", blockN: 160 }],
            [{ step: "c", blockN: 112, epilogue: "direct" }, { step: "g", blockN: 112, epilogue: "direct" }],
            [{ step: "c", blockM: 64, blockN: 128 }, { step: "g", blockM: 64, blockN: 128 }],
            [{ step: "c", blockN: 128 }, { step: "g", blockM: 256, blockN: 128 }],
            [{ step: "c", blockN: 128 }, { step: "g", blockM: 256, blockN: 128, multicast: true }],
            [{ step: "c", blockN: 128 }, { step: "g", blockN: 128, overlap: true }],
            [{ step: "c", blockN: 96 }, { step: "g", blockM: 256, blockN: 96, pingpong: false }],
            [{ step: "c", blockN: 112, epilogue: "direct" }, {
              step: "g",
              blockM: 256,
              blockN: 112,
              epilogue: "direct",
            }],
          ] as Partial<Sm90Config>[][]
        ) {
          const [pr, pd] = await Promise.all([
            prepareGemmSm90({ M, N, K }, { config: ref }),
            prepareGemmSm90({ M, N, K }, { config: def }),
          ]);
          await t.step(`M=${M} ${pd.kernel.name} == ${pr.kernel.name}`, () => {
            using a = Tensor.empty("bf16", [M, N]);
            using b = Tensor.empty("bf16", [M, N]);
            a.fill(0xff);
            b.fill(0xff);
            pr.run(ops[0], ops[1], ops[2], ops[3], a);
            pd.run(ops[0], ops[1], ops[2], ops[3], b);
            const x = a.toHost() as Uint16Array, y = b.toHost() as Uint16Array;
            let diff = 0;
            for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) diff++;
            assert.equal(diff, 0, `seed ${seed}: ${diff} of ${x.length} outputs differ`);
          });
        }
      } finally {
        ops.forEach((x) => x.dispose());
      }
    }
  },
);

gpuTest("gemm_sm90 run is capturable in a CUDA graph and replays to the same bytes", async () => {
  if (!sm90) return;
  const rng = new Rng();
  const [M, N, K] = [256, 512, 1024];
  const p = problem(N, K, M, "block", rng);
  const ops = upload(p, M);
  try {
    const plan = await prepareGemmSm90({ M, N, K });
    using direct = Tensor.empty("bf16", [M, N]);
    using graphed = Tensor.empty("bf16", [M, N]);
    plan.run(ops[0], ops[1], ops[2], ops[3], direct);
    graphed.fill(0xff);
    using g = Graph.capture(() => plan.run(ops[0], ops[1], ops[2], ops[3], graphed));
    g.launch();
    assert.deepEqual(graphed.toHost(), direct.toHost());
  } finally {
    ops.forEach((x) => x.dispose());
  }
});

gpuTest("gemm_sm90 bad inputs raise ArgumentError naming the argument, before any launch", async () => {
  if (!sm90) return;
  const [M, N, K] = [8, 256, 512];
  const plan = await prepareGemmSm90({ M, N, K });
  using a = Tensor.empty("fp8e4m3", [8, K]);
  using sa = Tensor.empty("f32", [K / 128, 8]);
  using b = Tensor.empty("fp8e4m3", [N, K]);
  using sb = Tensor.empty("f32", [2, K / 128]);
  using out = Tensor.empty("bf16", [M, N]);
  using a16 = Tensor.empty("bf16", [8, K]);
  using bWide = Tensor.empty("fp8e4m3", [N, K + 128]);
  using a6 = Tensor.empty("fp8e4m3", [6, K]);
  using sbBad = Tensor.empty("f32", [1, K / 128]);
  const bad = (fn: () => void, arg: string) =>
    assert.throws(
      fn,
      (e: unknown) => e instanceof ArgumentError && e.argument === arg,
      `expected an error naming ${arg}`,
    );
  bad(() => plan.run(a16, sa, b, sb, out), "a");
  bad(() => plan.run(a, sa, bWide, sb, out), "b");
  bad(() => plan.run(a6, sa, b, sb, out), "a");
  bad(() => plan.run(a, sa, b, sbBad, out), "bScale");
  bad(() => plan.run(a, sb, b, sb, out), "aScale");
  bad(() => plan.run(a, sa, b, sb, out.rows(0, 0)), "out");
  await assert.rejects(() => prepareGemmSm90({ M: 0, N, K }), ArgumentError);
  await assert.rejects(() => prepareGemmSm90({ M, N, K: 500 }), ArgumentError);
});

Deno.test("gemm_sm90 prepare refuses bad shapes before touching a device", async () => {
  await assert.rejects(
    () => prepareGemmSm90({ M: 0, N: 256, K: 512 }),
    (e: unknown) => e instanceof ArgumentError && e.argument === "M",
  );
  await assert.rejects(
    () => prepareGemmSm90({ M: 4, N: 256, K: 100 }),
    (e: unknown) => e instanceof ArgumentError && e.argument === "K",
  );
  await assert.rejects(
    () => prepareGemmSm90({ M: 4, N: 1.5, K: 128 }),
    (e: unknown) => e instanceof ArgumentError && e.argument === "N",
  );
  await assert.rejects(
    () => prepareGemmSm90({ M: 4, N: 256, K: 128 }, { group: 0 }),
    (e: unknown) => e instanceof ArgumentError && e.argument === "group",
  );
});

Deno.test("gemm_sm90 autotune: keys by device / M bucket / N / K / mode, reads stored choices, ignores bad ones", async () => {
  assert.equal(mBucket(1), 16);
  assert.equal(mBucket(1000), 1024);
  assert.equal(mBucket(4096), 4096);
  assert.equal(
    tuneKey("NVIDIA H200", { M: 3000, N: 7168, K: 2048 }, "block"),
    "NVIDIA H200|m4096|n7168|k2048|block",
  );
  for (
    const s of [{ M: 4096, N: 7168, K: 7168 }, { M: 16, N: 2112, K: 7168 }, { M: 1024, N: 2111, K: 256 }]
  ) {
    const cands = tuneCandidates(s, "block");
    assert.ok(cands.length >= 4, JSON.stringify(s));
    for (const c of cands) assert.deepEqual(sm90ConfigProblems(c), [], JSON.stringify(c));
  }
  const dir = await Deno.makeTempDir();
  const old = Deno.env.get("KILN_CACHE_DIR");
  Deno.env.set("KILN_CACHE_DIR", dir);
  try {
    const s = { M: 4000, N: 7168, K: 7168 };
    assert.equal(await lookupTuned("H", s, "block"), undefined, "no file: no choice");
    const good: Sm90Config = {
      step: "d",
      mode: "block",
      blockM: 128,
      blockN: 160,
      stages: 5,
      epilogue: "tma",
    };
    await Deno.mkdir(`${dir}/autotune`);
    const file = `${dir}/autotune/gemm_sm90.json`;
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        [tuneKey("H", s, "block")]: { config: good },
        [tuneKey("H", s, "tensor")]: { config: { ...good, blockN: 176 } },
      }),
    );
    assert.deepEqual(await lookupTuned("H", { ...s, M: 2100 }, "block"), good, "same M bucket");
    assert.equal(await lookupTuned("H", { ...s, M: 1000 }, "block"), undefined, "other M bucket");
    assert.equal(await lookupTuned("H", s, "tensor"), undefined, "an invalid stored config is ignored");
    await Deno.writeTextFile(file, "{ truncated");
    assert.equal(await lookupTuned("H", s, "block"), undefined, "a corrupt file is ignored");
  } finally {
    if (old === undefined) Deno.env.delete("KILN_CACHE_DIR");
    else Deno.env.set("KILN_CACHE_DIR", old);
    await Deno.remove(dir, { recursive: true });
  }
});
