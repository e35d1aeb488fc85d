/**
 * Device tensors: dtype + shape + strides (in elements) + a device buffer + an element offset.
 * Views (`rows`, `view`) share the buffer of the tensor they came from; only the owner frees it.
 *
 * @example
 * ```ts ignore
 * import { Tensor } from "./tensor.ts";
 * using x = Tensor.fromFloat("bf16", [2, 3], [1, 2, 3, 4, 5, 6]);
 * console.log(x.toFloat32()); // Float32Array [1, 2, 3, 4, 5, 6]
 * ```
 * @module
 */
import {
  allocHost,
  byteSize,
  decodeArray,
  type DType,
  dtypeInfo,
  encodeArray,
  type HostArray,
  isDType,
} from "../dsl/dtype.ts";
import { Device, type Stream } from "./device.ts";
import { copyDtoH, copyHtoD, DeviceBuffer, memsetAsync } from "./memory.ts";
import { ArgumentError } from "./errors.ts";

/** Options for creating a tensor. */
export interface TensorOptions {
  device?: Device;
}

/** Row-major strides (in elements) of `shape`. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

function checkShape(shape: readonly number[], what = "shape"): void {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new ArgumentError(what, "an array of non-negative integers", JSON.stringify(shape));
  }
}

/** A typed view of device memory. */
export class Tensor {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  /** Offset of element [0, 0, ...] from the buffer start, in elements. */
  readonly offset: number;
  readonly buffer: DeviceBuffer;
  /** True when this tensor allocated `buffer` and frees it on dispose. */
  readonly owner: boolean;

  private constructor(
    dtype: DType,
    shape: readonly number[],
    strides: readonly number[],
    buffer: DeviceBuffer,
    offset: number,
    owner: boolean,
  ) {
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.strides = Object.freeze([...strides]);
    this.buffer = buffer;
    this.offset = offset;
    this.owner = owner;
  }

  /** An uninitialized contiguous tensor. */
  static empty(dtype: DType, shape: readonly number[], opts: TensorOptions = {}): Tensor {
    if (!isDType(dtype)) throw new ArgumentError("dtype", "a kiln dtype", String(dtype));
    checkShape(shape);
    const n = shape.reduce((a, b) => a * b, 1);
    const buf = new DeviceBuffer(byteSize(dtype, n), opts.device ?? Device.get());
    return new Tensor(dtype, shape, contiguousStrides(shape), buf, 0, true);
  }

  /** A contiguous tensor holding raw storage `raw` (codes for fp8/bf16/f16, packed bytes for 4-bit types). */
  static fromHost(dtype: DType, shape: readonly number[], raw: HostArray, opts: TensorOptions = {}): Tensor {
    checkShape(shape);
    const n = shape.reduce((a, b) => a * b, 1);
    const want = byteSize(dtype, n);
    if (raw.byteLength !== want) {
      throw new ArgumentError(
        "raw",
        `${want} bytes for ${dtype}[${shape.join(", ")}]`,
        `${raw.byteLength} bytes`,
      );
    }
    const t = Tensor.empty(dtype, shape, opts);
    copyHtoD(t.ptr, raw as ArrayBufferView<ArrayBuffer>, t.device.stream);
    return t;
  }

  /** A contiguous tensor of `values` encoded to `dtype` (RNE / satfinite, as the GPU converts). */
  static fromFloat(
    dtype: DType,
    shape: readonly number[],
    values: ArrayLike<number>,
    opts: TensorOptions = {},
  ): Tensor {
    checkShape(shape);
    const n = shape.reduce((a, b) => a * b, 1);
    if (values.length !== n) {
      throw new ArgumentError("values", `${n} elements for shape [${shape.join(", ")}]`, `${values.length}`);
    }
    return Tensor.fromHost(dtype, shape, encodeArray(dtype, values), opts);
  }

