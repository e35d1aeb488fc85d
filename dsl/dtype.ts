/**
 * kiln's element types and their host codecs.
 *
 * Every kernel's TypeScript reference uses these codecs, so they are the ground truth for "bit-exact":
 * fp8 e4m3 / e5m2 encode the way `cvt.rn.satfinite.{e4m3,e5m2}x2.f32` does on the GPU (round to nearest
 * even, saturate to the largest finite value, NaN to the NaN code); bf16 and f16 encode with round to
 * nearest even; int8 / int4 / fp4 e2m1 / ue8m0 are the formats compressed-tensors and DeepGEMM use.
 *
 * @module
 */

/** The element types kiln's tensors and kernels use. Packed types hold two elements per byte. */
export type DType =
  | "f32"
  | "f16"
  | "bf16"
  | "fp8e4m3"
  | "fp8e5m2"
  | "i8"
  | "u8"
  | "i32"
  | "u32"
  | "i64"
  | "int4"
  | "fp4e2m1"
  | "ue8m0";

/** Static facts about a dtype. */
export interface DTypeInfo {
  readonly name: DType;
  /** Bits per element. */
  readonly bits: number;
  /** Elements per storage byte group: 2 for packed 4-bit types, else 1. */
  readonly packing: 1 | 2;
  /** Bytes per storage unit (a pair of elements for packed types). */
  readonly storageBytes: number;
  /** Largest finite value (for integer types, the largest integer). */
  readonly max: number;
  /** Smallest (most negative) finite value. */
  readonly min: number;
  /** The CUDA C storage type kiln's generated code uses for it (headers-free: plain integer types). */
  readonly cudaStorage: string;
  readonly isFloat: boolean;
}

const INFO: Record<DType, DTypeInfo> = {
  f32: info("f32", 32, 1, 4, 3.4028234663852886e38, true, "float"),
  f16: info("f16", 16, 1, 2, 65504, true, "unsigned short"),
  bf16: info("bf16", 16, 1, 2, 3.3895313892515355e38, true, "unsigned short"),
  fp8e4m3: info("fp8e4m3", 8, 1, 1, 448, true, "unsigned char"),
  fp8e5m2: info("fp8e5m2", 8, 1, 1, 57344, true, "unsigned char"),
  i8: { ...info("i8", 8, 1, 1, 127, false, "signed char"), min: -128 },
  u8: { ...info("u8", 8, 1, 1, 255, false, "unsigned char"), min: 0 },
  i32: { ...info("i32", 32, 1, 4, 2147483647, false, "int"), min: -2147483648 },
  u32: { ...info("u32", 32, 1, 4, 4294967295, false, "unsigned int"), min: 0 },
  i64: {
    ...info("i64", 64, 1, 8, Number.MAX_SAFE_INTEGER, false, "long long"),
    min: Number.MIN_SAFE_INTEGER,
  },
  int4: { ...info("int4", 4, 2, 1, 7, false, "unsigned char"), min: -8 },
  fp4e2m1: info("fp4e2m1", 4, 2, 1, 6, true, "unsigned char"),
  ue8m0: { ...info("ue8m0", 8, 1, 1, 2 ** 127, true, "unsigned char"), min: 2 ** -127 },
};

function info(
  name: DType,
  bits: number,
  packing: 1 | 2,
  storageBytes: number,
  max: number,
  isFloat: boolean,
  cudaStorage: string,
): DTypeInfo {
  return { name, bits, packing, storageBytes, max, min: -max, cudaStorage, isFloat };
}

/** All dtype names, in a stable order. */
export const DTYPES: readonly DType[] = Object.keys(INFO) as DType[];

/** Facts about `dtype`; throws a clear error for an unknown name. */
export function dtypeInfo(dtype: DType): DTypeInfo {
  const i = INFO[dtype];
  if (!i) throw new TypeError(`unknown dtype "${dtype}": expected one of ${DTYPES.join(", ")}`);
  return i;
}

/** True when `s` names a kiln dtype. */
export function isDType(s: unknown): s is DType {
  return typeof s === "string" && Object.hasOwn(INFO, s);
}

/** Bytes needed to store `count` elements of `dtype` (packed types round up to whole bytes). */
export function byteSize(dtype: DType, count: number): number {
  const i = dtypeInfo(dtype);
  return i.packing === 2 ? Math.ceil(count / 2) : count * i.storageBytes;
}

// ---------------------------------------------------------------------------------------------
// Scalar codecs. All take and return JS numbers; inputs are treated as float32 values where the
// GPU would see a float32 (callers round with Math.fround first when that matters).

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** float32 bit pattern of `x` (rounded to f32 first). */
export function f32Bits(x: number): number {
  f32buf[0] = x;
  return u32buf[0];
}

