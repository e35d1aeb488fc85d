/**
 * The float32 semantics of the IR, and TypeScript twins of the CUDA helper formulas in
 * codegen/expr/prelude.ts (so their logic is checked here, exhaustively where the domain is small).
 */
import { deepEqual as assertEquals, ok as assert } from "node:assert/strict";
import {
  f32Bits,
  f32FromBits,
  fp4e2m1Encode,
  FP8E4M3_VALUES,
  FP8E5M2_VALUES,
  ue8m0EncodeCeil,
} from "../../dsl/dtype.ts";
import {
  castValue,
  encodeValue,
  fmaf,
  fmaxf,
  fminf,
  fp8EncodeFast,
  kexp,
  ksilu,
  pow2,
  pow2ceil,
} from "../../dsl/expr/math.ts";
import { fp8e4m3Encode, fp8e5m2Encode } from "../../dsl/dtype.ts";
import { hexf } from "../../codegen/expr/prelude.ts";
import { Rng } from "../../testing/mod.ts";

const f = Math.fround;

/** Twin of kiln_e4m3_f32 / kiln_e5m2_f32: magnitude bits under a float32 exponent, times 2^(127-bias). */
function decodeTrick(b: number, shift: number, scale: number): number {
  const mag = b & 0x7f;
  let v = f(f32FromBits(mag << shift) * scale);
  if (shift === 20 && mag === 0x7f) return NaN; // e4m3fn: one NaN code per sign
  if (shift === 21 && mag >= 0x7c) v = mag === 0x7c ? Infinity : NaN; // e5m2: inf and NaNs
  return f32FromBits(f32Bits(v) | ((b & 0x80) << 24));
}

Deno.test("prelude twins: fp8 decode by exponent rebias is exact for all 256 codes", () => {
  for (let b = 0; b < 256; b++) {
    const e4 = decodeTrick(b, 20, 2 ** 120), e5 = decodeTrick(b, 21, 2 ** 112);
    assert(
      Object.is(e4, FP8E4M3_VALUES[b]) || (Number.isNaN(e4) && Number.isNaN(FP8E4M3_VALUES[b])),
      `e4m3 ${b}`,
    );
    assert(
      Object.is(e5, FP8E5M2_VALUES[b]) || (Number.isNaN(e5) && Number.isNaN(FP8E5M2_VALUES[b])),
      `e5m2 ${b}`,
    );
  }
});

/** Twin of kiln_e2m1: a ladder of comparisons at the RNE midpoints. */
function e2m1Ladder(x: number): number {
  if (Number.isNaN(x)) return 7;
  const a = Math.abs(x);
  const c = +(a > 0.25) + +(a >= 0.75) + +(a > 1.25) + +(a >= 1.75) + +(a > 2.5) + +(a >= 3.5) + +(a > 5);
  return c | ((f32Bits(x) >>> 28) & 8);
}

Deno.test("prelude twins: the fp4 e2m1 comparison ladder equals the host codec", () => {
  const specials = [0, -0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 6, 7, 1e9, Infinity, -Infinity, NaN];
  const near = specials.flatMap((v) => [v, f32FromBits(f32Bits(v) + 1), f32FromBits(f32Bits(v) - 1), -v]);
  const rng = new Rng();
  const xs = [...near, ...Array.from({ length: 20000 }, () => f((rng.next() - 0.5) * 16))];
  for (const x of xs) {
    if (!Number.isFinite(f32FromBits(f32Bits(x)))) continue;
    assertEquals(e2m1Ladder(x), fp4e2m1Encode(x), `x = ${x} (seed ${rng.seed})`);
  }
  assertEquals(e2m1Ladder(NaN), fp4e2m1Encode(NaN));
});

Deno.test("math: kiln's exp is within 2 ulp of exp on [-87, 88] and handles the edges", () => {
  const rng = new Rng();
  let worst = 0;
  for (let i = 0; i < 50000; i++) {
    const x = f((rng.next() - 0.5) * 175);
    const got = kexp(x), want = f(Math.exp(x));
    const ulp = Math.abs(f32Bits(got) - f32Bits(want));
    worst = Math.max(worst, ulp);
  }
  assert(worst <= 2, `worst ${worst} ulp (seed ${rng.seed})`);
  assertEquals(kexp(0), 1);
  assertEquals(kexp(-200), 0);
  assert(kexp(100) > 3e38 && Number.isFinite(kexp(100)), "saturates at exp(88.72)");
  assert(Number.isNaN(kexp(NaN)));
  assertEquals(ksilu(0), 0);
  assert(Math.abs(ksilu(1) - 0.7310586) < 1e-6);
  assert(ksilu(-200) < 0 && ksilu(-200) > -1e-35, "silu of a very negative x is a tiny negative");
});

