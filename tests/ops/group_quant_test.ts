/**
 * GPU tier of the group-quant family: codes and scales bit-exact against the TypeScript reference (the
 * row program's interpreter, itself checked against the direct reference in tests/dsl), with outputs
 * poisoned (0xFF) before each run so unwritten elements show, for ragged M (padding rows checked), every
 * option, masked experts, the user-scripted programs, graph capture, one launch per call, and errors.
 */
import {
  deepEqual as assertEquals,
  ok as assert,
  rejects as assertRejects,
  throws as assertThrows,
} from "node:assert/strict";
import { gpuTest } from "../_util.ts";
import { ArgumentError, Graph, type HostArray, Tensor } from "../../mod.ts";
import { encodeArray } from "../../dsl/dtype.ts";
import { interpret, type Program } from "../../dsl/expr/mod.ts";
import { groupQuantProgram, paddedRows } from "../../dsl/ops/group_quant.ts";
import {
  groupQuant,
  type PreparedGroupQuant,
  prepareGroupQuant,
  type PrepareGroupQuantOptions,
} from "../../ops/group_quant.ts";
import { Rng } from "../../testing/mod.ts";

const MS = [0, 1, 2, 3, 4, 5, 7, 13, 16, 31, 64, 256, 4097];
const KS = [128, 512, 2048, 7168];

const cache = new Map<string, Promise<PreparedGroupQuant>>();
function prepared(o: PrepareGroupQuantOptions): Promise<PreparedGroupQuant> {
  const key = JSON.stringify(o, (_, v) => (v instanceof Tensor ? "tensor" : v));
  if (!cache.has(key)) cache.set(key, prepareGroupQuant(o));
  return cache.get(key)!;
}

/** Random activations: normal values with per-row magnitudes from 1e-3 to 1e3 and a few outliers. */
function activations(rng: Rng, rows: number, width: number, dtype: "bf16" | "f16"): HostArray {
  const v = rng.normals(rows * width);
  const top = dtype === "f16" ? 2 : 3;
  for (let r = 0; r < rows; r++) {
    const s = 10 ** (rng.next() * (top + 3) - 3);
    for (let j = 0; j < width; j++) v[r * width + j] *= s;
    if (width > 4) v[r * width + rng.int(0, width)] *= 20;
  }
  return encodeArray(dtype, v);
}

