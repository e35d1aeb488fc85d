/**
 * Scaled GEMM `out[M, N] = A·Bᵀ` for every scale mode (quant-spec §4, see `dsl/ops/block_matmul.ts`):
 * `prepareBlockScaledMatmul` compiles, `run` is synchronous (one launch, graph-capturable), and
 * {@linkcode selectBlockMatmul} is the dispatch that picks a kernel per (op, M, device).
 *
 * @example
 * ```ts ignore
 * import { prepareBlockScaledMatmul } from "./block_matmul.ts";
 * const gemm = await prepareBlockScaledMatmul({ N: 7168, K: 7168, maxM: 64 });
 * const y = gemm.run(a, aScales, b, bScales); // a fp8 [M, K], aScales f32 [56, M], b fp8 [N, K], bScales f32 [56, 56]
 * ```
 * @module
 */
import { ArgumentError, ctasPerSm, Device, jit, type Stream, Tensor } from "../runtime/mod.ts";
import type { KernelSource } from "../codegen/kernel_source.ts";
import {
  type BlockMatmulOp,
  blockMatmulOp,
  type BlockMatmulOpOptions,
  type ScaleMode,
} from "../dsl/ops/block_matmul.ts";
import { SMALL_M_MAX, smallMConfig, smallMGrid, smallMKernel } from "../codegen/kernels/gemm_small_m.ts";
import {
  SMALL_M_STREAM_MAX,
  smallMStreamConfig,
  smallMStreamKernel,
} from "../codegen/kernels/gemm_small_m_stream.ts";
import { tiledConfig, tiledGrid, tiledKernel } from "../codegen/kernels/gemm_mma.ts";
import { chooseSm90Config, prepareGemmSm90, sm90Preferred, sm90Unsupported } from "./gemm_sm90.ts";
import { sm90ConfigName } from "../codegen/kernels/gemm_sm90/mod.ts";
import { checkGemmInputs, checkGemmOut, type GemmInputs } from "./_block_matmul_check.ts";

export {
  checkGemmInputs,
  checkGemmOut,
  type GemmInputs,
  type GemmTensorLike,
} from "./_block_matmul_check.ts";

/** Everything one launch needs, checked (strides in elements). */
export interface GemmLaunchArgs extends GemmInputs {
  readonly a: Tensor;
  readonly aScales: Tensor;
  readonly b: Tensor;
  readonly bScales: Tensor;
  readonly bias?: Tensor;
  readonly out: Tensor;
  readonly ldc: number;
}

/**
 * Queue one GEMM (synchronous, no host sync, no allocation). `pdl` false launches a kernel built for
 * programmatic dependent launch the plain way (runners of kernels without PDL ignore it).
 */
export type GemmRunner = (args: GemmLaunchArgs, stream?: Stream, pdl?: boolean) => void;

/** A kernel choice for a range of M: compiled once by `prepare`, then run many times. */
export interface GemmVariant {
  /** Names the kernel and its tiles (variants with equal names are prepared once). */
  readonly name: string;
  /** The M-major A-scale stride P (rows of a row-padded A) must be a multiple of this. */
  readonly rowAlign: number;
  /** Compile and load for `device`. */
  prepare(device: Device): Promise<GemmRunner>;
}

/** A source of kernels: returns a variant serving `op` for every M' ≤ `M`, or undefined to pass. */
export interface BlockMatmulBackend {
  readonly name: string;
  select(op: BlockMatmulOp, M: number, device: Device): GemmVariant | undefined;
}

const backends: BlockMatmulBackend[] = [];

/** Add a backend that {@linkcode selectBlockMatmul} asks before the built-in ones (last added first). */
export function registerBlockMatmulBackend(b: BlockMatmulBackend): void {
  backends.unshift(b);
}

/** Which kernels the dispatch may use: all (`auto`) or only the portable mma.sync family (`mma`). */
export type GemmBackendChoice = "auto" | "mma";

/** Above this M (and up to 64) sm_90 runs the wgmma kernel with 64-row tiles instead of a small-M one. */
const SMALL_M_SM90_FROM = 16;

