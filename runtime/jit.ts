/**
 * `jit`: KernelSource (or raw CUDA text) → loaded kernel, through a memory cache, then the disk cache,
 * then NVRTC. `compileFor` is the same path without a device, for the compile test tier.
 *
 * @example
 * ```ts ignore
 * import { jit } from "./jit.ts";
 * const k = await jit('extern "C" __global__ void twice(float* x, int n) { int i = threadIdx.x; if (i < n) x[i] *= 2; }', {
 *   entry: "twice",
 *   params: [{ name: "x", kind: "ptr", dtype: "f32" }, { name: "n", kind: "i32" }],
 *   block: [32, 1, 1],
 * });
 * ```
 * @module
 */
import type { KernelSource, ParamSpec } from "../codegen/kernel_source.ts";
import { Device } from "./device.ts";
import { compileCuda, type CompileResult, nvrtcOptions, nvrtcVersion } from "./nvrtc.ts";
import { cacheKey, DiskCache } from "./cache.ts";
import { LoadedKernel, Module } from "./kernel.ts";
import { debug } from "./env.ts";
import { ArgumentError } from "./errors.ts";

/** Options for {@linkcode jit}. */
export interface JitOptions {
  device?: Device;
  /** The disk cache to use; `false` for none. Defaults to {@linkcode DiskCache.default}. */
  cache?: DiskCache | false;
}

/** What raw CUDA text needs to become a KernelSource. */
export interface RawKernelOptions extends JitOptions {
  entry: string;
  params: readonly ParamSpec[];
  block?: readonly [number, number, number];
  sharedBytes?: number;
  options?: readonly string[];
  archSpecific?: boolean;
}

const memory = new Map<string, Promise<LoadedKernel>>();

let libIdentity: string | undefined;
/** NVRTC version + the real file behind the loaded library + its size and mtime (part of every key). */
function nvrtcIdentity(): { major: number; minor: number; library: string } {
  const v = nvrtcVersion();
  if (!libIdentity) {
    let real = v.path;
    try {
      const maps = Deno.readTextFileSync("/proc/self/maps");
      const m = maps.split("\n").find((l) => /libnvrtc[^/]*\.so/.test(l) && !l.includes("builtins"));
      if (m) real = m.slice(m.indexOf("/"));
    } catch { /* not Linux, or no permission: the path is still part of the key */ }
    try {
      const st = Deno.statSync(real);
      libIdentity = `${real}:${st.size}:${st.mtime?.getTime() ?? 0}`;
    } catch {
      libIdentity = real;
    }
  }
  return { major: v.major, minor: v.minor, library: libIdentity };
}

/** Turn raw CUDA text plus its signature into a KernelSource. */
export function rawKernel(source: string, o: RawKernelOptions): KernelSource {
  return {
    name: o.entry,
    source,
    entry: o.entry,
    params: o.params,
    block: o.block ?? [128, 1, 1],
    sharedBytes: o.sharedBytes ?? 0,
    options: o.options,
    archSpecific: o.archSpecific,
  };
}

/**
 * Compile `src` for `arch` through the disk cache (no device needed). Returns the cubin and whether it
 * came from the cache.
 */
export async function compileFor(
  src: KernelSource,
  arch: string,
  cache: DiskCache | false | undefined = DiskCache.default(),
): Promise<{ cubin: Uint8Array; cached: boolean; log?: string; key: string }> {
  const options = nvrtcOptions(arch, src.options);
  const key = await cacheKey({
    source: src.source,
    entries: [src.entry],
    options,
    arch,
    nvrtc: nvrtcIdentity(),
    extra: src.keyParts,
  });
  if (cache) {
    const t0 = performance.now();
    const hit = await cache.get(key);
    if (hit) {
      debug(1, `cache hit ${src.name} ${arch} (${(performance.now() - t0).toFixed(1)} ms)`);
      return { cubin: hit.cubin, cached: true, log: hit.meta.log, key };
    }
  }
  debug(2, `source of ${src.name}:\n${src.source}`);
  const r: CompileResult = await compileCuda(src.source, {
    arch,
    options: src.options,
    name: `${src.name}.cu`,
    ptx: false,
  });
  if (cache) {
    await cache.put(key, r.cubin, { name: src.name, arch, entries: [src.entry], options, log: r.log });
  }
  return { cubin: r.cubin, cached: false, log: r.log, key };
}

/** Compile (or fetch from cache) and load `src` on a device. */
export function jit(src: KernelSource, opts?: JitOptions): Promise<LoadedKernel>;
export function jit(src: string, opts: RawKernelOptions): Promise<LoadedKernel>;
export function jit(
  src: KernelSource | string,
  opts: JitOptions | RawKernelOptions = {},
): Promise<LoadedKernel> {
  const ks = typeof src === "string" ? rawKernel(src, opts as RawKernelOptions) : src;
  const device = opts.device ?? Device.get();
  const arch = device.archFor(ks.archSpecific);
  if (ks.minArch !== undefined && device.info.cc < ks.minArch) {
    throw new ArgumentError(
      `kernel ${ks.name}`,
      `a device of compute capability ≥ ${ks.minArch / 10}`,
      `${device.info.name} (${device.info.cc / 10})`,
    );
  }
  const memKey = `${device.info.ordinal}|${arch}|${ks.entry}|${(ks.options ?? []).join(" ")}|${ks.source}`;
  let p = memory.get(memKey);
  if (!p) {
    p = (async () => {
      const t0 = performance.now();
      const { cubin, cached } = await compileFor(
        ks,
        arch,
        opts.cache === undefined ? DiskCache.default() : opts.cache,
      );
      const k = new LoadedKernel(ks, new Module(cubin, device, ks.name), arch);
      debug(
        1,
        `jit ${ks.name} ${arch}: ${cached ? "disk cache" : "compiled"}, ready in ${
          (performance.now() - t0).toFixed(1)
        } ms, ${k.registers} regs, ${k.localBytes} B local`,
      );
      return k;
    })();
    memory.set(memKey, p);
    p.catch(() => memory.delete(memKey));
  }
  return p;
}

/** Forget the in-memory kernels (the disk cache stays). For tests of the cache path. */
export function clearMemoryCache(): void {
  memory.clear();
}