function bytes(a: HostArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function assertSameBytes(got: HostArray, want: HostArray, what: string): void {
  const g = bytes(got), w = bytes(want);
  assertEquals(g.length, w.length, `${what}: byte length`);
  let bad = 0, first = -1;
  for (let i = 0; i < g.length; i++) {
    if (g[i] !== w[i]) {
      bad++;
      if (first < 0) first = i;
    }
  }
  if (bad) {
    throw new Error(
      `${what}: ${bad} of ${g.length} bytes differ; first at byte ${first}: ${g[first]} vs ${w[first]}`,
    );
  }
}

/** Run one plain case and compare every byte of q and scales with the interpreter. */
async function check(rng: Rng, o: PrepareGroupQuantOptions, M: number): Promise<void> {
  const gq = await prepared(o);
  const spec = gq.spec, inDtype = spec.inDtype;
  const W = spec.fuseSiluMul ? 2 * spec.K : spec.K;
  const raw = activations(rng, M, W, inDtype);
  using x = Tensor.fromHost(inDtype, [M, W], raw);
  const out = gq.allocate(M);
  using _q = out.q, _s = out.scales;
  out.q.fill(0xff);
  out.scales.fill(0xff);
  const r = gq.run(x, out);
  assertEquals([r.m, r.mPad], [M, paddedRows(M, spec.rowAlign)]);
  const program: Program = groupQuantProgram(spec);
  const poisonQ = new Uint8Array(out.q.nbytes).fill(0xff),
    poisonS = new Uint8Array(out.scales.nbytes).fill(0xff);
  const ref = interpret(program, {
    inputs: { x: raw },
    geometry: { m: M, rows: r.mPad },
    outputs: { q: poisonQ, s: poisonS },
  });
  const what = `${gq.kernel.name} M=${M} (seed ${rng.seed})`;
  assertSameBytes(out.q.toHost(), ref.q, `q of ${what}`);
  assertSameBytes(out.scales.toHost(), ref.s, `scales of ${what}`);
  if (spec.dtype !== "i8") {
    assert(!bytes(out.q.toHost()).includes(0xff), `${what}: a poisoned (unwritten) code`);
  }
}

gpuTest(
  "group quant: bit-exact for every M and K (fp8, M-major, rowAlign 4: the GEMM's layout)",
  async () => {
    const rng = new Rng();
    for (const K of KS) {
      for (const M of MS) {
        if (M === 4097 && K === 7168) continue; // the largest case: covered at K = 2048 (host time)
        await check(rng, { K, scaleLayout: "mmajor", rowAlign: 4 }, M);
      }
    }
  },
);

gpuTest("group quant: bit-exact across the options", async () => {
  const rng = new Rng();
  const cases: [PrepareGroupQuantOptions, number[]][] = [
    [{ K: 7168 }, [1, 7, 64, 257]],
    [{ K: 512, rowAlign: 8 }, [0, 3, 13]],
    [{ K: 7168, scaleLayout: "mmajor", ue8m0: true, packUe8m0: true, rowAlign: 4 }, [1, 5, 31, 256]],
    [{ K: 384, scaleLayout: "mmajor", ue8m0: true, packUe8m0: true, rowAlign: 4 }, [2, 13]], // 3 groups: a partly used word
    [{ K: 2048, ue8m0: true }, [3, 64]],
    [{ K: 2048, groupSize: 16 }, [5, 64]],
    [{ K: 2048, groupSize: 32, scaleLayout: "mmajor" }, [5, 64]],
    [{ K: 2048, groupSize: 64 }, [5]],
    [{ K: 2048, groupSize: 256, scaleLayout: "mmajor" }, [31]],
    [{ K: 4096, groupSize: 2048 }, [7]],
    [{ K: 128, groupSize: 128 }, [1, 4097]],
    [{ K: 2048, groupSize: 2048 }, [13]],
    [{ K: 7168, groupSize: 7168, scaleLayout: "mmajor", rowAlign: 4 }, [1, 5, 64]],
    [{ K: 2048, dtype: "i8" }, [7, 64]],
    [{ K: 2048, dtype: "i8", rounding: "sglang" }, [7]],
    [{ K: 2048, dtype: "fp8e5m2" }, [7]],
    [{ K: 2048, rounding: "div", scaleLayout: "mmajor", rowAlign: 4 }, [13, 256]],
    [{ K: 2048, rounding: "sglang", ue8m0: true }, [13]],
    [{ K: 2048, eps: 1e-4 }, [5]],
    [{ K: 2048, inputDtype: "f16", scaleLayout: "mmajor", rowAlign: 4 }, [13, 64]],
    [{ K: 512, fuseSiluMul: true }, [1, 13, 256]],
    [{ K: 7168, fuseSiluMul: true, scaleLayout: "mmajor", ue8m0: true, packUe8m0: true, rowAlign: 4 }, [
      5,
      64,
    ]],
  ];
  for (const [o, ms] of cases) for (const M of ms) await check(rng, o, M);
});

gpuTest("group quant, PDL form (what fp8Linear launches): bit-exact across layouts and options", async () => {
  const rng = new Rng();
  const cases: [PrepareGroupQuantOptions, number[]][] = [
    [{ K: 7168, scaleLayout: "mmajor", rowAlign: 4 }, [1, 5, 16, 64, 257]],
    [{ K: 2048, scaleLayout: "mmajor", rowAlign: 4, ue8m0: true }, [3, 13]],
    [{ K: 7168, fuseSiluMul: true, scaleLayout: "mmajor", ue8m0: true, packUe8m0: true, rowAlign: 4 }, [5]],
    [{ K: 7168, groupSize: 7168, scaleLayout: "mmajor", rowAlign: 4 }, [1, 5]],
    [{ K: 512, groupSize: 16 }, [7]],
    [{ K: 2048, dtype: "i8" }, [7]],
  ];
  for (const [o, ms] of cases) {
    const gq = await prepared({ ...o, pdl: true });
    assert(gq.kernel.source.pdl === true && gq.kernel.name.endsWith("_pdl"), gq.kernel.name);
    for (const M of ms) await check(rng, { ...o, pdl: true }, M);
  }
});

gpuTest("group quant: masked experts (DeepEP layout): live rows bit-exact, others untouched", async () => {
  const rng = new Rng();
  for (
    const o of [
      { K: 7168, fuseSiluMul: true, scaleLayout: "mmajor", ue8m0: true, packUe8m0: true },
      { K: 2048 },
      { K: 512, scaleLayout: "mmajor", dtype: "i8" },
    ] as PrepareGroupQuantOptions[]
  ) {
    const gq = await prepared({ ...o, maskedM: true });
    const spec = gq.spec, E = 4, T = 64;
    const W = spec.fuseSiluMul ? 2 * spec.K : spec.K;
    const raw = activations(rng, E * T, W, "bf16");
    const counts = new Int32Array([0, 17, 64, 100]); // empty, partial, full, more than T_pad
    using x = Tensor.fromHost("bf16", [E, T, W], raw);
    using mm = Tensor.fromHost("i32", [E], counts);
    const out = gq.allocate(0, { experts: E, tokensPad: T });
    using _q = out.q, _s = out.scales;
    out.q.fill(0xff);
    out.scales.fill(0xff);
    gq.run(x, out, { maskedM: mm });
    const ref = interpret(groupQuantProgram(spec), {
      inputs: { x: raw },
      geometry: { m: 0, rows: E * T, experts: E, tokensPad: T },
      maskedM: counts,
      outputs: {
        q: new Uint8Array(out.q.nbytes).fill(0xff),
        s: new Uint8Array(out.scales.nbytes).fill(0xff),
      },
    });
    assertSameBytes(out.q.toHost(), ref.q, `q of ${gq.kernel.name} (seed ${rng.seed})`);
    assertSameBytes(out.scales.toHost(), ref.s, `scales of ${gq.kernel.name} (seed ${rng.seed})`);
  }
});

gpuTest("group quant: one launch per call, graph-capturable, preallocated outputs reused", async () => {
  const rng = new Rng();
  const gq = await prepared({ K: 2048, scaleLayout: "mmajor", rowAlign: 4 });
  const M = 13;
  const out = gq.allocate(M);
  using _q = out.q, _s = out.scales;
  using x = Tensor.fromHost("bf16", [M, 2048], activations(rng, M, 2048, "bf16"));
  let launches = 0;
  const launch = gq.kernel.launch.bind(gq.kernel);
  gq.kernel.launch = (...a: Parameters<typeof launch>) => {
    launches++;
    return launch(...a);
  };
  try {
    gq.run(x, out);
    assertEquals(launches, 1, "row padding happens in the same launch");
    out.q.fill(0xff);
    using g = Graph.capture(() => gq.run(x, out));
    const raw2 = activations(rng, M, 2048, "bf16");
    x.copyFromHost(raw2);
    g.launch();
    const ref = interpret(groupQuantProgram(gq.spec), { inputs: { x: raw2 }, geometry: { m: M, rows: 16 } });
    assertSameBytes(out.q.toHost(), ref.q, `graph replay (seed ${rng.seed})`);
    assertSameBytes(out.scales.toHost(), ref.s, `graph replay scales (seed ${rng.seed})`);
  } finally {
    gq.kernel.launch = launch;
  }
});

gpuTest("group quant: the one-shot call returns the contract's shapes", async () => {
  const rng = new Rng();
  using x = Tensor.fromHost("bf16", [5, 512], activations(rng, 5, 512, "bf16"));
  const r = await groupQuant(x, { rowAlign: 4, scaleLayout: "mmajor" });
  using _q = r.q, _s = r.scales;
  assertEquals([r.q.dtype, r.q.shape, r.scales.dtype, r.scales.shape, r.m, r.mPad], [
    "fp8e4m3",
    [8, 512],
    "f32",
    [4, 8],
    5,
    8,
  ]);
  const p = await groupQuant(x, { scaleLayout: "mmajor", ue8m0: true, packUe8m0: true, rowAlign: 4 });
  using _pq = p.q, _ps = p.scales;
  assertEquals([p.scales.dtype, p.scales.shape], ["i32", [1, 8]]);
});

gpuTest("group quant: bad input names the argument, before any launch", async () => {
  const gq = await prepared({ K: 512, scaleLayout: "mmajor", rowAlign: 4 });
  using x = Tensor.fromFloat("bf16", [4, 512], new Float32Array(2048).fill(1));
  using xf = Tensor.fromFloat("f32", [4, 512], new Float32Array(2048).fill(1));
  using big = Tensor.empty("bf16", [4, 520]);
  const check = (fn: () => unknown, arg: RegExp) =>
    assertThrows(fn, (e: unknown) => e instanceof ArgumentError && arg.test(e.argument));
  check(() => gq.run(xf), /^x\.dtype$/);
  check(() => gq.run(big), /^x\.shape$/);
  check(() => gq.run(x.view([2048])), /^x\.shape$/);
  check(() => gq.run(big.strided([4, 512], [520, 1], 1)), /^x$/); // misaligned by 2 bytes
  const out = gq.allocate(4);
  using _q = out.q, _s = out.scales;
  check(() => gq.run(x, { q: out.q, scales: out.scales.view([16]) }), /^out\.scales\.shape$/);
  check(() => gq.run(x, { q: out.scales, scales: out.scales }), /^out\.q\.dtype$/);
  await assertRejects(
    () => groupQuant(x, { groupSize: 96 }),
    (e: unknown) => e instanceof ArgumentError && e.argument === "groupSize",
  );
  const mq = await prepared({ K: 512, maskedM: true });
  using x3 = Tensor.empty("bf16", [2, 4, 512]);
  check(() => mq.run(x3), /^maskedM$/);
  using zero = Tensor.empty("bf16", [0, 512]);
  const z = gq.run(zero);
  assertEquals([z.q.shape, z.scales.shape, z.mPad], [[0, 512], [4, 0], 0]);
});
