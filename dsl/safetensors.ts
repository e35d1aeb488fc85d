/**
 * The safetensors format, parsed from bytes (no file access here; see `runtime/safetensors_file.ts`):
 *
 * ```
 * [u64 little-endian N][N bytes of UTF-8 JSON header, space-padded][data]
 * header = { "__metadata__"?: {string: string}, "<name>": { dtype, shape, data_offsets: [begin, end] } }
 * ```
 *
 * Offsets are relative to the start of the data. As the reference implementation requires, tensors must
 * tile the data exactly: no overlaps, no gaps, nothing after the last tensor. Every error names the file
 * and, where there is one, the tensor: a truncated file, a header length past the end, out-of-range or
 * overlapping offsets, an unknown dtype, a shape that disagrees with the byte size.
 *
 * dtypes read: F8_E4M3, F8_E5M2, BF16, F16, F32, I8, U8, I32, I64, plus U32 and F8_E8M0 (kiln has u32 and
 * ue8m0). Packed 4-bit data (int4, fp4) is stored as U8 in checkpoints. Data is little-endian, as are the
 * hosts kiln runs on.
 *
 * @example
 * ```ts
 * import { parseSafetensors, serializeSafetensors, tensorBytes } from "./safetensors.ts";
 * const file = serializeSafetensors([{ name: "w", dtype: "F32", shape: [2], data: new Float32Array([1, 2]) }]);
 * const h = parseSafetensors(file, "w.safetensors");
 * tensorBytes(file, h, "w").byteLength; // 8
 * ```
 * @module
 */
import { allocHost, type DType, type HostArray } from "./dtype.ts";

/** safetensors dtype names kiln reads. */
export type SafetensorsDType =
  | "F8_E4M3"
  | "F8_E5M2"
  | "F8_E8M0"
  | "BF16"
  | "F16"
  | "F32"
  | "I8"
  | "U8"
  | "I32"
  | "U32"
  | "I64";

/** safetensors dtype → kiln dtype and element size in bytes. */
export const SAFETENSORS_DTYPES: Readonly<
  Record<SafetensorsDType, { readonly dtype: DType; readonly bytes: number }>
> = Object
  .freeze({
    F8_E4M3: { dtype: "fp8e4m3", bytes: 1 },
    F8_E5M2: { dtype: "fp8e5m2", bytes: 1 },
    F8_E8M0: { dtype: "ue8m0", bytes: 1 },
    BF16: { dtype: "bf16", bytes: 2 },
    F16: { dtype: "f16", bytes: 2 },
    F32: { dtype: "f32", bytes: 4 },
    I8: { dtype: "i8", bytes: 1 },
    U8: { dtype: "u8", bytes: 1 },
    I32: { dtype: "i32", bytes: 4 },
    U32: { dtype: "u32", bytes: 4 },
    I64: { dtype: "i64", bytes: 8 },
  });

/** The largest header the reference implementation accepts (100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

/** A malformed safetensors file. `file` and `tensor` say where (either may be null). */
export class SafetensorsError extends Error {
  override name = "SafetensorsError";
  constructor(readonly file: string | null, readonly tensor: string | null, readonly reason: string) {
    super(
      `${file ?? "<safetensors>"}${tensor !== null ? `: tensor ${JSON.stringify(tensor)}` : ""}: ${reason}`,
    );
  }
}

/** One tensor of a header. Offsets are relative to the start of the data section. */
export interface SafetensorsTensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  /** The kiln dtype of the stored elements. */
  readonly kilnDType: DType;
  readonly shape: readonly number[];
  readonly begin: number;
  readonly end: number;
  readonly numel: number;
}

/** A parsed header. */
export interface SafetensorsHeader {
  readonly file: string | null;
  /** N, the JSON header's byte length. */
  readonly headerLength: number;
  /** Absolute file offset of the data section (8 + N). */
  readonly dataOffset: number;
  readonly fileSize: number;
  /** Tensors in header order. */
  readonly tensors: readonly SafetensorsTensorInfo[];
  readonly metadata: Readonly<Record<string, string>> | null;
}

/** The kiln dtype of a safetensors dtype name (throws SafetensorsError naming the tensor otherwise). */
export function kilnDTypeOf(dtype: string, file: string | null = null, tensor: string | null = null): DType {
  if (!Object.hasOwn(SAFETENSORS_DTYPES, dtype)) {
    throw new SafetensorsError(
      file,
      tensor,
      `unknown dtype ${JSON.stringify(dtype)}; kiln reads ${Object.keys(SAFETENSORS_DTYPES).join(", ")}`,
    );
  }
  return SAFETENSORS_DTYPES[dtype as SafetensorsDType].dtype;
}

