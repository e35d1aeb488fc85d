/**
 * The `CUlaunchConfig` that `cuLaunchKernelEx` takes, laid out by hand (pure: no driver, so the layout is
 * tested without a GPU). One buffer per kernel: the 56-byte config, then up to two 72-byte
 * `CUlaunchAttribute`s — the cluster shape (id 4) and programmatic stream serialization (id 6, PDL) —
 * rewritten in place on every launch.
 *
 * ```
 * CUlaunchConfig (cuda.h)              CUlaunchAttribute
 *   0 u32 gridDimX, gridDimY, gridDimZ   0 u32 id
 *  12 u32 blockDimX, blockDimY, blockDimZ 4 pad[4]
 *  24 u32 sharedMemBytes                 8 value: a 64-byte union
 *  32 ptr hStream                            clusterDim {u32 x, y, z}
 *  40 ptr attrs                              int programmaticStreamSerializationAllowed
 *  48 u32 numAttrs (+ 4 pad) = 56
 * ```
 *
 * @module
 */

/** Bytes of a `CUlaunchConfig`. */
export const LAUNCH_CONFIG_BYTES = 56;
/** Bytes of a `CUlaunchAttribute` (id, padding, 64-byte value union). */
export const LAUNCH_ATTR_BYTES = 72;
/** The launch attribute ids kiln sets (`CUlaunchAttributeID`). */
export const LAUNCH_ATTR = { CLUSTER_DIMENSION: 4, PROGRAMMATIC_STREAM_SERIALIZATION: 6 } as const;
/** Attributes a config buffer has room for. */
export const LAUNCH_MAX_ATTRS = 2;

/** What one `cuLaunchKernelEx` call is given. */
export interface LaunchConfigSpec {
  readonly grid: readonly [number, number, number];
  readonly block: readonly [number, number, number];
  readonly sharedBytes: number;
  /** The CUstream handle as an address (0n: the legacy default stream). */
  readonly stream: bigint;
  /** Thread-block cluster shape (attribute 4). */
  readonly cluster?: readonly [number, number, number];
  /** Programmatic dependent launch (attribute 6, value 1). */
  readonly pdl?: boolean;
}

/** A zeroed buffer for a config and its attributes. */
export function launchConfigBuffer(): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new ArrayBuffer(LAUNCH_CONFIG_BYTES + LAUNCH_MAX_ATTRS * LAUNCH_ATTR_BYTES));
}

/**
 * Write `spec` into `buf` (from {@linkcode launchConfigBuffer}): the config at offset 0, its attributes
 * from offset 56 — cluster first, then PDL — with `attrs` = `attrsAddress` (the address of `buf` + 56,
 * which only the caller can know). Returns the attribute count (0 when neither is set: a caller
 * launches with plain `cuLaunchKernel` then).
 *
 * @example
 * ```ts
 * import { launchConfigBuffer, writeLaunchConfig } from "./launch_config.ts";
 * const buf = launchConfigBuffer();
 * const n = writeLaunchConfig(buf, { grid: [132, 1, 1], block: [256, 1, 1], sharedBytes: 0, stream: 0n, pdl: true }, 0x1000n);
 * console.log(n, new DataView(buf.buffer).getUint32(56, true)); // 1 6
 * ```
 */
export function writeLaunchConfig(buf: Uint8Array, spec: LaunchConfigSpec, attrsAddress: bigint): number {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const [gx, gy, gz] = spec.grid, [bx, by, bz] = spec.block;
  v.setUint32(0, gx, true);
  v.setUint32(4, gy, true);
  v.setUint32(8, gz, true);
  v.setUint32(12, bx, true);
  v.setUint32(16, by, true);
  v.setUint32(20, bz, true);
  v.setUint32(24, spec.sharedBytes, true);
  v.setUint32(28, 0, true);
  v.setBigUint64(32, spec.stream, true);
  let n = 0;
  const attr = (id: number): number => {
    const at = LAUNCH_CONFIG_BYTES + n++ * LAUNCH_ATTR_BYTES;
    buf.fill(0, at, at + LAUNCH_ATTR_BYTES);
    v.setUint32(at, id, true);
    return at + 8; // the value union
  };
  if (spec.cluster) {
    const at = attr(LAUNCH_ATTR.CLUSTER_DIMENSION);
    v.setUint32(at, spec.cluster[0], true);
    v.setUint32(at + 4, spec.cluster[1], true);
    v.setUint32(at + 8, spec.cluster[2], true);
  }
  if (spec.pdl) v.setInt32(attr(LAUNCH_ATTR.PROGRAMMATIC_STREAM_SERIALIZATION), 1, true);
  v.setBigUint64(40, n ? attrsAddress : 0n, true);
  v.setUint32(48, n, true);
  v.setUint32(52, 0, true);
  return n;
}
