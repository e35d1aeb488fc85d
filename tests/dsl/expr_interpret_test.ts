/** The interpreter: store layouts, row padding, masked rows, scatter, concat, and the sum order. */
import { deepEqual as assertEquals, ok as assert } from "node:assert/strict";
import { decodeArray, encodeArray } from "../../dsl/dtype.ts";
import {
  concat,
  input,
  interpret,
  param,
  quantize,
  RowProgram,
  scalarInput,
  vectorInput,
} from "../../dsl/expr/mod.ts";
import { Rng } from "../../testing/mod.ts";

const f = Math.fround;

Deno.test("interpret: element-wise math with broadcasting and parameters", () => {
  const x = input("x", "f32", 4).load();
  const p = new RowProgram("ew").store("y", x.mul(x.sum()).add(param("b"))).finish();
  const out = interpret(p, {
    inputs: { x: new Float32Array([1, 2, 3, 4, 0, 0, 0, 1]) },
    params: { b: 0.5 },
    geometry: { m: 2, rows: 2 },
  });
  assertEquals([...out.y as Float32Array], [10.5, 20.5, 30.5, 40.5, 0.5, 0.5, 0.5, 1.5]);
});

Deno.test("interpret: row padding zero-fills row and M-major outputs", () => {
  const x = input("x", "f32", 8).load();
  const p = new RowProgram("pad")
    .store("y", x.mul(2), { dtype: "bf16" })
    .store("s", x.amax(4), { layout: "mmajor" })
    .finish();
  const xs = Float32Array.from({ length: 3 * 8 }, (_, i) => i - 10);
  const init = { y: new Uint16Array(4 * 8).fill(0xffff), s: new Float32Array(2 * 4).fill(NaN) };
  const out = interpret(p, { inputs: { x: xs }, geometry: { m: 3, rows: 4 }, outputs: init });
  const y = decodeArray("bf16", out.y);
  assertEquals([...y.slice(0, 8)], [-20, -18, -16, -14, -12, -10, -8, -6]);
  assertEquals([...y.slice(24)], new Array(8).fill(0), "tail row zeroed");
  // s is [2 groups, 4 rows]: (row r, group g) at g * 4 + r
  assertEquals([...out.s as Float32Array], [10, 2, 9, 0, 6, 5, 13, 0]);
});

Deno.test("interpret: initial outputs are raw bytes in any array type (a byte poison keeps its bytes)", () => {
  // the GPU tests poison with Uint8Array(0xff) whatever the output's dtype: the interpreter must copy the
  // bytes into a float buffer, not assign floats into the byte array
  const x = input("x", "f32", 8).load();
  const p = new RowProgram("poison").store("s", x.amax(4), { layout: "mmajor" }).store("r", x.amax(8))
    .finish();
  const xs = Float32Array.from({ length: 8 }, (_, i) => i + 0.5);
  const out = interpret(p, {
    inputs: { x: xs },
    geometry: { m: 1, rows: 2 },
    outputs: { s: new Uint8Array(16).fill(0xff), r: new Uint8Array(8).fill(0xff) },
  });
  assert(out.s instanceof Float32Array && out.r instanceof Float32Array);
  assertEquals([...out.s], [3.5, 0, 7.5, 0], "(row 0, group g) at g · 2 + 0; the padding row zeroed");
  assertEquals([...out.r], [7.5, 0]);
  let threw = false;
  try {
    interpret(p, { inputs: { x: xs }, geometry: { m: 1, rows: 2 }, outputs: { s: new Uint8Array(15) } });
  } catch (e) {
    threw = e instanceof RangeError && /15 bytes/.test(e.message);
  }
  assert(threw, "a wrong-sized initial buffer is refused");
});

Deno.test("interpret: packed UE8M0 bytes, unused bytes of the last word zeroed", () => {
  const x = input("x", "f32", 24).load();
  const { scale } = quantize(x, { format: "fp8e4m3", group: 4, ue8m0: true });
  const p = new RowProgram("pk").store("s", scale, { layout: "mmajor_packed4", dtype: "ue8m0" }).finish();
  const xs = Float32Array.from({ length: 2 * 24 }, (_, i) => (i % 24) * 16);
  const out = interpret(p, {
    inputs: { x: xs },
    geometry: { m: 2, rows: 2 },
    outputs: { s: new Uint8Array(2 * 2 * 4).fill(0xee) },
  });
  const b = out.s as Uint8Array;
  // 6 groups -> 2 words per row; word p of row r at (p * 2 + r) * 4
  const amax = [3, 7, 11, 15, 19, 23].map((v) => v * 16);
  const want = amax.map((a) => (Math.ceil(Math.log2(f(a * f(1 / 448)))) + 127));
  for (const r of [0, 1]) {
    assertEquals([...b.slice(r * 4, r * 4 + 4)], want.slice(0, 4));
    assertEquals([...b.slice((2 + r) * 4, (2 + r) * 4 + 4)], [...want.slice(4), 0, 0]);
  }
});

