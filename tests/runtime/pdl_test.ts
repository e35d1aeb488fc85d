/**
 * Programmatic dependent launch: (pure) the CUlaunchConfig + attribute layout, checked against cuda.h
 * when the toolkit is here; (gpu) a slow producer followed by a PDL consumer that reads its output —
 * the consumer must see every value, in a stream and in a captured graph, while it demonstrably starts
 * before the producer ends (so the test exercises the overlap, not a plain serialization).
 */
import assert from "node:assert/strict";
import { compileTest, gpuTest } from "../_util.ts";
import { compileFor } from "../../runtime/jit.ts";
import { Device, Graph, jit, LaunchError, Tensor } from "../../runtime/mod.ts";
import { type KernelSource, renderSignature } from "../../codegen/kernel_source.ts";
import {
  LAUNCH_ATTR,
  LAUNCH_ATTR_BYTES,
  LAUNCH_CONFIG_BYTES,
  launchConfigBuffer,
  writeLaunchConfig,
} from "../../runtime/launch_config.ts";
import { Rng } from "../../testing/random.ts";

Deno.test("launch config: CUlaunchConfig fields and the cluster / PDL attributes at their cuda.h offsets", () => {
  const buf = launchConfigBuffer();
  const v = new DataView(buf.buffer);
  assert.equal(buf.length, LAUNCH_CONFIG_BYTES + 2 * LAUNCH_ATTR_BYTES);
  const base = {
    grid: [7, 3, 2],
    block: [256, 2, 1],
    sharedBytes: 99000,
    stream: 0x1234_5678_9abcn,
  } as const;
  // PDL only: one attribute, id 6, value (int) 1 at offset 8 of the attribute
  assert.equal(writeLaunchConfig(buf, { ...base, pdl: true }, 0xdead_0000n), 1);
  assert.deepEqual([0, 4, 8, 12, 16, 20, 24].map((o) => v.getUint32(o, true)), [7, 3, 2, 256, 2, 1, 99000]);
  assert.equal(v.getBigUint64(32, true), 0x1234_5678_9abcn);
  assert.equal(v.getBigUint64(40, true), 0xdead_0000n);
  assert.equal(v.getUint32(48, true), 1);
  assert.equal(v.getUint32(56, true), LAUNCH_ATTR.PROGRAMMATIC_STREAM_SERIALIZATION);
  assert.equal(v.getInt32(64, true), 1);
  // cluster + PDL: cluster first (dims at value offsets 0, 4, 8), PDL second
  assert.equal(writeLaunchConfig(buf, { ...base, cluster: [2, 1, 1], pdl: true }, 0xbeefn), 2);
  assert.equal(v.getUint32(48, true), 2);
  assert.equal(v.getUint32(56, true), LAUNCH_ATTR.CLUSTER_DIMENSION);
  assert.deepEqual([64, 68, 72].map((o) => v.getUint32(o, true)), [2, 1, 1]);
  assert.equal(v.getUint32(56 + 72, true), LAUNCH_ATTR.PROGRAMMATIC_STREAM_SERIALIZATION);
  assert.equal(v.getInt32(56 + 72 + 8, true), 1);
  // cluster only, rewritten in place: one attribute, and the first slot no longer holds PDL's value
  assert.equal(writeLaunchConfig(buf, { ...base, cluster: [4, 1, 1] }, 0xbeefn), 1);
  assert.equal(v.getUint32(48, true), 1);
  assert.equal(v.getUint32(56, true), LAUNCH_ATTR.CLUSTER_DIMENSION);
  assert.equal(v.getUint32(64, true), 4);
  // neither: no attributes, a null attrs pointer
  assert.equal(writeLaunchConfig(buf, { ...base, pdl: false }, 0xbeefn), 0);
  assert.equal(v.getUint32(48, true), 0);
  assert.equal(v.getBigUint64(40, true), 0n);
});