/**
 * Version of the small-M kernel: 1 (default: `gemm_small_m.ts`, M ≤ 64) or 2 (`gemm_small_m_stream.ts`,
 * persistent register-ring stream, M ≤ 32), both kept so one GPU run compares them. On the H200 (run 2,
 * graph-replay timing) v1 was faster than v2 at every shape and M ≤ 16 (e.g. 31.0 vs 39.9 µs at
 * 4×7168×16384, 9.8 vs 12.0 µs at 4×4096×7168), so v1 is the default.
 */
export type SmallMVersion = 1 | 2;

/** Whether part 2's wgmma kernel can run `op` on `device` at all (sm_90, supported mode/dtypes, N ≥ 64). */
function sm90Serves(op: BlockMatmulOp, device: Device): boolean {
  return device.info.cc === 90 && sm90Unsupported(op) === undefined && op.K % 128 === 0 && op.N >= 64;
}

/**
 * The dispatch. For `op` and an M (the variant must serve every M' ≤ M) on `device`:
 * 1. registered backends, newest first;
 * 2. `auto` on sm_90 when part 2's wgmma kernel supports the op and M > 64 (`sm90Preferred`), or
 *    16 < M ≤ 64 (64-row wgmma tiles: measured on H200, 32×7168×16384 took 40.8 µs on wgmma against
 *    75.9 µs on the v2 small-M kernel, 32×24576×1536 15.4 vs 21.3 µs): the TMA + wgmma kernel (A-scale
 *    stride P a multiple of 4, contiguous A and out);
 * 3. M ≤ 64: the v1 small-M kernel (`smallM` = 1, default), or with `smallM` = 2 and M ≤ 32 the v2 one;
 *    in block mode both are programmatic-dependent-launch kernels (sm_90: their first weight loads are
 *    issued while the previous kernel of the stream — fp8Linear's group quant — still runs);
 * 4. above: the tiled mma.sync kernel.
 *
 * @example
 * ```ts ignore
 * import { selectBlockMatmul } from "./block_matmul.ts";
 * import { blockMatmulOp } from "../dsl/ops/block_matmul.ts";
 * console.log(selectBlockMatmul(blockMatmulOp({ N: 4096, K: 7168 }), 4, Device.get()).name);
 * // gemm_smallm2_block_bf16_n4096_k7168_rt1_nt1_w8_s3_c256
 * ```
 */
export function selectBlockMatmul(
  op: BlockMatmulOp,
  M: number,
  device: Device,
  backend: GemmBackendChoice = "auto",
  smallM: SmallMVersion = 1,
): GemmVariant {
  if (backend === "auto") {
    for (const b of backends) {
      const v = b.select(op, M, device);
      if (v) return v;
    }
    if (sm90Preferred(M, op.N, op.K, device, op)) return sm90Variant(op, M, device);
    if (M > SMALL_M_SM90_FROM && M <= SMALL_M_MAX && sm90Serves(op, device)) {
      return sm90Variant(op, M, device);
    }
  }
  return mmaVariant(op, M, device.info.smCount, smallM);
}

/**
 * The mma.sync variant (v2 small-M for M ≤ 32, v1 small-M to 64, tiled above; `smallM` = 1 uses v1 for
 * every M ≤ 64): pure, so it also serves the compile tier.
 */
