/**
 * The loaded CUDA driver and the one function that turns its return codes into {@linkcode CudaError}s.
 * Every driver call in kiln goes through {@linkcode check}.
 *
 * @module
 */
import { CU_RESULT_NAMES, CUDA_SYMBOLS } from "./_ffi_cuda.ts";
import { CUDA_LIB, openLibrary } from "./_lib.ts";
import { readCString } from "./_c.ts";
import { CudaError } from "./errors.ts";

/** The typed symbol table of libcuda. */
export type CudaSymbols = Deno.DynamicLibrary<typeof CUDA_SYMBOLS>["symbols"];

let loaded: { lib: Deno.DynamicLibrary<typeof CUDA_SYMBOLS>; path: string } | undefined;
let loadError: Error | undefined;
let initialized = false;

/** Open libcuda (once) and run cuInit (once). Throws LibraryNotFoundError or CudaError. */
export function driver(): CudaSymbols {
  if (loaded && initialized) return loaded.lib.symbols;
  if (loadError) throw loadError;
  try {
    loaded ??= openLibrary(CUDA_LIB, CUDA_SYMBOLS);
    check(loaded.lib.symbols.cuInit(0), "cuInit");
    initialized = true;
    return loaded.lib.symbols;
  } catch (e) {
    loadError = e as Error;
    throw e;
  }
}

/** Path libcuda was loaded from (after {@linkcode driver} succeeded). */
export function driverPath(): string | undefined {
  return loaded?.path;
}

/** The name of a CUresult, from the driver when it is loaded, else from kiln's table. */
export function resultName(code: number): { name: string; message: string } {
  let name = CU_RESULT_NAMES[code] ?? `CUresult ${code}`;
  let message = "";
  if (loaded) {
    const p = new BigUint64Array(1);
    if (loaded.lib.symbols.cuGetErrorName(code, p) === 0) name = readCString(Deno.UnsafePointer.create(p[0]));
    if (loaded.lib.symbols.cuGetErrorString(code, p) === 0) {
      message = readCString(Deno.UnsafePointer.create(p[0]));
    }
  }
  return { name, message };
}

/** Throw a {@linkcode CudaError} naming `call` when `code` is not CUDA_SUCCESS. */
export function check(code: number, call: string): void {
  if (code !== 0) {
    const { name, message } = resultName(code);
    throw new CudaError(code, name, call, message || "no message from the driver");
  }
}
