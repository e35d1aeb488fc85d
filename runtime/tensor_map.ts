/**
 * TMA tensor maps (`cuTensorMapEncodeTiled`): the 128-byte descriptor a kernel receives as a
 * `const __grid_constant__ CUtensorMap` parameter ({@linkcode ParamSpec} kind "tensormap").
 *
 * @module
 */
import { check, driver } from "./driver.ts";
import { alignedBytes } from "./launch.ts";
import type { DType } from "../dsl/dtype.ts";
import { ArgumentError } from "./errors.ts";

/** CUtensorMapDataType for kiln dtypes. */
const DATA_TYPE: Partial<Record<DType, number>> = {
  u8: 0,
  fp8e4m3: 0, // bytes: TMA moves them as uint8
  fp8e5m2: 0,
  i8: 0,
  f16: 6,
  bf16: 9,
  f32: 7,
  i32: 3,
  u32: 2,
};
const ELEM_BYTES: Partial<Record<DType, number>> = {
  u8: 1,
  fp8e4m3: 1,
  fp8e5m2: 1,
  i8: 1,
  f16: 2,
  bf16: 2,
  f32: 4,
  i32: 4,
  u32: 4,
};

/** Shared-memory swizzle modes (CUtensorMapSwizzle). */
export type Swizzle = "none" | "32B" | "64B" | "128B";
const SWIZZLE: Record<Swizzle, number> = { none: 0, "32B": 1, "64B": 2, "128B": 3 };

/** Arguments of {@linkcode encodeTensorMap}. Dimensions are innermost first, as the driver wants them. */
export interface TensorMapSpec {
  dtype: DType;
  /** Global address of element 0. 16-byte aligned. */
  address: bigint;
  /** Sizes, innermost (contiguous) dimension first. */
  dims: readonly number[];
  /** Byte strides of dimensions 1..rank-1 (dimension 0 is contiguous). Multiples of 16. */
  strides: readonly number[];
  /** Box (tile) size per dimension, innermost first; each ≤ 256. */
  box: readonly number[];
  swizzle?: Swizzle;
  /** L2 promotion (CUtensorMapL2promotion): 0 none, 1: 64B, 2: 128B, 3: 256B. Default 2. */
  l2Promotion?: number;
}

/** Encode a tiled tensor map. Validates the driver's documented constraints first, with clear errors. */
export function encodeTensorMap(s: TensorMapSpec): Uint8Array {
  const dt = DATA_TYPE[s.dtype];
  const eb = ELEM_BYTES[s.dtype];
  if (dt === undefined || eb === undefined) {
    throw new ArgumentError("tensor map dtype", "a byte, 16- or 32-bit type", s.dtype);
  }
  const rank = s.dims.length;
  if (rank < 1 || rank > 5) throw new ArgumentError("tensor map rank", "1..5", String(rank));
  if (s.strides.length !== rank - 1) {
    throw new ArgumentError("tensor map strides", `${rank - 1} byte strides`, String(s.strides.length));
  }
  if (s.box.length !== rank) throw new ArgumentError("tensor map box", `${rank} sizes`, String(s.box.length));
  if (s.address % 16n !== 0n) {
    throw new ArgumentError("tensor map address", "16-byte aligned", `0x${s.address.toString(16)}`);
  }
  s.strides.forEach((st, i) => {
    if (st % 16 !== 0) {
      throw new ArgumentError(`tensor map stride[${i + 1}]`, "a multiple of 16 bytes", `${st}`);
    }
  });
  s.box.forEach((b, i) => {
    if (b < 1 || b > 256) throw new ArgumentError(`tensor map box[${i}]`, "1..256", `${b}`);
  });
  if ((s.box[0] * eb) % 16 !== 0) {
    throw new ArgumentError("tensor map box[0]", "a multiple of 16 bytes", `${s.box[0] * eb} bytes`);
  }
  const out = alignedBytes(128, 64);
  const dims = new BigUint64Array(s.dims.map(BigInt));
  const strides = new BigUint64Array(Math.max(1, rank - 1));
  s.strides.forEach((x, i) => (strides[i] = BigInt(x)));
  const box = new Uint32Array(s.box);
  const estr = new Uint32Array(rank).fill(1);
  check(
    driver().cuTensorMapEncodeTiled(
      out,
      dt,
      rank,
      s.address,
      dims,
      strides,
      box,
      estr,
      0,
      SWIZZLE[s.swizzle ?? "none"],
      s.l2Promotion ?? 2,
      0,
    ),
    `cuTensorMapEncodeTiled(${s.dtype}, dims [${s.dims}], box [${s.box}], swizzle ${s.swizzle ?? "none"})`,
  );
  return out;
}
