/**
 * Devices, streams and events. A {@linkcode Device} holds the device's primary context (made current
 * on the thread that opened it) and one kiln stream that every operation uses unless told otherwise.
 *
 * @example
 * ```ts ignore
 * import { Device, devices } from "./device.ts";
 * const found = devices();
 * if (found.devices.length === 0) console.log("no GPU:", found.reason);
 * else console.log(Device.get().info);
 * ```
 * @module
 */
import { check, driver } from "./driver.ts";
import { DEV_ATTR } from "./_ffi_cuda.ts";
import { handle } from "./_c.ts";
import { LibraryNotFoundError } from "./errors.ts";

/** Facts about a device, read once when it is opened. */
export interface DeviceInfo {
  ordinal: number;
  name: string;
  /** Compute capability as major*10+minor (90 for Hopper). */
  cc: number;
  /** Base architecture string, e.g. "sm_90". */
  arch: string;
  smCount: number;
  l2Bytes: number;
  /** Largest dynamic shared memory a block may opt into. */
  maxSharedPerBlockOptin: number;
  maxSharedPerSM: number;
  totalMemBytes: number;
  /** Peak DRAM bandwidth from the memory clock and bus width (read+write, bytes/s): a datasheet lead. */
  peakDramBytesPerSec: number;
  driverVersion: number;
}

/** The devices present, or none and the reason (no driver, no device, a stub library...). */
export function devices(): { devices: DeviceInfo[]; reason?: string } {
  try {
    const cu = driver();
    const n = new Int32Array(1);
    check(cu.cuDeviceGetCount(n), "cuDeviceGetCount");
    if (n[0] === 0) return { devices: [], reason: "the CUDA driver reports no device" };
    const out: DeviceInfo[] = [];
    for (let i = 0; i < n[0]; i++) out.push(readInfo(i));
    return { devices: out };
  } catch (e) {
    const reason = e instanceof LibraryNotFoundError ? e.summary : (e as Error).message.split("\n")[0];
    return { devices: [], reason };
  }
}

let hasGpuCache: boolean | undefined;
/** True when at least one CUDA device can be used (cached). */
export function hasGpu(): boolean {
  return hasGpuCache ??= devices().devices.length > 0;
}

function readInfo(ordinal: number): DeviceInfo {
  const cu = driver();
  const d = new Int32Array(1);
  check(cu.cuDeviceGet(d, ordinal), "cuDeviceGet");
  const dev = d[0];
  const attr = (a: number, name: string): number => {
    const v = new Int32Array(1);
    check(cu.cuDeviceGetAttribute(v, a, dev), `cuDeviceGetAttribute(${name})`);
    return v[0];
  };
  const nameBuf = new Uint8Array(256);
  check(cu.cuDeviceGetName(nameBuf, 256, dev), "cuDeviceGetName");
  const name = new TextDecoder().decode(nameBuf.subarray(0, nameBuf.indexOf(0)));
  const mem = new BigUint64Array(1);
  check(cu.cuDeviceTotalMem(mem, dev), "cuDeviceTotalMem_v2");
  const ver = new Int32Array(1);
  check(cu.cuDriverGetVersion(ver), "cuDriverGetVersion");
  const major = attr(DEV_ATTR.COMPUTE_CAPABILITY_MAJOR, "COMPUTE_CAPABILITY_MAJOR");
  const minor = attr(DEV_ATTR.COMPUTE_CAPABILITY_MINOR, "COMPUTE_CAPABILITY_MINOR");
  const memClockKHz = attr(DEV_ATTR.MEMORY_CLOCK_RATE, "MEMORY_CLOCK_RATE");
  const busBits = attr(DEV_ATTR.GLOBAL_MEMORY_BUS_WIDTH, "GLOBAL_MEMORY_BUS_WIDTH");
  return {
    ordinal,
    name,
    cc: major * 10 + minor,
    arch: `sm_${major}${minor}`,
    smCount: attr(DEV_ATTR.MULTIPROCESSOR_COUNT, "MULTIPROCESSOR_COUNT"),
    l2Bytes: attr(DEV_ATTR.L2_CACHE_SIZE, "L2_CACHE_SIZE"),
    maxSharedPerBlockOptin: attr(
      DEV_ATTR.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
      "MAX_SHARED_MEMORY_PER_BLOCK_OPTIN",
    ),
    maxSharedPerSM: attr(
      DEV_ATTR.MAX_SHARED_MEMORY_PER_MULTIPROCESSOR,
      "MAX_SHARED_MEMORY_PER_MULTIPROCESSOR",
    ),
    totalMemBytes: Number(mem[0]),
    peakDramBytesPerSec: 2 * memClockKHz * 1e3 * (busBits / 8),
    driverVersion: ver[0],
  };
}