/** The float32 whose bit pattern is `bits`. */
export function f32FromBits(bits: number): number {
  u32buf[0] = bits >>> 0;
  return f32buf[0];
}

/** Round half to even, for values that are exact in float64. */
export function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** float32 → bf16 bits, round to nearest even (NaN → 0x7fc0, keeping the sign). */
export function bf16Encode(x: number): number {
  const b = f32Bits(x);
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) & 0x8000) | 0x7fc0;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bf16 bits → number. */
export function bf16Decode(bits: number): number {
  return f32FromBits((bits & 0xffff) << 16);
}

/** A small IEEE-like float format, for the generic codec below. */
interface MiniFloat {
  ebits: number;
  mbits: number;
  bias: number;
  max: number;
  /** Code for NaN (without the sign bit); -1 when the format has none. */
  nan: number;
  /** IEEE-style: the all-ones exponent holds inf (mantissa 0) and NaN. */
  ieee?: boolean;
  /** "sat": overflow saturates to ±max (satfinite); "inf": overflow gives ±inf code `inf`. */
  overflow: "sat" | "inf";
  inf?: number;
}

const E4M3: MiniFloat = { ebits: 4, mbits: 3, bias: 7, max: 448, nan: 0x7f, overflow: "sat" };
const E5M2: MiniFloat = { ebits: 5, mbits: 2, bias: 15, max: 57344, nan: 0x7f, overflow: "sat", ieee: true };
const F16: MiniFloat = {
  ebits: 5,
  mbits: 10,
  bias: 15,
  max: 65504,
  nan: 0x7e00,
  overflow: "inf",
  inf: 0x7c00,
  ieee: true,
};
const E2M1: MiniFloat = { ebits: 2, mbits: 1, bias: 1, max: 6, nan: -1, overflow: "sat" };

function miniEncode(x: number, f: MiniFloat): number {
  const signBit = 1 << (f.ebits + f.mbits);
  if (Number.isNaN(x)) return f.nan;
  const neg = x < 0 || Object.is(x, -0);
  const a = Math.abs(x);
  const sign = neg ? signBit : 0;
  const maxCode = codeOf(f.max, f);
  if (a === Infinity) return sign | (f.overflow === "inf" ? f.inf! : maxCode);
  const minNormal = 2 ** (1 - f.bias);
  let code: number;
  if (a < minNormal) {
    code = roundHalfEven(a / 2 ** (1 - f.bias - f.mbits)); // may carry into the first normal: still right
  } else {
    let e = Math.floor(Math.log2(a));
    if (2 ** e > a) e--;
    else if (2 ** (e + 1) <= a) e++;
    let q = roundHalfEven((a / 2 ** e - 1) * 2 ** f.mbits);
    if (q === 2 ** f.mbits) {
      q = 0;
      e++;
    }
    code = ((e + f.bias) << f.mbits) | q;
  }
  if (code > maxCode) code = f.overflow === "inf" ? f.inf! : maxCode;
  return sign | code;
}

function codeOf(v: number, f: MiniFloat): number {
  const e = Math.floor(Math.log2(v));
  return ((e + f.bias) << f.mbits) | Math.round((v / 2 ** e - 1) * 2 ** f.mbits);
}

function miniDecode(code: number, f: MiniFloat): number {
  const signBit = 1 << (f.ebits + f.mbits);
  const sign = code & signBit ? -1 : 1;
  const mag = code & (signBit - 1);
  const e = mag >> f.mbits;
  const m = mag & ((1 << f.mbits) - 1);
  if (f.ieee && e === (1 << f.ebits) - 1) return m === 0 ? sign * Infinity : NaN;
  if (mag === f.nan) return NaN;
  if (e === 0) return sign * m * 2 ** (1 - f.bias - f.mbits);
  return sign * (1 + m / 2 ** f.mbits) * 2 ** (e - f.bias);
}

function table(n: number, f: MiniFloat): Float32Array {
  const t = new Float32Array(n);
  for (let i = 0; i < n; i++) t[i] = miniDecode(i, f);
  return t;
}

/** Decoded value of each of the 256 fp8 e4m3fn codes. */
export const FP8E4M3_VALUES: Float32Array = table(256, E4M3);
/** Decoded value of each of the 256 fp8 e5m2 codes. */
export const FP8E5M2_VALUES: Float32Array = table(256, E5M2);
/** Decoded value of each of the 16 fp4 e2m1 codes. */
export const FP4E2M1_VALUES: Float32Array = table(16, E2M1);

