import assert from "node:assert/strict";
import {
  bf16Decode,
  bf16Encode,
  byteSize,
  decodeArray,
  encodeArray,
  f16Decode,
  f16Encode,
  FP4E2M1_VALUES,
  fp4e2m1Encode,
  FP8E4M3_VALUES,
  fp8e4m3Encode,
  FP8E5M2_VALUES,
  fp8e5m2Encode,
  i8Rne,
  i8Trunc,
  int4Decode,
  packNibbles,
  roundHalfEven,
  ue8m0Decode,
  ue8m0EncodeCeil,
  unpackNibbles,
} from "../../dsl/dtype.ts";
import { Rng } from "../../testing/random.ts";

Deno.test("dtype: fp8 e4m3fn known codes (RNE, satfinite, NaN)", () => {
  const cases: [number, number][] = [
    [0, 0x00],
    [-0, 0x80],
    [1, 0x38],
    [-1, 0xb8],
    [448, 0x7e],
    [-448, 0xfe],
    [1e9, 0x7e],
    [-Infinity, 0xfe],
    [2 ** -9, 0x01],
    [2 ** -10, 0x00], /* tie to even → 0 */
    [3 * 2 ** -10, 0x02], /* 1.5 ulps → 2 */
    [2 ** -6, 0x08],
    [1.0625, 0x38], /* tie between 1 and 1.125 → even (1) */
    [1.1875, 0x3a],
    [464, 0x7e],
    [NaN, 0x7f],
  ];
  for (const [x, code] of cases) assert.equal(fp8e4m3Encode(x), code, `e4m3(${x})`);
  assert.equal(FP8E4M3_VALUES[0x7e], 448);
  assert.ok(Number.isNaN(FP8E4M3_VALUES[0x7f]) && Number.isNaN(FP8E4M3_VALUES[0xff]));
});

Deno.test("dtype: fp8 codes round-trip and encoding is monotonic with nearest-value rounding", () => {
  for (const [table, enc] of [[FP8E4M3_VALUES, fp8e4m3Encode], [FP8E5M2_VALUES, fp8e5m2Encode]] as const) {
    for (let c = 0; c < 256; c++) {
      const v = table[c];
      if (Number.isNaN(v) || !Number.isFinite(v)) continue;
      if (Object.is(v, -0)) continue;
      assert.equal(table[enc(v)], v, `code ${c}`);
    }
    const rng = new Rng();
    const finite = [...table].filter((v) => Number.isFinite(v));
    for (let i = 0; i < 20000; i++) {
      // the encoders take float32 input: compare against the float32 value, not the float64 draw
      const x = Math.fround(rng.normal() * 2 ** rng.int(-12, 10));
      const got = table[enc(x)];
      const max = Math.max(...finite);
      const best = Math.min(...finite.map((v) => Math.abs(v - Math.max(-max, Math.min(max, x)))));
      assert.ok(Math.abs(got - Math.max(-max, Math.min(max, x))) <= best + 1e-30, `seed ${rng.seed} x=${x}`);
    }
  }
});

Deno.test("dtype: fp8 e5m2 saturates to 57344", () => {
  assert.equal(fp8e5m2Encode(1e9), 0x7b);
  assert.equal(FP8E5M2_VALUES[0x7b], 57344);
  assert.equal(fp8e5m2Encode(1), 0x3c);
});

Deno.test("dtype: bf16 and f16 round to nearest even", () => {
  assert.equal(bf16Encode(1), 0x3f80);
  assert.equal(bf16Encode(1 + 2 ** -8), 0x3f80); // tie → even
  assert.equal(bf16Encode(1 + 3 * 2 ** -8), 0x3f82);
  assert.equal(bf16Encode(NaN), 0x7fc0);
  assert.equal(bf16Decode(0xc0490fdb >>> 16), -3.140625);
  assert.equal(f16Encode(1), 0x3c00);
  assert.equal(f16Encode(65504), 0x7bff);
  assert.equal(f16Encode(65520), 0x7c00); // rounds up past max → inf
  assert.equal(f16Encode(2 ** -24), 0x0001);
  assert.equal(f16Encode(2 ** -25), 0x0000); // tie → even
  assert.equal(f16Decode(0x3555), 0.333251953125);
  const rng = new Rng();
  for (let i = 0; i < 10000; i++) {
    const x = Math.fround(rng.normal() * 100);
    assert.ok(Math.abs(f16Decode(f16Encode(x)) - x) <= Math.abs(x) * 2 ** -11 + 2 ** -25);
    assert.ok(Math.abs(bf16Decode(bf16Encode(x)) - x) <= Math.abs(x) * 2 ** -8);
  }
});

Deno.test("dtype: fp4 e2m1, ue8m0, int8 casts, int4 nibbles", () => {
  assert.deepEqual([...FP4E2M1_VALUES.slice(0, 8)], [0, 0.5, 1, 1.5, 2, 3, 4, 6]);
  assert.equal(fp4e2m1Encode(5), 0x6); // tie between 4 and 6 → even mantissa (4)
  assert.equal(fp4e2m1Encode(100), 0x7);
  assert.equal(fp4e2m1Encode(-0.75), 0x8 | 0x2); // tie 0.5/1 → 1 (even mantissa)
  assert.equal(ue8m0EncodeCeil(1), 127);
  assert.equal(ue8m0EncodeCeil(1.0000001), 128);
  assert.equal(ue8m0EncodeCeil(0.25), 125);
  assert.equal(ue8m0Decode(125), 0.25);
  assert.equal(i8Trunc(-3.9), -3);
  assert.equal(i8Trunc(200), 127);
  assert.equal(i8Rne(2.5), 2);
  assert.equal(i8Rne(-130), -128);
  assert.equal(roundHalfEven(-2.5), -2);
  assert.equal(int4Decode(0xf), -1);
  const codes = [1, 2, 3, 15, 8];
  assert.deepEqual([...packNibbles(codes)], [0x21, 0xf3, 0x08]);
  assert.deepEqual([...unpackNibbles(packNibbles(codes), 5)], codes);
  assert.equal(byteSize("int4", 5), 3);
  assert.equal(byteSize("bf16", 5), 10);
  assert.deepEqual([...decodeArray("int4", encodeArray("int4", [-8, 7, -1]), 3)], [-8, 7, -1]);
});