export function mmaVariant(
  op: BlockMatmulOp,
  M: number,
  smCount = 132,
  smallM: SmallMVersion = 1,
): GemmVariant {
  const args: (Tensor | number)[] = [];
  const pack = (g: GemmLaunchArgs) => {
    args.length = 0;
    args.push(g.a, g.aScales, g.b, g.bScales);
    if (op.bias) args.push(g.bias!);
    args.push(g.out, g.M, op.N, op.K, g.lda, g.aScaleStride, g.ldc);
    return args;
  };
  // `balance`: cap a PDL kernel's CTAs per SM at the balanced spread (measured on the v1 small-M kernels)
  const fixed = (ks: KernelSource, grid: number, balance = false): GemmVariant => ({
    name: ks.name,
    rowAlign: 1,
    async prepare(device) {
      const k = await jit(ks, { device });
      // PDL starts the next GEMM's CTAs in the slots this one leaves free: with room for more CTAs per
      // SM than a balanced spread needs, they pile up unevenly (7168×16384 at M 16: 3 slots per SM for
      // 224 CTAs, 38.5 µs with PDL vs 34.7 plain). Shared memory caps the residency at the balanced count.
      const sharedBytes = balance && ks.pdl
        ? balancedSharedBytes({
          grid,
          smCount: device.info.smCount,
          threads: ks.block[0] * ks.block[1] * ks.block[2],
          registers: k.registers,
          sharedBytes: ks.sharedBytes + k.staticSharedBytes,
          maxSharedPerSM: device.info.maxSharedPerSM,
          maxSharedPerBlock: device.info.maxSharedPerBlockOptin,
        }) - k.staticSharedBytes
        : undefined;
      return (g, stream, pdl) =>
        k.launch(grid, pack(g), { stream, sharedBytes, pdl: pdl === false ? false : undefined });
    },
  });
  if (smallM === 2 && M <= SMALL_M_STREAM_MAX) {
    const cfg = smallMStreamConfig(M, op.N, op.K, smCount);
    return fixed(smallMStreamKernel(op, cfg), cfg.ctas);
  }
  if (M <= SMALL_M_MAX) {
    const cfg = smallMConfig(M, op.N, op.K, smCount);
    return fixed(smallMKernel(op, cfg), smallMGrid(op.N, cfg), true);
  }
  const cfg = tiledConfig(M, op.N, smCount);
  const ks = tiledKernel(op, cfg);
  return {
    name: ks.name,
    rowAlign: 1,
    async prepare(device) {
      const k = await jit(ks, { device });
      return (g, stream) => k.launch(tiledGrid(g.M, op.N, cfg), pack(g), { stream });
    },
  };
}

/**
 * Dynamic + static shared memory per CTA that lets at most ⌈grid / SMs⌉ CTAs share an SM (the balanced
 * spread), or the kernel's own when registers, threads or its shared memory already allow no more (or the
 * cap cannot be set). 1 KB per CTA is reserved by the driver.
 *
 * @example
 * ```ts
 * import { balancedSharedBytes } from "./block_matmul.ts";
 * const o = { smCount: 132, threads: 128, registers: 168, sharedBytes: 2000, maxSharedPerSM: 233472, maxSharedPerBlock: 232448 };
 * console.log(balancedSharedBytes({ ...o, grid: 224 }) > 70000); // true: 2 per SM instead of 3
 * console.log(balancedSharedBytes({ ...o, grid: 396 })); // 2000: 3 per SM is already balanced
 * ```
 */
export function balancedSharedBytes(o: {
  grid: number;
  smCount: number;
  threads: number;
  registers: number;
  sharedBytes: number;
  maxSharedPerSM: number;
  maxSharedPerBlock: number;
}): number {
  const perSm = o.maxSharedPerSM || 228 * 1024;
  const fit = (sharedBytes: number) =>
    ctasPerSm({ threads: o.threads, registers: o.registers, sharedBytes, maxSharedPerSM: perSm });
  const want = Math.max(1, Math.ceil(o.grid / o.smCount));
  if (fit(o.sharedBytes) <= want) return o.sharedBytes;
  const smem = Math.ceil((Math.floor(perSm / (want + 1)) - 1024 + 1) / 16) * 16;
  if (smem > o.maxSharedPerBlock || fit(smem) !== want) return o.sharedBytes;
  return Math.max(smem, o.sharedBytes);
}

function sm90Variant(op: BlockMatmulOp, M: number, device: Device): GemmVariant {
  const mode = op.mode as "block" | "tensor" | "channel";
  return {
    name: `sm90:${sm90ConfigName(chooseSm90Config(M, op.N, op.K, mode, device))}`,
    rowAlign: 4,
    async prepare(dev) {
      const plan = await prepareGemmSm90({ M, N: op.N, K: op.K }, { mode, device: dev });
      return (g, stream) => plan.run(g.a, g.aScales, g.b, g.bScales, g.out, { stream });
    },
  };
}