Deno.test("interpret: masked rows are untouched, scatter skips negative indices", () => {
  const x = input("x", "f32", 4).load();
  const pm = new RowProgram("mk", "masked").store("y", x.neg()).finish();
  const xs = Float32Array.from({ length: 2 * 3 * 4 }, (_, i) => i + 1);
  const out = interpret(pm, {
    inputs: { x: xs },
    geometry: { m: 0, rows: 6, experts: 2, tokensPad: 3 },
    maskedM: new Int32Array([1, 5]),
    outputs: { y: new Float32Array(24).fill(7) },
  });
  const y = [...out.y as Float32Array];
  assertEquals(y.slice(0, 4), [-1, -2, -3, -4]);
  assertEquals(y.slice(4, 12), new Array(8).fill(7), "expert 0: tokens 1, 2 untouched");
  assertEquals(y.slice(12), [...xs.slice(12)].map((v) => -v), "expert 1: maskedM 5 clamps to T_pad 3");

  const ps = new RowProgram("sc").store("y", x.mul(10), { rowIndex: "slot", width: 4 }).finish();
  const o2 = interpret(ps, {
    inputs: { x: xs.slice(0, 8) },
    index: { slot: new Int32Array([2, -1]) },
    geometry: { m: 2, rows: 2, scatterRows: 3 },
  });
  assertEquals([...o2.y as Float32Array], [0, 0, 0, 0, 0, 0, 0, 0, 10, 20, 30, 40]);
});

Deno.test("interpret: concat, vector inputs, scalar and atomic_max stores", () => {
  const a = input("a", "f32", 2).load(), w = vectorInput("w", "f32", 2).load();
  const s = scalarInput("s").load();
  const p = new RowProgram("cc")
    .store("y", concat(a.mul(w), a.add(s)))
    .store("t", s.mul(2), { layout: "scalar" })
    .store("mx", a.abs().rmax(), { layout: "atomic_max" })
    .finish();
  const out = interpret(p, {
    inputs: {
      a: new Float32Array([1, -2, 3, 4]),
      w: new Float32Array([10, 100]),
      s: new Float32Array([0.5]),
    },
    geometry: { m: 2, rows: 2 },
  });
  assertEquals([...out.y as Float32Array], [10, -200, 1.5, -1.5, 30, 400, 3.5, 4.5]);
  assertEquals([...out.t as Float32Array], [1]);
  assertEquals([...out.mx as Float32Array], [4]);
});

Deno.test("interpret: with a ReduceTree, sums follow the kernel's order", () => {
  const x = input("x", "f32", 8).load();
  const p = new RowProgram("sum").store("s", x.sum()).finish();
  const v = [1e8, 3, -1e8, 3, 1, 1, 1, 1].map(f);
  // lanes 2, vec 2, chunks 2: lane l holds elements (c*2 + l)*2 + i
  const out = interpret(p, {
    inputs: { x: Float32Array.from(v) },
    geometry: { m: 1, rows: 1 },
    tree: { vec: 2, lanes: 2, chunks: 2 },
  });
  const lane0 = f(f(f(f(-0 + v[0]) + v[1]) + v[4]) + v[5]);
  const lane1 = f(f(f(f(-0 + v[2]) + v[3]) + v[6]) + v[7]);
  assertEquals((out.s as Float32Array)[0], f(lane0 + lane1));
  const seq = interpret(p, { inputs: { x: Float32Array.from(v) }, geometry: { m: 1, rows: 1 } });
  assert((seq.s as Float32Array)[0] !== (out.s as Float32Array)[0], "the order matters for this input");
});

Deno.test("interpret: int8 / int4 / fp4 stores pack their codes", () => {
  const x = input("x", "f32", 4).load();
  const p = new RowProgram("codes")
    .store("a", x.cast("i8", "trunc"), { dtype: "i8" })
    .store("b", x.cast("int4"), { dtype: "int4" })
    .store("c", x.cast("fp4e2m1"), { dtype: "fp4e2m1" })
    .finish();
  const out = interpret(p, {
    inputs: { x: new Float32Array([1.5, -2.5, 9, -0.2]) },
    geometry: { m: 1, rows: 1 },
  });
  assertEquals([...out.a as Int8Array], [1, -2, 9, 0]);
  assertEquals([...out.b as Uint8Array], [0xe2, 0x07], "int4: 2, -2 | 7, 0 (low nibble first)");
  assertEquals([...out.c as Uint8Array], [0xc3, 0x87], "fp4: 1.5, -2 | 6, -0");
  assertEquals([...encodeArray("fp4e2m1", [1.5, -2, 6, -0])], [...out.c as Uint8Array]);
});

Deno.test("interpret: a random quantize program has finite scales and codes in range", () => {
  const rng = new Rng();
  const x = input("x", "bf16", 256).load();
  const { q, scale } = quantize(x, { format: "fp8e4m3", group: 64 });
  const p = new RowProgram("rq").store("q", q, { dtype: "fp8e4m3" }).store("s", scale).finish();
  const xs = encodeArray("bf16", rng.normals(3 * 256, 5));
  const out = interpret(p, { inputs: { x: xs }, geometry: { m: 3, rows: 3 } });
  const s = out.s as Float32Array, codes = decodeArray("fp8e4m3", out.q);
  assert(s.every((v) => v > 0 && Number.isFinite(v)), `seed ${rng.seed}`);
  assert(codes.every((v) => Math.abs(v) <= 448), `seed ${rng.seed}`);
  assert(codes.some((v) => Math.abs(v) === 448), "each group's amax maps to ±448");
});
