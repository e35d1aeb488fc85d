/**
 * TurboQuant KV cache on the GPU: Walsh–Hadamard rotate + quantize K/V into a paged cache
 * (`u8[numBlocks, pageSize, Hk, slotBytes]`, vLLM's `turboquant_*` byte format), and decode attention
 * over it (split-KV with a log-sum-exp merge, GQA, block tables, ragged lengths).
 *
 * `prepareTurboQuant` compiles the kernels once; the returned object's `store` and `decode` are
 * synchronous launches (no allocation, no host sync) so they can run on a hot path and inside a CUDA
 * graph — call `decode` once with the largest batch before capturing, or pass `maxBatch`, so its
 * split-KV workspace exists. Bad input throws {@linkcode ArgumentError} before anything is launched.
 *
 * @example
 * ```ts ignore
 * import { prepareTurboQuant } from "./turboquant.ts";
 * const tq = await prepareTurboQuant({ preset: "turboquant_4bit_nc", headDim: 128, numKvHeads: 8, numHeads: 32 });
 * using cache = tq.allocateCache(1024);                  // 1024 pages of 16 tokens
 * tq.store(k, v, slotMapping, cache);                    // k, v: bf16 [T, 8, 128]; slotMapping: i32 [T]
 * const out = tq.decode(q, cache, blockTables, seqLens); // q: bf16 [B, 32, 128] → out bf16 [B, 32, 128]
 * ```
 * @module
 */
import { ArgumentError, ctasPerSm, Device, jit, type LoadedKernel, Tensor } from "../runtime/mod.ts";
import {
  checkSigns,
  signMaskWords,
  TURBOQUANT_BLOCK_SIZES,
  turboQuantBytesPerToken,
  type TurboQuantLayout,
  turboQuantLayout,
  type TurboQuantPreset,
  turboQuantPreset,
} from "../dsl/turboquant/mod.ts";
import { tqStoreGrid, tqStoreKernel } from "../codegen/kernels/tq_store.ts";
import { tqDecodeGeometry, tqDecodeKernel, tqDecodeMmaProblem } from "../codegen/kernels/tq_decode.ts";
import {
  tqDecodeV2Geometry,
  tqDecodeV2Kernel,
  tqDecodeV3Kernel,
  tqDecodeV3Problem,
} from "../codegen/kernels/tq_decode_v2.ts";
import {
  type TqDecodeKernelOptions,
  tqDecodeSimpleKernel,
  tqMergeKernel,
} from "../codegen/kernels/tq_decode_simple.ts";

export {
  defineTurboQuantPreset,
  TURBOQUANT_BLOCK_SIZES,
  TURBOQUANT_PRESET_NAMES,
  TURBOQUANT_PRESETS,
  turboQuantCapacity,
  type TurboQuantCodebook,
  type TurboQuantKeyCodec,
  type TurboQuantLayout,
  turboQuantLayout,
  type TurboQuantPreset,
  turboQuantPreset,
  type TurboQuantValueCodec,
} from "../dsl/turboquant/mod.ts";

/** Options of {@linkcode prepareTurboQuant}. */
export interface TurboQuantOptions {
  /** A preset name (`turboquant_k8v4`, `turboquant_4bit_nc`, `turboquant_k3v4_nc`, `turboquant_3bit_nc`) or object. */
  preset: string | TurboQuantPreset;
  headDim: number;
  numKvHeads: number;
  /** Query heads (a multiple of numKvHeads); default numKvHeads. */
  numHeads?: number;
  /** Tokens per cache page: 16, 32, 64 or 128 (default 16). */
  pageSize?: number;
  /** Element type of K, V, Q and the output (default bf16). */
  dtype?: "bf16" | "f16";
  /** Per-layer ±1 sign vector applied before the rotation (keys and queries); default none. */
  signs?: ArrayLike<number>;
  /** Softmax scale (default 1/√headDim). */
  scale?: number;
  /** Upper bound on KV splits per sequence (default 32). */
  maxSplits?: number;
  /** Preallocate the split-KV workspace for this many sequences. */
  maxBatch?: number;
  /**
   * Decode kernel: "auto" (default) takes version 3 on sm_90 (always when one CTA holds every KV head,
   * Hk ≤ 8; else when its row copies are whole 16-byte units) — H200, Hq 32 Hk 8 D 128: 2.2–2.7× bf16
   * SDPA, against 1.4–2.1× for version 2; Hk 4: 4bit_nc B 64 × 8k 150 vs 185 µs — else the faster older version for the key format — version 1 for fp8 keys, version 2
   * for centroid keys — or the CUDA-core one when the preset is outside the tensor-core kernels; or
   * force one: "mma3" (bulk tile copies on mbarriers, key table), "mma" (version 2: per-warp cp.async
   * pipelines, in-kernel split merge), "mma1" (version 1), "simple" (CUDA cores, any preset).
   */
  decodeKernel?: "auto" | "mma3" | "mma" | "mma1" | "simple";
  device?: Device;
}

