/**
 * Equality and short human descriptions of {@linkcode QuantArgs} and schemes, for labels and plans.
 *
 * @module
 */
import type { QuantArgs } from "./args.ts";

/** Field-by-field equality of two QuantArgs (null-safe). */
export function quantArgsEqual(a: QuantArgs | null, b: QuantArgs | null): boolean {
  if (a === null || b === null) return a === b;
  return a.num_bits === b.num_bits && a.type === b.type && a.symmetric === b.symmetric &&
    a.group_size === b.group_size && a.strategy === b.strategy &&
    (a.block_structure?.[0] ?? null) === (b.block_structure?.[0] ?? null) &&
    (a.block_structure?.[1] ?? null) === (b.block_structure?.[1] ?? null) &&
    a.dynamic === b.dynamic && a.actorder === b.actorder && a.scale_dtype === b.scale_dtype &&
    a.zp_dtype === b.zp_dtype;
}

/** The element format, e.g. `fp8e4m3`, `fp4e2m1`, `int4`, `int8`. */
export function elementName(a: QuantArgs): string {
  if (a.type === "float") return a.num_bits === 8 ? "fp8e4m3" : "fp4e2m1";
  return `int${a.num_bits}`;
}

/**
 * A short human description: `fp8e4m3 block 128x128`, `int4 group 32 asym`, `fp8e4m3 token dynamic`,
 * `fp4e2m1 tensor_group 16 local`.
 */
export function describeQuantArgs(a: QuantArgs): string {
  const parts = [elementName(a)];
  if (a.strategy === "block" && a.block_structure) {
    parts.push(`block ${a.block_structure[0]}x${a.block_structure[1]}`);
  } else if (a.strategy === "group" || a.strategy === "tensor_group") {
    parts.push(`${a.strategy} ${a.group_size}`);
  } else parts.push(a.strategy);
  if (!a.symmetric) parts.push("asym");
  if (a.dynamic === "local") parts.push("local");
  else if (a.dynamic) parts.push("dynamic");
  if (a.actorder) parts.push(`actorder ${a.actorder}`);
  if (a.scale_dtype === "torch.uint8") parts.push("e8m0 scales");
  else if (a.scale_dtype === "torch.float8_e4m3fn") parts.push("fp8 scales");
  return parts.join(" ");
}

/** `static` appended for static activations: `fp8e4m3 tensor static`. */
export function describeActivation(a: QuantArgs): string {
  return describeQuantArgs(a) + (a.dynamic ? "" : " static");
}

/** `int4 group 32 (weight-only)`, `fp8e4m3 channel + fp8e4m3 token dynamic`, ... for non-preset schemes. */
export function describeScheme(w: QuantArgs | null, a: QuantArgs | null): string {
  if (!w) return a ? `activations ${describeActivation(a)}` : "unquantized";
  return a ? `${describeQuantArgs(w)} + ${describeActivation(a)}` : `${describeQuantArgs(w)} (weight-only)`;
}
