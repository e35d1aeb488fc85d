/**
 * How many CTAs of a kernel one SM holds at once — the limits of sm_80+ (65 536 registers allocated per
 * warp in units of 256, 2048 threads, 32 CTAs, the SM's shared memory with 1 KB reserved per CTA). Pure,
 * so launch heuristics are tested without a GPU.
 *
 * @module
 */

/** What the occupancy of one CTA depends on. */
export interface OccupancySpec {
  /** Threads per CTA. */
  threads: number;
  /** Registers per thread (as the loaded kernel reports them). */
  registers: number;
  /** Static + dynamic shared memory per CTA. */
  sharedBytes: number;
  /** Shared memory per SM (`DeviceInfo.maxSharedPerSM`; 0 or missing: 228 KB). */
  maxSharedPerSM?: number;
}

/**
 * CTAs per SM (may be 0 when one CTA does not fit).
 *
 * @example
 * ```ts
 * import { ctasPerSm } from "./occupancy.ts";
 * console.log(ctasPerSm({ threads: 128, registers: 168, sharedBytes: 4608, maxSharedPerSM: 233472 })); // 3
 * ```
 */
export function ctasPerSm(o: OccupancySpec): number {
  const warps = Math.ceil(o.threads / 32);
  const regsPerWarp = Math.ceil((Math.max(o.registers, 1) * 32) / 256) * 256;
  return Math.min(
    Math.floor(65536 / (regsPerWarp * warps)),
    Math.floor(2048 / (warps * 32)),
    32,
    Math.floor((o.maxSharedPerSM || 228 * 1024) / (o.sharedBytes + 1024)),
  );
}
