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
