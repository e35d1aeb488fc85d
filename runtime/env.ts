/**
 * kiln's environment variables, all under one prefix:
 *
 * | variable          | meaning                                                                  |
 * | ----------------- | ------------------------------------------------------------------------ |
 * | `KILN_DEBUG`      | 1: compile/load timings, 2: + generated source, 3: + NVRTC options/log, 4: + PTX |
 * | `KILN_CACHE_DIR`  | kernel cache directory (default `$XDG_CACHE_HOME/kiln` or `~/.cache/kiln`) |
 * | `KILN_NO_CACHE`   | 1: skip the disk cache (memory cache still used)                          |
 * | `KILN_CUDA_LIB`   | path of libcuda to load instead of searching                              |
 * | `KILN_NVRTC_LIB`  | path of libnvrtc to load instead of searching                             |
 * | `KILN_ARCH`       | compile for this architecture (e.g. `sm_90a`) when no device says otherwise |
 *
 * @module
 */

/** Read an environment variable, or undefined when unset or when env access is not permitted. */
export function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

/** `KILN_DEBUG` as a number (0 when unset). */
export function debugLevel(): number {
  return Number(env("KILN_DEBUG") ?? 0) || 0;
}

/** Print a debug line to stderr when `KILN_DEBUG` ≥ `level`. */
export function debug(level: number, msg: string): void {
  if (debugLevel() >= level) console.error(`[kiln] ${msg}`);
}
