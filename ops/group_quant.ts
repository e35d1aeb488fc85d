/**
 * Per-token-group quantization (DeepSeek-style FP8 activations) into row-padded, GEMM-ready buffers.
 *
 * `prepareGroupQuant` compiles once (async) and returns an object whose `run` is synchronous, launches
 * exactly one kernel (also with row padding: the tail rows are zero-filled by the same kernel), takes
 * optional preallocated outputs, and can be captured in a CUDA graph. `groupQuant` is the one-shot form.
 *
 * @example
 * ```ts ignore
 * import { groupQuant, prepareGroupQuant, Tensor } from "../mod.ts";
 * using x = Tensor.fromFloat("bf16", [5, 512], new Float32Array(5 * 512).map(() => Math.random() - 0.5));
 * const { q, scales, m, mPad } = await groupQuant(x, { rowAlign: 4, scaleLayout: "mmajor" });
 * console.log(q.shape, scales.shape, m, mPad); // [8, 512] [4, 8] 5 8
 * const gq = await prepareGroupQuant({ K: 512, rowAlign: 4, scaleLayout: "mmajor" });
 * const out = gq.allocate(5);
 * gq.run(x, out); // one launch, no allocation
 * ```
 * @module
 */
import { type Device, jit, type LoadedKernel, type Stream, Tensor } from "../runtime/mod.ts";
import { ArgumentError } from "../runtime/errors.ts";
import type { Arg } from "../runtime/launch.ts";
import type { DType } from "../dsl/dtype.ts";
import {
  GroupQuantOptionError,
  type GroupQuantOptions,
  groupQuantShapes,
  type GroupQuantSpec,
  resolveGroupQuant,
} from "../dsl/ops/group_quant.ts";
import { groupQuantKernel } from "../codegen/kernels/group_quant.ts";
import { type RowKernel, rowKernelArgs, rowKernelGrid } from "../codegen/expr/render.ts";
import type { Schedule } from "../codegen/expr/schedule.ts";

export type { GroupQuantOptions, GroupQuantSpec } from "../dsl/ops/group_quant.ts";

/** Options of {@linkcode prepareGroupQuant}. */
export interface PrepareGroupQuantOptions extends GroupQuantOptions {
  /** Columns of q (with fuseSiluMul the input has 2K columns). */
  K: number;
  /** Input dtype (default bf16). */
  inputDtype?: "bf16" | "f16";
  /** Prepare the masked-expert variant (`x` is `[E, T_pad, K or 2K]`); a tensor is bound as default. */
  maskedM?: Tensor | true;
  device?: Device;
  /** Override the family's schedule (tuning, tests). */
  schedule?: Schedule;
  /**
   * Build the programmatic-dependent-launch form (default false): on sm_90 the kernel lets the next
   * kernel (the GEMM, in fp8Linear) start streaming its weights while it runs, and waits for the
   * previous kernel before its first read or write. See `KernelSource.pdl`.
   */
  pdl?: boolean;
}

/** Output buffers (preallocate them to reuse them across calls or capture a graph). */
export interface GroupQuantOutputs {
  /** `[M_pad, K]` fp8/i8 codes (`[E, T_pad, K]` masked). */
  q: Tensor;
  /** f32 scales `[M_pad, K/G]` ("row") or the physical `[K/G, M_pad]` ("mmajor"); i32 `[ceil(K/G/4), M_pad]` packed. */
  scales: Tensor;
}

/** Result of a run. */
export interface GroupQuantResult extends GroupQuantOutputs {
  /** Rows computed. */
  m: number;
  /** Rows of q and scales (row padding), or T_pad when masked. */
  mPad: number;
}

/** Per-run options. */
export interface GroupQuantRunOptions {
  /** Tokens per expert (i32 `[E]`, masked variant). */
  maskedM?: Tensor;
  stream?: Stream;
  /** false: launch a `pdl`-prepared quantizer the plain way. */
  pdl?: boolean;
}

/** A compiled group quantizer. */
export interface PreparedGroupQuant {
  readonly spec: GroupQuantSpec;
  readonly kernel: LoadedKernel;
  readonly rowKernel: RowKernel;
  /** Output buffers for `m` rows (plain) or `experts × tokensPad` (masked). */
  allocate(m: number, masked?: { experts: number; tokensPad: number }): GroupQuantOutputs;
  /** Quantize `x` with one launch. Synchronous; errors name the bad argument before any launch. */
  run(x: Tensor, out?: GroupQuantOutputs, opts?: GroupQuantRunOptions): GroupQuantResult;
}

function fail(argument: string, expected: string, got: string): never {
  throw new ArgumentError(argument, expected, got);
}

function shapeStr(s: readonly number[]): string {
  return `[${s.join(", ")}]`;
}

