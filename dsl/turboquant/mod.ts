/**
 * TurboQuant KV-cache compression as data and reference semantics: presets and slot layouts, the
 * Lloyd–Max key codebooks, the Walsh–Hadamard rotation, bit packing, and TypeScript references of the
 * store (bit-exact with kiln's kernel) and of decode attention.
 *
 * @example
 * ```ts
 * import { encodeSlot, turboQuantLayout } from "./mod.ts";
 * const layout = turboQuantLayout("turboquant_k3v4_nc", 128);
 * const k = new Float32Array(128).map((_, i) => Math.sin(i)), v = k.map((x) => 2 * x);
 * console.log(encodeSlot(layout, k, v).length); // 118
 * ```
 * @module
 */
export * from "./f32.ts";
export * from "./codebook.ts";
export * from "./hadamard.ts";
export * from "./pack.ts";
export * from "./preset.ts";
export * from "./store_ref.ts";
export * from "./decode_ref.ts";
