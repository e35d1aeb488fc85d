/**
 * Direct references of the group-quant family, written from the spec's formulas (quant-spec §3.1) as
 * plain loops, independently of the expression IR: the IR program's interpreter must agree with them
 * bit for bit (tests/dsl/group_quant_test.ts), and the GPU kernel with the interpreter.
 *
 * `groupQuantReference` covers every convention of {@linkcode GroupQuantSpec.rounding}: with
 * `rounding: "sglang"` it is SGLang's CUDA v2 kernel (per_token_group_quant_8bit_v2.cu) transcribed:
 * `scale = amax · f32(1/MAX)`, `q = x · f32(MAX / amax)`, int8 truncated, and for row-major UE8M0
 * scales the elements scaled by the unrounded multiplier.
 *
 * @module
 */
import { decodeArray, type HostArray } from "../dtype.ts";
import { encodeValue, fmaxf, ksilu, pow2ceil, ue8m0Byte } from "../expr/math.ts";
import { QUANT_RANGE } from "../expr/quantize.ts";
import { groupQuantShapes, type GroupQuantSpec } from "./group_quant.ts";

const f = Math.fround;

/** Reference outputs: raw q codes and the scale buffer (f32 values, or bytes of packed words). */
export interface GroupQuantRef {
  q: Uint8Array;
  /** f32 scales in the spec's layout, or (packUe8m0) the bytes of the int32 words. */
  scales: Float32Array | Uint8Array;
  mPad: number;
}

/** The value quantized at element j of a row (the input, or the fused silu-and-mul). */
function rowValues(spec: GroupQuantSpec, x: Float32Array, row: number, out: Float32Array): void {
  const K = spec.K;
  if (!spec.fuseSiluMul) {
    for (let j = 0; j < K; j++) out[j] = x[row * K + j];
    return;
  }
  const round = (v: number) => decodeArray(spec.inDtype, encodeRow(spec.inDtype, v), 1)[0];
  for (let j = 0; j < K; j++) {
    const g = x[row * 2 * K + j], u = x[row * 2 * K + K + j];
    out[j] = round(f(round(ksilu(g)) * u));
  }
}

function encodeRow(dtype: "bf16" | "f16", v: number): Uint16Array {
  return new Uint16Array([encodeValue(dtype, v)]);
}

/** Quantize one group: returns the stored scale and writes the codes. */
export function quantGroup(
  spec: GroupQuantSpec,
  v: Float32Array,
  from: number,
  to: number,
  codes: Uint8Array,
  at: number,
): number {
  const { max } = QUANT_RANGE[spec.dtype];
  let amax = 0;
  for (let j = from; j < to; j++) amax = fmaxf(amax, Math.abs(v[j]));
  amax = fmaxf(amax, f(spec.eps));
  let scale: number, mult: number | undefined, div: number | undefined;
  if (spec.rounding === "div") {
    scale = f(amax / max);
    if (spec.ue8m0) scale = pow2ceil(scale);
    div = scale;
  } else {
    const raw = f(amax * f(1 / max));
    if (spec.ue8m0) {
      scale = pow2ceil(raw);
      const quirk = spec.rounding === "sglang" && spec.scaleLayout === "row";
      mult = quirk ? f(max / amax) : f(1 / scale);
    } else {
      scale = raw;
      mult = f(max / amax);
    }
  }
  const trunc = spec.rounding === "sglang" && spec.dtype === "i8" ? "trunc" : "rne";
  for (let j = from; j < to; j++) {
    const q = div !== undefined ? f(v[j] / div) : f(v[j] * mult!);
    codes[at + j - from] = encodeValue(spec.dtype, q, trunc);
  }
  return scale;
}

/**
 * Quantize decoded input values `x` (`[m, K]`, or `[m, 2K]` fused; masked: `[E·T_pad, ...]`).
 * Untouched elements (masked rows) keep `initial` contents when given, else 0.
 *
 * @example
 * ```ts
 * import { resolveGroupQuant } from "./group_quant.ts";
 * import { groupQuantReference } from "./group_quant_ref.ts";
 * const spec = resolveGroupQuant(256, "bf16", { groupSize: 128 });
 * const r = groupQuantReference(spec, new Float32Array(256).fill(1), { m: 1 });
 * console.log(r.scales); // Float32Array [0.002232..., 0.002232...]
 * ```
 */
