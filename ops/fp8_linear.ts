/**
 * FP8 block-scaled linear layer (DeepSeek-V3 / FP8_BLOCK recipe): `y[M, N] = x[M, K] · Wᵀ` with x
 * quantized per token per 128-group on the fly and W stored as e4m3 with one fp32 scale per 128×128
 * block. Exactly two kernel launches per call — the row-padded group quant writes A and its M-major
 * scales straight into buffers padded for the GEMM, and the GEMM writes only the M real rows of y — so
 * there are no pad, concat or copy kernels, and a call can be captured in a CUDA graph.
 *
 * @example
 * ```ts ignore
 * import { prepareFp8Linear, quantizeWeightFp8Block } from "./fp8_linear.ts";
 * using w = await quantizeWeightFp8Block(wBf16); // [N, K] bf16 → e4m3 + [N/128, K/128] scales
 * const lin = await prepareFp8Linear({ N: w.N, K: w.K, maxM: 64 });
 * const y = lin.run(x, w); // x bf16 [M ≤ 64, K] → y bf16 [M, N]
 * ```
 * @module
 */
import { ArgumentError, Device, jit, type Stream, Tensor } from "../runtime/mod.ts";
import type { GemmBiasDType, GemmOutDType } from "../dsl/ops/block_matmul.ts";
import { weightQuantGrid, weightQuantKernel } from "../codegen/kernels/weight_quant.ts";
import {
  checkGemmInputs,
  checkGemmOut,
  type GemmBackendChoice,
  prepareBlockScaledMatmul,
  type PreparedBlockMatmul,
} from "./block_matmul.ts";
import { type PreparedGroupQuant, prepareGroupQuant } from "./group_quant.ts";