Deno.test("math: kiln's silu (no division) is within 3 ulp of x·sigmoid(x) for x ≥ -86.5", () => {
  const rng = new Rng();
  let worst = 0, at = 0;
  for (let i = 0; i < 100000; i++) {
    const x = f(i % 2 ? -rng.next() * 86.5 : (rng.next() - 0.5) * (i % 4 === 0 ? 173 : 24));
    const want = f(x / (1 + Math.exp(-x)));
    const ulp = Math.abs(f32Bits(ksilu(x)) - f32Bits(want));
    if (ulp > worst) [worst, at] = [ulp, x];
  }
  assert(worst <= 3, `worst ${worst} ulp at ${at} (seed ${rng.seed})`);
  for (const x of [0.5, 20, 86, 90, 1e30]) assertEquals(ksilu(x), f(x / (1 + Math.exp(-x))), `silu(${x})`);
  assert(Object.is(ksilu(-0), -0) && Object.is(ksilu(0), 0));
  assertEquals([ksilu(Infinity), ksilu(-Infinity)], [Infinity, -Infinity]);
  assert(Number.isNaN(ksilu(NaN)));
  const tiny = ksilu(-1000);
  assert(tiny < 0 && tiny >= -1000 * 2.8e-38, "below -86.5 the sigmoid stays at e^-86.5 ≈ 2.72e-38");
});

Deno.test("math: pow2ceil matches ue8m0EncodeCeil on normal values and pow2 is exact", () => {
  const rng = new Rng();
  for (let i = 0; i < 10000; i++) {
    const v = f(2 ** (rng.next() * 200 - 100) * (1 + rng.next()));
    assertEquals(pow2ceil(v), 2 ** (ue8m0EncodeCeil(v) - 127), `v = ${v}`);
  }
  assertEquals(pow2ceil(0.25), 0.25);
  assertEquals(pow2ceil(0.2500001), 0.5);
  assertEquals(pow2ceil(1e-45), 2 ** -126);
  assertEquals(pow2ceil(Infinity), 2 ** 127);
  assertEquals(pow2ceil(0), 0);
  for (let k = -149; k <= 127; k++) assertEquals(pow2(k), 2 ** k);
});

Deno.test("math: fminf/fmaxf ignore NaN and order signed zeros like the GPU", () => {
  assertEquals(fmaxf(NaN, 3), 3);
  assertEquals(fminf(2, NaN), 2);
  assert(Object.is(fmaxf(-0, 0), 0) && Object.is(fmaxf(0, -0), 0));
  assert(Object.is(fminf(-0, 0), -0) && Object.is(fminf(0, -0), -0));
});

Deno.test("math: casts saturate and round as the GPU's conversions", () => {
  assertEquals(castValue("fp8e4m3", 1000), 448);
  assertEquals(castValue("fp8e4m3", -1e30), -448);
  assertEquals(encodeValue("i8", 127.6), 127);
  assertEquals(encodeValue("i8", -200), 0x80);
  assertEquals(encodeValue("i8", 2.5), 2);
  assertEquals(encodeValue("i8", -2.7, "trunc"), 0xfe);
  assertEquals(encodeValue("i8", NaN), 0);
  assertEquals(encodeValue("int4", 9), 7);
  assertEquals(encodeValue("int4", -3.5), 0xc);
  assertEquals(castValue("bf16", 1 + 2 ** -9), 1);
  assertEquals(castValue("f16", 70000), Infinity);
});

/** Value of a C hex-float literal as hexf prints it. */
function parseHexf(s: string): number {
  const m = s.match(/^(-?)0x([01])\.([0-9a-f]{6})p([+-]?\d+)f$/);
  if (!m) return s === "0.0f" ? 0 : s === "-0.0f" ? -0 : NaN;
  const mant = parseInt(m[2], 16) + parseInt(m[3], 16) / 2 ** 24;
  return (m[1] ? -1 : 1) * mant * 2 ** Number(m[4]);
}

Deno.test("prelude: hexf spells every float32 exactly", () => {
  const rng = new Rng();
  const vals = [0, -0, 1, -1, 1 / 448, 1e-10, 448, 2 ** -149, 2 ** -126, 3.4028234663852886e38, 1e-40];
  for (let i = 0; i < 2000; i++) {
    vals.push(f32FromBits((rng.next() * 0x7f800000) >>> 0) * (rng.next() < 0.5 ? -1 : 1));
  }
  for (const v of vals) assert(Object.is(parseHexf(hexf(v)), f(v)), `${v} -> ${hexf(v)}`);
  assertEquals(hexf(Infinity), "KILN_INF");
});