export function groupQuantReference(
  spec: GroupQuantSpec,
  x: Float32Array,
  g: { m: number; experts?: number; tokensPad?: number; maskedM?: Int32Array },
  initial?: { q?: HostArray; scales?: HostArray },
): GroupQuantRef {
  const K = spec.K, G = spec.groupSize, S = K / G;
  const shapes = groupQuantShapes(spec, g);
  const mPad = shapes.mPad;
  const n = (sh: number[]) => sh.reduce((a, b) => a * b, 1);
  const q = new Uint8Array(n(shapes.q.shape));
  if (initial?.q) q.set(new Uint8Array(initial.q.buffer, initial.q.byteOffset, initial.q.byteLength));
  const packed = spec.packUe8m0;
  const scales = packed
    ? new Uint8Array(4 * n(shapes.scales.shape))
    : new Float32Array(n(shapes.scales.shape));
  if (initial?.scales) {
    new Uint8Array(scales.buffer).set(
      new Uint8Array(initial.scales.buffer, initial.scales.byteOffset, initial.scales.byteLength),
    );
  }
  const words = Math.ceil(S / 4);
  const v = new Float32Array(K);
  const codes = new Uint8Array(K);
  // (row index in the flat [rows, K] q, expert, token within expert or row, leading dimension)
  const doRow = (row: number, e: number, t: number, ld: number, live: boolean) => {
    if (live) rowValues(spec, x, row, v);
    for (let gi = 0; gi < S; gi++) {
      const s = live ? quantGroup(spec, v, gi * G, (gi + 1) * G, codes, gi * G) : 0;
      if (!live) codes.fill(0, gi * G, (gi + 1) * G);
      if (packed) {
        const base = (e * words * ld + (gi >> 2) * ld + t) * 4;
        scales[base + (gi & 3)] = live ? ue8m0Byte(s) : 0;
        if (gi === S - 1) { for (let z = S % 4 || 4; z < 4; z++) scales[base + z] = 0; }
      } else if (spec.scaleLayout === "mmajor") {
        (scales as Float32Array)[e * S * ld + gi * ld + t] = s;
      } else {
        (scales as Float32Array)[row * S + gi] = s;
      }
    }
    q.set(codes, row * K);
  };
  if (spec.masked) {
    const E = g.experts ?? 0, T = g.tokensPad ?? 0;
    for (let e = 0; e < E; e++) {
      const cnt = Math.min(T, g.maskedM?.[e] ?? 0);
      for (let t = 0; t < cnt; t++) doRow(e * T + t, e, t, T, true);
    }
  } else {
    for (let r = 0; r < mPad; r++) doRow(r, 0, r, mPad, r < g.m);
  }
  return { q, scales, mPad };
}

/**
 * Compare codes of two conventions the way SGLang's own test does: the share of elements whose codes
 * differ by exactly one step, and whether any differ by more (or flip sign).
 */
export function codeAgreement(
  dtype: "fp8e4m3" | "fp8e5m2" | "i8",
  a: Uint8Array,
  b: Uint8Array,
): { differ: number; oneStep: number; worse: number; fraction: number } {
  let differ = 0, oneStep = 0, worse = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    differ++;
    // fp8 codes of one sign are ordered like their magnitudes; int8 codes are two's complement
    const sa = dtype === "i8" ? (a[i] << 24) >> 24 : (a[i] & 0x80 ? -(a[i] & 0x7f) : a[i]);
    const sb = dtype === "i8" ? (b[i] << 24) >> 24 : (b[i] & 0x80 ? -(b[i] & 0x7f) : b[i]);
    if (Math.abs(sa - sb) === 1 && Math.sign(sa) * Math.sign(sb) >= 0) oneStep++;
    else worse++;
  }
  return { differ, oneStep, worse, fraction: a.length ? differ / a.length : 0 };
}
