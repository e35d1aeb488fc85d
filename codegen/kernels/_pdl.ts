/**
 * Programmatic dependent launch (PDL, sm_90+) in generated CUDA: the `griddepcontrol` helpers, coherent
 * activation loads for the GEMM kernels, and {@linkcode withPdl}, which turns a kernel whose every global
 * access may wait (the group quant) into a PDL kernel. The rule a PDL kernel follows is documented on
 * `KernelSource.pdl` (codegen/kernel_source.ts).
 *
 * What NVRTC 13 / ptxas do with it, read from the SASS (the compile tier asserts it):
 * - `griddepcontrol.launch_dependents` is `PREEXIT`, `griddepcontrol.wait` is `ACQBULK`.
 * - ptxas moves non-coherent loads (`LDG....CONSTANT`: `ld.global.nc`, `__ldg`, dereferences of
 *   `const __restrict__` parameters) across `ACQBULK` in both directions — up above it too, which would
 *   read a predecessor's output before it is written. Coherent loads (`ld.global`) stay below it. So
 *   everything a predecessor produces is read with `ld.global` after the wait, through pointers that come
 *   out of an opaque asm ordered after the wait ({@linkcode PDL_PRELUDE}'s `kiln_pdl_after`): the compiler
 *   can then neither hoist them nor trace them back to a `const __restrict__` parameter.
 * - ptxas also sinks loads issued before the wait to below it when their results are used later (the
 *   weight prefetch would then start only after the predecessor finished). Loads issued before `PREEXIT`
 *   stay above it: so a GEMM issues its weight prefetch first, then `launch_dependents`, then `wait`.
 *
 * @module
 */
import type { KernelSource } from "../kernel_source.ts";

/** Device helpers every PDL kernel includes (no-ops below sm_90, where PDL does not exist). */
export const PDL_PRELUDE: string = String
  .raw`// programmatic dependent launch (see KernelSource.pdl for the rule)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define KILN_PDL_ARCH 1
#else
#define KILN_PDL_ARCH 0
#endif
// Let the next kernel of the stream start its CTAs (it waits for this one before touching our outputs).
__device__ __forceinline__ void kiln_pdl_launch_dependents() {
#if KILN_PDL_ARCH
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
// Wait until the previous kernel has completed and its writes are visible.
__device__ __forceinline__ void kiln_pdl_wait() {
#if KILN_PDL_ARCH
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
// p, as a value the compiler knows nothing about, produced after the wait: loads through it cannot be
// hoisted above the wait nor made non-coherent (no trace back to a const __restrict__ parameter); plain
// dereferences of it become generic LD (the address space is lost too), explicit ld.global stays LDG.
template <typename T> __device__ __forceinline__ T* kiln_pdl_after(T* p) {
  unsigned long long v = (unsigned long long)p;
  asm volatile("" : "+l"(v) :: "memory");
  return (T*)v;
}
`;

/**
 * The GEMM kernels' PDL point (when `PDL` is 1): let the next kernel launch, wait for the previous one, and
 * launder the activation pointers `a` and `sa` so that nothing reads them before the wait.
 */
export const GEMM_PDL_WAIT: string = `#if PDL
  kiln_pdl_launch_dependents();
  kiln_pdl_wait();
  a = kiln_pdl_after(a);
  sa = kiln_pdl_after(sa);
#endif
`;

/**
 * Activation loads of the mma.sync GEMM kernels (after the GEMM prelude, which defines `ld_keep16`,
 * `load_sa`, `ue8m0_value`): coherent `ld.global` on sm_90 when `pdl`, else the non-coherent loads the
 * kernels always used (`ld_act16` = `ld_keep16`, `ld_act_sa` = `load_sa`).
 */
export function gemmActivationLoads(pdl: boolean, aScaleDtype: "f32" | "ue8m0"): string {
  if (!pdl) return "#define ld_act16 ld_keep16\n#define ld_act_sa load_sa\n";
  const sa = aScaleDtype === "ue8m0"
    ? String.raw`__device__ __forceinline__ float ld_act_sa(const unsigned char* p) {
  u32 v;
  asm("ld.global.u8 %0, [%1];" : "=r"(v) : "l"(p));
  return ue8m0_value(v);
}`
    : String.raw`__device__ __forceinline__ float ld_act_sa(const float* p) {
  float v;
  asm("ld.global.f32 %0, [%1];" : "=f"(v) : "l"(p));
  return v;
}`;
  return String.raw`#if KILN_PDL_ARCH
// PDL: the activations and their scales are the previous kernel's output, read after the wait with
// coherent loads (L1-cached like ld_keep16; the wait makes the predecessor's writes visible to them).
__device__ __forceinline__ uint4 ld_act16(const void* p) {
  uint4 v;
  asm("ld.global.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
  return v;
}
${sa}
#else
#define ld_act16 ld_keep16
#define ld_act_sa load_sa
#endif
`;
}

/**
 * The PDL form of a kernel that may wait before its first global access (its input is the previous
 * kernel's output and it has no constant worth prefetching, like the group quant): `launch_dependents`
 * and `wait` first, every read-only pointer parameter laundered through `kiln_pdl_after` (outputs are
 * not: their stores stay `STG`, and a store cannot move above the wait), every `ld.global.nc` made
 * coherent, `_pdl` appended to the name and entry, and `pdl: true`. Throws when the source uses
 * `__ldg` (non-coherent, cannot be rewritten) or its signature is not found.
 *
 * @example
 * ```ts
 * import { withPdl } from "./_pdl.ts";
 * import { groupQuantKernel } from "./group_quant.ts";
 * import { resolveGroupQuant } from "../../dsl/ops/group_quant.ts";
 * const ks = withPdl(groupQuantKernel(resolveGroupQuant(7168, "bf16", { rowAlign: 4, scaleLayout: "mmajor" })).source);
 * console.log(ks.pdl, ks.entry.endsWith("_pdl")); // true true
 * ```
 */
export function withPdl(ks: KernelSource): KernelSource {
  if (ks.pdl) return ks;
  if (/__ldg\s*\(/.test(ks.source)) throw new TypeError(`${ks.name}: __ldg cannot be made coherent for pdl`);
  const at = ks.source.indexOf(` ${ks.entry}(`);
  const open = at < 0 ? -1 : ks.source.indexOf("{\n", at);
  const lineStart = ks.source.lastIndexOf("\n", at) + 1;
  if (at < 0 || open < 0 || !ks.source.slice(lineStart, at).includes("__global__")) {
    throw new TypeError(`${ks.name}: no signature of ${ks.entry} found`);
  }
  const entry = `${ks.entry}_pdl`;
  const launder = ks.params.filter((p) => p.kind === "ptr" && p.readonly).map((p) =>
    `  ${p.name} = kiln_pdl_after(${p.name});`
  );
  const head = ["  kiln_pdl_launch_dependents();", "  kiln_pdl_wait();", ...launder].join("\n");
  const source = ks.source.slice(0, lineStart) + PDL_PRELUDE +
    ks.source.slice(lineStart, at) + ` ${entry}(` + ks.source.slice(at + ks.entry.length + 2, open + 2) +
    head + "\n" + ks.source.slice(open + 2);
  return {
    ...ks,
    name: ks.name === ks.entry ? entry : `${ks.name}_pdl`,
    entry,
    source: source.replaceAll("ld.global.nc.", "ld.global."),
    pdl: true,
    keyParts: { ...ks.keyParts, pdl: true },
  };
}