/** A prepared TurboQuant cache format with its compiled kernels. */
export interface TurboQuant {
  readonly layout: TurboQuantLayout;
  readonly numKvHeads: number;
  readonly numHeads: number;
  readonly pageSize: number;
  readonly dtype: "bf16" | "f16";
  readonly device: Device;
  /** Bytes one (token, KV head) takes in the cache. */
  readonly slotBytes: number;
  /** Cache bytes per token of one layer (all KV heads). */
  readonly bytesPerToken: number;
  /** Which decode kernel runs: "mma3" / "mma" / "mma1" (tensor cores, versions 3 / 2 / 1) or "simple". */
  readonly decodeKernel: "mma3" | "mma" | "mma1" | "simple";
  /** A zeroed cache `u8[numBlocks, pageSize, numKvHeads, slotBytes]`. */
  allocateCache(numBlocks: number): Tensor;
  /**
   * Quantize `k`, `v` (`[T, Hk, D]` or `[T, Hk·D]`, token stride free) into `cache` at `slotMapping[t]`
   * (negative: skipped). A device slot past the cache is skipped and reported by {@linkcode checkStatus};
   * a host Int32Array is checked here.
   */
  store(k: Tensor, v: Tensor, slotMapping: Tensor | Int32Array, cache: Tensor): void;
  /** Attention of `q [B, Hq, D]` over the cached tokens; returns `out` (allocated when not given). */
  decode(
    q: Tensor,
    cache: Tensor,
    blockTables: Tensor,
    seqLens: Tensor,
    out?: Tensor,
    opts?: { numSplits?: number },
  ): Tensor;
  /** Wait for the stores and throw if any slot was past the cache (then reset the report). */
  checkStatus(): void;
  dispose(): void;
  [Symbol.dispose](): void;
}

const bad = (arg: string, expected: string, got: string): never => {
  throw new ArgumentError(arg, expected, got);
};
const shapeStr = (t: Tensor) => `${t.dtype}[${t.shape.join(", ")}]`;

/**
 * Compile the store, decode and merge kernels for one cache format. Throws ArgumentError for an
 * unknown preset, a head dim the preset cannot take, a bad page size or head counts.
 */