Deno.test("math: the fast fp8 encoder equals the host codecs", () => {
  const rng = new Rng();
  const xs: number[] = [
    0,
    -0,
    NaN,
    Infinity,
    -Infinity,
    448,
    464,
    463.99,
    57344,
    61440,
    2 ** -6,
    2 ** -9,
    2 ** -10,
    2 ** -14,
    2 ** -17,
  ];
  for (const v of [...FP8E4M3_VALUES, ...FP8E5M2_VALUES]) {
    if (!Number.isFinite(v)) continue;
    for (const d of [-2, -1, 0, 1, 2]) xs.push(f32FromBits(f32Bits(v) + d), -f32FromBits(f32Bits(v) + d));
  }
  // midpoints between neighbouring codes (ties to even) and their neighbours
  for (const tbl of [FP8E4M3_VALUES, FP8E5M2_VALUES]) {
    for (let c = 0; c < 0x7b; c++) {
      const mid = f((tbl[c] + tbl[c + 1]) / 2);
      xs.push(mid, f32FromBits(f32Bits(mid) + 1), f32FromBits(Math.max(0, f32Bits(mid) - 1)));
    }
  }
  for (let i = 0; i < 200000; i++) xs.push(f32FromBits((rng.next() * 2 ** 32) >>> 0));
  for (const x of xs) {
    assertEquals(fp8EncodeFast(x, false), fp8e4m3Encode(x), `e4m3 ${x} (seed ${rng.seed})`);
    assertEquals(fp8EncodeFast(x, true), fp8e5m2Encode(x), `e5m2 ${x} (seed ${rng.seed})`);
  }
});

/** float32 x = m · 2^e with an integer m (BigInt), e ≥ -149. */
function split(x: number): { m: bigint; e: number } {
  const b = f32Bits(x), ex = (b >>> 23) & 0xff, man = b & 0x7fffff;
  const m = BigInt(ex ? man | 0x800000 : man) * (b >>> 31 ? -1n : 1n);
  return { m, e: (ex ? ex : 1) - 150 };
}

/** a·b + c rounded once to float32 (nearest even), in exact BigInt arithmetic: the oracle. */
function fmaExact(a: number, b: number, c: number): number {
  const A = split(a), B = split(b), Cc = split(c);
  const pe = A.e + B.e, E = Math.min(pe, Cc.e);
  const S = A.m * B.m * (1n << BigInt(pe - E)) + Cc.m * (1n << BigInt(Cc.e - E));
  if (S === 0n) return NaN; // the sign of an exact zero is not exercised here
  const neg = S < 0n, mag = neg ? -S : S;
  const L = mag.toString(2).length;
  const e = L - 1 + E; // exponent of the leading bit
  const qe = Math.max(e - 23, -149); // exponent of the result's last bit
  const k = qe - E;
  let q = mag;
  if (k > 0) {
    q = mag >> BigInt(k);
    const rem = mag & ((1n << BigInt(k)) - 1n), half = 1n << BigInt(k - 1);
    if (rem > half || (rem === half && (q & 1n) === 1n)) q++;
  } else q = mag << BigInt(-k);
  const v = f(Number(q) * 2 ** qe);
  return neg ? -v : v;
}

Deno.test("math: fmaf rounds once, like fma.rn.f32 (checked against exact BigInt arithmetic)", () => {
  const rng = new Rng();
  const cases: [number, number, number][] = [];
  for (let i = 0; i < 20000; i++) {
    const kind = i % 4;
    if (kind === 0) {
      const r = () => f32FromBits(((rng.next() * 2 ** 32) >>> 0) & 0xbfffffff); // |x| < 2: no overflow
      cases.push([r(), r(), r()]);
    } else if (kind === 1) { // short mantissas: exact products, ties at the float32 midpoints
      cases.push([
        f(1 + rng.int(0, 4096) * 2 ** -12),
        f(1 + rng.int(0, 4096) * 2 ** -12),
        rng.int(-32, 32) * 2 ** -24,
      ]);
    } else if (kind === 2) { // cancellation
      const a = f(rng.normal()), b = f(rng.normal());
      cases.push([a, b, f(-a * b * (1 + rng.int(-8, 8) * 2 ** -23))]);
    } else { // results near and below the subnormal range
      cases.push([f(rng.normal() * 2 ** -70), f(rng.normal() * 2 ** -60), f(rng.normal() * 2 ** -140)]);
    }
  }
  let ties = 0;
  for (const [a, b, c] of cases) {
    const want = fmaExact(a, b, c);
    if (Number.isNaN(want)) continue;
    const s = a * b + c;
    if (
      f(s) !== s && (f(s) + f32FromBits(f32Bits(f(s)) + (Math.abs(s) > Math.abs(f(s)) ? 1 : -1))) / 2 === s
    ) ties++;
    assert(
      Object.is(fmaf(a, b, c), want),
      `fmaf(${a}, ${b}, ${c}) = ${fmaf(a, b, c)}, exact ${want} (seed ${rng.seed})`,
    );
  }
  assert(ties > 50, `double sums on a float32 midpoint were exercised (${ties})`);
});
