/**
 * A loaded kernel: a CUBIN module, its entry function, and a reusable argument buffer.
 * `launch` packs arguments in place and calls `cuLaunchKernel`, or `cuLaunchKernelEx` for clusters and
 * for programmatic dependent launch (a `pdl` kernel on a device of compute capability ≥ 9.0).
 *
 * @module
 */
import { type KernelSource, paramLayout } from "../codegen/kernel_source.ts";
import { check, driver } from "./driver.ts";
import type { Device, Stream } from "./device.ts";
import { FUNC_ATTR } from "./_ffi_cuda.ts";
import { cstr, handle } from "./_c.ts";
import { type Arg, ArgPacker } from "./launch.ts";
import { LaunchError, LoadError } from "./errors.ts";
import type { CudaError } from "./errors.ts";
import { debugLevel } from "./env.ts";
import { LAUNCH_CONFIG_BYTES, launchConfigBuffer, writeLaunchConfig } from "./launch_config.ts";

/** Grid as a block count or [x, y, z]. */
export type Grid = number | readonly [number, number, number];

/** Per-launch overrides. */
export interface LaunchOptions {
  stream?: Stream;
  block?: readonly [number, number, number];
  sharedBytes?: number;
  /**
   * Programmatic dependent launch for this call. Default: on when the kernel's source declares `pdl`
   * and the device is sm_90+. `false` forces a plain launch (the kernel's `griddepcontrol` instructions
   * are then no-ops); `true` on a kernel that does not declare `pdl` is a {@linkcode LaunchError}: without
   * a `griddepcontrol.wait` in its code nothing would order it after the previous kernel.
   */
  pdl?: boolean;
}