/** A CUDA stream. */
export class Stream {
  #h: Deno.PointerValue;
  #owned: boolean;
  constructor(h: Deno.PointerValue, owned: boolean) {
    this.#h = h;
    this.#owned = owned;
  }
  /** The raw CUstream (null for the legacy default stream). */
  get handle(): Deno.PointerValue {
    return this.#h;
  }
  /** Wait for all work queued on this stream. */
  synchronize(): void {
    check(driver().cuStreamSynchronize(this.#h), "cuStreamSynchronize");
  }
  dispose(): void {
    if (this.#owned && this.#h !== null) {
      check(driver().cuStreamDestroy(this.#h), "cuStreamDestroy_v2");
      this.#h = null;
      this.#owned = false;
    }
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** A CUDA event, for timing work on a stream. */
export class Event {
  #h: Deno.PointerValue;
  constructor() {
    const out = new BigUint64Array(1);
    check(driver().cuEventCreate(out, 0), "cuEventCreate");
    this.#h = handle(out);
  }
  get handle(): Deno.PointerValue {
    return this.#h;
  }
  record(stream: Stream = Device.get().stream): this {
    check(driver().cuEventRecord(this.#h, stream.handle), "cuEventRecord");
    return this;
  }
  synchronize(): void {
    check(driver().cuEventSynchronize(this.#h), "cuEventSynchronize");
  }
  /** Milliseconds between `start` and this event (both must have completed; this waits for this one). */
  elapsedSince(start: Event): number {
    this.synchronize();
    const ms = new Float32Array(1);
    check(driver().cuEventElapsedTime(ms, start.handle, this.#h), "cuEventElapsedTime_v2");
    return ms[0];
  }
  dispose(): void {
    if (this.#h !== null) {
      check(driver().cuEventDestroy(this.#h), "cuEventDestroy_v2");
      this.#h = null;
    }
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

const opened = new Map<number, Device>();

/** An opened device: primary context (current on this thread), info, and kiln's stream. */
export class Device {
  readonly info: DeviceInfo;
  readonly context: Deno.PointerObject;
  /** The stream kiln's operations use by default (a real stream, so graphs can capture it). */
  readonly stream: Stream;

  private constructor(ordinal: number) {
    const cu = driver();
    this.info = readInfo(ordinal);
    const ctx = new BigUint64Array(1);
    check(cu.cuDevicePrimaryCtxRetain(ctx, ordinal), "cuDevicePrimaryCtxRetain");
    this.context = handle(ctx);
    check(cu.cuCtxSetCurrent(this.context), "cuCtxSetCurrent");
    const s = new BigUint64Array(1);
    // CU_STREAM_NON_BLOCKING: kiln never uses the legacy stream (copies run on this stream too), so
    // another thread's legacy-stream work can't join a graph this stream is capturing, or vice versa
    check(cu.cuStreamCreate(s, 1), "cuStreamCreate");
    this.stream = new Stream(handle(s), true);
  }

  /** Open (once) and return device `ordinal` (default 0). Throws when there is no usable device. */
  static get(ordinal = 0): Device {
    let d = opened.get(ordinal);
    if (!d) {
      d = new Device(ordinal);
      opened.set(ordinal, d);
    }
    return d;
  }

  /** Make this device's context current on the calling thread. */
  makeCurrent(): void {
    check(driver().cuCtxSetCurrent(this.context), "cuCtxSetCurrent");
  }

  /** Wait for all work on the device. */
  synchronize(): void {
    check(driver().cuCtxSynchronize(), "cuCtxSynchronize");
  }

  /** Free and total device memory in bytes, as the driver reports them now. */
  memInfo(): { free: number; total: number } {
    const f = new BigUint64Array(1), t = new BigUint64Array(1);
    check(driver().cuMemGetInfo(f, t), "cuMemGetInfo_v2");
    return { free: Number(f[0]), total: Number(t[0]) };
  }

  /** A new stream on this device (dispose it when done). */
  createStream(): Stream {
    const s = new BigUint64Array(1);
    check(driver().cuStreamCreate(s, 1), "cuStreamCreate");
    return new Stream(handle(s), true);
  }

  /** Architecture to compile for: `sm_90a` when the kernel needs arch-specific features, else `sm_90`. */
  archFor(archSpecific = false): string {
    return archSpecific && this.info.cc >= 90 ? `${this.info.arch}a` : this.info.arch;
  }
}
