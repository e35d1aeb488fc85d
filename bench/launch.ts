/**
 * Host cost of launching: µs per launch of a 4-argument kernel from Deno (plain, and by CUDA graph
 * replay of a 4-kernel sequence), beside the same loop in C (bench/launch.c, built with nvcc on the
 * GPU host) using the same mechanism: the floor. Also: warm start of a kernel from the disk cache.
 *
 * Launches are timed in batches of 256 after a stream sync, so the launch queue never fills and the
 * number is host time, not GPU throughput.
 *
 * @module
 */
import { Device, Graph, jit, type KernelSource, renderSignature, Tensor } from "../mod.ts";
import { clearMemoryCache, compileFor } from "../runtime/jit.ts";
import { printTable, type Row } from "./_util.ts";

const BASE = {
  name: "launch_probe",
  entry: "launch_probe",
  params: [
    { name: "a", kind: "ptr", dtype: "f32" },
    { name: "b", kind: "ptr", dtype: "f32", readonly: true },
    { name: "n", kind: "i32" },
    { name: "v", kind: "f32" },
  ],
  block: [128, 1, 1],
  sharedBytes: 0,
} as const;
const PROBE: KernelSource = {
  ...BASE,
  source: `${renderSignature(BASE)} { int i = threadIdx.x; if (i < n) a[i] = b[i] + v; }`,
};

function timeBatches(fn: (i: number) => void, perBatch: number, batches = 80): number {
  const dev = Device.get();
  let total = 0;
  for (let b = 0; b < batches + 5; b++) {
    dev.stream.synchronize();
    const t0 = performance.now();
    for (let i = 0; i < perBatch; i++) fn(i);
    const t1 = performance.now();
    if (b >= 5) total += t1 - t0;
  }
  dev.stream.synchronize();
  return (total * 1000) / (perBatch * batches);
}

async function cFloor(): Promise<{ plain_us: number; graph_us_per_kernel: number } | undefined> {
  const dir = await Deno.makeTempDir({ prefix: "kiln-launch-" });
  try {
    const arch = Device.get().archFor(false);
    const { cubin } = await compileFor(PROBE, arch);
    await Deno.writeFile(`${dir}/probe.cubin`, cubin);
    const src = new URL("./launch.c", import.meta.url).pathname;
    const build = await new Deno.Command("nvcc", {
      args: ["-O2", "-o", `${dir}/launch`, src, "-lcuda"],
      stderr: "piped",
    })
      .output();
    if (!build.success) {
      console.error(`launch.c did not build: ${new TextDecoder().decode(build.stderr).slice(0, 300)}`);
      return undefined;
    }
    const run = await new Deno.Command(`${dir}/launch`, {
      args: [`${dir}/probe.cubin`, PROBE.entry],
      stdout: "piped",
    })
      .output();
    return JSON.parse(new TextDecoder().decode(run.stdout).trim());
  } catch (e) {
    console.error(`C floor unavailable: ${(e as Error).message}`);
    return undefined;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Print the launch-cost table. */
export async function bench(): Promise<void> {
  const k = await jit(PROBE);
  using a = Tensor.empty("f32", [1024]), b = Tensor.empty("f32", [1024]);
  const plain = timeBatches((i) => k.launch(1, [a, b, 256 + (i & 1), 1.0]), 256);
  using g = Graph.capture(() => {
    for (let i = 0; i < 4; i++) k.launch(1, [a, b, 256, 1.0]);
  });
  const graph = timeBatches(() => g.launch(), 64) / 4;
  // warm start: drop the in-memory kernel, load from the disk cache
  clearMemoryCache();
  const t0 = performance.now();
  await jit(PROBE);
  const warm = performance.now() - t0;
  const c = await cFloor();
  const rows: Row[] = [
    {
      what: "plain launch (µs host)",
      deno: plain,
      c: c?.plain_us ?? "n/a",
      "deno/c": c ? plain / c.plain_us : "n/a",
      target: "≤ 2 µs, ≤ 1.2× C",
    },
    {
      what: "graph replay (µs/kernel)",
      deno: graph,
      c: c?.graph_us_per_kernel ?? "n/a",
      "deno/c": c ? graph / c.graph_us_per_kernel : "n/a",
      target: "≤ 1.5 µs",
    },
    { what: "warm start from disk cache (ms)", deno: warm, c: "", "deno/c": "", target: "≤ 10 ms" },
  ];
  printTable(`launch cost — ${Device.get().info.name}`, rows);
}

if (import.meta.main) await bench();
