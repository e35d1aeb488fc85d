/**
 * Argument packing. A kernel's parameters are laid out once from its {@linkcode ParamSpec} list into
 * one parameter buffer that is rewritten in place on every launch and handed to `cuLaunchKernel`
 * through its `extra` argument: no per-launch allocation, no pointer arrays, no BigInt churn beyond
 * the pointer values themselves.
 *
 * @module
 */
import { paramOffsets, type ParamSpec } from "../codegen/kernel_source.ts";
import type { DType } from "../dsl/dtype.ts";
import { ArgumentError } from "./errors.ts";
import { addressOf } from "./_c.ts";

/** Anything with a device address and a dtype (a {@linkcode Tensor} is one). */
export interface PointerArg {
  readonly ptr: bigint;
  readonly dtype: DType;
}

/** A launch argument: a tensor, a raw device address, a number, or a 128-byte tensor map. */
export type Arg = PointerArg | bigint | number | Uint8Array;

/** Allocate `size` bytes whose first byte is `align`-aligned, off the V8 heap (stable address). */
export function alignedBytes(size: number, align = 64): Uint8Array<ArrayBuffer> {
  const raw = new Uint8Array(new ArrayBuffer(size + align));
  const mis = Number(addressOf(raw) % BigInt(align));
  const start = mis === 0 ? 0 : align - mis;
  return raw.subarray(start, start + size);
}

/** Packs arguments for one kernel signature into a reusable parameter buffer. */
export class ArgPacker {
  readonly params: readonly ParamSpec[];
  readonly offsets: readonly number[];
  readonly size: number;
  /** The parameter buffer (64-byte aligned). */
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly #view: DataView;
  /** `extra` for cuLaunchKernel: [BUFFER_POINTER, &bytes, BUFFER_SIZE, &size, END]. */
  readonly extra: BigUint64Array<ArrayBuffer>;
  readonly #sizeCell: BigUint64Array<ArrayBuffer>;
  readonly #kernel: string;

  /**
   * `layout` overrides the computed offsets with the ones the driver reports for the compiled kernel
   * (they differ from natural alignment for 64-byte-aligned tensor maps: the compiler aligns their
   * address in the constant bank, not in the buffer).
   */
  constructor(params: readonly ParamSpec[], kernel = "kernel", layout?: { offsets: number[]; size: number }) {
    this.params = params;
    this.#kernel = kernel;
    const { offsets, size } = layout ?? paramOffsets(params);
    this.offsets = offsets;
    this.size = size;
    this.bytes = alignedBytes(Math.max(size, 8));
    this.#view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    this.#sizeCell = new BigUint64Array(new ArrayBuffer(8));
    this.#sizeCell[0] = BigInt(size);
    this.extra = new BigUint64Array(new ArrayBuffer(40));
    this.extra.set([1n, addressOf(this.bytes), 2n, addressOf(this.#sizeCell), 0n]);
  }

  /** Write `args` (one per parameter, in order) into the buffer. Throws ArgumentError naming the bad one. */
  pack(args: readonly Arg[]): void {
    const ps = this.params;
    if (args.length !== ps.length) {
      throw new ArgumentError(
        `${this.#kernel} arguments`,
        `${ps.length} (${ps.map((p) => p.name).join(", ")})`,
        `${args.length}`,
      );
    }
    const v = this.#view;
    for (let i = 0; i < ps.length; i++) {
      const p = ps[i], a = args[i], off = this.offsets[i];
      switch (p.kind) {
        case "ptr": {
          if (typeof a === "bigint") v.setBigUint64(off, a, true);
          else if (a !== null && typeof a === "object" && "ptr" in a) {
            if (a.dtype !== p.dtype) this.#bad(p, `a ${p.dtype} tensor`, `a ${a.dtype} tensor`);
            v.setBigUint64(off, a.ptr, true);
          } else this.#bad(p, `a ${p.dtype} tensor or device address`, describe(a));
          break;
        }
        case "i32":
          if (typeof a !== "number" || !Number.isInteger(a) || a < -2147483648 || a > 2147483647) {
            this.#bad(p, "an int32", describe(a));
          }
          v.setInt32(off, a as number, true);
          break;
        case "u32":
          if (typeof a !== "number" || !Number.isInteger(a) || a < 0 || a > 4294967295) {
            this.#bad(p, "a uint32", describe(a));
          }
          v.setUint32(off, a as number, true);
          break;
        case "f32":
          if (typeof a !== "number") this.#bad(p, "a number", describe(a));
          v.setFloat32(off, a as number, true);
          break;
        case "f64":
          if (typeof a !== "number") this.#bad(p, "a number", describe(a));
          v.setFloat64(off, a as number, true);
          break;
        case "i64":
        case "u64": {
          const b = typeof a === "bigint"
            ? a
            : typeof a === "number" && Number.isInteger(a)
            ? BigInt(a)
            : undefined;
          if (b === undefined) this.#bad(p, "an integer or bigint", describe(a));
          if (p.kind === "i64") v.setBigInt64(off, b!, true);
          else v.setBigUint64(off, b!, true);
          break;
        }
        case "tensormap":
          if (!(a instanceof Uint8Array) || a.length !== 128) {
            this.#bad(p, "a 128-byte CUtensorMap", describe(a));
          }
          this.bytes.set(a as Uint8Array, off);
          break;
      }
    }
  }

  #bad(p: ParamSpec, expected: string, got: string): never {
    throw new ArgumentError(`${this.#kernel}(${p.name})`, expected, got);
  }
}

function describe(a: unknown): string {
  if (a instanceof Uint8Array) return `Uint8Array(${a.length})`;
  if (a !== null && typeof a === "object") {
    return "ptr" in a ? `a ${(a as PointerArg).dtype} tensor` : "an object";
  }
  return `${typeof a} ${String(a)}`;
}
