/**
 * NVRTC: compile CUDA C to a CUBIN for one exact architecture. Needs libnvrtc only, no GPU, so the
 * compile test tier runs on CPU machines.
 *
 * @example
 * ```ts ignore
 * import { compileCuda } from "./nvrtc.ts";
 * const { cubin } = await compileCuda('extern "C" __global__ void k(float* x) { x[0] = 1; }', {
 *   arch: "sm_90a",
 * });
 * ```
 * @module
 */
import { NVRTC_SYMBOLS } from "./_ffi_nvrtc.ts";
import { NVRTC_LIB, openLibrary } from "./_lib.ts";
import { cstr, cstrArray, readCString } from "./_c.ts";
import { CompileError, NvrtcError } from "./errors.ts";
import { debug } from "./env.ts";

type NvrtcLib = Deno.DynamicLibrary<typeof NVRTC_SYMBOLS>;

let loaded: { lib: NvrtcLib; path: string } | undefined;
let loadError: Error | undefined;

/** The opened NVRTC library (throws {@linkcode LibraryNotFoundError} when there is none). */
export function nvrtcLib(): { lib: NvrtcLib; path: string } {
  if (loaded) return loaded;
  if (loadError) throw loadError;
  try {
    loaded = openLibrary(NVRTC_LIB, NVRTC_SYMBOLS);
    return loaded;
  } catch (e) {
    loadError = e as Error;
    throw e;
  }
}

/** True when libnvrtc can be opened here. */
export function hasNvrtc(): boolean {
  try {
    nvrtcLib();
    return true;
  } catch {
    return false;
  }
}

function check(code: number, call: string): void {
  if (code !== 0) {
    throw new NvrtcError(code, call, readCString(nvrtcLib().lib.symbols.nvrtcGetErrorString(code)));
  }
}

/** NVRTC's version and the path it was loaded from (both part of every cache key). */
export function nvrtcVersion(): { major: number; minor: number; path: string } {
  const { lib, path } = nvrtcLib();
  const maj = new Int32Array(1), min = new Int32Array(1);
  check(lib.symbols.nvrtcVersion(maj, min), "nvrtcVersion");
  return { major: maj[0], minor: min[0], path };
}

/** Architectures this NVRTC can target, as numbers (80, 89, 90, ...). */
export function supportedArchs(): number[] {
  const { lib } = nvrtcLib();
  if (!lib.symbols.nvrtcGetNumSupportedArchs || !lib.symbols.nvrtcGetSupportedArchs) return [];
  const n = new Int32Array(1);
  check(lib.symbols.nvrtcGetNumSupportedArchs(n), "nvrtcGetNumSupportedArchs");
  const archs = new Int32Array(n[0]);
  check(lib.symbols.nvrtcGetSupportedArchs(archs), "nvrtcGetSupportedArchs");
  return [...archs];
}

/** Options for {@linkcode compileCuda}. */
export interface CompileOptions {
  /** Target, e.g. "sm_90a", "sm_89", "sm_80". */
  arch: string;
  /** Extra NVRTC options. */
  options?: readonly string[];
  /** Program name used in logs (defaults to "kernel.cu"). */
  name?: string;
  /** Also return the PTX (costs a little). */
  ptx?: boolean;
}

/** What NVRTC produced. */
export interface CompileResult {
  cubin: Uint8Array;
  /** The compile log (ptxas's register / spill report included). */
  log: string;
  ptx?: string;
  /** The full option list passed to NVRTC (part of the cache key). */
  options: string[];
  ms: number;
}

/** The option list kiln always passes, followed by the kernel's own. */
export function nvrtcOptions(arch: string, extra: readonly string[] = []): string[] {
  return [
    `--gpu-architecture=${arch}`,
    "-default-device",
    "-std=c++17",
    "--ptxas-options=--verbose",
    ...extra,
  ];
}

