/**
 * Row programs shared by the render tests (compile tier) and the GPU tests: the two user-scripted
 * examples (RMSNorm → group quant, silu(gate)·up → group quant) and a few demo programs.
 *
 * @module
 */
import { concat, input, param, type Program, quantize, RowProgram } from "../../dsl/expr/mod.ts";
import { tensorAmaxProgram, tensorQuantProgram } from "../../dsl/ops/group_quant_tensor.ts";

// The two user-scripted examples are the ones examples/group_quant.ts shows: test exactly those.
export {
  rmsnormQuantProgram as rmsnormQuant,
  siluMulQuantProgram as siluMulQuant,
} from "../../examples/group_quant.ts";

export function misc(): Program[] {
  const a = input("a", "f16", 256).load(), b = input("b", "f32", 64).load();
  const cat = new RowProgram("concat_demo").store("y", concat(a.exp(), b.mul(2).cast("f16")), {
    dtype: "f16",
  }).finish();
  const x = input("x", "bf16", 512).load();
  const scatter = new RowProgram("scatter_demo").store("kv", x.mul(param("scale")).cast("fp8e4m3"), {
    dtype: "fp8e4m3",
    rowIndex: "slot",
  }).finish();
  const { q: q4, scale: s4 } = quantize(x, { format: "int4", group: 32 });
  const { q: f4, scale: sf4 } = quantize(x, { format: "fp4e2m1", group: 16, ue8m0: true });
  const four = new RowProgram("four_bit_demo")
    .store("q4", q4, { dtype: "int4" }).store("s4", s4)
    .store("f4", f4, { dtype: "fp4e2m1" }).store("sf4", sf4, { layout: "mmajor_packed4", dtype: "ue8m0" })
    .finish();
  const tiny = new RowProgram("tiny_groups").store("s", x.amax(4), { layout: "mmajor" }).store("m", x.rmax(2))
    .finish();
  const src = { kind: "x", dtype: "bf16" } as const;
  const fp8 = { kind: "fp8", dtype: "fp8e4m3", scaleGroup: 128 } as const;
  const base = { K: 7168, dtype: "fp8e4m3", eps: 1e-10, rounding: "rcp", masked: false } as const;
  return [
    cat,
    scatter,
    four,
    tiny,
    tensorAmaxProgram({ ...base, source: src, scale: "dynamic" }),
    tensorQuantProgram({ ...base, source: src, scale: "dynamic" }),
    tensorQuantProgram({ ...base, source: src, scale: "param" }),
    tensorAmaxProgram({ ...base, source: fp8, scale: "dynamic", masked: true }),
    tensorQuantProgram({ ...base, source: fp8, scale: "dynamic", masked: true }),
    tensorQuantProgram({ ...base, source: { ...fp8, scaleGroup: 7168 }, scale: "tensor" }),
  ];
}
