/**
 * Blockwise-scaled FP8 GEMM on Hopper tensor cores (sm_90a: wgmma + TMA), the public face of the
 * `codegen/kernels/gemm_sm90` ladder. `out[m, n] = bf16(Σ_kb sa·sb·Σ_k A[m,k]·B[n,k])` with the operand
 * contract of quant-spec §4 (see `codegen/kernels/gemm_sm90/config.ts` for the three scale modes).
 *
 * `prepareGemmSm90` picks a kernel (the autotuner's cached choice for this device and shape bucket when
 * there is one, else {@linkcode chooseSm90Config}), compiles it, and returns a plan whose `run` is
 * synchronous: it validates, re-encodes a tensor map only when an operand's address or shape changed,
 * and launches once — so it can sit on a hot path and be captured in a CUDA graph.
 *
 * @example
 * ```ts ignore
 * import { prepareGemmSm90 } from "./gemm_sm90.ts";
 * const plan = await prepareGemmSm90({ M: 4096, N: 7168, K: 7168 });
 * plan.run(a, aScale, b, bScale, out); // a [4096, 7168] fp8, aScale [56, 4096] f32, b [7168, 7168] fp8, ...
 * ```
 * @module
 */
import {
  ArgumentError,
  Device,
  encodeTensorMap,
  jit,
  type LoadedKernel,
  type Stream,
  type Swizzle,
  Tensor,
} from "../runtime/mod.ts";
import {
  assertSm90Config,
  gemmSm90Kernel,
  SM90_BLOCK_K,
  type Sm90Config,
  sm90ConfigProblems,
  sm90Deferred,
  sm90MaxStages,
  sm90Persistent,
  type Sm90ScaleMode,
  sm90SharedOperand,
  sm90StoreBox,
  sm90StoreRows,
} from "../codegen/kernels/gemm_sm90/mod.ts";
import { chooseSm90Config, sm90Grid, sm90TileGroup } from "../codegen/kernels/gemm_sm90/heuristic.ts";
import { lookupTuned } from "./autotune.ts";
import type { BlockMatmulOp } from "../dsl/ops/block_matmul.ts";

export type { Sm90Config, Sm90ScaleMode, Sm90Step } from "../codegen/kernels/gemm_sm90/mod.ts";
export { autotuneGemmSm90, type TunedEntry, type TuneResult } from "./autotune.ts";
export {
  chooseSm90Config,
  SM90_STEP_MODEL,
  sm90Candidates,
  sm90Grid,
  sm90ModelClocks,
  sm90TileGroup,
  sm90Widths,
} from "../codegen/kernels/gemm_sm90/heuristic.ts";

/** Problem size: out is `[M, N]`, the reduction is over K. */
export interface GemmSm90Shape {
  M: number;
  N: number;
  K: number;
}

/** Options of {@linkcode prepareGemmSm90}. */
export interface GemmSm90Options {
  /** Scale mode (default "block"). */
  mode?: Sm90ScaleMode;
  /** Fields that override the chosen config (e.g. `{ step: "b" }` to run one rung of the ladder). */
  config?: Partial<Sm90Config>;
  /** Use the autotuner's cached choice when one exists (default true; ignored when `config` is given). */
  tuned?: boolean;
  /**
   * Persistent steps: N tiles (N-tile pairs with clusters along N) per group of the tile order, instead of
   * {@linkcode sm90TileGroup}'s choice for the L2 footprint of one wave.
   */
  group?: number;
  device?: Device;
}

/**
 * `base` with the caller's overrides: an overridden step a/b gets the register epilogue, an overridden
 * tile gets the deepest ring that fits, and N % 8 ≠ 0 (rows not 16-byte aligned) forbids the TMA store.
 * Step-specific fields (`chunk` of e/f, `pingpong` of g) are dropped when the step changes.
 *
 * @example
 * ```ts
 * import { chooseSm90Config, resolveSm90Config } from "./gemm_sm90.ts";
 * const c = resolveSm90Config(chooseSm90Config(4096, 7168, 7168), { step: "b" }, "block", 7168);
 * console.log(c.epilogue); // direct
 * ```
 */
