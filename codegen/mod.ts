/** kiln's code generators: DSL descriptors → {@linkcode KernelSource}. Pure and deterministic. @module */
export * from "./kernel_source.ts";
