/**
 * A CPU emulator for generated row kernels (test helper): the kernel's own CUDA C is compiled with the
 * host C++ compiler and run block by block, every CUDA thread a fiber (ucontext) on one OS thread, so
 * warp shuffles and `__syncthreads` are exact and the run is deterministic. Only the prelude's inline-PTX
 * helpers are swapped for host twins (fp8/bf16/f16 conversions with the same rounding as the device's
 * `cvt` instructions, plain loads for `ld.global.nc`); kiln_exp, kiln_silu and every index expression
 * run as generated. Buffers sit against an inaccessible page (reads or writes past the end fault) with
 * a canary before them, so an out-of-bounds store fails the run instead of passing quietly.
 *
 * This is how the index math and the float sequences of a kernel are checked on a machine without a
 * GPU: run the emulated kernel on poisoned outputs and compare every byte with the interpreter. It does
 * not replace the GPU tier (the device's fmaxf, cvt and memory model are assumed, not tested).
 *
 * @module
 */
import type { HostArray } from "../../dsl/dtype.ts";
import type { KernelSource, ParamSpec } from "../../codegen/kernel_source.ts";
import { PRELUDE, PRELUDE_FP8 } from "../../codegen/expr/prelude.ts";

/** The host C++ compiler, or undefined when there is none. */
export const CXX: string | undefined = (() => {
  for (const c of [Deno.env.get("CXX"), "g++", "clang++"]) {
    if (!c) continue;
    try {
      if (new Deno.Command(c, { args: ["--version"], stdout: "null", stderr: "null" }).outputSync().success) {
        return c;
      }
    } catch { /* next */ }
  }
  return undefined;
})();

/** Host twins of the prelude's inline-PTX helpers (same names, same results). */
const HOST_HELPERS: Record<string, string> = {
  kiln_f16_f32: `static inline float kiln_f16_f32(unsigned int h) {
  _Float16 x; unsigned short s = (unsigned short)h; memcpy(&x, &s, 2); return (float)x;
}`,
  kiln_f32_bf16: `static inline unsigned int kiln_f32_bf16(float f) {
  unsigned int b = __float_as_uint(f);
  if ((b & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  return (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
}`,
  kiln_f32_f16: `static inline unsigned int kiln_f32_f16(float f) {
  if (f != f) return 0x7fffu;
  _Float16 h = (_Float16)f; unsigned short s; memcpy(&s, &h, 2); return s;
}`,
  kiln_f32x2_bf16:
    `static inline unsigned int kiln_f32x2_bf16(float lo, float hi) { return kiln_f32_bf16(lo) | (kiln_f32_bf16(hi) << 16); }`,
  kiln_f32x2_f16:
    `static inline unsigned int kiln_f32x2_f16(float lo, float hi) { return kiln_f32_f16(lo) | (kiln_f32_f16(hi) << 16); }`,
  kiln_ld_stream:
    `static inline uint4 kiln_ld_stream(const void* p) { uint4 v; memcpy(&v, p, 16); return v; }`,
  kiln_ld_stream2:
    `static inline uint2 kiln_ld_stream2(const void* p) { uint2 v; memcpy(&v, p, 8); return v; }`,
  kiln_ld_stream1:
    `static inline unsigned int kiln_ld_stream1(const void* p) { unsigned int v; memcpy(&v, p, 4); return v; }`,
  kiln_e4m3x2:
    `static inline unsigned int kiln_e4m3x2(float lo, float hi) { return kiln_h_fp8(lo, false) | (kiln_h_fp8(hi, false) << 8); }`,
  kiln_e5m2x2:
    `static inline unsigned int kiln_e5m2x2(float lo, float hi) { return kiln_h_fp8(lo, true) | (kiln_h_fp8(hi, true) << 8); }`,
};