export function resolveSm90Config(
  base: Sm90Config,
  over: Partial<Sm90Config> | undefined,
  mode: Sm90ScaleMode,
  N: number,
): Sm90Config {
  const c: Sm90Config = { ...base, ...over, mode };
  const stepChanged = over?.step !== undefined && over.step !== base.step;
  if (!sm90Deferred(c) || (over?.chunk === undefined && stepChanged)) {
    delete c.chunk; // a chunk length belongs to the deferred step it was chosen for
  }
  if (c.step !== "g" || (over?.pingpong === undefined && stepChanged)) {
    delete c.pingpong; // so is step g's ping-pong switch
  }
  if (c.step !== "g" || (over?.overlap === undefined && stepChanged)) delete c.overlap; // and its overlap
  if (c.step !== "g" || (over?.multicast === undefined && stepChanged)) delete c.multicast; // and multicast
  if (c.blockM === 256 && over?.blockM === undefined && sm90ConfigProblems(c).length > 0) {
    c.blockM = 128; // the default's 256-row tile belongs to step g at ≤ 128 columns: other asks get 128 rows
  }
  if (over?.epilogue === undefined) {
    c.epilogue = c.step === "a" || c.step === "b" || N % 8 !== 0 ? "direct" : "tma";
  }
  if (over?.stages === undefined) c.stages = Math.min(base.stages, sm90MaxStages(c));
  if (over?.stages === undefined && (over?.blockN !== undefined || over?.blockM !== undefined)) {
    c.stages = sm90MaxStages(c);
  }
  return c;
}

/** A compiled GEMM ready to run many times. */
export interface GemmSm90Plan {
  readonly config: Sm90Config;
  readonly kernel: LoadedKernel;
  readonly N: number;
  readonly K: number;
  /**
   * out[M, N] = A·Bᵀ with scales. `a` fp8e4m3 `[P ≥ M, K]` (row-padded buffers welcome), `b` fp8e4m3
   * `[N, K]`, `out` bf16 `[M, N]` (M is read from it); scales per the plan's mode. Synchronous, one launch.
   */
  run(a: Tensor, aScale: Tensor, b: Tensor, bScale: Tensor, out: Tensor, opts?: { stream?: Stream }): void;
}

function checkMat(t: Tensor, what: string, dtype: string, shape: readonly number[], tma = true): void {
  if (t.dtype !== dtype) throw new ArgumentError(what, `a ${dtype} tensor`, `${t.dtype}`);
  const ok = t.rank === shape.length && shape.every((d, i) => d < 0 || t.shape[i] === d);
  if (!ok) {
    throw new ArgumentError(
      what,
      `shape [${shape.map((d) => (d < 0 ? "*" : d)).join(", ")}]`,
      `[${t.shape}]`,
    );
  }
  if (!t.isContiguous) throw new ArgumentError(what, "a contiguous tensor", `strides [${t.strides}]`);
  if (tma && t.ptr % 16n !== 0n) {
    throw new ArgumentError(what, "a 16-byte aligned address (TMA)", `0x${t.ptr.toString(16)}`);
  }
}

function checkShape(s: GemmSm90Shape): void {
  for (const k of ["M", "N", "K"] as const) {
    if (!Number.isSafeInteger(s[k]) || s[k] < 1 || s[k] > 2 ** 31 - 1) {
      throw new ArgumentError(k, "an integer in 1..2^31-1", String(s[k]));
    }
  }
  if (s.K % SM90_BLOCK_K !== 0) {
    throw new ArgumentError("K", "a multiple of 128 (one scale block)", String(s.K));
  }
}