/** float32 → fp8 e4m3fn code, as `cvt.rn.satfinite.e4m3x2.f32`: RNE, saturate to ±448, NaN → 0x7f. */
export function fp8e4m3Encode(x: number): number {
  return miniEncode(Math.fround(x), E4M3);
}
/** fp8 e4m3fn code → number. */
export function fp8e4m3Decode(code: number): number {
  return FP8E4M3_VALUES[code & 0xff];
}
/** float32 → fp8 e5m2 code, as `cvt.rn.satfinite.e5m2x2.f32`: RNE, saturate to ±57344, NaN → 0x7f. */
export function fp8e5m2Encode(x: number): number {
  return miniEncode(Math.fround(x), E5M2);
}
/** fp8 e5m2 code → number. */
export function fp8e5m2Decode(code: number): number {
  return FP8E5M2_VALUES[code & 0xff];
}
/** float32 → f16 bits, round to nearest even, overflow → ±inf. */
export function f16Encode(x: number): number {
  return miniEncode(Math.fround(x), F16);
}
/** f16 bits → number. */
export function f16Decode(bits: number): number {
  return miniDecode(bits & 0xffff, F16);
}
/** float32 → fp4 e2m1 code (4 bits), RNE, saturate to ±6. NaN has no code in e2m1: it maps to +6. */
export function fp4e2m1Encode(x: number): number {
  if (Number.isNaN(x)) return 0x7;
  return miniEncode(Math.fround(x), E2M1);
}
/** fp4 e2m1 code → number. */
export function fp4e2m1Decode(code: number): number {
  return FP4E2M1_VALUES[code & 0xf];
}

/** ue8m0 (a bare biased exponent, as DeepGEMM's scale format) → 2^(b − 127); 255 is NaN. */
export function ue8m0Decode(b: number): number {
  return (b & 0xff) === 255 ? NaN : 2 ** ((b & 0xff) - 127);
}
/**
 * Positive number → ue8m0 byte of the smallest power of two ≥ x (the rounding DeepGEMM's
 * `ceil_to_ue8m0` and sglang's scale_ue8m0 path use), clamped to [0, 254].
 */
export function ue8m0EncodeCeil(x: number): number {
  if (!(x > 0)) return 0;
  const b = f32Bits(x);
  let e = (b >>> 23) & 0xff;
  if (e === 0) return 0; // subnormal float32: 2^-127 is the smallest ue8m0
  if ((b & 0x7fffff) !== 0) e++;
  return Math.min(e, 254);
}

/** Saturating int8 cast that truncates toward zero (C's `int8_t(float)` after a clamp, sglang's group path). */
export function i8Trunc(x: number): number {
  if (Number.isNaN(x)) return 0;
  return Math.max(-128, Math.min(127, Math.trunc(x)));
}
/** Saturating int8 cast rounding half to even (`cvt.rni.sat.s8.f32`). */
export function i8Rne(x: number): number {
  if (Number.isNaN(x)) return 0;
  return Math.max(-128, Math.min(127, roundHalfEven(x)));
}

/** Signed 4-bit two's complement nibble of an integer in [-8, 7]. */
export function int4Encode(v: number): number {
  if (v < -8 || v > 7 || !Number.isInteger(v)) throw new RangeError(`int4 value out of range: ${v}`);
  return v & 0xf;
}
/** Signed value of a 4-bit two's complement nibble. */
export function int4Decode(nibble: number): number {
  const n = nibble & 0xf;
  return n >= 8 ? n - 16 : n;
}

/** Pack 4-bit codes two per byte, element 2i in the low nibble, 2i+1 in the high nibble. */
export function packNibbles(codes: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(Math.ceil(codes.length / 2));
  for (let i = 0; i < codes.length; i++) out[i >> 1] |= (codes[i] & 0xf) << ((i & 1) * 4);
  return out;
}
/** Unpack `count` 4-bit codes packed by {@linkcode packNibbles}. */
export function unpackNibbles(bytes: Uint8Array, count: number): Uint8Array {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) out[i] = (bytes[i >> 1] >> ((i & 1) * 4)) & 0xf;
  return out;
}