const HOST_HEAD = String.raw`
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <vector>
#include <utility>
#include <type_traits>
#include <ucontext.h>
#include <sys/mman.h>
#include <unistd.h>
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
struct uint4 { unsigned int x, y, z, w; };
struct uint2 { unsigned int x, y; };
struct kdim3 { unsigned int x, y, z; };
static kdim3 threadIdx, blockIdx, gridDim, blockDim;
static inline float __uint_as_float(unsigned int b) { float f; memcpy(&f, &b, 4); return f; }
static inline float __int_as_float(int b) { float f; memcpy(&f, &b, 4); return f; }
static inline unsigned int __float_as_uint(float f) { unsigned int b; memcpy(&b, &f, 4); return b; }
static inline int __float_as_int(float f) { int b; memcpy(&b, &f, 4); return b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
// CUDA's fmaxf/fminf: a NaN operand is ignored; +0 is larger than -0
static inline float kiln_h_fmaxf(float a, float b) {
  if (a != a) return b; if (b != b) return a;
  if (a == 0.0f && b == 0.0f) return std::signbit(a) ? b : a;
  return a > b ? a : b;
}
static inline float kiln_h_fminf(float a, float b) {
  if (a != a) return b; if (b != b) return a;
  if (a == 0.0f && b == 0.0f) return std::signbit(a) ? a : b;
  return a < b ? a : b;
}
#define fmaxf kiln_h_fmaxf
#define fminf kiln_h_fminf
static inline int max(int a, int b) { return a > b ? a : b; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
static inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
static inline int kiln_h_toint(float x, bool trunc) {
  if (x != x) return 0;
  if (x >= 2147483648.0f) return 2147483647;
  if (x <= -2147483648.0f) return (-2147483647 - 1);
  return (int)(trunc ? truncf(x) : rintf(x));
}
static inline int __float2int_rn(float x) { return kiln_h_toint(x, false); }
static inline int __float2int_rz(float x) { return kiln_h_toint(x, true); }
// cvt.rn.satfinite.{e4m3,e5m2}: round to nearest even, saturate to the largest finite code, NaN -> 0x7f
static inline unsigned int kiln_h_fp8(float x, bool e5) {
  const unsigned int b = __float_as_uint(x), a = b & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7fu;
  const unsigned int sign = (b >> 24) & 0x80u;
  const int mbits = e5 ? 2 : 3, bias = e5 ? 15 : 7;
  const unsigned int maxCode = e5 ? 0x7bu : 0x7eu, maxBits = e5 ? 0x47600000u : 0x43e00000u;
  if (a >= maxBits) return sign | maxCode;
  if (a < (unsigned int)(127 - bias + 1) << 23) {
    return sign | (unsigned int)rintf(__uint_as_float(a) * ldexpf(1.0f, bias - 1 + mbits));
  }
  const int shift = 23 - mbits;
  const unsigned int m = a & 0x7fffffu, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
  unsigned int code = (((a >> 23) - 127u + (unsigned int)bias) << mbits) | (m >> shift);
  if (rem > half || (rem == half && (code & 1u))) code++;
  return sign | (code < maxCode ? code : maxCode);
}
static inline int atomicMax(int* p, int v) { int o = *p; if (v > o) *p = v; return o; }
// fibers: one per CUDA thread of the running block
struct KFiber { ucontext_t ctx; int state; float v, res; int off; };
static std::vector<KFiber> kf;
static ucontext_t ksched;
static int kcur;
enum { RUN = 0, SHFL = 1, SYNC = 2, DONE = 3 };
static void kyield(int st) { kf[kcur].state = st; swapcontext(&kf[kcur].ctx, &ksched); }
static inline float __shfl_xor_sync(unsigned int, float v, int off) {
  kf[kcur].v = v; kf[kcur].off = off; kyield(SHFL); return kf[kcur].res;
}
static inline void __syncthreads() { kyield(SYNC); }
`;

