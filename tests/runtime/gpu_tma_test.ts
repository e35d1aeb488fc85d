import { gpuTest } from "../_util.ts";
import { Device, encodeTensorMap, jit, Tensor } from "../../runtime/mod.ts";
import { type KernelSource, renderSignature, TENSORMAP_DECL } from "../../codegen/kernel_source.ts";
import { Rng } from "../../testing/random.ts";
import { assertExactlyEqual } from "../../testing/assert.ts";

function ks(
  name: string,
  params: KernelSource["params"],
  body: string,
  extra: Partial<KernelSource> = {},
): KernelSource {
  const base = { name, entry: name, params, block: [256, 1, 1] as const, sharedBytes: 0, ...extra };
  const decl = params.some((p) => p.kind === "tensormap") ? TENSORMAP_DECL : "";
  return { ...base, source: `${decl}\n${renderSignature(base)} {\n${body}\n}` };
}

gpuTest(
  "tensor maps: a TMA tile load (cp.async.bulk.tensor + mbarrier) reads the right bytes, zero-fills OOB",
  async () => {
    const d = Device.get();
    if (d.info.cc < 90) return;
    const k = await jit(ks(
      "tma_tile",
      [
        { name: "tm", kind: "tensormap" },
        { name: "out", kind: "ptr", dtype: "u8" },
        { name: "x0", kind: "i32" },
        { name: "y0", kind: "i32" },
      ],
      `  __shared__ __align__(128) unsigned char tile[64 * 128];
  __shared__ __align__(8) unsigned long long bar;
  unsigned bar_a = (unsigned)__cvta_generic_to_shared(&bar);
  unsigned tile_a = (unsigned)__cvta_generic_to_shared(tile);
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" :: "r"(bar_a));
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(bar_a), "r"(64 * 128) : "memory");
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
      :: "r"(tile_a), "l"(&tm), "r"(x0), "r"(y0), "r"(bar_a) : "memory");
  }
  unsigned done = 0;
  while (!done) {
    asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0; selp.u32 %0, 1, 0, p; }"
      : "=r"(done) : "r"(bar_a) : "memory");
  }
  for (int i = threadIdx.x; i < 64 * 128; i += blockDim.x) out[i] = tile[i];`,
      { minArch: 90 },
    ));
    const rows = 256, cols = 512;
    const rng = new Rng();
    const host = new Uint8Array(rows * cols).map(() => rng.int(1, 256));
    using a = Tensor.fromHost("fp8e4m3", [rows, cols], host);
    using out = Tensor.empty("u8", [64 * 128]);
    const tm = encodeTensorMap({
      dtype: "fp8e4m3",
      address: a.ptr,
      dims: [cols, rows],
      strides: [cols],
      box: [128, 64],
    });
    for (const [x0, y0] of [[128, 64], [448, 224]]) {
      out.fill(0xee);
      k.launch(1, [tm, out, x0, y0], { block: [128, 1, 1] });
      const got = out.toHost() as Uint8Array;
      const want = new Uint8Array(64 * 128);
      for (let r = 0; r < 64; r++) {
        for (let c = 0; c < 128; c++) {
          const R = y0 + r, C = x0 + c;
          want[r * 128 + c] = R < rows && C < cols ? host[R * cols + C] : 0;
        }
      }
      assertExactlyEqual(got, want, `tile at (${x0}, ${y0})`);
    }
  },
);
