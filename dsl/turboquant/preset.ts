/**
 * TurboQuant KV-cache presets as data, and the byte layout of one cache slot.
 *
 * A preset says how a key and a value vector (one token, one KV head) are compressed. Keys are either
 * cast to fp8 e4m3 (no rotation, no scale) or rotated by the normalized Walsh–Hadamard matrix and coded
 * coordinate by coordinate against a sorted codebook (Lloyd–Max for N(0, 1/D) by default), plus the
 * vector's fp16 norm; "norm correction" (NC) re-normalizes the gathered centroid vector at score time.
 * Values are quantized per vector to `bits`-bit codes with an fp16 scale and minimum. vLLM's four
 * presets are predefined; {@linkcode defineTurboQuantPreset} checks a new one (other bit widths, other
 * centroids) and every layer of kiln — references, kernels, ops — works from the descriptor alone.
 *
 * Slot layout (bytes, per token per KV head; vLLM's merged format):
 * ```
 * [0, kc)            key codes (fp8 bytes, or packed indices)     kc = D | ⌈D·kb/8⌉
 * [kc, kc+2)         fp16 ‖k‖ (centroid keys only)                 key bytes K = kc (+2)
 * [K, K+vc)          packed value codes                           vc = ⌈D·vb/8⌉
 * [K+vc, +2)         fp16 value scale
 * [K+vc+2, +2)       fp16 value minimum (zero point)
 * [.., aligned)      padding to an even size (never written)
 * ```
 *
 * @module
 */
import { isSymmetric, lloydMaxCentroids, midpoints } from "./codebook.ts";
import { isPowerOfTwo } from "./hadamard.ts";
import { packedBytes } from "./pack.ts";

/** A key codebook: vLLM's Lloyd–Max table, centroids for unit-variance coordinates (scaled by 1/√D), or a function of D. */
export type TurboQuantCodebook = "lloyd-max" | readonly number[] | ((headDim: number) => ArrayLike<number>);

/** How keys are stored. */
export type TurboQuantKeyCodec =
  | { readonly kind: "fp8e4m3" }
  | {
    readonly kind: "centroids";
    /** Bits per coordinate, 1..8 (codebook of 2^bits entries). */
    readonly bits: number;
    /** Re-normalize the gathered centroid vector before scaling by the stored norm. */
    readonly normCorrection: boolean;
    /** Default "lloyd-max". */
    readonly codebook?: TurboQuantCodebook;
  };

/** How values are stored: per-vector asymmetric uniform codes of `bits` bits (1..8). */
export interface TurboQuantValueCodec {
  readonly kind: "uniform";
  readonly bits: number;
}

/** A TurboQuant preset: plain data. */
export interface TurboQuantPreset {
  readonly name: string;
  readonly key: TurboQuantKeyCodec;
  readonly value: TurboQuantValueCodec;
  /** Head dims the preset is meant for (informational; every valid head dim is accepted). */
  readonly headDims?: readonly number[];
}

/** KV page sizes (tokens per cache block) the kernels support, as vLLM's backend does. */
export const TURBOQUANT_BLOCK_SIZES: readonly number[] = [16, 32, 64, 128];

/** Largest head dim the kernels take. */
export const TURBOQUANT_MAX_HEAD_DIM = 512;

const centroidKey = (bits: number): TurboQuantKeyCodec => ({ kind: "centroids", bits, normCorrection: true });

/** vLLM's four presets (`--kv-cache-dtype turboquant_*`). */
export const TURBOQUANT_PRESETS: Readonly<Record<string, TurboQuantPreset>> = Object.freeze(
  {
    turboquant_k8v4: {
      name: "turboquant_k8v4",
      key: { kind: "fp8e4m3" },
      value: { kind: "uniform", bits: 4 },
      headDims: [64, 96, 128, 256],
    },
    turboquant_4bit_nc: {
      name: "turboquant_4bit_nc",
      key: centroidKey(4),
      value: { kind: "uniform", bits: 4 },
      headDims: [64, 128, 256],
    },
    turboquant_k3v4_nc: {
      name: "turboquant_k3v4_nc",
      key: centroidKey(3),
      value: { kind: "uniform", bits: 4 },
      headDims: [64, 128, 256],
    },
    turboquant_3bit_nc: {
      name: "turboquant_3bit_nc",
      key: centroidKey(3),
      value: { kind: "uniform", bits: 3 },
      headDims: [64, 128, 256],
    },
  } satisfies Record<string, TurboQuantPreset>,
);

/** Names of the predefined presets. */
export const TURBOQUANT_PRESET_NAMES: readonly string[] = Object.keys(TURBOQUANT_PRESETS);

/**
 * A predefined preset by name (`turboquant_4bit_nc`, …), or a checked copy of a preset object.
 * Throws `Unknown TurboQuant preset` for an unknown name, like vLLM's `from_cache_dtype`.
 *
 * @example
 * ```ts
 * import { turboQuantPreset } from "./preset.ts";
 * console.log(turboQuantPreset("turboquant_k3v4_nc").key); // { kind: "centroids", bits: 3, normCorrection: true }
 * ```
 */
