import { deepEqual as assertEquals, ok as assert, throws as assertThrows } from "node:assert/strict";
import {
  concat,
  constant,
  input,
  param,
  scalarInput,
  show,
  toposort,
  vectorInput,
} from "../../dsl/expr/node.ts";
import { quantize } from "../../dsl/expr/quantize.ts";
import { RowProgram } from "../../dsl/expr/program.ts";

Deno.test("expr: hash-consing gives one object per structure", () => {
  const x = input("x", "bf16", 256);
  const a = x.load().silu().mul(x.load().abs());
  const b = x.load().silu().mul(x.load().abs());
  assert(a === b);
  assert(x.load().add(1) !== x.load().add(2));
  assert(constant(0) !== constant(-0), "+0 and -0 are different constants");
  assert(x.cols(0, 128) !== x.cols(128, 128));
  assert(a.src[0].id < a.id, "sources are created first (ids are a topological order)");
});

Deno.test("expr: lengths broadcast by repetition, reductions divide", () => {
  const x = input("x", "f32", 1024).load();
  const g = x.amax(128);
  assertEquals(g.len, 8);
  assertEquals(x.mul(g).len, 1024);
  assertEquals(x.sum().len, 1);
  assertEquals(x.div(x.sum()).len, 1024);
  assertEquals(param("eps").len, 1);
  assertThrows(() => x.amax(100), RangeError);
  assertEquals(x.amax(256).add(x.amax(128)).len, 8);
  const y = input("y", "f32", 96).load();
  assertThrows(() => x.add(y), /do not broadcast/);
});

Deno.test("expr: inputs, slices and splits", () => {
  const x = input("x", "bf16", 512);
  const [g, u] = x.split(2);
  assertEquals([g.len, u.len], [256, 256]);
  assertEquals(show(u), "x[256:512]");
  assertEquals(show(x.load()), "x");
  assertThrows(() => x.cols(500, 20), RangeError);
  assertThrows(() => x.split(3), RangeError);
  assertThrows(() => input("X", "bf16", 8), TypeError);
  assertThrows(() => input("x", "int4", 8), TypeError);
  assertEquals(scalarInput("s").load().len, 1);
  assertEquals(vectorInput("w", "bf16", 64).decl.kind, "vector");
});

Deno.test("expr: casts validate the dtype", () => {
  const x = input("x", "f32", 8).load();
  assertEquals(show(x.cast("i8", "trunc")), "i8_rz(x)");
  assertEquals(show(x.cast("fp8e4m3", "trunc")), "fp8e4m3(x)", "float casts always round to nearest even");
  assertThrows(() => x.cast("u32"), TypeError);
});

Deno.test("expr: concat and toposort", () => {
  const a = input("a", "f32", 64).load(), b = input("b", "f32", 32).load();
  const c = concat(a.exp(), b.neg());
  assertEquals(c.len, 96);
  const order = toposort([c]);
  assertEquals(order[order.length - 1], c);
  for (const n of order) for (const s of n.src) assert(order.indexOf(s) < order.indexOf(n));
  assertThrows(() => concat(a), RangeError);
});

Deno.test("program: stores are validated and the width inferred", () => {
  const x = input("x", "bf16", 512).load();
  const { q, scale } = quantize(x, { format: "fp8e4m3", group: 128 });
  const p = new RowProgram("t").store("q", q, { dtype: "fp8e4m3" }).store("s", scale, { layout: "mmajor" })
    .finish();
  assertEquals(p.width, 512);
  assertEquals(p.inputs.map((i) => i.name), ["x"]);
  assertThrows(() => new RowProgram("t").store("q", x, { dtype: "fp8e4m3" }), /cast\(fp8e4m3\)/);
  assertThrows(() => new RowProgram("t").store("s", scale, { layout: "scalar" }), /per-row scalar/);
  assertThrows(() => new RowProgram("t").store("s", scale, { layout: "mmajor_packed4" }), /ue8m0/);
  assertThrows(() => new RowProgram("t").finish(), /no stores/);
  assertThrows(
    () => new RowProgram("t").store("s", x.sum(), { layout: "scalar" }).finish(),
    /must not depend on the row/,
  );
  assertThrows(() => new RowProgram("t").store("x", x).finish(), /used twice/);
  assertThrows(() => new RowProgram("t").store("y", x).store("y", x, { dtype: "bf16" }), /same dtype/);
  assertThrows(() => new RowProgram("Bad"), TypeError);
});

Deno.test("quantize: eps is validated, ue8m0 and rounding change the graph", () => {
  const x = input("x", "f32", 256).load();
  assertThrows(() => quantize(x, { format: "fp8e4m3", eps: 0 }), RangeError);
  const a = quantize(x, { format: "fp8e4m3", group: 128 });
  const b = quantize(x, { format: "fp8e4m3", group: 128, ue8m0: true });
  const c = quantize(x, { format: "fp8e4m3", group: 128, rounding: "div" });
  assert(a.q !== b.q && a.q !== c.q && b.scale.op === "pow2ceil");
  assertEquals(quantize(x, { format: "i8", rounding: "sglang" }).q.arg, { dtype: "i8", rounding: "trunc" });
  assertEquals(quantize(x, { format: "i8" }).q.arg, { dtype: "i8", rounding: "rne" });
});
