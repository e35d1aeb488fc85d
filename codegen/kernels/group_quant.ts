/**
 * The group-quant family's kernels: the family's row program (dsl/ops/group_quant.ts) rendered with a
 * schedule chosen for it.
 *
 * Schedule (why it is fast): every element is read once with a 16-byte streaming load
 * (`ld.global.nc.L1::no_allocate.v4`), 4 loads in flight per thread (8 for G = 2048); a team of
 * `G / 32` threads (1 to 32) owns one group, so each thread holds 32 consecutive-in-group elements,
 * computes one multiplier per group (one IEEE division) and needs log2(team) shuffles for the amax;
 * per element the kernel then spends one unpack, one FMNMX, one FMUL and half an F2FP. With M-major
 * scales, consecutive teams take consecutive rows of the same group (`rowBlock` 8), so the 4-byte scale
 * stores of a warp fill one 32-byte sector. Per-token (G = K) uses a team of the whole CTA per row.
 * Row padding happens in the same launch: teams of rows in `[M, M_pad)` store zeros and load nothing.
 *
 * Napkin math (M = 4096, K = 7168, G = 128, H200): bytes = 2MK read + MK + 4MK/G written = 89.0 MB;
 * at 80% of a 4.2 TB/s copy that is 26.5 µs, i.e. 1.1·10^12 elements/s; at ~4 issue slots per element
 * that is ~13% of the SMs' issue rate (132 SMs × 4 × 32 lanes × 1.98 GHz), so the kernel stays
 * memory-bound. M ≤ 16: at most 229 KB, one wave, latency-bound: launch + one DRAM round trip ≈ 3 µs.
 * First H200 run (event per call): t ≈ 4.9 µs + bytes / 3.91 TB/s for M = 1024..16384, i.e. the stream
 * runs at 95% of copy and the rest is per-call cost, not the schedule. Fused silu·up (5.03 B/element) is
 * the one that can be compute-bound: 42 SASS instructions per element (silu without a division, bf16
 * rounding in pairs) against ~41 that a 4.1 TB/s stream allows at full issue rate.
 * Second run (back-to-back calls): 26.4 µs = 3.37 TB/s = 82% of copy at M = 4096, K = 7168; a schedule
 * of 16 elements per thread (lanes 8, chunks 2) measured 25.9 µs (84%) — kept as a sweep entry.
 *
 * @module
 */
import { groupQuantProgram, type GroupQuantSpec } from "../../dsl/ops/group_quant.ts";
import { renderRowKernel, type RowKernel } from "../expr/render.ts";
import type { Schedule } from "../expr/schedule.ts";
import { withPdl } from "./_pdl.ts";

/** The schedule the family uses for a spec. */
export function groupQuantSchedule(spec: GroupQuantSpec): Schedule {
  const vec = 8; // 16 bytes of bf16/f16
  const K = spec.K, G = spec.groupSize;
  const mmajor = spec.scaleLayout === "mmajor" || spec.packUe8m0;
  if (G === K && K > 2048) {
    // per-token on long rows: the CTA is the team; ≤ 8 chunks per thread
    let lanes = 64;
    while (lanes * vec * 8 < K) lanes *= 2;
    const chunks = Math.ceil(K / (lanes * vec));
    return { vec, lanes, chunks, threads: lanes };
  }
  if (G === K) {
    // per-token on short rows: a (sub-)warp per row, ≤ 8 chunks per thread
    let lanes = 1;
    while (lanes < 32 && lanes * vec * 8 < K) lanes *= 2;
    while (lanes > 1 && K % (lanes * vec) !== 0) lanes /= 2;
    const chunks = Math.ceil(K / (lanes * vec));
    return { vec, lanes, chunks, threads: 256, rowBlock: mmajor ? Math.min(8, 256 / lanes) : 1 };
  }
  if (G <= vec) {
    return { vec, lanes: 32, chunks: K % 1024 === 0 ? 4 : K % 512 === 0 ? 2 : 1, threads: 256 };
  }
  if (G <= 1024) {
    const lanes = Math.max(1, G / 32);
    const chunks = 4; // G < 32: a thread owns 32 / G groups

    const teams = 256 / lanes;
    return { vec, lanes, chunks, threads: 256, rowBlock: mmajor ? Math.min(8, teams) : 1 };
  }
  if (G === 2048) return { vec, lanes: 32, chunks: 8, threads: 256, rowBlock: mmajor ? 8 : 1 };
  // G ≥ 4096: a CTA team of G/32 threads per group
  const lanes = Math.min(1024, G / 32);
  return { vec, lanes, chunks: G / (lanes * vec), threads: lanes };
}

/**
 * Render the kernel of a spec (the same program the interpreter runs). With `pdl` it is the programmatic
 * dependent launch form (`_pdl` names, see `_pdl.ts`): `griddepcontrol.launch_dependents` and `.wait`
 * before anything else — its input is the previous kernel's output and it has nothing constant to
 * prefetch, but launching its dependents first lets the GEMM after it (fp8Linear) start streaming its
 * weights while the quant runs; every load coherent, no write before the wait (the GEMM of the previous
 * layer may still be reading the A buffer this kernel overwrites).
 *
 * @example
 * ```ts
 * import { groupQuantKernel } from "./group_quant.ts";
 * import { resolveGroupQuant } from "../../dsl/ops/group_quant.ts";
 * const spec = resolveGroupQuant(7168, "bf16", { rowAlign: 4, scaleLayout: "mmajor" });
 * console.log(groupQuantKernel(spec, undefined, { pdl: true }).source.pdl); // true
 * ```
 */
export function groupQuantKernel(
  spec: GroupQuantSpec,
  schedule?: Schedule,
  opts: { pdl?: boolean } = {},
): RowKernel {
  const program = groupQuantProgram(spec);
  const rk = renderRowKernel(program, schedule ?? groupQuantSchedule(spec));
  return opts.pdl ? { ...rk, source: withPdl(rk.source) } : rk;
}
