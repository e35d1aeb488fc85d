/**
 * Probe of the TMA path on a GPU host, one variant per process (a faulting kernel poisons the CUDA
 * context): `deno run -A scripts/tma_probe.ts <variant>`. Variants isolate the parts: the mbarrier
 * with a plain bulk copy, the tensor map passed as a grid constant, or read from global memory.
 */
import {
  Device,
  encodeTensorMap,
  jit,
  type KernelSource,
  renderSignature,
  Tensor,
  TENSORMAP_DECL,
} from "../mod.ts";

const variant = Deno.args[0] ?? "param";
const WAIT = `unsigned done = 0;
  while (!done) {
    asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0; selp.u32 %0, 1, 0, p; }"
      : "=r"(done) : "r"(bar_a) : "memory");
  }`;
const PRE = `__shared__ __align__(128) unsigned char tile[64 * 128];
  __shared__ __align__(8) unsigned long long bar;
  unsigned bar_a = (unsigned)__cvta_generic_to_shared(&bar);
  unsigned tile_a = (unsigned)__cvta_generic_to_shared(tile);
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(bar_a));
    ${variant === "nofence" ? "" : 'asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");'}
  }
  __syncthreads();`;
const TMA = (desc: string) =>
  `if (threadIdx.x == 0) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(bar_a), "r"(64 * 128) : "memory");
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
      :: "r"(tile_a), "l"(${desc}), "r"(x0), "r"(y0), "r"(bar_a) : "memory");
  }`;
const OUT = `for (int i = threadIdx.x; i < 64 * 128; i += blockDim.x) out[i] = tile[i];`;

function make(params: KernelSource["params"], body: string): KernelSource {
  const base = {
    name: `tma_${variant}`,
    entry: `tma_${variant}`,
    params,
    block: [128, 1, 1] as const,
    sharedBytes: 0,
  };
  return { ...base, source: `${TENSORMAP_DECL}\n${renderSignature(base)} {\n${body}\n}` };
}
if (Deno.args[1] === "--compile") {
  // compile-only check (no GPU): build the variant's kernel text with dummy body parts
  const body = `${PRE}\n${
    variant === "bulk" ? "" : TMA(variant === "global" ? "desc" : "&tm")
  }\n${WAIT}\n${OUT}`;
  const params: KernelSource["params"] = variant === "global"
    ? [
      { name: "desc", kind: "ptr", dtype: "u8", readonly: true },
      { name: "out", kind: "ptr", dtype: "u8" },
      { name: "x0", kind: "i32" },
      { name: "y0", kind: "i32" },
    ]
    : [{ name: "tm", kind: "tensormap" }, { name: "out", kind: "ptr", dtype: "u8" }, {
      name: "x0",
      kind: "i32",
    }, { name: "y0", kind: "i32" }];
  const { compileFor } = await import("../runtime/jit.ts");
  const r = await compileFor(make(params, body), "sm_90", false);
  console.log(`variant ${variant} compiles: ${r.cubin.length} bytes`);
  Deno.exit(0);
}

const rows = 256, cols = 512;
const host = new Uint8Array(rows * cols).map((_, i) => (i * 7 + 3) & 0xff);
const a = Tensor.fromHost("u8", [rows, cols], host);
const out = Tensor.empty("u8", [64 * 128]);
out.fill(0xee);
const tm = encodeTensorMap({
  dtype: "u8",
  address: a.ptr,
  dims: [cols, rows],
  strides: [cols],
  box: [128, 64],
});
console.log(
  `variant ${variant}; tensor map bytes: ${
    [...tm.slice(0, 32)].map((b) => b.toString(16).padStart(2, "0")).join("")
  }...`,
);
if (variant === "bulk") {
  const k = await jit(
    make(
      [{ name: "src", kind: "ptr", dtype: "u8", readonly: true }, { name: "out", kind: "ptr", dtype: "u8" }],
      `${PRE}
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(bar_a), "r"(8192) : "memory");
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
      :: "r"(tile_a), "l"(src), "r"(8192), "r"(bar_a) : "memory");
  }
  ${WAIT}
  ${OUT}`,
    ),
  );
  k.launch(1, [a, out]);
} else if (variant === "global") {
  const desc = Tensor.fromHost("u8", [128], tm);
  const k = await jit(
    make(
      [
        { name: "desc", kind: "ptr", dtype: "u8", readonly: true },
        { name: "out", kind: "ptr", dtype: "u8" },
        { name: "x0", kind: "i32" },
        { name: "y0", kind: "i32" },
      ],
      `${PRE}
  ${TMA("desc")}
  ${WAIT}
  ${OUT}`,
    ),
  );
  k.launch(1, [desc, out, 128, 64]);
} else {
  const k = await jit(
    make(
      [{ name: "tm", kind: "tensormap" }, { name: "out", kind: "ptr", dtype: "u8" }, {
        name: "x0",
        kind: "i32",
      }, { name: "y0", kind: "i32" }],
      `${PRE}
  ${TMA("&tm")}
  ${WAIT}
  ${OUT}`,
    ),
  );
  k.launch(1, [tm, out, 128, 64]);
}
Device.get().synchronize();
const got = out.toHost() as Uint8Array;
let bad = 0;
for (let r = 0; r < 64; r++) {
  for (let c = 0; c < 128; c++) {
    const want = variant === "bulk" ? host[r * 128 + c] : host[(64 + r) * cols + 128 + c];
    if (got[r * 128 + c] !== want) bad++;
  }
}
console.log(`variant ${variant}: ${bad === 0 ? "OK" : `${bad} bytes wrong`}`);