/** The safetensors dtype to store a kiln dtype as (packed 4-bit types have none: store them as U8). */
export function safetensorsDTypeOf(dtype: DType): SafetensorsDType {
  for (const [k, v] of Object.entries(SAFETENSORS_DTYPES)) {
    if (v.dtype === dtype) return k as SafetensorsDType;
  }
  throw new TypeError(`kiln dtype ${dtype} has no safetensors dtype (store packed 4-bit data as U8)`);
}

/**
 * N from the first 8 bytes of a file of `fileSize` bytes. Throws for a file shorter than 8 bytes, a
 * header length past the end of the file, or a header over {@linkcode MAX_HEADER_BYTES}.
 */
export function readHeaderLength(first8: Uint8Array, fileSize: number, file: string | null = null): number {
  if (fileSize < 8 || first8.byteLength < 8) {
    throw new SafetensorsError(
      file,
      null,
      `truncated file: ${fileSize} bytes, shorter than the 8-byte header length`,
    );
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(fileSize - 8)) {
    throw new SafetensorsError(
      file,
      null,
      `header length ${n} runs past the end of the file (${fileSize} bytes)`,
    );
  }
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(file, null, `header length ${n} exceeds ${MAX_HEADER_BYTES} bytes`);
  }
  if (n < 2n) throw new SafetensorsError(file, null, `header length ${n} is too small for a JSON object`);
  return Number(n);
}

/**
 * Parse the JSON header (the `headerLength` bytes after the first 8) of a file of `fileSize` bytes and
 * validate every tensor against the data section's size.
 */
export function parseSafetensorsHeader(
  headerJson: Uint8Array,
  fileSize: number,
  file: string | null = null,
): SafetensorsHeader {
  const headerLength = headerJson.byteLength;
  const dataOffset = 8 + headerLength;
  const dataLength = fileSize - dataOffset;
  if (dataLength < 0) {
    throw new SafetensorsError(
      file,
      null,
      `header length ${headerLength} runs past the end of the file (${fileSize} bytes)`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(headerJson));
  } catch (e) {
    throw new SafetensorsError(file, null, `header is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new SafetensorsError(file, null, "header must be a JSON object");
  }
  let metadata: Record<string, string> | null = null;
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [name, v] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      metadata = parseMetadata(v, file);
      continue;
    }
    tensors.push(parseEntry(name, v, file));
  }
  // Tensors must tile [0, dataLength) exactly.
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: SafetensorsTensorInfo | null = null;
  for (const t of sorted) {
    if (t.end > dataLength) {
      throw new SafetensorsError(
        file,
        t.name,
        `truncated file: data_offsets [${t.begin}, ${t.end}] end past the ${dataLength} data bytes the file holds`,
      );
    }
    if (t.begin < pos) {
      throw new SafetensorsError(
        file,
        t.name,
        `data_offsets [${t.begin}, ${t.end}] overlap tensor ${JSON.stringify(prev!.name)} [${prev!.begin}, ${
          prev!.end
        }]`,
      );
    }
    if (t.begin > pos) {
      throw new SafetensorsError(
        file,
        t.name,
        `data_offsets start at ${t.begin}, leaving a gap after byte ${pos} (tensors must be contiguous)`,
      );
    }
    pos = t.end;
    prev = t;
  }
  if (pos !== dataLength) {
    throw new SafetensorsError(
      file,
      null,
      `${
        dataLength - pos
      } bytes after the last tensor's data (the header accounts for ${pos} of ${dataLength})`,
    );
  }
  return Object.freeze({
    file,
    headerLength,
    dataOffset,
    fileSize,
    tensors: Object.freeze(tensors),
    metadata,
  });
}

function parseMetadata(v: unknown, file: string | null): Record<string, string> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new SafetensorsError(file, null, "__metadata__ must be an object of strings");
  }
  for (const [k, s] of Object.entries(v)) {
    if (typeof s !== "string") throw new SafetensorsError(file, null, `__metadata__.${k} must be a string`);
  }
  return Object.freeze({ ...(v as Record<string, string>) });
}

