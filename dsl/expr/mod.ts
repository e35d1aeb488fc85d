/**
 * The expression DSL for fused row-wise ops: build expressions over a row, quantize them, store them
 * into row-padded, M-major or scattered outputs, and get one kernel per program (codegen/expr) plus a
 * TypeScript interpreter that is the reference semantics.
 *
 * @example
 * ```ts
 * import { input, quantize, RowProgram } from "./mod.ts";
 * const [gate, up] = input("x", "bf16", 2 * 512).split(2);
 * const h = gate.silu().cast("bf16").mul(up).cast("bf16");
 * const { q, scale } = quantize(h, { format: "fp8e4m3", group: 128 });
 * const prog = new RowProgram("silu_mul_quant")
 *   .store("q", q, { dtype: "fp8e4m3" })
 *   .store("s", scale, { layout: "mmajor" })
 *   .finish();
 * console.log(prog.width); // 512
 * ```
 * @module
 */
export * from "./node.ts";
export * from "./math.ts";
export * from "./quantize.ts";
export * from "./program.ts";
export * from "./interpret.ts";