const HOST_MAIN = String.raw`
static std::vector<void*> kptr;
static std::vector<uint64_t> kscalar;
template <class T> T karg(size_t i) {
  if constexpr (std::is_pointer_v<T>) return (T)kptr[i];
  else { T v; memcpy(&v, &kscalar[i], sizeof(T)); return v; }
}
template <class... P, size_t... I> void kcall_impl(void (*f)(P...), std::index_sequence<I...>) { f(karg<P>(I)...); }
template <class... P> void kcall(void (*f)(P...)) { kcall_impl(f, std::index_sequence_for<P...>{}); }
static void kentry() { kcall(KILN_EMU_KERNEL); kf[kcur].state = DONE; }
static void kfail(const char* what) { fprintf(stderr, "emulator: %s (block %u %u %u)\n", what, blockIdx.x, blockIdx.y, blockIdx.z); exit(3); }
int main(int argc, char** argv) {
  // argv: gx gy gz threads nparams, then per param "p <file> <bytes> <write>" or "s <u64 bits>"
  if (argc < 6) kfail("usage");
  gridDim = {(unsigned)atoi(argv[1]), (unsigned)atoi(argv[2]), (unsigned)atoi(argv[3])};
  const int T = atoi(argv[4]), n = atoi(argv[5]);
  blockDim = {(unsigned)T, 1, 1};
  kptr.assign(n, nullptr); kscalar.assign(n, 0);
  std::vector<const char*> files(n, nullptr); std::vector<size_t> sizes(n, 0); std::vector<int> wr(n, 0);
  std::vector<unsigned char*> canary(n, nullptr);
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  int a = 6;
  for (int i = 0; i < n; i++) {
    if (argv[a][0] == 'p') {
      files[i] = argv[a + 1]; sizes[i] = strtoull(argv[a + 2], 0, 10); wr[i] = atoi(argv[a + 3]); a += 4;
      const size_t body = (sizes[i] + 15) / 16 * 16, span = (body + 64 + page - 1) / page * page;
      unsigned char* m = (unsigned char*)mmap(0, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      mprotect(m + span, page, PROT_NONE);
      unsigned char* p = m + span - body;
      canary[i] = p - 64;
      memset(canary[i], 0xa5, 64); memset(p + sizes[i], 0xa5, body - sizes[i]);
      FILE* f = fopen(files[i], "rb"); if (!f || fread(p, 1, sizes[i], f) != sizes[i]) kfail("cannot read a buffer"); fclose(f);
      kptr[i] = p;
    } else { kscalar[i] = strtoull(argv[a + 1], 0, 10); a += 2; }
  }
  const size_t stackBytes = 256 * 1024;
  std::vector<char> stacks((size_t)T * stackBytes);
  kf.resize(T);
  for (unsigned bz = 0; bz < gridDim.z; bz++) for (unsigned by = 0; by < gridDim.y; by++) for (unsigned bx = 0; bx < gridDim.x; bx++) {
    blockIdx = {bx, by, bz};
    for (int t = 0; t < T; t++) {
      getcontext(&kf[t].ctx);
      kf[t].ctx.uc_stack.ss_sp = &stacks[(size_t)t * stackBytes];
      kf[t].ctx.uc_stack.ss_size = stackBytes;
      kf[t].ctx.uc_link = &ksched;
      makecontext(&kf[t].ctx, kentry, 0);
      kf[t].state = RUN;
    }
    for (;;) {
      for (int t = 0; t < T; t++) {
        if (kf[t].state != RUN) continue;
        kcur = t; threadIdx = {(unsigned)t, 0, 0};
        swapcontext(&ksched, &kf[t].ctx);
      }
      bool moved = false, live = false, allSync = true;
      for (int w = 0; w * 32 < T; w++) {
        int at = 0, done = 0;
        for (int l = 0; l < 32; l++) { const int s = kf[w * 32 + l].state; at += s == SHFL; done += s == DONE; }
        if (done < 32) live = true;
        if (at == 0) continue;
        allSync = false;
        if (at + done < 32) continue; // other lanes at a barrier: resolve later
        if (done) kfail("a shuffle with exited lanes");
        for (int l = 0; l < 32; l++) {
          KFiber& f = kf[w * 32 + l];
          const KFiber& g = kf[w * 32 + (l ^ f.off)];
          if (g.off != f.off) kfail("lanes of a warp shuffle with different offsets");
          f.res = g.v;
        }
        for (int l = 0; l < 32; l++) kf[w * 32 + l].state = RUN;
        moved = true;
      }
      if (!live) break;
      if (moved) continue;
      if (!allSync) kfail("deadlock: a warp is split between a shuffle and a barrier");
      for (int t = 0; t < T; t++) if (kf[t].state == SYNC) kf[t].state = RUN;
    }
  }
  for (int i = 0; i < n; i++) {
    if (!files[i]) continue;
    unsigned char* p = (unsigned char*)kptr[i];
    const size_t body = (sizes[i] + 15) / 16 * 16;
    for (int k = 0; k < 64; k++) if (canary[i][k] != 0xa5) kfail("a store before the start of a buffer");
    for (size_t k = sizes[i]; k < body; k++) if (p[k] != 0xa5) kfail("a store past the end of a buffer");
    if (!wr[i]) continue;
    FILE* f = fopen(files[i], "wb"); fwrite(p, 1, sizes[i], f); fclose(f);
  }
  return 0;
}
`;

