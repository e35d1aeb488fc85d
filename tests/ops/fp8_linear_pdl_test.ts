/**
 * fp8Linear under programmatic dependent launch (the default on sm_90): chains of calls queued without a
 * sync — so call j+1's group quant overwrites the A buffer call j's GEMM reads, and each GEMM prefetches
 * weights while the kernel before it runs — give, bit for bit, what the same kernels give launched the
 * plain way (`pdl: false`), in a stream and replayed from a captured graph, over 50 rounds of new inputs
 * with every output poisoned before each run. (Correctness against the float64 reference is
 * `fp8_linear_test.ts`, which runs the default, PDL, path.)
 */
import assert from "node:assert/strict";
import { gpuTest } from "../_util.ts";
import { Device, Graph, Tensor } from "../../runtime/mod.ts";
import { encodeArray } from "../../dsl/dtype.ts";
import { Fp8BlockWeight, prepareFp8Linear } from "../../ops/fp8_linear.ts";
import { Rng } from "../../testing/random.ts";
import { assertExactlyEqual } from "../../testing/assert.ts";
import { randomCodes, randomScales } from "./_gemm_data.ts";

const ROUNDS = 50;

/** (N, K, the M of each call of the chain): mixed M, so consecutive GEMMs are different kernels. */
const CASES: [number, number, number[]][] = [
  [2112, 7168, [16, 1, 13, 4]],
  [7168, 2048, [4, 16, 2]],
  [256, 512, [1, 5, 16, 3, 16]],
];

for (const [N, K, Ms] of CASES) {
  gpuTest(
    `fp8Linear ${N}x${K}, chain of M=${
      Ms.join(",")
    }: PDL equals plain launches bit for bit (stream, graph, ${ROUNDS} rounds)`,
    async () => {
      const dev = Device.get();
      const rng = new Rng();
      const w = new Fp8BlockWeight(
        Tensor.fromHost("fp8e4m3", [N, K], randomCodes(rng, N * K)),
        Tensor.fromHost(
          "f32",
          [Math.ceil(N / 128), K / 128],
          randomScales(rng, Math.ceil(N / 128) * (K / 128), 2 ** -10),
        ),
      );
      using lin = await prepareFp8Linear({ N, K, mValues: [...new Set(Ms)] });
      const maxM = Math.max(...Ms);
      const pool = encodeArray("bf16", rng.normals(maxM * K + (1 << 16))) as Uint16Array;
      const xs = Ms.map((M) => Tensor.empty("bf16", [M, K]));
      const outs = Ms.map((M) => Tensor.empty("bf16", [M, N]));
      const refs = Ms.map((M) => Tensor.empty("bf16", [M, N]));
      const chain = (ys: Tensor[], pdl?: boolean) =>
        Ms.forEach((_, j) => lin.run(xs[j], w, { out: ys[j], pdl }));
      const poison = (ts: Tensor[]) => ts.forEach((t) => t.fill(0xff));
      try {
        using g = Graph.capture(() => chain(outs));
        for (let round = 0; round < ROUNDS; round++) {
          xs.forEach((x, j) => {
            const off = rng.int(0, pool.length - Ms[j] * K);
            x.copyFromHost(pool.slice(off, off + Ms[j] * K));
          });
          poison(refs);
          chain(refs, false);
          const want = refs.map((r) => r.toHost() as Uint16Array);
          want.forEach((r, j) =>
            assert.ok(!r.includes(0xffff), `round ${round} call ${j}: plain run left NaN`)
          );
          const what = (how: string, j: number) =>
            `${how}, round ${round}, call ${j} (M=${Ms[j]}), seed ${rng.seed}`;
          poison(outs);
          chain(outs); // PDL (on sm_90), no sync between the calls
          outs.forEach((o, j) => assertExactlyEqual(o.toHost() as Uint16Array, want[j], what("stream", j)));
          poison(outs);
          g.launch();
          outs.forEach((o, j) => assertExactlyEqual(o.toHost() as Uint16Array, want[j], what("graph", j)));
        }
      } finally {
        dev.synchronize();
        [...xs, ...outs, ...refs].forEach((t) => t.dispose());
        w.dispose();
      }
    },
  );
}
