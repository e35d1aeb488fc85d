/** Numeric assertions and seeded random inputs for kiln's tests, examples and benchmarks. @module */
export * from "./assert.ts";
export * from "./random.ts";
