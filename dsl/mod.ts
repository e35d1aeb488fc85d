/**
 * kiln's DSL layer: pure data and reference semantics (no Deno APIs, no FFI, no CUDA text).
 *
 * @module
 */
export * from "./dtype.ts";
export * from "./quant/mod.ts";
export * from "./safetensors.ts";
export * from "./ops/block_matmul.ts";
export * from "./expr/mod.ts";
export * from "./ops/group_quant.ts";
export * from "./ops/group_quant_ref.ts";
export * from "./ops/group_quant_tensor.ts";
export * from "./turboquant/mod.ts";
