/**
 * What the small-M probes (`smallm_stream_probe.ts`, `smallm_wgmma_probe.ts`) share: the problem on the
 * device, the balanced shared-memory cap the dispatch gives v1, and the reading of globaltimer stamps.
 *
 * @module
 */
import { type Device, type LoadedKernel, Tensor } from "../mod.ts";
import type { KernelSource } from "../codegen/kernel_source.ts";
import { balancedSharedBytes } from "../ops/block_matmul.ts";
import { type HostProblem, hostProblem } from "../tests/ops/_gemm_data.ts";
import type { Rng } from "../testing/random.ts";

/** The operands of a small-M problem on the device (`bs`: copies of the weights, used in turn). */
export interface SmallMOperands {
  p: HostProblem;
  sets: number;
  bs: Tensor[];
  sb: Tensor;
  a: Tensor;
  sa: Tensor;
  dispose(): void;
}

/** Per-slot statistics of globaltimer stamps, µs after the earliest CTA start. */
export interface StampStat {
  med: number;
  p90: number;
  max: number;
}

/** A block-mode problem with 16 token rows on `dev`, the weights in enough copies to rotate past L2. */
export function uploadSmallM(dev: Device, N: number, K: number, rng: Rng): SmallMOperands {
  const p: HostProblem = hostProblem(rng, "block", N, K, 16);
  const sets = Math.max(1, Math.min(16, Math.ceil((2 * dev.info.l2Bytes) / (N * K))));
  return {
    p,
    sets,
    bs: Array.from({ length: sets }, () => Tensor.fromHost("fp8e4m3", [N, K], p.b)),
    sb: Tensor.fromHost("f32", [Math.ceil(N / 128), K / 128], p.bScales),
    a: Tensor.fromHost("fp8e4m3", [16, K], p.a),
    sa: Tensor.fromHost("f32", [K / 128, p.P], p.aScales),
    dispose() {
      for (const t of [...this.bs, this.sb, this.a, this.sa]) t.dispose();
    },
  };
}

/** Dynamic shared bytes for a v1 launch of `grid` CTAs, capped at the balanced spread as the dispatch does. */
export function cappedShared(dev: Device, k: LoadedKernel, ks: KernelSource, grid: number): number {
  return balancedSharedBytes({
    grid,
    smCount: dev.info.smCount,
    threads: ks.block[0],
    registers: k.registers,
    sharedBytes: ks.sharedBytes + k.staticSharedBytes,
    maxSharedPerSM: dev.info.maxSharedPerSM,
    maxSharedPerBlock: dev.info.maxSharedPerBlockOptin,
  }) - k.staticSharedBytes;
}

/**
 * Per stamp slot (16 u64 per CTA after `out`'s 16 rows of N bf16), µs after the earliest CTA start: the
 * median, p90 and max over the CTAs that wrote it (unwritten slots hold 0 or the 0xff… poison).
 */
export function stampStats(
  raw16: Uint16Array,
  N: number,
  grid: number,
  slots: number,
): (StampStat | undefined)[] {
  const raw = new BigUint64Array(raw16.slice(16 * N).buffer.slice(0, grid * 128));
  let t0 = 2n ** 63n;
  for (let b = 0; b < grid; b++) if (raw[b * 16] && raw[b * 16] < t0) t0 = raw[b * 16];
  return Array.from({ length: slots }, (_, s) => {
    const v: number[] = [];
    for (let b = 0; b < grid; b++) {
      const x = raw[b * 16 + s];
      if (x >= t0 && x < t0 + 1000000000n) v.push(Number(x - t0) / 1000);
    }
    v.sort((x, y) => x - y);
    return v.length
      ? { med: v[v.length >> 1], p90: v[Math.floor(v.length * 0.9)], max: v.at(-1)! }
      : undefined;
  });
}
