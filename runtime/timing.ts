/**
 * Device-event timing: warm up, then time each repetition between two events and take the median.
 *
 * Small kernels run faster than the host can queue them, so the intervals between events would
 * measure the host. Before the timed repetitions a spin kernel holds the GPU for long enough that
 * every repetition is queued before the first one starts: the intervals are then GPU time.
 *
 * @module
 */
import { Device, Event } from "./device.ts";
import { jit } from "./jit.ts";
import { Graph } from "./graph.ts";
import type { KernelSource } from "../codegen/kernel_source.ts";

/** Result of {@linkcode timeKernel}, in microseconds. */
export interface Timing {
  medianUs: number;
  minUs: number;
  maxUs: number;
  reps: number;
}

const SPIN: KernelSource = {
  name: "kiln_spin",
  entry: "kiln_spin",
  source: `extern "C" __global__ void kiln_spin(unsigned long long ns) {
  unsigned long long t0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  for (;;) {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    if (t - t0 >= ns) break;
    __nanosleep(1000);
  }
}`,
  params: [{ name: "ns", kind: "u64" }],
  block: [1, 1, 1],
  sharedBytes: 0,
  minArch: 70,
};

/** Keep the GPU busy for `us` microseconds on the device's kiln stream. */
export async function spin(us: number, device: Device = Device.get()): Promise<void> {
  const k = await jit(SPIN, { device });
  k.launch(1, [BigInt(Math.round(us * 1000))]);
}

/**
 * Time `fn` (which queues GPU work on the device's kiln stream) with device events. `fn` receives the
 * call index so callers can rotate among input sets larger than L2. `hostUsPerRep` is a guess of the
 * host cost of one call, used to size the spin (default 20 µs).
 *
 * Each repetition is `batch` back-to-back calls between two events (time / batch): for kernels of a
 * few µs an event per call would add its own cost to every call. `batch` defaults to 1 for calls
 * that take ≥ 50 µs and 16 below (judged from the warm-up). Batches are captured once into a CUDA
 * graph and replayed (as decode loops and the peers' benchmarks run them) unless `graph: false` or
 * `fn` cannot be captured (it synchronizes, say); then they are plain stream launches.
 */
export async function timeKernel(
  fn: (rep: number) => void,
  opts: {
    warmup?: number;
    reps?: number;
    batch?: number;
    graph?: boolean;
    device?: Device;
    hostUsPerRep?: number;
  } = {},
): Promise<Timing> {
  const dev = opts.device ?? Device.get();
  const warmup = opts.warmup ?? 5, reps = opts.reps ?? 30;
  let call = 0;
  using w0 = new Event(), w1 = new Event();
  fn(call++);
  dev.stream.synchronize();
  w0.record(dev.stream);
  for (let i = 1; i < warmup; i++) fn(call++);
  w1.record(dev.stream);
  const warmUs = warmup > 1 ? (w1.elapsedSince(w0) * 1000) / (warmup - 1) : 100;
  const batch = opts.batch ?? (warmUs < 50 ? 16 : 1);
  let graph: Graph | undefined;
  if (batch > 1 && opts.graph !== false) {
    try {
      const first = call;
      graph = Graph.capture(() => {
        for (let b = 0; b < batch; b++) fn(first + b);
      }, dev.stream);
      call += batch;
      graph.launch();
      dev.stream.synchronize();
    } catch {
      graph?.dispose();
      graph = undefined; // not capturable: time plain launches
    }
  }
  const evs = Array.from({ length: reps + 1 }, () => new Event());
  try {
    await spin(Math.min(200_000, 500 + reps * (graph ? 10 : batch * (opts.hostUsPerRep ?? 20))), dev);
    evs[0].record(dev.stream);
    for (let i = 0; i < reps; i++) {
      if (graph) graph.launch();
      else for (let b = 0; b < batch; b++) fn(call++);
      evs[i + 1].record(dev.stream);
    }
    const us = evs.slice(1).map((e, i) => (e.elapsedSince(evs[i]) * 1000) / batch).sort((a, b) => a - b);
    return { medianUs: us[Math.floor(us.length / 2)], minUs: us[0], maxUs: us[us.length - 1], reps };
  } finally {
    evs.forEach((e) => e.dispose());
    graph?.dispose();
  }
}