/** Compile `source` to a CUBIN. Throws {@linkcode CompileError} with the log and source excerpts on failure. */
export async function compileCuda(source: string, opts: CompileOptions): Promise<CompileResult> {
  const { lib } = nvrtcLib();
  const s = lib.symbols;
  const t0 = performance.now();
  const name = opts.name ?? "kernel.cu";
  const options = nvrtcOptions(opts.arch, opts.options);
  const progOut = new BigUint64Array(1);
  const srcBuf = cstr(source), nameBuf = cstr(name);
  check(s.nvrtcCreateProgram(progOut, srcBuf, nameBuf, 0, null, null), "nvrtcCreateProgram");
  const prog = Deno.UnsafePointer.create(progOut[0]);
  try {
    const opt = cstrArray(options);
    const rc = await s.nvrtcCompileProgram(prog, options.length, opt.ptrs);
    void opt.keep; // the option strings (off-heap, see cstr) must outlive the nonblocking call
    const log = readSized(s.nvrtcGetProgramLogSize, s.nvrtcGetProgramLog, prog, "log");
    if (rc !== 0) {
      if (rc === 6 /* NVRTC_ERROR_COMPILATION */) throw new CompileError(name, log, source, options);
      check(rc, "nvrtcCompileProgram");
    }
    const cubinBytes = readBytes(s.nvrtcGetCUBINSize, s.nvrtcGetCUBIN, prog, "CUBIN");
    if (cubinBytes.length === 0) {
      throw new NvrtcError(
        0,
        "nvrtcGetCUBIN",
        `no CUBIN for ${opts.arch}: use a real sm_XX target, not compute_XX`,
      );
    }
    const ptx = opts.ptx ? readSized(s.nvrtcGetPTXSize, s.nvrtcGetPTX, prog, "PTX") : undefined;
    const ms = performance.now() - t0;
    debug(1, `nvrtc ${name} ${opts.arch}: ${ms.toFixed(1)} ms, ${cubinBytes.length} B`);
    debug(3, `nvrtc options: ${options.join(" ")}\n${log}`);
    return { cubin: cubinBytes, log, ptx, options, ms };
  } finally {
    check(s.nvrtcDestroyProgram(progOut), "nvrtcDestroyProgram");
  }
}

type SizeFn = (p: Deno.PointerValue, out: BigUint64Array<ArrayBuffer>) => number;
type GetFn = (p: Deno.PointerValue, out: Uint8Array<ArrayBuffer>) => number;

function readBytes(sizeFn: SizeFn, getFn: GetFn, prog: Deno.PointerValue, what: string): Uint8Array {
  const n = new BigUint64Array(1);
  check(sizeFn(prog, n), `nvrtcGet${what}Size`);
  const buf = new Uint8Array(Number(n[0]));
  if (buf.length > 0) check(getFn(prog, buf), `nvrtcGet${what}`);
  return buf;
}

function readSized(sizeFn: SizeFn, getFn: GetFn, prog: Deno.PointerValue, what: string): string {
  const b = readBytes(sizeFn, getFn, prog, what);
  const end = b.indexOf(0);
  return new TextDecoder().decode(end >= 0 ? b.subarray(0, end) : b);
}

/** Registers, spill and stack figures ptxas reported for each function in a compile log. */
export function ptxasReport(
  log: string,
): { fn: string; registers: number; spillBytes: number; stackBytes: number }[] {
  const out: { fn: string; registers: number; spillBytes: number; stackBytes: number }[] = [];
  let fn = "";
  let stack = 0, spill = 0;
  for (const line of log.split("\n")) {
    const f = line.match(/Compiling entry function '([^']+)'/) ?? line.match(/Function properties for (\S+)/);
    if (f) fn = f[1];
    const st = line.match(/(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/);
    if (st) {
      stack = Number(st[1]);
      spill = Number(st[2]) + Number(st[3]);
    }
    const r = line.match(/Used (\d+) registers/);
    if (r) out.push({ fn, registers: Number(r[1]), spillBytes: spill, stackBytes: stack });
  }
  return out;
}