/** An FP8_BLOCK weight: e4m3 `[N, K]` and fp32 dequant scales `[⌈N/128⌉, K/128]` (HF `weight_scale_inv`). */
export class Fp8BlockWeight {
  readonly N: number;
  readonly K: number;
  constructor(readonly weight: Tensor, readonly scales: Tensor) {
    if (weight.dtype !== "fp8e4m3" || weight.rank !== 2 || !weight.isContiguous) {
      throw new ArgumentError("weight", "a contiguous fp8e4m3 [N, K] tensor", `${weight}`);
    }
    [this.N, this.K] = weight.shape;
    const want = [Math.ceil(this.N / 128), Math.ceil(this.K / 128)];
    if (
      scales.dtype !== "f32" || scales.rank !== 2 || scales.shape[0] !== want[0] ||
      scales.shape[1] !== want[1]
    ) {
      throw new ArgumentError("scales", `f32 [${want.join(", ")}] (one per 128x128 block)`, `${scales}`);
    }
  }
  dispose(): void {
    this.weight.dispose();
    this.scales.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Quantize a bf16/f16 weight `[N, K]` to FP8 blocks on the GPU (one launch): `s = max(amax, eps)/448` per
 * 128×128 block (`ue8m0`: rounded up to a power of two), `q = e4m3(w/s)`; bit-exact with
 * `quantizeWeightBlocks` in `dsl/ops/block_matmul.ts`. The stream is synchronized before the promise
 * resolves: the weight is complete when it is returned (the PDL GEMM reads weights early).
 *
 * @example
 * ```ts ignore
 * import { quantizeWeightFp8Block } from "./fp8_linear.ts";
 * using w = await quantizeWeightFp8Block(Tensor.fromFloat("bf16", [256, 512], values));
 * console.log(w.weight.shape, w.scales.shape); // [256, 512] [2, 4]
 * ```
 */
export async function quantizeWeightFp8Block(
  w: Tensor,
  opts: { ue8m0?: boolean; eps?: number; stream?: Stream } = {},
): Promise<Fp8BlockWeight> {
  if ((w.dtype !== "bf16" && w.dtype !== "f16") || w.rank !== 2 || !w.isContiguous) {
    throw new ArgumentError("w", "a contiguous bf16 or f16 [N, K] tensor", `${w}`);
  }
  const [N, K] = w.shape;
  if (N < 1 || K < 8 || K % 8) {
    throw new ArgumentError("w", "N ≥ 1 and K a positive multiple of 8", `[${N}, ${K}]`);
  }
  if (w.ptr % 16n) throw new ArgumentError("w", "a 16-byte aligned address", `0x${w.ptr.toString(16)}`);
  const k = await jit(weightQuantKernel({ inDtype: w.dtype, ue8m0: opts.ue8m0 }), { device: w.device });
  const q = Tensor.empty("fp8e4m3", [N, K], { device: w.device });
  const s = Tensor.empty("f32", [Math.ceil(N / 128), Math.ceil(K / 128)], { device: w.device });
  k.launch(weightQuantGrid(N, K), [w, q, s, N, K, opts.eps ?? 1e-4], { stream: opts.stream });
  // Complete before it is used: the small-M GEMM is a PDL kernel that reads its weights before it waits
  // for the kernels ahead of it in the stream.
  (opts.stream ?? w.device.stream).synchronize();
  return new Fp8BlockWeight(q, s);
}

/** Options of {@linkcode prepareFp8Linear}. */
export interface Fp8LinearOptions {
  /** Output features (weight rows). */
  N: number;
  /** Input features; a multiple of 128. */
  K: number;
  /** Activation dtype (default bf16). */
  inDtype?: "bf16" | "f16";
  /** Output dtype (default bf16). */
  outDtype?: GemmOutDType;
  /** Bias element type, when the layer has one. */
  bias?: GemmBiasDType;
  /** Largest M a call will pass (default 4096): the quantized-activation buffers are sized for it now. */
  maxM?: number;
  /** Prepare only these M values (a call uses the smallest ≥ its M). */
  mValues?: readonly number[];
  /** Power-of-two activation scales (DeepSeek V3.2 `scale_fmt: ue8m0`). */
  ue8m0?: boolean;
  /**
   * Programmatic dependent launch of the group quant (default true; the small-M GEMM is always built
   * for it): on sm_90 the GEMM's CTAs start and issue their first weight loads while the quant runs.
   * Weights must then be complete before `run` is queued (see `KernelSource.pdl`); `run(..., { pdl:
   * false })` launches both kernels the plain way.
   */
  pdl?: boolean;
  backend?: GemmBackendChoice;
  device?: Device;
}

/** A compiled FP8 linear: `run` is synchronous and launches exactly {@linkcode PreparedFp8Linear.launchesPerRun} kernels. */
export class PreparedFp8Linear {
  /** Kernel launches per `run`: the group quant and the GEMM. */
  static readonly launchesPerRun = 2;
  readonly rowAlign: number;
  readonly #q: Tensor;
  readonly #s: Tensor;
  readonly #kb: number;

  constructor(
    readonly options: Readonly<Fp8LinearOptions>,
    readonly maxM: number,
    readonly gemm: PreparedBlockMatmul,
    readonly quant: PreparedGroupQuant,
  ) {
    this.rowAlign = Math.max(4, gemm.rowAlign);
    const mPadMax = Math.ceil(maxM / this.rowAlign) * this.rowAlign;
    this.#kb = options.K / 128;
    this.#q = Tensor.empty("fp8e4m3", [mPadMax, options.K], { device: gemm.device });
    this.#s = Tensor.empty("f32", [this.#kb * mPadMax], { device: gemm.device });
  }

  /**
   * `y = x·Wᵀ (+ bias)`: x `[M, K]` (M ≤ maxM) → y `[M, N]` (a new tensor, or `out`, which may be a
   * row-strided view). Two launches on `stream`; nothing is allocated when `out` is given. `pdl: false`
   * launches both without programmatic dependent launch (same kernels, same results).
   */
  run(
    x: Tensor,
    weight: Fp8BlockWeight,
    opts: { out?: Tensor; bias?: Tensor; stream?: Stream; pdl?: boolean } = {},
  ): Tensor {
    const { N, K } = this.options;
    if (x.rank !== 2 || x.shape[1] !== K) throw new ArgumentError("x", `a [M, ${K}] tensor`, `${x}`);
    const M = x.shape[0];
    if (M < 1 || M > this.maxM) throw new ArgumentError("x", `1 ≤ M ≤ ${this.maxM} rows (maxM)`, `${M}`);
    if (weight.N !== N || weight.K !== K) {
      throw new ArgumentError("weight", `an FP8 block weight [${N}, ${K}]`, `[${weight.N}, ${weight.K}]`);
    }
    const mPad = Math.ceil(M / this.rowAlign) * this.rowAlign;
    const q = this.#q.rows(0, mPad);
    const scales = this.#s.strided([this.#kb, mPad], [mPad, 1]);
    // everything the GEMM will check, checked before the first launch
    checkGemmInputs(this.gemm.op, {
      a: q,
      aScales: scales,
      b: weight.weight,
      bScales: weight.scales,
      bias: opts.bias,
    }, M);
    const out = opts.out ?? Tensor.empty(this.gemm.op.outDtype, [M, N], { device: this.gemm.device });
    checkGemmOut(this.gemm.op, out, M);
    this.quant.run(x, { q, scales }, { stream: opts.stream, pdl: opts.pdl });
    return this.gemm.run(q, scales, weight.weight, weight.scales, {
      m: M,
      bias: opts.bias,
      out,
      stream: opts.stream,
      pdl: opts.pdl,
    });
  }

  dispose(): void {
    this.#q.dispose();
    this.#s.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Compile the group quant and the GEMM of an FP8 linear `[N, K]` and allocate its activation buffers.
 *
 * @example
 * ```ts ignore
 * import { prepareFp8Linear } from "./fp8_linear.ts";
 * using lin = await prepareFp8Linear({ N: 2112, K: 7168, maxM: 16 });
 * using g = Graph.capture(() => lin.run(x, w, { out: y })); // two kernel nodes
 * ```
 */
export async function prepareFp8Linear(o: Fp8LinearOptions): Promise<PreparedFp8Linear> {
  const device = o.device ?? Device.get();
  const maxM = o.mValues ? Math.max(...o.mValues) : o.maxM ?? 4096;
  if (!Number.isSafeInteger(maxM) || maxM < 1) {
    throw new ArgumentError("maxM", "an integer ≥ 1", String(maxM));
  }
  const gemm = await prepareBlockScaledMatmul({
    mode: "block",
    N: o.N,
    K: o.K,
    outDtype: o.outDtype,
    bias: o.bias,
    maxM,
    mValues: o.mValues,
    backend: o.backend,
    device,
  });
  const rowAlign = Math.max(4, gemm.rowAlign);
  const quant = await prepareGroupQuant({
    K: o.K,
    groupSize: 128,
    dtype: "fp8e4m3",
    rowAlign,
    scaleLayout: "mmajor",
    ue8m0: o.ue8m0 ?? false,
    inputDtype: o.inDtype ?? "bf16",
    pdl: o.pdl ?? true,
    device,
  });
  return new PreparedFp8Linear(o, maxM, gemm, quant);
}

/**
 * One-shot FP8 linear: `x [M, K]` bf16/f16 → `[M, N]`, with W from {@linkcode quantizeWeightFp8Block} (or
 * a loaded FP8_BLOCK checkpoint). Compiles on first use (cached); prefer {@linkcode prepareFp8Linear} on a
 * hot path.
 *
 * @example
 * ```ts ignore
 * import { fp8Linear } from "./fp8_linear.ts";
 * const y = await fp8Linear(x, w); // exactly two launches
 * ```
 */
export async function fp8Linear(
  x: Tensor,
  weight: Fp8BlockWeight,
  opts: { out?: Tensor; bias?: Tensor; outDtype?: GemmOutDType; stream?: Stream } = {},
): Promise<Tensor> {
  if (x.rank !== 2 || x.shape[0] < 1) throw new ArgumentError("x", "a [M ≥ 1, K] tensor", `${x}`);
  using lin = await prepareFp8Linear({
    N: weight.N,
    K: weight.K,
    inDtype: x.dtype === "f16" ? "f16" : "bf16",
    outDtype: opts.outDtype ?? (opts.out?.dtype === "f16" ? "f16" : "bf16"),
    bias: opts.bias ? (opts.bias.dtype as GemmBiasDType) : undefined,
    mValues: [x.shape[0]],
    device: x.device,
  });
  const y = lin.run(x, weight, opts);
  x.device.synchronize(); // the activation buffers are freed when `lin` goes out of scope
  return y;
}