function checkOut(what: string, t: Tensor, dtype: DType, shape: number[]): void {
  if (!(t instanceof Tensor)) fail(what, `a Tensor`, typeof t);
  if (t.dtype !== dtype) fail(`${what}.dtype`, dtype, t.dtype);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    fail(`${what}.shape`, shapeStr(shape), shapeStr(t.shape));
  }
  if (!t.isContiguous) fail(`${what}`, "a contiguous tensor", `strides ${shapeStr(t.strides)}`);
  if (t.ptr % 16n !== 0n) fail(`${what}`, "a 16-byte aligned address", `0x${t.ptr.toString(16)}`);
}

/**
 * The kernel arguments and the grid of one run, in the kernel's parameter order (pure: the GPU path
 * and the tests' CPU emulator share it). `xLd` is the input's row stride in elements; the scale buffer's
 * leading dimension is M_pad (T_pad masked) for M-major and packed scales, K / G for row-major ones.
 *
 * @example
 * ```ts
 * import { resolveGroupQuant } from "../dsl/ops/group_quant.ts";
 * import { groupQuantKernel } from "../codegen/kernels/group_quant.ts";
 * import { groupQuantLaunch } from "./group_quant.ts";
 * const spec = resolveGroupQuant(512, "bf16", { scaleLayout: "mmajor", rowAlign: 4 });
 * const rk = groupQuantKernel(spec);
 * const { args, grid } = groupQuantLaunch(spec, rk, { m: 5, mPad: 8, xLd: 512 }, { x: 1, q: 2, scales: 3 });
 * console.log(args, grid); // [1, 512, 2, 512, 3, 8, 5, 8] [1, 1, 1]
 * ```
 */
export function groupQuantLaunch<T>(
  spec: GroupQuantSpec,
  rk: RowKernel,
  g: { m: number; mPad: number; experts?: number; xLd: number; smCount?: number },
  b: { x: T; q: T; scales: T; maskedM?: T },
): { args: (T | number)[]; grid: [number, number, number] } {
  const sLd = spec.packUe8m0 || spec.scaleLayout === "mmajor" ? g.mPad : spec.K / spec.groupSize;
  const values: Record<string, T | number> = {
    i_x: b.x,
    i_x_ld: g.xLd,
    o_q: b.q,
    o_q_ld: spec.K,
    o_s: b.scales,
    o_s_ld: sLd,
    m: g.m,
    rows: g.mPad,
  };
  if (spec.masked) {
    if (b.maskedM === undefined) fail("maskedM", "an i32 tensor [E] (masked variant)", "nothing");
    Object.assign(values, { masked_m: b.maskedM, tokens_pad: g.mPad });
  }
  const grid = rowKernelGrid(
    rk,
    spec.masked ? { experts: g.experts ?? 0, tokensPad: g.mPad, smCount: g.smCount } : { rows: g.mPad },
  );
  return { args: rowKernelArgs(rk, values), grid };
}

/**
 * Compile the quantizer for `opts` (async; through the kernel cache) and return its synchronous runner.
 *
 * @example
 * ```ts ignore
 * const gq = await prepareGroupQuant({ K: 7168, rowAlign: 4, scaleLayout: "mmajor" });
 * const { q, scales, mPad } = gq.run(x);
 * ```
 */