/** Options of {@linkcode prepareBlockScaledMatmul}: the op (N, K, mode, dtypes, bias) and the M range. */
export interface BlockMatmulPrepareOptions extends BlockMatmulOpOptions {
  /** Largest M `run` will see (default 16384); kernels for every M bucket up to it are compiled now. */
  maxM?: number;
  /** Or exactly these M values (each one is a bucket; a run uses the smallest bucket ≥ its M). */
  mValues?: readonly number[];
  backend?: GemmBackendChoice;
  /** Small-M kernel version (default 1; 2 = the register-ring stream, for comparison). */
  smallM?: SmallMVersion;
  device?: Device;
}

/** M buckets: every power of two to 64 (the small-M kernel's token tiles), then ×4. */
export function mBuckets(maxM: number): number[] {
  const out: number[] = [];
  for (let u = 1; u < maxM; u = u < 64 ? 2 * u : 4 * u) out.push(u);
  out.push(maxM);
  return out;
}

/** The variant serving M ≤ upTo (and above the previous bucket). */
interface Bucket {
  upTo: number;
  name: string;
  align: number;
  run: GemmRunner;
}

/** A compiled scaled GEMM for one op; `run` is synchronous and launches exactly one kernel. */
export class PreparedBlockMatmul {
  readonly op: BlockMatmulOp;
  readonly device: Device;
  /** Largest M served. */
  readonly maxM: number;
  /** Row padding the A operand (and its M-major scales) needs: a multiple of this for P. */
  readonly rowAlign: number;
  readonly #buckets: Bucket[];

  constructor(op: BlockMatmulOp, device: Device, buckets: Bucket[]) {
    this.op = op;
    this.device = device;
    this.#buckets = buckets;
    this.maxM = buckets[buckets.length - 1].upTo;
    this.rowAlign = Math.max(1, ...buckets.map((b) => b.align));
  }

  /** Name of the kernel a run with M rows uses. */
  variantFor(M: number): string {
    return this.#bucket(M).name;
  }

  #bucket(M: number): Bucket {
    const b = this.#buckets.find((x) => x.upTo >= M);
    if (!b) {
      throw new ArgumentError(
        "m",
        `M ≤ ${this.maxM} (this GEMM was prepared for maxM ${this.maxM})`,
        String(M),
      );
    }
    return b;
  }

  /**
   * `out = A·Bᵀ` with scales (+ bias): checks every shape, dtype, stride and alignment, then launches one
   * kernel. `m` (default `a.shape[0]`) is the number of real rows when A is row-padded; only rows < m of
   * `out` are written. `out` (default: a new `[m, N]` tensor) may be a row-strided view. `pdl: false`
   * launches a programmatic-dependent-launch kernel (small M, block mode) the plain way: B and its
   * scales are read before the kernel waits for its predecessor, so they must not be written by
   * anything still in flight in the stream (see `KernelSource.pdl`).
   */
  run(
    a: Tensor,
    aScales: Tensor,
    b: Tensor,
    bScales: Tensor,
    opts: { m?: number; bias?: Tensor; out?: Tensor; stream?: Stream; pdl?: boolean } = {},
  ): Tensor {
    const inputs = checkGemmInputs(this.op, { a, aScales, b, bScales, bias: opts.bias }, opts.m);
    const bucket = this.#bucket(inputs.M);
    const out = opts.out ?? Tensor.empty(this.op.outDtype, [inputs.M, this.op.N], { device: this.device });
    const ldc = checkGemmOut(this.op, out, inputs.M);
    bucket.run({ ...inputs, a, aScales, b, bScales, bias: opts.bias, out, ldc }, opts.stream, opts.pdl);
    return out;
  }
}

