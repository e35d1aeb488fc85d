/**
 * Error classes a person can act on: each says what failed, why, and where to look.
 *
 * @module
 */

/** A shared library (libcuda, libnvrtc) could not be found or loaded. Lists every place it looked. */
export class LibraryNotFoundError extends Error {
  override name = "LibraryNotFoundError";
  constructor(
    readonly library: string,
    readonly tried: readonly { path: string; error: string }[],
    readonly envVar: string,
  ) {
    super(
      `${library} not found. Looked in:\n` +
        tried.map((t) => `  ${t.path}: ${t.error}`).join("\n") +
        `\nSet ${envVar}=/path/to/${library.split(" ")[0]} to choose the library explicitly.`,
    );
  }
  /** One line: what is missing, how many places were tried, and the override. */
  get summary(): string {
    return `${this.library} not found (tried ${this.tried.length} places; set ${this.envVar} to choose one)`;
  }
}

/** A CUDA driver call returned an error code. */
export class CudaError extends Error {
  override name = "CudaError";
  constructor(
    readonly code: number,
    readonly codeName: string,
    readonly call: string,
    detail: string,
  ) {
    super(`${call} failed: ${codeName} (${code}): ${detail}`);
  }
}

/** An NVRTC call other than the compilation itself failed. */
export class NvrtcError extends Error {
  override name = "NvrtcError";
  constructor(readonly code: number, readonly call: string, detail: string) {
    super(`${call} failed: NVRTC error ${code}: ${detail}`);
  }
}

/** NVRTC rejected a kernel's source. The message holds the log and the source lines around each error. */
export class CompileError extends Error {
  override name = "CompileError";
  constructor(
    readonly kernel: string,
    readonly log: string,
    readonly source: string,
    readonly options: readonly string[],
  ) {
    super(
      `NVRTC could not compile ${kernel} (options: ${options.join(" ")}):\n${log.trim()}\n${
        excerpts(log, source)
      }`,
    );
  }
}

/** A compiled module could not be loaded, or its entry point was missing. */
export class LoadError extends Error {
  override name = "LoadError";
}

/** A kernel launch was rejected (bad geometry, too much shared memory, wrong argument count). */
export class LaunchError extends Error {
  override name = "LaunchError";
}

/** An argument had the wrong shape, dtype, stride, size or alignment. */
export class ArgumentError extends TypeError {
  override name = "ArgumentError";
  constructor(readonly argument: string, readonly expected: string, readonly got: string) {
    super(`${argument}: expected ${expected}, got ${got}`);
  }
}

/** Source lines (±2) around each `name(line): error` the log reports, numbered. */
export function excerpts(log: string, source: string, context = 2): string {
  const lines = source.split("\n");
  const hits = new Set<number>();
  for (const m of log.matchAll(/\((\d+)\): (?:error|warning)/g)) hits.add(Number(m[1]));
  const out: string[] = [];
  for (const ln of [...hits].sort((a, b) => a - b)) {
    out.push(`--- source around line ${ln} ---`);
    for (let i = Math.max(1, ln - context); i <= Math.min(lines.length, ln + context); i++) {
      out.push(`${i === ln ? ">" : " "}${String(i).padStart(5)} | ${lines[i - 1]}`);
    }
  }
  return out.join("\n");
}