export function turboQuantPreset(preset: string | TurboQuantPreset): TurboQuantPreset {
  if (typeof preset !== "string") return defineTurboQuantPreset(preset);
  const p = Object.hasOwn(TURBOQUANT_PRESETS, preset) ? TURBOQUANT_PRESETS[preset] : undefined;
  if (!p) {
    throw new RangeError(
      `Unknown TurboQuant preset "${preset}": expected one of ${TURBOQUANT_PRESET_NAMES.join(", ")} ` +
        `or a preset object (defineTurboQuantPreset)`,
    );
  }
  return p;
}

/**
 * Check a user-defined preset and return it frozen. Key bits 1..8 with a codebook of 2^bits sorted
 * values (or fp8 keys); value bits 1..8.
 *
 * @example
 * ```ts
 * import { defineTurboQuantPreset } from "./preset.ts";
 * const k2v2 = defineTurboQuantPreset({
 *   name: "k2v2_nc",
 *   key: { kind: "centroids", bits: 2, normCorrection: true },
 *   value: { kind: "uniform", bits: 2 },
 * });
 * ```
 */
export function defineTurboQuantPreset(p: TurboQuantPreset): TurboQuantPreset {
  const bad = (what: string) => {
    throw new TypeError(`TurboQuant preset "${p?.name}": ${what}`);
  };
  if (!p || typeof p.name !== "string" || !/^[A-Za-z0-9_]+$/.test(p.name)) {
    bad("needs a name of letters, digits and _");
  }
  const k = p.key;
  if (!k || (k.kind !== "fp8e4m3" && k.kind !== "centroids")) {
    bad(`key.kind must be "fp8e4m3" or "centroids"`);
  }
  if (k.kind === "centroids") {
    if (!Number.isInteger(k.bits) || k.bits < 1 || k.bits > 8) {
      bad(`key.bits must be an integer 1..8, got ${k.bits}`);
    }
    if (typeof k.normCorrection !== "boolean") bad("key.normCorrection must be true or false");
    const cb = k.codebook;
    if (cb !== undefined && cb !== "lloyd-max" && typeof cb !== "function") {
      checkCodebook(cb, k.bits, p.name);
    }
  }
  const v = p.value;
  if (!v || v.kind !== "uniform") bad(`value.kind must be "uniform"`);
  if (!Number.isInteger(v.bits) || v.bits < 1 || v.bits > 8) {
    bad(`value.bits must be an integer 1..8, got ${v.bits}`);
  }
  return Object.freeze({ ...p, key: Object.freeze({ ...k }), value: Object.freeze({ ...v }) });
}

function checkCodebook(cb: ArrayLike<number>, bits: number, name: string): void {
  if (cb.length !== 2 ** bits) {
    throw new TypeError(
      `TurboQuant preset "${name}": codebook needs ${2 ** bits} entries for ${bits} bits, got ${cb.length}`,
    );
  }
  for (let i = 0; i < cb.length; i++) {
    if (!Number.isFinite(cb[i]) || (i > 0 && !(Math.fround(cb[i]) > Math.fround(cb[i - 1])))) {
      throw new TypeError(
        `TurboQuant preset "${name}": codebook must be finite and strictly increasing in float32 (entry ${i})`,
      );
    }
  }
}

/** Byte offsets inside a slot. `keyNorm` is −1 for fp8 keys. */
export interface TurboQuantOffsets {
  readonly keyCodes: number;
  readonly keyNorm: number;
  readonly valueCodes: number;
  readonly valueScale: number;
  readonly valueZero: number;
}

/** Everything the references and kernels need about (preset, head dim). */
export interface TurboQuantLayout {
  readonly preset: TurboQuantPreset;
  readonly headDim: number;
  /** Keys are fp8 e4m3 bytes (no rotation, no norm). */
  readonly keyFp8: boolean;
  /** Bits per key coordinate (8 for fp8). */
  readonly keyBits: number;
  readonly valueBits: number;
  readonly normCorrection: boolean;
  /** Keys (and queries at decode) are Hadamard-rotated. */
  readonly rotate: boolean;
  readonly keyCodeBytes: number;
  /** vLLM's `key_packed_size`. */
  readonly keyBytes: number;
  readonly valueCodeBytes: number;
  /** vLLM's `value_packed_size`. */
  readonly valueBytes: number;
  /** keyBytes + valueBytes. */
  readonly slotBytes: number;
  /** slotBytes rounded up to even: the stride of one (token, head) in the cache. */
  readonly slotBytesAligned: number;
  readonly offsets: TurboQuantOffsets;
  /** The float32 key codebook, sorted (centroid keys only). */
  readonly centroids?: Float32Array;
  /** Its float32 decision boundaries (centroid keys only). */
  readonly midpoints?: Float32Array;
  /** The codebook is exactly antisymmetric. */
  readonly symmetric: boolean;
}