  get device(): Device {
    return this.buffer.device;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
  get rank(): number {
    return this.shape.length;
  }
  /** Bytes spanned by the elements (for a contiguous tensor, its size). */
  get nbytes(): number {
    return byteSize(this.dtype, this.numel);
  }
  /** Device address of element [0, ...]. Packed 4-bit tensors need an even offset. */
  get ptr(): bigint {
    return this.buffer.ptr + BigInt(byteSize(this.dtype, this.offset));
  }
  get isContiguous(): boolean {
    const c = contiguousStrides(this.shape);
    return this.shape.every((d, i) => d <= 1 || this.strides[i] === c[i]);
  }

  /** Rows `[start, end)` of the first dimension, as a view (row padding hands users these). */
  rows(start: number, end: number): Tensor {
    if (this.rank < 1) throw new ArgumentError("rows", "a tensor of rank ≥ 1", "a scalar");
    const n = this.shape[0];
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end > n) {
      throw new ArgumentError("rows", `0 ≤ start ≤ end ≤ ${n}`, `[${start}, ${end})`);
    }
    const offset = this.offset + start * this.strides[0];
    if (dtypeInfo(this.dtype).packing === 2 && offset % 2) {
      throw new ArgumentError(
        "rows",
        "a byte-aligned start for a packed 4-bit tensor",
        `element offset ${offset}`,
      );
    }
    return new Tensor(
      this.dtype,
      [end - start, ...this.shape.slice(1)],
      this.strides,
      this.buffer,
      offset,
      false,
    );
  }

  /** The same elements with another shape (contiguous tensors only). */
  view(shape: readonly number[]): Tensor {
    checkShape(shape);
    if (!this.isContiguous) {
      throw new ArgumentError("view", "a contiguous tensor", `strides [${this.strides}]`);
    }
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== this.numel) {
      throw new ArgumentError("view", `a shape with ${this.numel} elements`, `[${shape.join(", ")}] (${n})`);
    }
    return new Tensor(this.dtype, shape, contiguousStrides(shape), this.buffer, this.offset, false);
  }

  /** A view with explicit strides (elements), e.g. an M-major scale layout. Checked against the buffer. */
  strided(shape: readonly number[], strides: readonly number[], offset = this.offset): Tensor {
    checkShape(shape);
    checkShape(strides, "strides");
    if (strides.length !== shape.length) {
      throw new ArgumentError("strides", `${shape.length} strides`, `${strides.length}`);
    }
    const last = shape.some((d) => d === 0) ? 0 : shape.reduce((a, d, i) => a + (d - 1) * strides[i], 0);
    const capacity = Math.floor(this.buffer.size / dtypeInfo(this.dtype).storageBytes) *
      dtypeInfo(this.dtype).packing;
    if (offset + last >= capacity && shape.every((d) => d > 0)) {
      throw new ArgumentError(
        "strided",
        `a view inside the buffer (${capacity} elements)`,
        `last element ${offset + last}`,
      );
    }
    return new Tensor(this.dtype, shape, strides, this.buffer, offset, false);
  }

  /** Copy the elements to a new host array of raw storage (waits for queued work on kiln's stream). */
  toHost(): HostArray {
    if (!this.isContiguous) {
      throw new ArgumentError("toHost", "a contiguous tensor", `strides [${this.strides}]`);
    }
    const out = allocHost(this.dtype, this.numel);
    copyDtoH(out as ArrayBufferView<ArrayBuffer>, this.ptr, this.device.stream);
    return out;
  }

  /** The elements decoded to float32. */
  toFloat32(): Float32Array {
    return decodeArray(this.dtype, this.toHost(), this.numel);
  }

  /** Overwrite the raw storage from host (same size as the tensor). */
  copyFromHost(raw: HostArray): void {
    if (!this.isContiguous) {
      throw new ArgumentError("copyFromHost", "a contiguous tensor", `strides [${this.strides}]`);
    }
    if (raw.byteLength !== this.nbytes) {
      throw new ArgumentError("raw", `${this.nbytes} bytes`, `${raw.byteLength}`);
    }
    copyHtoD(this.ptr, raw as ArrayBufferView<ArrayBuffer>, this.device.stream);
  }

  /** Fill every byte with `byte` (asynchronous, on `stream`). 0xFF poisons fp8 / bf16 / f32 with NaN. */
  fill(byte: number, stream?: Stream): this {
    if (!this.isContiguous) {
      throw new ArgumentError("fill", "a contiguous tensor", `strides [${this.strides}]`);
    }
    memsetAsync(this.ptr, byte, this.nbytes, stream ?? this.device.stream);
    return this;
  }

  /** Free the buffer (owners only; disposing a view does nothing). Later use of any view throws. */
  dispose(): void {
    if (this.owner) this.buffer.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return `Tensor(${this.dtype}[${this.shape.join(", ")}])`;
  }
}