export async function prepareTurboQuant(o: TurboQuantOptions): Promise<TurboQuant> {
  let preset: TurboQuantPreset, layout: TurboQuantLayout;
  try {
    preset = turboQuantPreset(o.preset);
  } catch (e) {
    return bad("preset", "a TurboQuant preset", (e as Error).message);
  }
  try {
    layout = turboQuantLayout(preset, o.headDim);
  } catch (e) {
    return bad("headDim", `a head dim ${preset.name} takes`, (e as Error).message);
  }
  const D = layout.headDim, Hk = o.numKvHeads, Hq = o.numHeads ?? Hk, BS = o.pageSize ?? 16;
  const dtype = o.dtype ?? "bf16";
  if (!Number.isInteger(Hk) || Hk < 1) bad("numKvHeads", "a positive integer", String(Hk));
  if (!Number.isInteger(Hq) || Hq < 1 || Hq % Hk !== 0) {
    bad("numHeads", `a positive multiple of numKvHeads (${Hk})`, String(Hq));
  }
  if (!TURBOQUANT_BLOCK_SIZES.includes(BS)) bad("pageSize", TURBOQUANT_BLOCK_SIZES.join(" | "), String(BS));
  if (dtype !== "bf16" && dtype !== "f16") bad("dtype", "bf16 | f16", String(dtype));
  const signs = o.signs ? checkSigns(o.signs, D) : undefined;
  const device = o.device ?? Device.get();
  const dk: TqDecodeKernelOptions = {
    layout,
    inDtype: dtype,
    numHeads: Hq,
    numKvHeads: Hk,
    blockSize: BS,
    signs: !!signs,
  };
  const mmaProblem = tqDecodeMmaProblem(dk);
  const want = o.decodeKernel ?? "auto";
  if (want !== "auto" && want !== "mma3" && want !== "mma" && want !== "mma1" && want !== "simple") {
    bad("decodeKernel", "auto | mma3 | mma | mma1 | simple", String(want));
  }
  if ((want === "mma3" || want === "mma" || want === "mma1") && mmaProblem) {
    bad("decodeKernel", "a preset the tensor-core kernel takes", mmaProblem);
  }
  const v3Problem = device.info.cc < 90
    ? "version 3 needs sm_90 (bulk copies, mbarriers)"
    : tqDecodeV3Problem(dk);
  if (want === "mma3" && v3Problem) bad("decodeKernel", "a preset and head count version 3 takes", v3Problem);
  const kind = want === "simple" || mmaProblem || device.info.cc < 80
    ? "simple"
    : want === "auto"
    ? (v3Problem ? (layout.keyFp8 ? "mma1" : "mma") : "mma3")
    : want;
  const [kStore, kDecode, kMerge] = await Promise.all([
    jit(tqStoreKernel({ layout, inDtype: dtype, numKvHeads: Hk, signs: !!signs }), { device }),
    jit(
      kind === "mma3"
        ? tqDecodeV3Kernel(dk)
        : kind === "mma"
        ? tqDecodeV2Kernel(dk)
        : kind === "mma1"
        ? tqDecodeKernel(dk)
        : tqDecodeSimpleKernel(dk),
      { device },
    ),
    jit(tqMergeKernel({ headDim: D, inDtype: dtype }), { device }),
  ]);
  return new TurboQuantImpl(o, layout, dtype, Hk, Hq, BS, signs, device, kind, kStore, kDecode, kMerge);
}

class TurboQuantImpl implements TurboQuant {
  readonly slotBytes: number;
  readonly bytesPerToken: number;
  readonly decodeKernel: "mma3" | "mma" | "mma1" | "simple";
  #status: Tensor;
  #counters?: Tensor;
  #signs?: Tensor;
  #slots?: Tensor;
  #partO?: Tensor;
  #partLse?: Tensor;
  #scaleLog2: number;
  #maxSplits: number;
  #groups: number;
  #storeCtas: number;

  constructor(
    o: TurboQuantOptions,
    readonly layout: TurboQuantLayout,
    readonly dtype: "bf16" | "f16",
    readonly numKvHeads: number,
    readonly numHeads: number,
    readonly pageSize: number,
    signs: Int8Array | undefined,
    readonly device: Device,
    kind: "mma3" | "mma" | "mma1" | "simple",
    readonly kStore: LoadedKernel,
    readonly kDecode: LoadedKernel,
    readonly kMerge: LoadedKernel,
  ) {
    this.slotBytes = layout.slotBytesAligned;
    this.bytesPerToken = turboQuantBytesPerToken(layout, numKvHeads);
    this.decodeKernel = kind;
    this.#scaleLog2 = (o.scale ?? 1 / Math.sqrt(layout.headDim)) * Math.LOG2E;
    this.#maxSplits = Math.max(1, Math.floor(o.maxSplits ?? 32));
    const dk = { layout, inDtype: dtype, numHeads, numKvHeads, blockSize: pageSize };
    this.#groups = kind === "mma" || kind === "mma3"
      ? tqDecodeV2Geometry(dk).headGroups
      : kind === "mma1"
      ? tqDecodeGeometry(dk).headGroups
      : numKvHeads;
    this.#status = Tensor.empty("i32", [4], { device }).fill(0);
    this.#storeCtas = residentCtasPerSm(device, kStore) * device.info.smCount;
    if (signs) {
      this.#signs = Tensor.fromHost("u32", [signMaskWords(signs).length], signMaskWords(signs), { device });
    }
    if (o.maxBatch) this.#workspace(o.maxBatch, this.#maxSplits);
  }

