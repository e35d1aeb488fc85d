/**
 * Finding and opening libcuda and libnvrtc. The search order is:
 *
 * 1. the override variable (`KILN_CUDA_LIB` / `KILN_NVRTC_LIB`), and nothing else when it is set;
 * 2. the bare sonames, which the dynamic loader resolves through LD_LIBRARY_PATH and ldconfig;
 * 3. `/usr/local/cuda/lib64`, `/usr/local/cuda-*\/targets/x86_64-linux/lib` (and `lib64` beside them);
 * 4. NVIDIA's Python wheels: `site-packages/nvidia/*\/lib` under the usual Python prefixes.
 *
 * When nothing opens, one {@linkcode LibraryNotFoundError} lists every place tried and why it failed.
 *
 * @module
 */
import { LibraryNotFoundError } from "./errors.ts";
import { env } from "./env.ts";

/** What to look for. */
export interface LibrarySpec {
  /** Human name, e.g. "libcuda (the CUDA driver)". */
  readonly label: string;
  /** Override variable. */
  readonly envVar: string;
  /** Sonames to try through the loader, most specific first. */
  readonly sonames: readonly string[];
  /** File name prefix to match inside directories, e.g. "libnvrtc.so". */
  readonly filePrefix: string;
  /** Directories (glob patterns with `*` segments) to scan. */
  readonly dirs: readonly string[];
  /** File-name fragments that disqualify a match (e.g. "builtins", "stubs"). */
  readonly reject?: readonly string[];
}

const pyPrefixes = [
  "/usr/lib/python3*/site-packages",
  "/usr/lib/python3*/dist-packages",
  "/usr/local/lib/python3*/site-packages",
  "/usr/local/lib/python3*/dist-packages",
  "/opt/*/.venv/lib/python3*/site-packages",
  "/opt/conda/lib/python3*/site-packages",
  "$HOME/.local/lib/python3*/site-packages",
  "$HOME/.pyenv/versions/*/lib/python3*/site-packages",
  "$VIRTUAL_ENV/lib/python3*/site-packages",
  "$CONDA_PREFIX/lib/python3*/site-packages",
];
const wheelDirs = pyPrefixes.flatMap((p) => [`${p}/nvidia/*/lib`, `${p}/nvidia/*/lib64`]);

/** libcuda: the driver. The toolkit's `stubs/` copy is skipped: it loads but runs nothing. */
export const CUDA_LIB: LibrarySpec = {
  label: "libcuda (the CUDA driver)",
  envVar: "KILN_CUDA_LIB",
  sonames: ["libcuda.so.1", "libcuda.so"],
  filePrefix: "libcuda.so",
  dirs: [
    "/usr/local/nvidia/lib64",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/local/cuda/compat",
    "/usr/local/cuda/lib64",
    "/usr/local/cuda-*/targets/x86_64-linux/lib",
    ...wheelDirs,
  ],
  reject: ["stubs"],
};

/** libnvrtc: the run-time compiler. */
export const NVRTC_LIB: LibrarySpec = {
  label: "libnvrtc (NVRTC, the CUDA run-time compiler)",
  envVar: "KILN_NVRTC_LIB",
  sonames: ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"],
  filePrefix: "libnvrtc.so",
  dirs: [
    "/usr/local/cuda/lib64",
    "/usr/local/cuda/targets/x86_64-linux/lib",
    "/usr/local/cuda-*/targets/x86_64-linux/lib",
    "/usr/local/cuda-*/lib64",
    ...wheelDirs,
  ],
  reject: ["builtins", "alt"],
};

/** File-system access the search needs; tests pass a fake one. */
export interface SearchFs {
  readDir(path: string): string[] | undefined;
  env(name: string): string | undefined;
}

const realFs: SearchFs = {
  readDir(path) {
    try {
      return [...Deno.readDirSync(path)].map((e) => e.name).sort();
    } catch {
      return undefined;
    }
  },
  env,
};

/** Expand `*` segments and `$VAR` prefixes of a directory pattern into existing directories. */
export function expandDir(pattern: string, fs: SearchFs = realFs): string[] {
  const varMatch = pattern.match(/^\$([A-Z_]+)(.*)$/);
  if (varMatch) {
    const v = fs.env(varMatch[1]);
    if (!v) return [];
    pattern = v + varMatch[2];
  }
  let paths = [""];
  for (const seg of pattern.split("/").filter((s) => s.length > 0)) {
    const next: string[] = [];
    for (const base of paths) {
      if (!seg.includes("*")) {
        next.push(`${base}/${seg}`);
        continue;
      }
      const re = new RegExp("^" + seg.split("*").map(escapeRe).join(".*") + "$");
      for (const name of fs.readDir(base || "/") ?? []) if (re.test(name)) next.push(`${base}/${name}`);
    }
    paths = next;
  }
  return paths.filter((p) => fs.readDir(p) !== undefined);
}

function escapeRe(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
}

/** Every candidate path for `spec`, in the order they are tried. */
export function candidates(spec: LibrarySpec, fs: SearchFs = realFs): string[] {
  const override = fs.env(spec.envVar);
  if (override) return [override];
  const out: string[] = [...spec.sonames];
  for (const pattern of spec.dirs) {
    for (const dir of expandDir(pattern, fs)) {
      const files = (fs.readDir(dir) ?? []).filter((f) =>
        f.startsWith(spec.filePrefix) && !(spec.reject ?? []).some((r) => f.includes(r))
      );
      // shortest name first: libnvrtc.so before libnvrtc.so.13 before libnvrtc.so.13.0.88
      files.sort((a, b) => a.length - b.length || a.localeCompare(b));
      for (const f of files) out.push(`${dir}/${f}`);
    }
  }
  return [...new Set(out)];
}

/** Open the first candidate that loads with `symbols`; throw one error listing every attempt otherwise. */
export function openLibrary<S extends Deno.ForeignLibraryInterface>(
  spec: LibrarySpec,
  symbols: S,
  opts: { fs?: SearchFs; open?: (path: string, symbols: S) => Deno.DynamicLibrary<S> } = {},
): { lib: Deno.DynamicLibrary<S>; path: string } {
  const open = opts.open ?? ((p: string, s: S) => Deno.dlopen(p, s));
  const tried: { path: string; error: string }[] = [];
  for (const path of candidates(spec, opts.fs)) {
    try {
      return { lib: open(path, symbols), path };
    } catch (e) {
      tried.push({ path, error: firstLine(e) });
    }
  }
  if (tried.length === 0) tried.push({ path: "(no candidates)", error: "nothing matched" });
  throw new LibraryNotFoundError(spec.label, tried, spec.envVar);
}

function firstLine(e: unknown): string {
  return String(e instanceof Error ? e.message : e).split("\n")[0].slice(0, 200);
}
