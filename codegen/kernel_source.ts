/**
 * The contract between codegen and the runtime: a {@linkcode KernelSource} is plain data (CUDA C text,
 * the entry name, the parameter list, launch geometry and cache-key parts). The kernel's C signature
 * ({@linkcode renderParams}) and the runtime's argument packer both derive from the same
 * {@linkcode ParamSpec} list, so they cannot disagree.
 *
 * @module
 */
import type { DType } from "../dsl/dtype.ts";
import { dtypeInfo } from "../dsl/dtype.ts";

/** Scalar parameter kinds and their C types. */
export type ScalarKind = "i32" | "u32" | "i64" | "u64" | "f32" | "f64";

/** One kernel parameter. */
export type ParamSpec =
  /** A device pointer to elements of `dtype`. `readonly` renders `const T* __restrict__`. */
  | { readonly name: string; readonly kind: "ptr"; readonly dtype: DType; readonly readonly?: boolean }
  /** A scalar passed by value. */
  | { readonly name: string; readonly kind: ScalarKind }
  /** A CUtensorMap (128 bytes, 64-byte aligned) passed as `const __grid_constant__ CUtensorMap`. */
  | { readonly name: string; readonly kind: "tensormap" };

/** Everything the runtime needs to compile, cache and launch one kernel. */
export interface KernelSource {
  /** Readable name that encodes the variant, e.g. `group_quant_bf16_fp8e4m3_g128_mmajor_pad4`. */
  readonly name: string;
  /** Complete CUDA C translation unit (no includes needed: NVRTC gets no header path). */
  readonly source: string;
  /** The `extern "C" __global__` function to launch. */
  readonly entry: string;
  /** Parameters in order; the source's signature must be `renderParams(params)`. */
  readonly params: readonly ParamSpec[];
  /** Threads per block. */
  readonly block: readonly [number, number, number];
  /** Dynamic shared memory per block in bytes (raised past 48 KiB with cuFuncSetAttribute). */
  readonly sharedBytes: number;
  /** Thread-block cluster shape; launches go through cuLaunchKernelEx when set. */
  readonly cluster?: readonly [number, number, number];
  /**
   * Programmatic dependent launch (sm_90+): the runtime launches with programmatic stream serialization,
   * so the kernel's CTAs may start while the previous kernel in the stream is still running. The kernel
   * must then follow the PDL rule (`codegen/kernels/_pdl.ts` has the helpers):
   * - before its `griddepcontrol.wait` it may only read memory that no kernel in flight writes (weights,
   *   their scales, a bias: constants written before the stream's work was queued) and it writes NOTHING
   *   to global memory — not even a buffer it alone owns, since a kernel still running may be reading it
   *   (the quant of layer l+1 overwrites the A buffer the GEMM of layer l is reading);
   * - after the wait it reads what a predecessor produced with coherent loads only (`ld.global`, never
   *   `ld.global.nc` / `__ldg` / a `const __restrict__` dereference: ptxas moves non-coherent loads
   *   across the wait);
   * - `griddepcontrol.launch_dependents` early lets the next kernel start (a PDL kernel after it waits
   *   anyway); on sm_80/89 both instructions are compiled out.
   * A dependent started early reads its constants before the wait, and the kernel before it may itself
   * have started early: so weights must be complete before anything in flight in the stream (write them,
   * synchronize, then run). `LaunchOptions.pdl = false` launches a pdl kernel the plain way.
   */
  readonly pdl?: boolean;
  /**
   * Lowest compute capability the kernel runs on, as major*10+minor (80, 89, 90). When `archSpecific`
   * is true the kernel uses sm_90a-only instructions (wgmma, setmaxnreg) and is compiled for `sm_XXa`.
   */
  readonly minArch?: number;
  readonly archSpecific?: boolean;
  /** Extra NVRTC options (the runtime adds the architecture and its defaults). */
  readonly options?: readonly string[];
  /** Anything else that changed the generated binary and is worth seeing in the cache metadata. */
  readonly keyParts?: Readonly<Record<string, string | number | boolean>>;
}

/** C type of a scalar kind. */
export const SCALAR_C_TYPES: Readonly<Record<ScalarKind, string>> = {
  i32: "int",
  u32: "unsigned int",
  i64: "long long",
  u64: "unsigned long long",
  f32: "float",
  f64: "double",
};

/** Size and alignment in bytes of a parameter in the kernel's parameter buffer. */
export function paramLayout(p: ParamSpec): { size: number; align: number } {
  switch (p.kind) {
    case "ptr":
    case "i64":
    case "u64":
    case "f64":
      return { size: 8, align: 8 };
    case "i32":
    case "u32":
    case "f32":
      return { size: 4, align: 4 };
    case "tensormap":
      return { size: 128, align: 64 };
  }
}

/** Byte offsets of each parameter and the total size, following the CUDA ABI's natural alignment. */
export function paramOffsets(params: readonly ParamSpec[]): { offsets: number[]; size: number } {
  const offsets: number[] = [];
  let off = 0;
  for (const p of params) {
    const { size, align } = paramLayout(p);
    off = Math.ceil(off / align) * align;
    offsets.push(off);
    off += size;
  }
  return { offsets, size: off };
}

/** Declarations a kernel needs before its signature when it takes a tensor map. */
export const TENSORMAP_DECL = "struct __align__(64) CUtensorMap { unsigned long long opaque[16]; };";

/** The C parameter list for `params`, e.g. `const unsigned char* __restrict__ a, int M`. */
export function renderParams(params: readonly ParamSpec[]): string {
  return params.map((p) => {
    if (p.kind === "ptr") {
      const t = dtypeInfo(p.dtype).cudaStorage;
      return p.readonly ? `const ${t}* __restrict__ ${p.name}` : `${t}* __restrict__ ${p.name}`;
    }
    if (p.kind === "tensormap") return `const __grid_constant__ CUtensorMap ${p.name}`;
    return `${SCALAR_C_TYPES[p.kind]} ${p.name}`;
  }).join(", ");
}

/** The full `extern "C" __global__ void entry(...)` line, with optional `__launch_bounds__`. */
export function renderSignature(
  src: Pick<KernelSource, "entry" | "params">,
  opts: { launchBounds?: [number, number?] } = {},
): string {
  const lb = opts.launchBounds
    ? ` __launch_bounds__(${opts.launchBounds.filter((x) => x !== undefined).join(", ")})`
    : "";
  return `extern "C" __global__ void${lb} ${src.entry}(${renderParams(src.params)})`;
}