Deno.test("launch config: attribute ids, the value offset and the struct sizes agree with cuda.h", async (t) => {
  let h: string;
  try {
    h = await Deno.readTextFile("/usr/local/cuda/include/cuda.h");
  } catch {
    t.step({ name: "cuda.h not found: layout checked by the constants only", ignore: true, fn: () => {} });
    return;
  }
  const id = (name: string) => Number(h.match(new RegExp(`${name}\\s*=\\s*(\\d+)`))?.[1]);
  assert.equal(id("CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION"), LAUNCH_ATTR.CLUSTER_DIMENSION);
  assert.equal(
    id("CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION"),
    LAUNCH_ATTR.PROGRAMMATIC_STREAM_SERIALIZATION,
  );
  // CUlaunchAttribute = { id; char pad[8 - sizeof(id)]; 64-byte value union } ; CUlaunchConfig field order
  assert.match(
    h,
    /typedef struct CUlaunchAttribute_st \{\s*CUlaunchAttributeID id;[^}]*pad\[8 - sizeof\(CUlaunchAttributeID\)\];/,
  );
  assert.match(h, /char pad\[64\];/);
  assert.match(
    h,
    /gridDimX;[^}]*gridDimY;[^}]*gridDimZ;[^}]*blockDimX;[^}]*blockDimY;[^}]*blockDimZ;[^}]*sharedMemBytes;[^}]*CUstream hStream;[^}]*CUlaunchAttribute \*attrs;[^}]*unsigned int numAttrs;/,
  );
});

const PRELUDE = `__device__ __forceinline__ unsigned long long now() {
  unsigned long long t; asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); return t;
}`;

/** Spins `spin` ns, then writes buf[i] = seed·φ + i and the time it finished (max over CTAs) to ts[0]. */
function producer(): KernelSource {
  const base = {
    name: "pdl_test_producer",
    entry: "pdl_test_producer",
    params: [
      { name: "buf", kind: "ptr", dtype: "u32" },
      { name: "seed", kind: "ptr", dtype: "u32" },
      { name: "ts", kind: "ptr", dtype: "i64" },
      { name: "n", kind: "i32" },
      { name: "spin", kind: "u64" },
    ],
    block: [256, 1, 1],
    sharedBytes: 0,
  } as const satisfies Partial<KernelSource>;
  return {
    ...base,
    source: `${PRELUDE}
${renderSignature(base)} {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");  // the consumer may start now
#endif
  const unsigned long long t0 = now();
  while (now() - t0 < spin) {}
  const unsigned int s = *seed;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) buf[i] = s * 2654435761u + i;
  __syncthreads();
  if (threadIdx.x == 0) { __threadfence(); atomicMax(ts, (long long)now()); }
}`,
  };
}

/** PDL consumer: notes when it started, waits, copies buf to out, records its start (min over CTAs) in ts[1]. */
function consumer(cluster?: readonly [number, number, number]): KernelSource {
  const base = {
    name: `pdl_test_consumer${cluster ? "_cluster" : ""}`,
    entry: `pdl_test_consumer${cluster ? "_cluster" : ""}`,
    params: [
      { name: "buf", kind: "ptr", dtype: "u32" },
      { name: "out", kind: "ptr", dtype: "u32" },
      { name: "ts", kind: "ptr", dtype: "i64" },
      { name: "n", kind: "i32" },
    ],
    block: [128, 1, 1],
    sharedBytes: 0,
    pdl: true,
    cluster,
  } as const satisfies Partial<KernelSource>;
  return {
    ...base,
    source: `${PRELUDE}
${renderSignature(base)} {
  const unsigned long long t = now();
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    unsigned int v;
    asm volatile("ld.global.u32 %0, [%1];" : "=r"(v) : "l"(buf + i));  // coherent, after the wait
    out[i] = v;
  }
  if (threadIdx.x == 0) atomicMin(ts + 1, (long long)t);
}`,
  };
}

compileTest("pdl: the test's producer and consumers compile for sm_80 and sm_90a", async () => {
  for (const ks of [producer(), consumer(), consumer([2, 1, 1])]) {
    for (const arch of ["sm_80", "sm_90a"]) {
      const { log } = await compileFor(ks, arch);
      assert.ok(!/warning/i.test(log ?? ""), `${ks.name} ${arch}: ${log}`);
    }
  }
});

const N = 8192, RUNS = 50, SPIN_NS = 20_000n;