function parseEntry(name: string, v: unknown, file: string | null): SafetensorsTensorInfo {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new SafetensorsError(file, name, "entry must be an object");
  }
  const o = v as Record<string, unknown>;
  if (typeof o.dtype !== "string") throw new SafetensorsError(file, name, "dtype must be a string");
  const kilnDType = kilnDTypeOf(o.dtype, file, name);
  const dtype = o.dtype as SafetensorsDType;
  if (!Array.isArray(o.shape) || !o.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(
      file,
      name,
      `shape must be a list of non-negative integers, got ${JSON.stringify(o.shape)}`,
    );
  }
  const shape = Object.freeze([...o.shape as number[]]);
  const off = o.data_offsets;
  if (
    !Array.isArray(off) || off.length !== 2 || !off.every((x) => Number.isSafeInteger(x) && x >= 0) ||
    off[0] > off[1]
  ) {
    throw new SafetensorsError(
      file,
      name,
      `data_offsets out of range: expected [begin, end] with 0 ≤ begin ≤ end, got ${JSON.stringify(off)}`,
    );
  }
  const [begin, end] = off as [number, number];
  const numel = shape.reduce((a, b) => a * b, 1);
  const bytes = numel * SAFETENSORS_DTYPES[dtype].bytes;
  if (bytes !== end - begin) {
    throw new SafetensorsError(
      file,
      name,
      `shape [${
        shape.join(", ")
      }] of ${dtype} needs ${bytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
    );
  }
  return Object.freeze({ name, dtype, kilnDType, shape, begin, end, numel });
}

/** Parse a whole safetensors file held in memory. */
export function parseSafetensors(bytes: Uint8Array, file: string | null = null): SafetensorsHeader {
  const n = readHeaderLength(bytes.subarray(0, 8), bytes.byteLength, file);
  return parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.byteLength, file);
}

/** The info of one tensor, or a SafetensorsError naming it. */
export function tensorInfo(header: SafetensorsHeader, name: string): SafetensorsTensorInfo {
  const t = header.tensors.find((x) => x.name === name);
  if (!t) throw new SafetensorsError(header.file, name, "no such tensor in this file");
  return t;
}

/** A view of one tensor's bytes in a file held in memory. */
export function tensorBytes(bytes: Uint8Array, header: SafetensorsHeader, name: string): Uint8Array {
  const t = tensorInfo(header, name);
  return bytes.subarray(header.dataOffset + t.begin, header.dataOffset + t.end);
}

/** Copy raw little-endian tensor bytes into a fresh, aligned host array of kiln `dtype`. */
export function toHostArray(dtype: DType, bytes: Uint8Array): HostArray {
  const size = dtype === "i64"
    ? 8
    : dtype === "f32" || dtype === "i32" || dtype === "u32"
    ? 4
    : dtype === "f16" || dtype === "bf16"
    ? 2
    : 1;
  if (bytes.byteLength % size !== 0) {
    throw new RangeError(`${bytes.byteLength} bytes is not a whole number of ${dtype} elements`);
  }
  const out = allocHost(dtype, bytes.byteLength / size);
  new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(bytes);
  return out;
}

/** A tensor to write. `data` is raw storage (typed arrays are taken byte for byte). */
export interface SafetensorsWriteEntry {
  readonly name: string;
  readonly dtype: SafetensorsDType | DType;
  readonly shape: readonly number[];
  readonly data: ArrayBufferView;
}

/**
 * Serialize tensors (in the given order) into a valid safetensors file: the header padded with spaces to
 * a multiple of 8 bytes, then the data. Throws when a tensor's data size disagrees with its shape.
 */
export function serializeSafetensors(
  entries: readonly SafetensorsWriteEntry[],
  metadata?: Record<string, string>,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let pos = 0;
  const chunks: Uint8Array[] = [];
  for (const e of entries) {
    const dtype = Object.hasOwn(SAFETENSORS_DTYPES, e.dtype)
      ? e.dtype as SafetensorsDType
      : safetensorsDTypeOf(e.dtype as DType);
    const bytes = new Uint8Array(e.data.buffer, e.data.byteOffset, e.data.byteLength);
    const want = e.shape.reduce((a, b) => a * b, 1) * SAFETENSORS_DTYPES[dtype].bytes;
    if (bytes.byteLength !== want) {
      throw new RangeError(
        `${e.name}: shape [${
          e.shape.join(", ")
        }] of ${dtype} needs ${want} bytes, data has ${bytes.byteLength}`,
      );
    }
    header[e.name] = { dtype, shape: [...e.shape], data_offsets: [pos, pos + want] };
    chunks.push(bytes);
    pos += want;
  }
  const data = new Uint8Array(pos);
  let off = 0;
  for (const c of chunks) {
    data.set(c, off);
    off += c.byteLength;
  }
  return buildSafetensorsFile(header, data);
}

/**
 * Assemble a file from any header object and data, without validation (tests use it to build broken
 * files). The JSON is space-padded to a multiple of 8 bytes.
 */
export function buildSafetensorsFile(header: unknown, data: Uint8Array, headerLength?: number): Uint8Array {
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength ?? json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}
