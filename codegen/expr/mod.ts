/** Row programs (dsl/expr) → CUDA kernels: schedules and the renderer. @module */
export * from "./schedule.ts";
export * from "./render.ts";
export { hexf } from "./prelude.ts";
