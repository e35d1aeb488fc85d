/**
 * kiln: quantization schemes and fused ops described in TypeScript, generated as CUDA C, compiled at
 * run time with NVRTC and launched through Deno FFI.
 *
 * @module
 */
export * from "./dsl/dtype.ts";
export * from "./codegen/kernel_source.ts";
export * from "./runtime/mod.ts";
export * from "./testing/mod.ts";
export * from "./ops/gemm_sm90.ts";
export * from "./ops/block_matmul.ts";
export * from "./ops/fp8_linear.ts";
export * from "./ops/group_quant.ts";
export * from "./ops/row_program.ts";
export * from "./ops/tensor_quant.ts";
export * from "./ops/turboquant.ts";