export async function prepareGroupQuant(opts: PrepareGroupQuantOptions): Promise<PreparedGroupQuant> {
  let spec: GroupQuantSpec;
  try {
    spec = resolveGroupQuant(opts.K, opts.inputDtype ?? "bf16", {
      ...opts,
      masked: opts.maskedM !== undefined,
    });
  } catch (e) {
    if (e instanceof GroupQuantOptionError) fail(e.option, e.expected, e.got);
    throw e;
  }
  const rk = groupQuantKernel(spec, opts.schedule, { pdl: opts.pdl });
  const kernel = await jit(rk.source, { device: opts.device });
  const boundMasked = opts.maskedM instanceof Tensor ? opts.maskedM : undefined;
  const W = spec.fuseSiluMul ? 2 * spec.K : spec.K;
  const smCount = kernel.device.info.smCount;
  const dev = opts.device;

  const allocate = (m: number, masked?: { experts: number; tokensPad: number }): GroupQuantOutputs => {
    const sh = groupQuantShapes(spec, { m, experts: masked?.experts, tokensPad: masked?.tokensPad });
    return {
      q: Tensor.empty(sh.q.dtype, sh.q.shape, { device: dev }),
      scales: Tensor.empty(sh.scales.dtype, sh.scales.shape, { device: dev }),
    };
  };

  const run = (x: Tensor, out?: GroupQuantOutputs, ro: GroupQuantRunOptions = {}): GroupQuantResult => {
    if (!(x instanceof Tensor)) fail("x", "a Tensor", typeof x);
    if (x.dtype !== spec.inDtype) {
      fail("x.dtype", `${spec.inDtype} (prepared with inputDtype ${spec.inDtype})`, x.dtype);
    }
    const rank = spec.masked ? 3 : 2;
    if (x.rank !== rank || x.shape[rank - 1] !== W) {
      fail("x.shape", spec.masked ? `[E, T_pad, ${W}]` : `[M, ${W}]`, shapeStr(x.shape));
    }
    if (x.strides[rank - 1] !== 1 && x.shape[rank - 1] > 1) {
      fail("x.strides", "unit stride along the last dim", shapeStr(x.strides));
    }
    const ld = x.strides[rank - 2];
    if (x.shape[rank - 2] > 1 && (ld < W || ld % 8 !== 0)) {
      fail("x.strides", `a row stride ≥ ${W} and a multiple of 8 elements (16 bytes)`, shapeStr(x.strides));
    }
    if (spec.masked && x.shape[0] > 1 && x.strides[0] !== x.shape[1] * ld) {
      fail(
        "x.strides",
        "experts laid out back to back ([E, T_pad] rows evenly strided)",
        shapeStr(x.strides),
      );
    }
    if (x.ptr % 16n !== 0n) fail("x", "a 16-byte aligned address", `0x${x.ptr.toString(16)}`);
    let m: number, mPad: number, experts = 0;
    const maskedM = ro.maskedM ?? boundMasked;
    if (spec.masked) {
      experts = x.shape[0];
      m = mPad = x.shape[1];
      if (!(maskedM instanceof Tensor)) {
        fail("maskedM", "an i32 tensor [E] (masked variant)", String(maskedM));
      }
      if (maskedM.dtype !== "i32" || maskedM.rank !== 1 || maskedM.shape[0] !== experts) {
        fail("maskedM", `i32 [${experts}]`, `${maskedM.dtype} ${shapeStr(maskedM.shape)}`);
      }
    } else {
      m = x.shape[0];
      mPad = Math.ceil(m / spec.rowAlign) * spec.rowAlign;
    }
    if (mPad * (spec.masked ? experts : 1) > 2 ** 31 - 1) {
      fail("x.shape", "fewer than 2^31 rows", shapeStr(x.shape));
    }
    const sh = groupQuantShapes(spec, { m, experts, tokensPad: mPad });
    const o = out ?? allocate(m, spec.masked ? { experts, tokensPad: mPad } : undefined);
    checkOut("out.q", o.q, sh.q.dtype, sh.q.shape);
    checkOut("out.scales", o.scales, sh.scales.dtype, sh.scales.shape);
    const { args, grid } = groupQuantLaunch<Arg>(spec, rk, { m, mPad, experts, xLd: ld, smCount }, {
      x,
      q: o.q,
      scales: o.scales,
      maskedM,
    });
    kernel.launch(grid, args, { stream: ro.stream, pdl: ro.pdl === false ? false : undefined });
    return { q: o.q, scales: o.scales, m, mPad };
  };

  return { spec, kernel, rowKernel: rk, allocate, run };
}

const prepared = new Map<string, Promise<PreparedGroupQuant>>();

/** Options of {@linkcode groupQuant}: the family's options plus masked experts. */
export interface GroupQuantCallOptions extends GroupQuantOptions {
  /** Tokens per expert (i32 `[E]`); `x` is then `[E, T_pad, K or 2K]`. */
  maskedM?: Tensor;
}

/**
 * Quantize `x` (`[M, K]` bf16/f16, or `[M, 2K]` with fuseSiluMul) in groups along K (one-shot form;
 * the compiled kernel is cached). Returns `[M_pad, K]` codes and the scales in the requested layout.
 *
 * @example
 * ```ts ignore
 * const { q, scales, m, mPad } = await groupQuant(x, { groupSize: 128, rowAlign: 4, scaleLayout: "mmajor" });
 * ```
 */
export async function groupQuant(x: Tensor, opts: GroupQuantCallOptions = {}): Promise<GroupQuantResult> {
  if (!(x instanceof Tensor)) fail("x", "a Tensor", typeof x);
  if (x.rank < 1) fail("x.shape", "[M, K]", shapeStr(x.shape));
  const W = x.shape[x.rank - 1];
  if (opts.fuseSiluMul && W % 2 !== 0) {
    fail("x.shape", "an even last dimension with fuseSiluMul ([..., 2H])", shapeStr(x.shape));
  }
  const K = opts.fuseSiluMul ? W / 2 : W;
  if (x.dtype !== "bf16" && x.dtype !== "f16") fail("x.dtype", "bf16 or f16", x.dtype);
  const { maskedM, ...rest } = opts;
  const key = JSON.stringify({
    K,
    d: x.dtype,
    dev: x.device.info.ordinal,
    masked: maskedM !== undefined,
    ...rest,
  });
  let p = prepared.get(key);
  if (!p) {
    p = prepareGroupQuant({
      ...rest,
      K,
      inputDtype: x.dtype,
      maskedM: maskedM ? true : undefined,
      device: x.device,
    });
    prepared.set(key, p);
    p.catch(() => prepared.delete(key));
  }
  return (await p).run(x, undefined, { maskedM });
}
