/** kiln's code generators: DSL descriptors → {@linkcode KernelSource}. Pure and deterministic. @module */
export * from "./kernel_source.ts";
export * from "./kernels/gemm_sm90/mod.ts";
export * from "./kernels/gemm_small_m.ts";
export * from "./kernels/gemm_small_m_stream.ts";
export * from "./kernels/gemm_mma.ts";
export * from "./kernels/weight_quant.ts";
export * from "./expr/mod.ts";
export * from "./kernels/group_quant.ts";
export * from "./kernels/tq_store.ts";
export * from "./kernels/tq_decode.ts";