/** Encode one number to the storage code of `dtype` (not for packed or 32/64-bit integer types). */
export function encodeScalar(dtype: DType, x: number): number {
  switch (dtype) {
    case "f16":
      return f16Encode(x);
    case "bf16":
      return bf16Encode(x);
    case "fp8e4m3":
      return fp8e4m3Encode(x);
    case "fp8e5m2":
      return fp8e5m2Encode(x);
    case "fp4e2m1":
      return fp4e2m1Encode(x);
    case "i8":
      return i8Rne(x);
    case "u8":
      return Math.max(0, Math.min(255, roundHalfEven(x)));
    case "int4":
      return int4Encode(Math.max(-8, Math.min(7, roundHalfEven(x))));
    case "ue8m0":
      return ue8m0EncodeCeil(x);
    default:
      throw new TypeError(`encodeScalar: ${dtype} has no scalar code (use a typed array)`);
  }
}

/** Decode one storage code of `dtype` to a number. */
export function decodeScalar(dtype: DType, code: number): number {
  switch (dtype) {
    case "f16":
      return f16Decode(code);
    case "bf16":
      return bf16Decode(code);
    case "fp8e4m3":
      return fp8e4m3Decode(code);
    case "fp8e5m2":
      return fp8e5m2Decode(code);
    case "fp4e2m1":
      return fp4e2m1Decode(code);
    case "i8":
      return code << 24 >> 24;
    case "u8":
      return code & 0xff;
    case "int4":
      return int4Decode(code);
    case "ue8m0":
      return ue8m0Decode(code);
    default:
      throw new TypeError(`decodeScalar: ${dtype} has no scalar code (use a typed array)`);
  }
}

/** Round `x` to the nearest value representable in `dtype` (what a store then a load would give). */
export function roundTo(dtype: DType, x: number): number {
  if (dtype === "f32") return Math.fround(x);
  if (dtype === "i32" || dtype === "u32" || dtype === "i64") return Math.trunc(x);
  return decodeScalar(dtype, encodeScalar(dtype, x));
}

/** The host typed array that holds raw storage of `dtype` (codes for 8/16-bit floats). */
export type HostArray =
  | Float32Array
  | Uint16Array
  | Uint8Array
  | Int8Array
  | Int32Array
  | Uint32Array
  | BigInt64Array;

/** A fresh typed array for `count` elements of raw `dtype` storage. */
export function allocHost(dtype: DType, count: number): HostArray {
  switch (dtype) {
    case "f32":
      return new Float32Array(count);
    case "f16":
    case "bf16":
      return new Uint16Array(count);
    case "i8":
      return new Int8Array(count);
    case "i32":
      return new Int32Array(count);
    case "u32":
      return new Uint32Array(count);
    case "i64":
      return new BigInt64Array(count);
    default:
      return new Uint8Array(byteSize(dtype, count));
  }
}

/** Encode float values into raw `dtype` storage (packing 4-bit types). */
export function encodeArray(dtype: DType, values: ArrayLike<number>): HostArray {
  const n = values.length;
  if (dtype === "f32") return Float32Array.from(values);
  if (dtype === "i32") return Int32Array.from(values, (v) => Math.trunc(v));
  if (dtype === "u32") return Uint32Array.from(values, (v) => Math.trunc(v));
  if (dtype === "i64") return BigInt64Array.from(Array.from(values, (v) => BigInt(Math.trunc(v))));
  if (dtype === "int4" || dtype === "fp4e2m1") {
    const codes = new Uint8Array(n);
    for (let i = 0; i < n; i++) codes[i] = encodeScalar(dtype, values[i]);
    return packNibbles(codes);
  }
  const out = allocHost(dtype, n);
  for (let i = 0; i < n; i++) (out as Uint8Array)[i] = encodeScalar(dtype, values[i]);
  return out;
}

/** Decode raw `dtype` storage holding `count` elements to float32 values. */
export function decodeArray(
  dtype: DType,
  raw: HostArray,
  count: number = rawCount(dtype, raw),
): Float32Array {
  const out = new Float32Array(count);
  if (dtype === "f32" || dtype === "i32" || dtype === "u32" || dtype === "i8") {
    for (let i = 0; i < count; i++) out[i] = (raw as Float32Array)[i];
    return out;
  }
  if (dtype === "i64") {
    for (let i = 0; i < count; i++) out[i] = Number((raw as BigInt64Array)[i]);
    return out;
  }
  if (dtype === "int4" || dtype === "fp4e2m1") {
    const codes = unpackNibbles(raw as Uint8Array, count);
    for (let i = 0; i < count; i++) out[i] = decodeScalar(dtype, codes[i]);
    return out;
  }
  for (let i = 0; i < count; i++) out[i] = decodeScalar(dtype, (raw as Uint8Array)[i]);
  return out;
}

function rawCount(dtype: DType, raw: HostArray): number {
  return dtypeInfo(dtype).packing === 2 ? raw.length * 2 : raw.length;
}