/** A CUDA module loaded from a CUBIN (several kernels may share one). */
export class Module {
  #h: Deno.PointerValue;
  constructor(cubin: Uint8Array, readonly device: Device, readonly name: string) {
    device.makeCurrent();
    const out = new BigUint64Array(1);
    try {
      check(driver().cuModuleLoadData(out, cubin as Uint8Array<ArrayBuffer>), `cuModuleLoadData(${name})`);
    } catch (e) {
      throw new LoadError(`could not load the module of ${name}: ${(e as Error).message}`, { cause: e });
    }
    this.#h = handle(out);
  }
  function(entry: string): Deno.PointerObject {
    if (this.#h === null) throw new LoadError(`module ${this.name} was unloaded`);
    const out = new BigUint64Array(1);
    try {
      check(driver().cuModuleGetFunction(out, this.#h, cstr(entry)), `cuModuleGetFunction(${entry})`);
    } catch (e) {
      throw new LoadError(`${this.name} has no kernel named "${entry}" (is it extern "C"?)`, { cause: e });
    }
    return handle(out);
  }
  dispose(): void {
    if (this.#h !== null) {
      check(driver().cuModuleUnload(this.#h), "cuModuleUnload");
      this.#h = null;
    }
  }
}

/** A kernel ready to launch. */
export class LoadedKernel {
  readonly fn: Deno.PointerObject;
  readonly packer: ArgPacker;
  /** Registers per thread and local (spill/stack) bytes, as the driver reports. */
  readonly registers: number;
  readonly localBytes: number;
  /** Dynamic shared bytes a launch may use without raising the opt-in: 48 KB less the static bytes. */
  #smemSet = 48 * 1024;
  /** Static shared memory of the kernel (bytes, from the driver). */
  readonly staticSharedBytes: number;
  #cfg?: { buf: Uint8Array<ArrayBuffer>; attrs: bigint };
  /** The source declares `pdl` and the device runs it (cc ≥ 9.0). */
  readonly #pdl: boolean;

  constructor(readonly source: KernelSource, readonly module: Module, readonly arch: string) {
    this.fn = module.function(source.entry);
    this.packer = new ArgPacker(source.params, source.name, this.#paramLayout());
    this.registers = this.#attr(FUNC_ATTR.NUM_REGS);
    this.localBytes = this.#attr(FUNC_ATTR.LOCAL_SIZE_BYTES);
    this.staticSharedBytes = this.#attr(FUNC_ATTR.SHARED_SIZE_BYTES);
    // static + dynamic above 48 KB needs the opt-in, even when the dynamic part alone is ≤ 48 KB
    this.#smemSet = 48 * 1024 - this.staticSharedBytes;
    if (source.sharedBytes > this.#smemSet) this.#raiseShared(source.sharedBytes);
    this.#pdl = source.pdl === true && module.device.info.cc >= 90;
  }

  /** Whether a launch without options uses programmatic dependent launch here. */
  get pdl(): boolean {
    return this.#pdl;
  }

  get name(): string {
    return this.source.name;
  }
  get device(): Device {
    return this.module.device;
  }

  /**
   * Parameter offsets as the driver sees them in the compiled kernel (cuFuncGetParamInfo), checked
   * against the ParamSpec list: a count or size mismatch means the source's signature and its
   * ParamSpec list disagree, and launching would corrupt arguments.
   */
  #paramLayout(): { offsets: number[]; size: number } | undefined {
    const info = driver().cuFuncGetParamInfo;
    if (!info) return undefined; // driver older than 12.4: natural alignment (right unless tensor maps)
    const ps = this.source.params;
    const off = new BigUint64Array(1), sz = new BigUint64Array(1);
    const offsets: number[] = [];
    let size = 0;
    for (let i = 0; i < ps.length; i++) {
      const rc = info(this.fn, BigInt(i), off, sz);
      if (rc !== 0) {
        throw new LoadError(
          `${this.source.name}: the compiled kernel has ${i} parameters, its ParamSpec list ${ps.length}`,
        );
      }
      const want = paramLayout(ps[i]).size;
      if (Number(sz[0]) !== want) {
        throw new LoadError(
          `${this.source.name}: parameter ${i} (${ps[i].name}) is ${sz[0]} bytes in the compiled kernel, ` +
            `${want} by its ParamSpec (${ps[i].kind})`,
        );
      }
      offsets.push(Number(off[0]));
      size = Math.max(size, Number(off[0]) + want);
    }
    // Probing one index past the list finds extra parameters, but a failing driver call is an API error
    // to compute-sanitizer's memcheck: probe only when debugging.
    if (debugLevel() >= 1 && info(this.fn, BigInt(ps.length), off, sz) === 0) {
      throw new LoadError(
        `${this.source.name}: the compiled kernel has more than the ${ps.length} parameters of its ParamSpec list`,
      );
    }
    return { offsets, size };
  }

  #attr(a: number): number {
    const v = new Int32Array(1);
    check(driver().cuFuncGetAttribute(v, a, this.fn), "cuFuncGetAttribute");
    return v[0];
  }

  #raiseShared(bytes: number): void {
    const max = this.device.info.maxSharedPerBlockOptin;
    if (bytes + this.staticSharedBytes > max) {
      throw new LaunchError(
        `${this.name} asks for ${bytes} bytes of dynamic shared memory (+ ${this.staticSharedBytes} static); ` +
          `the device allows ${max}`,
      );
    }
    check(
      driver().cuFuncSetAttribute(this.fn, FUNC_ATTR.MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes),
      `cuFuncSetAttribute(${this.name}, MAX_DYNAMIC_SHARED_SIZE_BYTES, ${bytes})`,
    );
    this.#smemSet = bytes;
  }

  /**
   * Launch on `grid` with `args` (one per parameter of the kernel's ParamSpec list). A grid with a
   * zero dimension launches nothing. Asynchronous: errors inside the kernel surface at the next sync.
   */
  launch(grid: Grid, args: readonly Arg[], opts?: LaunchOptions): void {
    let gx: number, gy = 1, gz = 1;
    if (typeof grid === "number") gx = grid;
    else [gx, gy, gz] = grid;
    if (gx === 0 || gy === 0 || gz === 0) return;
    if (!(gx > 0 && gy > 0 && gz > 0 && gy < 65536 && gz < 65536 && gx < 2 ** 31)) {
      throw new LaunchError(`${this.name}: bad grid [${gx}, ${gy}, ${gz}]`);
    }
    const b = opts?.block ?? this.source.block;
    const smem = opts?.sharedBytes ?? this.source.sharedBytes;
    if (smem > this.#smemSet) this.#raiseShared(smem);
    if (opts?.pdl === true && !this.source.pdl) {
      throw new LaunchError(
        `${this.name} does not declare pdl (no griddepcontrol.wait): launch it without pdl`,
      );
    }
    const pdl = this.#pdl && opts?.pdl !== false;
    this.packer.pack(args);
    const stream = (opts?.stream ?? this.device.stream).handle;
    const cu = driver();
    const ex = this.source.cluster !== undefined || pdl;
    let rc: number;
    if (ex) {
      rc = cu.cuLaunchKernelEx(
        this.#config(gx, gy, gz, b, smem, stream, pdl),
        this.fn,
        null,
        this.packer.extra,
      );
    } else {
      rc = cu.cuLaunchKernel(this.fn, gx, gy, gz, b[0], b[1], b[2], smem, stream, null, this.packer.extra);
    }
    if (rc !== 0) {
      try {
        check(rc, ex ? "cuLaunchKernelEx" : "cuLaunchKernel");
      } catch (e) {
        const err = e as CudaError;
        throw new LaunchError(
          `launch of ${this.name} (grid [${gx}, ${gy}, ${gz}], block [${b}], ${smem} B shared, ` +
            `${this.registers} registers${pdl ? ", pdl" : ""}) failed: ${err.message}`,
          { cause: e },
        );
      }
    }
  }

  /** CUlaunchConfig + its attributes (cluster, PDL), one buffer per kernel rewritten in place. */
  #config(
    gx: number,
    gy: number,
    gz: number,
    b: readonly [number, number, number],
    smem: number,
    stream: Deno.PointerValue,
    pdl: boolean,
  ): Uint8Array<ArrayBuffer> {
    if (!this.#cfg) {
      const buf = launchConfigBuffer();
      this.#cfg = {
        buf,
        attrs: BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf))) + BigInt(LAUNCH_CONFIG_BYTES),
      };
    }
    writeLaunchConfig(this.#cfg.buf, {
      grid: [gx, gy, gz],
      block: b,
      sharedBytes: smem,
      stream: BigInt(Deno.UnsafePointer.value(stream)),
      cluster: this.source.cluster,
      pdl,
    }, this.#cfg.attrs);
    return this.#cfg.buf;
  }
}