/** Why `headDim` does not suit `preset`, or undefined when it does. */
export function turboQuantHeadDimProblem(preset: TurboQuantPreset, headDim: number): string | undefined {
  if (!Number.isInteger(headDim) || headDim <= 0) {
    return `head dim must be a positive integer, got ${headDim}`;
  }
  if (headDim % 8 !== 0) {
    return `head dim ${headDim} is not a multiple of 8 (codes are packed in groups of 8)`;
  }
  if (headDim > TURBOQUANT_MAX_HEAD_DIM) return `head dim ${headDim} exceeds ${TURBOQUANT_MAX_HEAD_DIM}`;
  if (preset.key.kind === "centroids" && !isPowerOfTwo(headDim)) {
    return `${preset.name} rotates keys with a Walsh–Hadamard transform, which needs a power-of-two head dim (got ${headDim})`;
  }
  if (preset.key.kind === "centroids" && headDim < 16) {
    return `${preset.name} needs a head dim ≥ 16 (got ${headDim})`;
  }
  return undefined;
}

const layoutCache = new Map<TurboQuantPreset, Map<number, TurboQuantLayout>>();

/**
 * The slot layout and tables of `preset` at `headDim`. Throws a RangeError naming the problem when
 * the preset cannot take that head dim (a power of two is required for rotated keys).
 *
 * @example
 * ```ts
 * import { turboQuantLayout } from "./preset.ts";
 * const l = turboQuantLayout("turboquant_4bit_nc", 128);
 * console.log(l.keyBytes, l.valueBytes, l.slotBytesAligned); // 66 68 134
 * ```
 */
export function turboQuantLayout(preset: string | TurboQuantPreset, headDim: number): TurboQuantLayout {
  const p = typeof preset === "string" ? turboQuantPreset(preset) : preset;
  let byDim = layoutCache.get(p);
  const hit = byDim?.get(headDim);
  if (hit) return hit;
  const q = typeof preset === "string" ? p : defineTurboQuantPreset(p);
  const problem = turboQuantHeadDimProblem(q, headDim);
  if (problem) throw new RangeError(problem);
  const D = headDim;
  const keyFp8 = q.key.kind === "fp8e4m3";
  const keyBits = q.key.kind === "centroids" ? q.key.bits : 8;
  const valueBits = q.value.bits;
  const keyCodeBytes = keyFp8 ? D : packedBytes(D, keyBits);
  const keyBytes = keyFp8 ? D : keyCodeBytes + 2;
  const valueCodeBytes = packedBytes(D, valueBits);
  const valueBytes = valueCodeBytes + 4;
  const slotBytes = keyBytes + valueBytes;
  let centroids: Float32Array | undefined, mids: Float32Array | undefined;
  if (q.key.kind === "centroids") {
    centroids = codebookFor(q.key.codebook ?? "lloyd-max", D, q.key.bits, q.name);
    mids = midpoints(centroids);
  }
  const layout: TurboQuantLayout = Object.freeze({
    preset: q,
    headDim: D,
    keyFp8,
    keyBits,
    valueBits,
    normCorrection: q.key.kind === "centroids" && q.key.normCorrection,
    rotate: !keyFp8,
    keyCodeBytes,
    keyBytes,
    valueCodeBytes,
    valueBytes,
    slotBytes,
    slotBytesAligned: slotBytes + (slotBytes % 2),
    offsets: Object.freeze({
      keyCodes: 0,
      keyNorm: keyFp8 ? -1 : keyCodeBytes,
      valueCodes: keyBytes,
      valueScale: keyBytes + valueCodeBytes,
      valueZero: keyBytes + valueCodeBytes + 2,
    }),
    centroids,
    midpoints: mids,
    symmetric: centroids ? isSymmetric(centroids) : true,
  });
  if (!byDim) layoutCache.set(p, byDim = new Map());
  byDim.set(headDim, layout);
  return layout;
}

function codebookFor(cb: TurboQuantCodebook, D: number, bits: number, name: string): Float32Array {
  if (cb === "lloyd-max") return lloydMaxCentroids(D, bits);
  if (typeof cb === "function") {
    const c = Float32Array.from(cb(D));
    checkCodebook(c, bits, name);
    return c;
  }
  const s = 1 / Math.sqrt(D);
  return Float32Array.from(cb, (x) => x * s);
}

/** Cache bytes one token takes across `numKvHeads` heads (one layer). */
export function turboQuantBytesPerToken(layout: TurboQuantLayout, numKvHeads: number): number {
  return layout.slotBytesAligned * numKvHeads;
}

/** Tokens one GiB of cache holds per layer, against bf16 K + V (4·D bytes per head). */
export function turboQuantCapacity(
  layout: TurboQuantLayout,
  numKvHeads: number,
): { tokensPerGiB: number; bf16TokensPerGiB: number; ratio: number } {
  const gib = 2 ** 30;
  const tq = Math.floor(gib / turboQuantBytesPerToken(layout, numKvHeads));
  const bf = Math.floor(gib / (4 * layout.headDim * numKvHeads));
  return { tokensPerGiB: tq, bf16TokensPerGiB: bf, ratio: tq / bf };
}
