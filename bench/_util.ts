/**
 * Shared benchmark helpers: device copy bandwidth (the memory ceiling, measured in the same run),
 * a PyTorch peer runner (python3 on the GPU host; bench only, never a kiln dependency), and tables.
 *
 * @module
 */
import { Device, jit, type KernelSource, Tensor, timeKernel } from "../mod.ts";

/** One row of a results table. */
export type Row = Record<string, string | number>;

/** Print rows as an aligned text table with a title. */
export function printTable(title: string, rows: Row[]): void {
  if (rows.length === 0) {
    console.log(`\n## ${title}\n(no rows)`);
    return;
  }
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: string | number | undefined) =>
    v === undefined ? "" : typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(4)) : v;
  const w = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  console.log(`\n## ${title}`);
  console.log(cols.map((c, i) => c.padStart(w[i])).join("  "));
  for (const r of rows) console.log(cols.map((c, i) => cell(r[c]).padStart(w[i])).join("  "));
}

/** Copy kernels: grid-stride with one 16-byte load per step, and straight-line with 4 loads in flight. */
function copyKernel(unroll: number): KernelSource {
  const name = `kiln_copy_u4x${unroll}`;
  const body = unroll === 1
    ? `for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    dst[i] = src[i];`
    : `long long base = (long long)blockIdx.x * blockDim.x * ${unroll} + threadIdx.x;
  uint4 v[${unroll}];
  #pragma unroll
  for (int u = 0; u < ${unroll}; u++) { long long i = base + u * blockDim.x; if (i < n) v[u] = src[i]; }
  #pragma unroll
  for (int u = 0; u < ${unroll}; u++) { long long i = base + u * blockDim.x; if (i < n) dst[i] = v[u]; }`;
  return {
    name,
    entry: name,
    source:
      `extern "C" __global__ void ${name}(const uint4* __restrict__ src, uint4* __restrict__ dst, long long n) {
  ${body}
}`,
    params: [{ name: "src", kind: "ptr", dtype: "u8", readonly: true }, {
      name: "dst",
      kind: "ptr",
      dtype: "u8",
    }, {
      name: "n",
      kind: "i64",
    }],
    block: [256, 1, 1],
    sharedBytes: 0,
  };
}

let copyCache: number | undefined;
/**
 * Device-to-device copy bandwidth in bytes/s (read + write counted), the best of two copy kernels over
 * 1 GiB timed with events: the memory ceiling every memory-bound kernel is compared with in the same run.
 */
export async function copyBandwidth(bytes = 1 << 30): Promise<number> {
  if (copyCache) return copyCache;
  const dev = Device.get();
  using a = Tensor.empty("u8", [bytes]);
  using b = Tensor.empty("u8", [bytes]);
  a.fill(0x3c);
  const n = bytes / 16;
  let best = 0;
  for (const unroll of [1, 4]) {
    const k = await jit(copyKernel(unroll));
    const grid = unroll === 1 ? dev.info.smCount * 8 : Math.ceil(n / (256 * unroll));
    const t = await timeKernel(() => k.launch(grid, [a, b, n]), { warmup: 3, reps: 20 });
    best = Math.max(best, (2 * bytes) / (t.medianUs * 1e-6));
  }
  copyCache = best;
  return copyCache;
}

/**
 * Run a Python peer script (bench/peers/*.py) with JSON arguments; it prints one JSON object on its
 * last stdout line. Returns undefined (and says why) when python3 / torch is missing.
 */
export async function runPeer(script: string, args: unknown): Promise<Record<string, unknown> | undefined> {
  try {
    const p = new Deno.Command("python3", {
      args: [new URL(`./peers/${script}`, import.meta.url).pathname, JSON.stringify(args)],
      stdout: "piped",
      stderr: "piped",
    });
    const out = await p.output();
    const text = new TextDecoder().decode(out.stdout).trim();
    if (!out.success) {
      console.error(
        `peer ${script} failed: ${
          new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" | ")
        }`,
      );
      return undefined;
    }
    return JSON.parse(text.split("\n").pop()!);
  } catch (e) {
    console.error(`peer ${script} unavailable: ${(e as Error).message}`);
    return undefined;
  }
}

/** Percent with one decimal. */
export function pct(x: number, of: number): string {
  return `${((100 * x) / of).toFixed(1)}%`;
}