/**
 * Compile the kernels a scaled GEMM of `o.N × o.K` needs for every M up to `o.maxM` (or for `o.mValues`).
 *
 * @example
 * ```ts ignore
 * import { prepareBlockScaledMatmul } from "./block_matmul.ts";
 * const gemm = await prepareBlockScaledMatmul({ N: 2112, K: 7168, mValues: [1, 4, 16] });
 * gemm.run(a, aScales, b, bScales, { out: y }); // sync: capture it in a Graph
 * ```
 */
export async function prepareBlockScaledMatmul(o: BlockMatmulPrepareOptions): Promise<PreparedBlockMatmul> {
  const op = blockMatmulOp(o);
  const device = o.device ?? Device.get();
  const ups = o.mValues ? [...new Set(o.mValues)].sort((x, y) => x - y) : mBuckets(o.maxM ?? 16384);
  for (const u of ups) {
    if (!Number.isSafeInteger(u) || u < 1 || u > 2 ** 31 - 1) {
      throw new ArgumentError(o.mValues ? "mValues" : "maxM", "integers ≥ 1", String(u));
    }
  }
  const prepared = new Map<string, Promise<{ run: GemmRunner; align: number }>>();
  const buckets: Bucket[] = [];
  for (const u of ups) {
    const v = selectBlockMatmul(op, u, device, o.backend, o.smallM);
    let p = prepared.get(v.name);
    if (!p) {
      p = v.prepare(device).then((run) => ({ run, align: v.rowAlign }));
      prepared.set(v.name, p);
    }
    const { run, align } = await p;
    buckets.push({ upTo: u, name: v.name, run, align });
  }
  return new PreparedBlockMatmul(op, device, buckets);
}

/** The mode the operands imply: int8 operands, per-tensor (1 scale each), 2-D B scales (block), else channel. */
export function inferScaleMode(a: Tensor, aScales: Tensor, bScales: Tensor): ScaleMode {
  if (a.dtype === "i8") return "int8";
  if (aScales.numel === 1 && bScales.numel === 1 && bScales.rank <= 1) return "tensor";
  return bScales.rank === 2 && !(bScales.shape[1] === 1 && aScales.rank === 1) ? "block" : "channel";
}

/**
 * One-shot scaled GEMM (compiles on first use, cached): infers N, K, the mode and the scale/bias dtypes
 * from the tensors. Returns `out` (a new `[m, N]` tensor unless given).
 *
 * @example
 * ```ts ignore
 * import { blockScaledMatmul } from "./block_matmul.ts";
 * const y = await blockScaledMatmul(a, aScales, b, bScales, { m: 3 }); // a row-padded to 4 rows
 * ```
 */
export async function blockScaledMatmul(
  a: Tensor,
  aScales: Tensor,
  b: Tensor,
  bScales: Tensor,
  opts: {
    mode?: ScaleMode;
    m?: number;
    bias?: Tensor;
    out?: Tensor;
    outDtype?: "bf16" | "f16";
    backend?: GemmBackendChoice;
    stream?: Stream;
  } = {},
): Promise<Tensor> {
  if (b.rank !== 2) throw new ArgumentError("b", "a [N, K] tensor", `[${b.shape}]`);
  const M = opts.m ?? a.shape[0];
  if (!Number.isSafeInteger(M) || M < 1) throw new ArgumentError("m", "M ≥ 1 rows", String(M));
  const gemm = await prepareBlockScaledMatmul({
    mode: opts.mode ?? inferScaleMode(a, aScales, bScales),
    N: b.shape[0],
    K: b.shape[1],
    outDtype: opts.outDtype ?? (opts.out?.dtype === "f16" ? "f16" : "bf16"),
    aScaleDtype: aScales.dtype === "ue8m0" ? "ue8m0" : "f32",
    bScaleDtype: bScales.dtype === "ue8m0" ? "ue8m0" : "f32",
    bias: opts.bias ? (opts.bias.dtype as "f32" | "bf16" | "f16") : undefined,
    mValues: [Math.max(1, M)],
    backend: opts.backend,
    device: a.device,
  });
  return gemm.run(a, aScales, b, bScales, opts);
}
