/**
 * fp8Linear (group quant + small-M GEMM: two launches per call) at M = 1, 4, 16 on the issue's shapes,
 * with programmatic dependent launch on (the default on sm_90) and off, in the same run: a graph of 20
 * calls with rotating weights, µs per call, weight TB/s and % of the copy ceiling. Part of `bench/gemm.ts`.
 *
 * Napkin: without PDL a call is the quant (~1.5 µs at M ≤ 16: launch + one DRAM round trip) + the GEMM;
 * with PDL the GEMM's CTAs start beside the quant's few CTAs and issue their first two K blocks of
 * weights (8.6 MB of 2112×7168's 15.1 MB) while it runs, so the quant should all but vanish: predicted
 * ~1.2 µs saved per call, e.g. 2112×7168 ~8 → ~6.8 µs.
 *
 * Each configuration is validated against the float64 reference of the dequantized operands (A from a
 * standalone, plain group quant of the same rows) with the output poisoned, before it is timed.
 * @module
 */
import { Device, Tensor } from "../mod.ts";
import { Fp8BlockWeight, prepareFp8Linear } from "../ops/fp8_linear.ts";
import { groupQuant } from "../ops/group_quant.ts";
import { encodeArray } from "../dsl/dtype.ts";
import { Rng } from "../testing/random.ts";
import { checkOutput, hostProblem, sampleCols, SampledReference } from "../tests/ops/_gemm_data.ts";
import { pct, printTable, type Row } from "./_util.ts";

/** M values of the fp8Linear table. */
export const FP8_LINEAR_MS = [1, 4, 16];

/**
 * Print the fp8Linear table for the (N, K) `shapes` (the GEMM table's). `graphUs(fn)` is the GEMM bench's
 * clock: mean µs per call of a replayed graph of back-to-back calls `fn(i)`.
 *
 * @example
 * ```ts ignore
 * import { benchFp8Linear } from "./_gemm_fp8_linear.ts";
 * await benchFp8Linear(await copyBandwidth(), graphUs, GEMM_SHAPES);
 * ```
 */
export async function benchFp8Linear(
  copy: number,
  graphUs: (fn: (i: number) => void) => Promise<number>,
  shapes: readonly (readonly [number, number])[],
): Promise<void> {
  const device = Device.get();
  const l2 = device.info.l2Bytes;
  const rng = new Rng(7);
  const rows: Row[] = [];
  const maxM = Math.max(...FP8_LINEAR_MS);
  for (const [N, K] of shapes) {
    const p = hostProblem(rng, "block", N, K, 1); // B and its scales (A comes from the quant)
    const sets = Math.max(1, Math.min(16, Math.ceil((2 * l2) / (N * K))));
    const bs = Array.from({ length: sets }, () => Tensor.fromHost("fp8e4m3", [N, K], p.b));
    const sb = Tensor.fromHost("f32", [Math.ceil(N / 128), K / 128], p.bScales);
    const ws = bs.map((b) => new Fp8BlockWeight(b, sb)); // views: disposed through bs and sb
    const x = Tensor.fromHost("bf16", [maxM, K], encodeArray("bf16", rng.normals(maxM * K)));
    try {
      // the A operand the quant makes, from a plain standalone quant of the same rows (deterministic)
      const qa = await groupQuant(x, {
        groupSize: 128,
        dtype: "fp8e4m3",
        rowAlign: 4,
        scaleLayout: "mmajor",
      });
      const ref = new SampledReference(
        {
          mode: "block",
          M: maxM,
          N,
          K,
          a: qa.q.toHost() as Uint8Array,
          aScales: qa.scales.toHost() as Float32Array,
          aScaleStride: qa.mPad,
          b: p.b,
          bScales: p.bScales,
        },
        Array.from({ length: maxM }, (_, i) => i),
        sampleCols(N, K, rng, 4e6),
      );
      qa.q.dispose();
      qa.scales.dispose();
      using lin = await prepareFp8Linear({ N, K, mValues: FP8_LINEAR_MS, device });
      for (const M of FP8_LINEAR_MS) {
        const shape = `${M}x${N}x${K}`;
        using out = Tensor.empty("bf16", [M, N]);
        const xm = x.rows(0, M);
        try {
          let err = 0;
          for (const pdl of [true, false]) {
            out.fill(0xff);
            lin.run(xm, ws[0], { out, pdl });
            err = checkOutput(
              out.toHost() as Uint16Array,
              "bf16",
              M,
              N,
              ref,
              `fp8Linear ${shape} pdl ${pdl}`,
            );
          }
          const on = await graphUs((i) => lin.run(xm, ws[i % sets], { out }));
          const off = await graphUs((i) => lin.run(xm, ws[i % sets], { out, pdl: false }));
          const bw = (N * K) / (on * 1e-6);
          rows.push({
            shape,
            gemm: lin.gemm.variantFor(M).replace(/^gemm_/, ""),
            "µs PDL": on.toFixed(2),
            "µs no-PDL": off.toFixed(2),
            "PDL gain µs": (off - on).toFixed(2),
            "TB/s": (bw / 1e12).toFixed(2),
            "% copy": pct(bw, copy),
            "% copy no-PDL": pct((N * K) / (off * 1e-6), copy),
            err: err.toExponential(1),
          });
        } catch (e) {
          rows.push({ shape, "µs PDL": `FAILED: ${(e as Error).message.slice(0, 140)}` });
          device.synchronize();
        }
      }
    } finally {
      device.synchronize();
      for (const t of [...bs, sb, x]) t.dispose();
    }
  }
  printTable(
    `fp8Linear (group quant + GEMM, 2 launches per call), PDL on / off, ${device.info.name}, copy ${
      (copy / 1e12).toFixed(2)
    } TB/s (read+write); graph of 20 calls, mean per call; TB/s on the weight bytes`,
    rows,
  );
}
