/**
 * Device and pinned host memory. Buffers are freed by `dispose()` / `using`; a FinalizationRegistry
 * frees any that are dropped without it (and says so at `KILN_DEBUG` ≥ 1).
 *
 * @module
 */
import { check, driver } from "./driver.ts";
import { Device, type Stream } from "./device.ts";
import { debug } from "./env.ts";
import { ArgumentError } from "./errors.ts";

const deviceFinalizer = new FinalizationRegistry<{ ptr: bigint; size: number }>((h) => {
  debug(1, `freeing a leaked device buffer of ${h.size} bytes (dispose() it instead)`);
  try {
    driver().cuMemFree(h.ptr);
  } catch { /* the context may be gone at exit */ }
});

/** A device allocation. */
export class DeviceBuffer {
  #ptr: bigint;
  readonly size: number;
  readonly device: Device;

  constructor(size: number, device: Device = Device.get()) {
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new ArgumentError("size", "a byte count ≥ 0", String(size));
    }
    this.device = device;
    this.size = size;
    const out = new BigUint64Array(1);
    // cuMemAlloc rejects 0 bytes; a 0-byte buffer still gets a real (tiny) allocation so it has an address
    check(driver().cuMemAlloc(out, BigInt(Math.max(size, 16))), `cuMemAlloc_v2(${size} bytes)`);
    this.#ptr = out[0];
    deviceFinalizer.register(this, { ptr: this.#ptr, size }, this);
  }

  /** The device address; throws once the buffer is freed. */
  get ptr(): bigint {
    if (this.#ptr === 0n) throw new ArgumentError("buffer", "a live device buffer", "one that was disposed");
    return this.#ptr;
  }
  get disposed(): boolean {
    return this.#ptr === 0n;
  }

  dispose(): void {
    if (this.#ptr === 0n) return;
    deviceFinalizer.unregister(this);
    const p = this.#ptr;
    this.#ptr = 0n;
    check(driver().cuMemFree(p), "cuMemFree_v2");
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Copy host bytes to device address `dst` on `stream` and wait for it. Every copy goes through kiln's own
 * (non-blocking) stream, never the legacy default stream: a legacy-stream copy while another thread
 * captures a graph would be an illegal implicit dependency (CUDA_ERROR_STREAM_CAPTURE_IMPLICIT).
 */
export function copyHtoD(
  dst: bigint,
  src: ArrayBufferView<ArrayBuffer>,
  stream: Stream = Device.get().stream,
): void {
  const bytes = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
  if (!bytes.length) return;
  check(
    driver().cuMemcpyHtoDAsync(dst, Deno.UnsafePointer.of(bytes), BigInt(bytes.length), stream.handle),
    "cuMemcpyHtoDAsync_v2",
  );
  stream.synchronize(); // the host buffer is the caller's again once this returns
}

/** Copy device bytes at `src` into a host view on `stream` (after the work queued there) and wait. */
export function copyDtoH(
  dst: ArrayBufferView<ArrayBuffer>,
  src: bigint,
  stream: Stream = Device.get().stream,
): void {
  const bytes = new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength);
  if (!bytes.length) return;
  check(
    driver().cuMemcpyDtoHAsync(Deno.UnsafePointer.of(bytes), src, BigInt(bytes.length), stream.handle),
    "cuMemcpyDtoHAsync_v2",
  );
  stream.synchronize();
}

/** Device-to-device copy on `stream` (asynchronous). */
export function copyDtoDAsync(
  dst: bigint,
  src: bigint,
  bytes: number,
  stream: Stream = Device.get().stream,
): void {
  if (bytes) {
    check(driver().cuMemcpyDtoDAsync(dst, src, BigInt(bytes), stream.handle), "cuMemcpyDtoDAsync_v2");
  }
}

/** Fill `bytes` bytes at `dst` with `value` on `stream` (asynchronous). */
export function memsetAsync(
  dst: bigint,
  value: number,
  bytes: number,
  stream: Stream = Device.get().stream,
): void {
  if (bytes) {
    check(driver().cuMemsetD8Async(dst, value & 0xff, BigInt(bytes), stream.handle), "cuMemsetD8Async");
  }
}

/**
 * Page-locked host memory, for asynchronous copies. `bytes` is a Uint8Array over the pinned pages;
 * it must not be used after `dispose()`.
 */
export class PinnedBuffer {
  #p: Deno.PointerValue;
  readonly bytes: Uint8Array<ArrayBuffer>;
  constructor(size: number, device: Device = Device.get()) {
    device.makeCurrent(); // pinned allocations belong to a context: one must be current
    const out = new BigUint64Array(1);
    check(driver().cuMemHostAlloc(out, BigInt(Math.max(size, 1)), 0), `cuMemHostAlloc(${size} bytes)`);
    this.#p = Deno.UnsafePointer.create(out[0]);
    this.bytes = new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(this.#p!, Math.max(size, 1)), 0, size);
  }
  get pointer(): Deno.PointerValue {
    return this.#p;
  }
  /** Queue a copy of `bytes` bytes from this pinned buffer to `dst`. */
  copyToDeviceAsync(dst: bigint, bytes = this.bytes.length, stream: Stream = Device.get().stream): void {
    check(driver().cuMemcpyHtoDAsync(dst, this.#p, BigInt(bytes), stream.handle), "cuMemcpyHtoDAsync_v2");
  }
  /** Queue a copy of `bytes` bytes from `src` into this pinned buffer. */
  copyFromDeviceAsync(src: bigint, bytes = this.bytes.length, stream: Stream = Device.get().stream): void {
    check(driver().cuMemcpyDtoHAsync(this.#p, src, BigInt(bytes), stream.handle), "cuMemcpyDtoHAsync_v2");
  }
  dispose(): void {
    if (this.#p !== null) {
      check(driver().cuMemFreeHost(this.#p), "cuMemFreeHost");
      this.#p = null;
    }
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}
