/**
 * kiln's DSL layer: pure data and reference semantics (no Deno APIs, no FFI, no CUDA text).
 *
 * @module
 */
export * from "./dtype.ts";
export * from "./quant/mod.ts";
export * from "./safetensors.ts";