/** Tensor maps keyed by what they encode, re-encoded only when an address or a shape changes. */
class MapCache {
  #maps = new Map<string, Uint8Array>();
  get(
    kind: string,
    dtype: Tensor["dtype"],
    ptr: bigint,
    dims: number[],
    strides: number[],
    box: number[],
    swizzle: Swizzle,
  ) {
    const key = `${kind}|${ptr}|${dims}|${box}`;
    let m = this.#maps.get(key);
    if (!m) {
      if (this.#maps.size >= 64) this.#maps.clear();
      m = encodeTensorMap({ dtype, address: ptr, dims, strides, box, swizzle, l2Promotion: 3 });
      this.#maps.set(key, m);
    }
    return m;
  }
}

/**
 * Compile the sm_90a GEMM for (N, K) and an expected M (which picks the tiles), in `mode`.
 *
 * @example
 * ```ts ignore
 * import { prepareGemmSm90 } from "./gemm_sm90.ts";
 * const plan = await prepareGemmSm90({ M: 1024, N: 7168, K: 2048 }, { mode: "block" });
 * plan.run(a, sa, b, sb, out);
 * ```
 */
export async function prepareGemmSm90(
  shape: GemmSm90Shape,
  opts: GemmSm90Options = {},
): Promise<GemmSm90Plan> {
  checkShape(shape);
  if (opts.group !== undefined && !(Number.isInteger(opts.group) && opts.group >= 1)) {
    throw new ArgumentError("group", "an integer ≥ 1 (N tiles per group of the tile order)", `${opts.group}`);
  }
  const { M, N, K } = shape;
  const device = opts.device ?? Device.get();
  if (device.info.cc !== 90) {
    throw new ArgumentError(
      "device",
      "an sm_90 GPU (H100/H200: wgmma and TMA are sm_90a-only)",
      device.info.name,
    );
  }
  const mode = opts.mode ?? "block";
  const sms = device.info.smCount;
  const tuned = opts.config || opts.tuned === false
    ? undefined
    : await lookupTuned(device.info.name, shape, mode);
  const config = resolveSm90Config(tuned ?? chooseSm90Config(M, N, K, mode, device), opts.config, mode, N);
  assertSm90Config(config);
  const kernel = await jit(gemmSm90Kernel(config), { device });
  const maps = new MapCache();
  const kb = K / SM90_BLOCK_K, nbScale = Math.ceil(N / 128);
  const shared = sm90SharedOperand(config); // the operand a 2-CTA cluster splits and multicasts
  const aBox = [SM90_BLOCK_K, config.blockM / (shared === "a" ? 2 : 1)];
  const bBox = [SM90_BLOCK_K, config.blockN / (shared === "b" ? 2 : 1)];
  const store = sm90StoreBox(config.blockN);
  const swz: Swizzle = store.swizzleBytes === 128 ? "128B" : store.swizzleBytes === 64 ? "64B" : "32B";
  const args: (Uint8Array | Tensor | number)[] = [];

  const run = (
    a: Tensor,
    aScale: Tensor,
    b: Tensor,
    bScale: Tensor,
    out: Tensor,
    o?: { stream?: Stream },
  ) => {
    if (out.rank !== 2 || out.shape[1] !== N || out.shape[0] < 1) {
      throw new ArgumentError("out", `a bf16 [M ≥ 1, ${N}] tensor`, `[${out.shape}]`);
    }
    const m = out.shape[0];
    checkMat(out, "out", "bf16", [m, N]);
    checkMat(a, "a", "fp8e4m3", [-1, K]);
    const rowsA = a.shape[0]; // ≥ M; TMA zero-fills rows past the buffer, so no multiple-of-4 rule for A
    if (rowsA < m) throw new ArgumentError("a", `[P ≥ ${m}, ${K}]`, `[${a.shape}]`);
    checkMat(b, "b", "fp8e4m3", [N, K]);
    let saStride = 0;
    if (mode === "block") {
      checkMat(aScale, "aScale", "f32", [kb, -1]);
      saStride = aScale.shape[1];
      if (saStride < m || saStride % 4 !== 0) {
        throw new ArgumentError(
          "aScale",
          `M-major [${kb}, P] with P ≥ ${m} a multiple of 4 (16-byte TMA rows)`,
          `[${aScale.shape}]`,
        );
      }
      checkMat(bScale, "bScale", "f32", [nbScale, kb], false);
    } else if (mode === "tensor") {
      checkMat(aScale, "aScale", "f32", [1], false);
      checkMat(bScale, "bScale", "f32", [1], false);
    } else {
      checkMat(aScale, "aScale", "f32", [-1], false);
      if (aScale.shape[0] < m) throw new ArgumentError("aScale", `per-token [P ≥ ${m}]`, `[${aScale.shape}]`);
      checkMat(bScale, "bScale", "f32", [N], false);
    }
    args.length = 0;
    args.push(maps.get("A", "fp8e4m3", a.ptr, [K, rowsA], [K], aBox, "128B"));
    args.push(maps.get("B", "fp8e4m3", b.ptr, [K, N], [K], bBox, "128B"));
    if (mode === "block") {
      args.push(
        maps.get("SA", "f32", aScale.ptr, [saStride, kb], [saStride * 4], [config.blockM, 1], "none"),
      );
    }
    if (config.epilogue === "tma") {
      args.push(maps.get("D", "bf16", out.ptr, [N, m], [N * 2], [store.cols, sm90StoreRows(config)], swz));
    } else args.push(out);
    if (mode !== "block") args.push(aScale);
    args.push(bScale, m, N, K);
    if (sm90Persistent(config)) args.push(opts.group ?? sm90TileGroup(config, m, N, sms));
    kernel.launch(sm90Grid(config, m, N, sms), args, { stream: o?.stream });
  };
  return { config, kernel, N, K, run };
}

/**
 * One-shot convenience: compile (cached) and run. Returns `out` (allocated `[M, N]` bf16 when not given).
 *
 * @example
 * ```ts ignore
 * import { gemmSm90 } from "./gemm_sm90.ts";
 * const y = await gemmSm90(a, aScale, b, bScale, { M: 3 }); // a is [4, K]: rows padded to 4
 * ```
 */
export async function gemmSm90(
  a: Tensor,
  aScale: Tensor,
  b: Tensor,
  bScale: Tensor,
  opts: GemmSm90Options & { M?: number; out?: Tensor } = {},
): Promise<Tensor> {
  const M = opts.out?.shape[0] ?? opts.M ?? a.shape[0];
  const N = b.shape[0], K = b.shape[1];
  const plan = await prepareGemmSm90({ M, N, K }, opts);
  const out = opts.out ?? Tensor.empty("bf16", [M, N], { device: opts.device });
  plan.run(a, aScale, b, bScale, out);
  return out;
}

/**
 * Why part 1's op descriptor cannot run on this path, or undefined when it can: fp8 e4m3 operands in the
 * block / tensor / channel modes, fp32 scales, bf16 output, no bias (int8, ue8m0 scales, f16 output and
 * bias stay on part 1's mma.sync kernels for now).
 *
 * @example
 * ```ts
 * import { sm90Unsupported } from "./gemm_sm90.ts";
 * const op = { mode: "int8", N: 256, K: 512, outDtype: "bf16", aScaleDtype: "f32", bScaleDtype: "f32" } as const;
 * console.log(sm90Unsupported(op)); // int8 operands (...)
 * ```
 */
export function sm90Unsupported(op: BlockMatmulOp): string | undefined {
  if (op.mode === "int8") return "int8 operands (wgmma s8 is not generated here)";
  if (op.aScaleDtype !== "f32" || op.bScaleDtype !== "f32") return "ue8m0 scales";
  if (op.outDtype !== "bf16") return `${op.outDtype} output`;
  if (op.bias) return "a bias";
  return undefined;
}

/**
 * Whether this path should serve an (M, N, K) problem on `device` (for fp8Linear's dispatch): an sm_90
 * device, an op it supports, and M large enough that 64-row wgmma tiles are not mostly padding (below
 * that, part 1's small-M kernels stream the weights faster).
 *
 * @example
 * ```ts
 * import { sm90Preferred } from "./gemm_sm90.ts";
 * console.log(sm90Preferred(4096, 7168, 7168, { info: { cc: 90 } })); // true
 * ```
 */
export function sm90Preferred(
  M: number,
  N: number,
  K: number,
  device: { info: { cc: number } },
  op?: BlockMatmulOp,
): boolean {
  if (op && sm90Unsupported(op)) return false;
  return device.info.cc === 90 && K % SM90_BLOCK_K === 0 && M > 64 && N >= 64;
}