/** The device prelude with its inline-PTX helpers swapped for host twins. */
function hostPrelude(text: string): string {
  const out: string[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const m = /^__device__ __forceinline__ [\w ]+?\b(kiln_\w+)\(/.exec(lines[i]);
    if (!m || !HOST_HELPERS[m[1]]) {
      out.push(lines[i]);
      continue;
    }
    let depth = 0;
    for (; i < lines.length; i++) {
      for (const ch of lines[i]) depth += ch === "{" ? 1 : ch === "}" ? -1 : 0;
      if (depth === 0) break;
    }
    out.push(HOST_HELPERS[m[1]]);
  }
  return out.join("\n");
}

async function sha(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(d).slice(0, 12)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const DIR = `${Deno.env.get("TMPDIR") ?? "/tmp"}/kiln_emu`;

/** Host C++ of a kernel source (exported for inspection). */
export function hostSource(ks: KernelSource): string {
  let src = ks.source;
  for (const pre of [PRELUDE, PRELUDE_FP8]) {
    if (src.includes(pre)) src = src.replace(pre, hostPrelude(pre));
  }
  if (/\basm\b/.test(src)) throw new Error(`${ks.name}: inline PTX outside the prelude cannot be emulated`);
  return `${HOST_HEAD}\n${src}\n#define KILN_EMU_KERNEL ${ks.entry}\n${HOST_MAIN}`;
}

async function binary(ks: KernelSource): Promise<string> {
  if (!CXX) throw new Error("no host C++ compiler (g++ or clang++)");
  const text = hostSource(ks);
  const exe = `${DIR}/${ks.entry}_${await sha(text)}`;
  try {
    await Deno.stat(exe);
    return exe;
  } catch { /* build it */ }
  await Deno.mkdir(DIR, { recursive: true });
  const tag = crypto.randomUUID().slice(0, 8); // concurrent test processes must not share temp files
  const cpp = `${exe}.${tag}.cpp`, tmp = `${exe}.${tag}.tmp`;
  await Deno.writeTextFile(cpp, text);
  const out = await new Deno.Command(CXX, {
    args: ["-std=c++17", "-O1", "-ffp-contract=off", "-fno-fast-math", "-w", "-o", tmp, cpp],
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`${ks.name}: host compile failed\n${new TextDecoder().decode(out.stderr)}`);
  }
  await Deno.rename(tmp, exe);
  await Deno.remove(cpp);
  return exe;
}

/** Build the host binaries of `kernels` ahead of their runs, as many compilers at a time as CPUs. */
export async function buildEmulators(kernels: readonly KernelSource[]): Promise<void> {
  const todo = [...kernels];
  const worker = async () => {
    for (let k = todo.shift(); k; k = todo.shift()) await binary(k);
  };
  await Promise.all(Array.from({ length: Math.max(1, navigator.hardwareConcurrency || 1) }, worker));
}

/** An argument: a host buffer for a pointer (written back in place unless readonly), else a number. */
export type EmuArg = HostArray | number | bigint;

function scalarBits(p: ParamSpec, v: number | bigint): string {
  const dv = new DataView(new ArrayBuffer(8));
  switch (p.kind) {
    case "f32":
      dv.setFloat32(0, Number(v), true);
      break;
    case "f64":
      dv.setFloat64(0, Number(v), true);
      break;
    case "i32":
    case "u32":
      dv.setUint32(0, Number(BigInt.asUintN(32, BigInt(v))), true);
      break;
    default:
      dv.setBigUint64(0, BigInt.asUintN(64, BigInt(v)), true);
  }
  return dv.getBigUint64(0, true).toString();
}

/**
 * Run `ks` on the CPU over `grid` (block = `ks.block[0]` threads). Pointer arguments are host buffers;
 * the kernel's writes land in them.
 */
export async function emulateKernel(
  ks: KernelSource,
  grid: readonly [number, number, number],
  args: readonly EmuArg[],
): Promise<void> {
  if (ks.block[1] !== 1 || ks.block[2] !== 1) throw new Error("emulator: 1-D blocks only");
  if (args.length !== ks.params.length) {
    throw new Error(`emulator: ${args.length} args for ${ks.params.length}`);
  }
  if (grid.some((g) => g === 0)) return;
  const exe = await binary(ks);
  const run = await Deno.makeTempDir({ dir: DIR });
  try {
    const argv = [
      String(grid[0]),
      String(grid[1]),
      String(grid[2]),
      String(ks.block[0]),
      String(args.length),
    ];
    const bufs: [string, HostArray][] = [];
    for (const [i, p] of ks.params.entries()) {
      const a = args[i];
      if (p.kind === "ptr") {
        if (typeof a === "number" || typeof a === "bigint") throw new Error(`${p.name}: expected a buffer`);
        const f = `${run}/p${i}.bin`;
        await Deno.writeFile(f, new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
        argv.push("p", f, String(a.byteLength), p.readonly ? "0" : "1");
        if (!p.readonly) bufs.push([f, a]);
      } else if (p.kind === "tensormap") {
        throw new Error("emulator: tensor maps are not supported");
      } else {
        if (typeof a !== "number" && typeof a !== "bigint") throw new Error(`${p.name}: expected a number`);
        argv.push("s", scalarBits(p, a));
      }
    }
    const out = await new Deno.Command(exe, { args: argv, stderr: "piped" }).output();
    if (!out.success) {
      const why = out.signal === "SIGSEGV" || out.code === 139
        ? "a load or store outside its buffer (segfault at a guard page)"
        : new TextDecoder().decode(out.stderr).trim();
      throw new Error(`${ks.name}: emulated run failed (${out.signal ?? out.code}): ${why}`);
    }
    for (const [f, a] of bufs) {
      new Uint8Array(a.buffer, a.byteOffset, a.byteLength).set(await Deno.readFile(f));
    }
  } finally {
    await Deno.remove(run, { recursive: true });
  }
}