/** Queue RUNS (producer, consumer) pairs: pair r uses seed[r], ts[2r..2r+1], out[r·N..]. */
function setup() {
  const rng = new Rng();
  const buf = Tensor.empty("u32", [N]);
  const seeds = Tensor.empty("u32", [RUNS]);
  const ts = Tensor.empty("i64", [2 * RUNS]);
  const out = Tensor.empty("u32", [RUNS * N]);
  const reset = () => {
    const s = Uint32Array.from({ length: RUNS }, () => rng.int(1, 2 ** 31));
    seeds.copyFromHost(s);
    ts.copyFromHost(BigInt64Array.from({ length: 2 * RUNS }, (_, i) => (i & 1 ? 2n ** 63n - 1n : 0n)));
    out.fill(0xff);
    return s;
  };
  const check = (s: Uint32Array, what: string): number => {
    const o = out.toHost() as Uint32Array, t = ts.toHost() as BigInt64Array;
    let overlapped = 0;
    for (let r = 0; r < RUNS; r++) {
      for (let i = 0; i < N; i++) {
        const want = (Math.imul(s[r], 2654435761) + i) >>> 0;
        if (o[r * N + i] !== want) {
          assert.fail(
            `${what} run ${r}: out[${i}] = ${o[r * N + i]}, the producer wrote ${want} (seed ${rng.seed})`,
          );
        }
      }
      if (t[2 * r + 1] < t[2 * r]) overlapped++;
    }
    return overlapped;
  };
  return {
    buf,
    seeds,
    ts,
    out,
    reset,
    check,
    dispose: () => [buf, seeds, ts, out].forEach((x) => x.dispose()),
  };
}

gpuTest(
  "pdl: a PDL consumer always sees the slow producer's writes, and starts before it ends (stream, graph, cluster)",
  async () => {
    const dev = Device.get();
    if (dev.info.cc < 90) {
      console.log(`sm_${dev.info.cc}: no programmatic dependent launch; the kernels launch plainly`);
    }
    const kp = await jit(producer()), kc = await jit(consumer());
    const kcc = dev.info.cc >= 90 ? await jit(consumer([2, 1, 1])) : kc; // clusters: sm_90+
    assert.equal(kc.pdl, dev.info.cc >= 90);
    const d = setup();
    try {
      const queue = (pdl?: boolean, cluster = false) => {
        for (let r = 0; r < RUNS; r++) {
          const ts = d.ts.ptr + BigInt(16 * r);
          kp.launch(8, [d.buf, d.seeds.ptr + BigInt(4 * r), ts, N, SPIN_NS]);
          (cluster && r % 2 ? kcc : kc).launch(8, [d.buf, d.out.ptr + BigInt(4 * N * r), ts, N], { pdl });
        }
      };
      let s = d.reset();
      queue();
      const overlapStream = d.check(s, "stream");
      s = d.reset();
      queue(undefined, true);
      const overlapCluster = d.check(s, "stream with clusters");
      s = d.reset();
      queue(false);
      const overlapPlain = d.check(s, "plain launches");
      using g = Graph.capture(() => queue());
      let overlapGraph = 0;
      for (let rep = 0; rep < 3; rep++) {
        s = d.reset();
        g.launch();
        overlapGraph += d.check(s, `graph replay ${rep}`);
      }
      console.log(
        `consumer started before the producer ended: stream ${overlapStream}/${RUNS}, clusters ` +
          `${overlapCluster}/${RUNS}, graph ${overlapGraph}/${
            3 * RUNS
          }, plain launches ${overlapPlain}/${RUNS}`,
      );
      assert.equal(overlapPlain, 0, "a plain launch never starts before its predecessor ends");
      if (dev.info.cc >= 90) {
        assert.ok(overlapStream > 0, "PDL never overlapped in a stream: is the attribute set?");
        assert.ok(overlapGraph > 0, "PDL never overlapped in a graph: was the programmatic edge captured?");
      }
    } finally {
      dev.synchronize();
      d.dispose();
    }
  },
);

gpuTest("pdl: pdl true on a kernel that does not declare it is a LaunchError", async () => {
  const k = await jit(producer());
  using buf = Tensor.empty("u32", [256]);
  using seed = Tensor.fromHost("u32", [1], new Uint32Array([1]));
  using ts = Tensor.empty("i64", [2]);
  assert.throws(() => k.launch(1, [buf, seed, ts, 256, 0n], { pdl: true }), LaunchError);
  k.launch(1, [buf, seed, ts, 256, 0n], { pdl: false }); // false on a plain kernel is a plain launch
  Device.get().synchronize();
});