  allocateCache(numBlocks: number): Tensor {
    if (!Number.isInteger(numBlocks) || numBlocks < 1) {
      bad("numBlocks", "a positive integer", String(numBlocks));
    }
    return Tensor.empty("u8", [numBlocks, this.pageSize, this.numKvHeads, this.slotBytes], {
      device: this.device,
    }).fill(0);
  }

  #checkCache(cache: Tensor): void {
    const want = [cache.shape[0], this.pageSize, this.numKvHeads, this.slotBytes];
    if (
      cache.dtype !== "u8" || cache.rank !== 4 || want.some((d, i) => cache.shape[i] !== d) ||
      cache.shape[0] < 1
    ) {
      bad("cache", `u8[numBlocks, ${want.slice(1).join(", ")}] (allocateCache)`, shapeStr(cache));
    }
    if (!cache.isContiguous || cache.ptr % 16n !== 0n) {
      bad("cache", "a contiguous, 16-byte aligned tensor", `strides [${cache.strides}]`);
    }
  }

  /** Token count and token stride (elements) of k or v, after checking it. */
  #checkKv(name: string, t: Tensor): [number, number] {
    const { numKvHeads: Hk } = this, D = this.layout.headDim;
    if (t.dtype !== this.dtype) bad(name, `a ${this.dtype} tensor`, shapeStr(t));
    const ok3 = t.rank === 3 && t.shape[1] === Hk && t.shape[2] === D && t.strides[2] === 1 &&
      t.strides[1] === D;
    const ok2 = t.rank === 2 && t.shape[1] === Hk * D && t.strides[1] === 1;
    if (!ok3 && !ok2) {
      bad(
        name,
        `[T, ${Hk}, ${D}] or [T, ${Hk * D}] with contiguous heads`,
        `${shapeStr(t)} strides [${t.strides}]`,
      );
    }
    const stride = t.shape[0] > 1 ? t.strides[0] : Hk * D;
    if (stride % 8 !== 0 || t.ptr % 16n !== 0n) {
      bad(name, "16-byte aligned rows (token stride a multiple of 8 elements)", `stride ${stride}`);
    }
    return [t.shape[0], stride];
  }

  store(k: Tensor, v: Tensor, slotMapping: Tensor | Int32Array, cache: Tensor): void {
    const [T, ks] = this.#checkKv("k", k), [Tv, vs] = this.#checkKv("v", v);
    if (Tv !== T) bad("v", `${T} tokens like k`, String(Tv));
    if (T * this.numKvHeads >= 2 ** 31) {
      bad("k", "fewer than 2^31 (token, head) vectors", `${T}·${this.numKvHeads}`);
    }
    this.#checkCache(cache);
    const numSlots = cache.shape[0] * this.pageSize;
    let slots: Tensor;
    if (slotMapping instanceof Int32Array) {
      if (slotMapping.length !== T) bad("slotMapping", `${T} entries`, String(slotMapping.length));
      const at = slotMapping.findIndex((s) => s >= numSlots);
      if (at >= 0) {
        bad(
          "slotMapping",
          `slots below ${numSlots} (negative to skip)`,
          `slotMapping[${at}] = ${slotMapping[at]}`,
        );
      }
      if (T === 0) return;
      if (!this.#slots || this.#slots.shape[0] < T) {
        this.#slots?.dispose();
        this.#slots = Tensor.empty("i32", [Math.max(T, 256)], { device: this.device });
      }
      slots = this.#slots.rows(0, T);
      slots.copyFromHost(slotMapping);
    } else {
      if (
        slotMapping.dtype !== "i32" || slotMapping.rank !== 1 || slotMapping.shape[0] !== T ||
        !slotMapping.isContiguous
      ) {
        bad("slotMapping", `a contiguous i32[${T}] tensor`, shapeStr(slotMapping));
      }
      slots = slotMapping;
    }
    if (T === 0) return;
    const grid = tqStoreGrid(T, this.numKvHeads, this.layout, this.#storeCtas);
    const args = [
      k,
      v,
      slots,
      cache,
      this.#status,
      ...(this.#signs ? [this.#signs] : []),
      T,
      ks,
      vs,
      numSlots,
    ];
    this.kStore.launch(grid, args);
  }

  #workspace(B: number, S: number): [Tensor, Tensor] {
    if (
      (this.decodeKernel === "mma" || this.decodeKernel === "mma3") &&
      (!this.#counters || this.#counters.numel < B * this.numKvHeads)
    ) {
      this.#counters?.dispose(); // the v2 kernel's merge counters: zero, and every launch leaves them zero
      this.#counters = Tensor.empty("i32", [Math.max(B, 16) * this.numKvHeads], { device: this.device }).fill(
        0,
      );
    }
    const need = B * this.numHeads * S;
    if (!this.#partLse || this.#partLse.numel < need) {
      this.#partO?.dispose();
      this.#partLse?.dispose();
      this.#partO = Tensor.empty("f32", [need * this.layout.headDim], { device: this.device });
      this.#partLse = Tensor.empty("f32", [need], { device: this.device });
    }
    return [this.#partO!, this.#partLse];
  }

  decode(
    q: Tensor,
    cache: Tensor,
    blockTables: Tensor,
    seqLens: Tensor,
    out?: Tensor,
    opts: { numSplits?: number } = {},
  ): Tensor {
    const D = this.layout.headDim, Hq = this.numHeads;
    if (q.dtype !== this.dtype || q.rank !== 3 || q.shape[1] !== Hq || q.shape[2] !== D || !q.isContiguous) {
      bad("q", `a contiguous ${this.dtype}[B, ${Hq}, ${D}] tensor`, shapeStr(q));
    }
    if (q.ptr % 16n !== 0n) bad("q", "a 16-byte aligned tensor", `address ${q.ptr}`);
    const B = q.shape[0];
    if (B > 65535) bad("q", "at most 65535 sequences", String(B));
    this.#checkCache(cache);
    if (seqLens.dtype !== "i32" || seqLens.rank !== 1 || seqLens.shape[0] !== B || !seqLens.isContiguous) {
      bad("seqLens", `a contiguous i32[${B}] tensor`, shapeStr(seqLens));
    }
    if (
      blockTables.dtype !== "i32" || blockTables.rank !== 2 || blockTables.shape[0] !== B ||
      blockTables.strides[1] !== 1
    ) {
      bad("blockTables", `an i32[${B}, maxBlocks] tensor with contiguous rows`, shapeStr(blockTables));
    }
    const o = out ?? Tensor.empty(this.dtype, [B, Hq, D], { device: this.device });
    if (
      o.dtype !== this.dtype || o.rank !== 3 || o.shape[0] !== B || o.shape[1] !== Hq || o.shape[2] !== D ||
      !o.isContiguous
    ) {
      bad("out", `a contiguous ${this.dtype}[${B}, ${Hq}, ${D}] tensor`, shapeStr(o));
    }
    if (o.ptr % 16n !== 0n) bad("out", "a 16-byte aligned tensor", `address ${o.ptr}`);
    if (B === 0) return o;
    const S = opts.numSplits ?? this.#splits(B, blockTables.shape[1] * this.pageSize);
    if (!Number.isInteger(S) || S < 1 || S > 1024) bad("numSplits", "an integer in 1..1024", String(S));
    const [po, pl] = this.#workspace(B, S);
    const stride = blockTables.shape[0] > 1 ? blockTables.strides[0] : blockTables.shape[1];
    const args = [
      q,
      cache,
      blockTables,
      seqLens,
      o,
      po,
      pl,
      ...(this.decodeKernel === "mma" || this.decodeKernel === "mma3" ? [this.#counters!] : []),
      ...(this.#signs ? [this.#signs] : []),
      stride,
      S,
      this.#scaleLog2,
    ];
    const grid: [number, number, number] = [S, this.#groups, B];
    this.kDecode.launch(grid, args);
    if (S > 1 && this.decodeKernel !== "mma" && this.decodeKernel !== "mma3") {
      this.kMerge.launch(B * Hq, [po, pl, o, S]);
    }
    return o;
  }

  /** KV splits per sequence for B sequences of at most `maxLen` tokens ({@linkcode turboQuantSplits}). */
  #splits(B: number, maxLen: number): number {
    const k = this.kDecode, threads = k.source.block[0];
    return turboQuantSplits({
      ctas: B * this.#groups,
      maxLen,
      maxSplits: this.#maxSplits,
      smCount: this.device.info.smCount,
      ctasPerSm: residentCtasPerSm(this.device, k),
      warpsPerCta: threads / 32,
      streaming: this.decodeKernel === "mma3" && this.layout.keyFp8,
    });
  }

  checkStatus(): void {
    const s = this.#status.toHost() as Int32Array;
    if (s[0] > 0) {
      this.#status.fill(0);
      bad(
        "slotMapping",
        "slots inside the cache",
        `${s[0]} (token, head) stores with slots past it; first: token ${s[1]}, slot ${s[2]}`,
      );
    }
  }

  dispose(): void {
    for (const t of [this.#status, this.#signs, this.#slots, this.#partO, this.#partLse, this.#counters]) {
      t?.dispose();
    }
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** CTAs of `k` one SM holds at once (shared memory, registers, threads), at least one. */
function residentCtasPerSm(device: Device, k: LoadedKernel): number {
  return Math.max(
    1,
    ctasPerSm({
      threads: k.source.block[0] * k.source.block[1] * k.source.block[2],
      registers: k.registers,
      sharedBytes: k.staticSharedBytes + k.source.sharedBytes,
      maxSharedPerSM: device.info.maxSharedPerSM,
    }),
  );
}

/** One-shot store: prepare (cached compile), store, wait, and check the slots. */
export async function turboQuantStore(
  o: TurboQuantOptions & { k: Tensor; v: Tensor; slotMapping: Tensor | Int32Array; cache: Tensor },
): Promise<void> {
  using tq = await prepareTurboQuant(o);
  tq.store(o.k, o.v, o.slotMapping, o.cache);
  tq.checkStatus();
}

/** One-shot decode: prepare (cached compile), decode, wait; returns the output tensor. */
export async function turboQuantDecode(
  o: TurboQuantOptions & {
    q: Tensor;
    cache: Tensor;
    blockTables: Tensor;
    seqLens: Tensor;
    out?: Tensor;
    numSplits?: number;
  },
): Promise<Tensor> {
  using tq = await prepareTurboQuant(o);
  const out = tq.decode(o.q, o.cache, o.blockTables, o.seqLens, o.out, { numSplits: o.numSplits });
  tq.device.synchronize();
  return out;
}

/**
 * KV splits per sequence of a decode launch: the count (≤ maxSplits, ≤ the 16-token tiles of `maxLen`)
 * with the least modelled time, waves × (tiles per split + a fixed ~6 tiles per split: prologue, first
 * DRAM round trip, partial write, merge), a wave being one pass over the resident CTA slots. Streaming
 * kernels (fp8 keys on version 3) count slots of 8 warps per SM: more only add splits. Measured on the
 * H200: 4bit_nc B 16 × 8k S 8 → 85 µs, 16 → 93, 32 → 116 (version 2, one-head merge); k8v4 v3 Hk 8
 * B 16 × 8k S 8 → 62.5 µs, S 16 → 73.1; Hk 4 B 64 × 8k S 4 → 120, S 2 → 186.
 *
 * @example
 * ```ts
 * import { turboQuantSplits } from "./turboquant.ts";
 * // B 16 × 8k on 132 SMs, two 8-warp CTAs per SM: 16 splits fill one wave
 * console.log(turboQuantSplits({ ctas: 16, maxLen: 8192, maxSplits: 32, smCount: 132, ctasPerSm: 2, warpsPerCta: 8 })); // 16
 * ```
 */
export function turboQuantSplits(o: {
  /** CTAs of one split: sequences × head groups. */
  ctas: number;
  maxLen: number;
  maxSplits: number;
  smCount: number;
  ctasPerSm: number;
  warpsPerCta: number;
  streaming?: boolean;
}): number {
  const perSm = o.streaming ? Math.min(o.ctasPerSm, Math.max(1, Math.floor(8 / o.warpsPerCta))) : o.ctasPerSm;
  const slots = perSm * o.smCount, tiles = Math.max(1, Math.ceil(o.maxLen / 16));
  let best = 1, bestCost = Infinity;
  for (let S = 1; S <= Math.min(o.maxSplits, tiles); S++) {
    const cost = Math.ceil((o.ctas * S) / slots) * (Math.ceil(tiles / S) + 6);
    if (cost < bestCost * 0.97) [best, bestCost] = [S, cost];
  }
  return best;
}
