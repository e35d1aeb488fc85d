/**
 * `QuantArgs`: how one tensor (weights, input or output activations, the KV cache) is quantized. Field for
 * field the compressed-tensors `QuantizationArgs` (quant-spec §1.1), with the same defaults, the same
 * inference of `strategy` from `group_size`, and the same validation rules, applied in the same order:
 *
 * 1. `strategy: null` is inferred: `group_size` null → `"tensor"`, > 0 → `"group"`, -1 → `"channel"`.
 * 2. `"token"` needs `dynamic` (static per-token quantization is impossible).
 * 3. `"group"` / `"tensor_group"` need `group_size > 0`, and `group_size > 0` needs one of them.
 * 4. `"block"` ⇔ `block_structure`.
 * 5. `actorder: "group"` needs `"group"` / `"tensor_group"`.
 * 6. `dynamic` needs `token`, `tensor`, `group` or `tensor_group`; `dynamic: "local"` needs `"tensor_group"`.
 * 7. `zp_dtype: null` is inferred (fp8 e4m3 for 4-bit float and 8-bit float, int8/int16/int32 for ints).
 *
 * Unknown keys are an error (`extra="forbid"`), except `observer` / `observer_kwargs`, which are accepted
 * (type-checked) and ignored: they only matter for calibration. Enum strings are lower-cased like
 * pydantic's `mode="before"` validators do; other values are NOT coerced (`"8"` is not a `num_bits`).
 * kiln is stricter than compressed-tensors in one place: `type: "float"` needs `num_bits` 4 or 8 always,
 * where compressed-tensors only fails when it has to infer `zp_dtype`.
 *
 * @example
 * ```ts
 * import { parseQuantArgs } from "./args.ts";
 * const w = parseQuantArgs({ num_bits: 4, group_size: 128 }, "weights");
 * // w.strategy === "group", w.type === "int", w.symmetric === true
 * ```
 * @module
 */
import { ConfigError } from "./errors.ts";
import {
  describeValue,
  expectBool,
  expectInt,
  expectObject,
  expectString,
  forbidExtraKeys,
  isObject,
  joinPath,
} from "./_json.ts";

/** Quantization strategies, i.e. the scope one scale covers (quant-spec §1.1, §1.5). */
export const QUANT_STRATEGIES = [
  "tensor",
  "channel",
  "group",
  "block",
  "token",
  "tensor_group",
  "attn_head",
] as const;
/** One of {@linkcode QUANT_STRATEGIES}. */
export type QuantStrategy = typeof QUANT_STRATEGIES[number];
/** Integer or floating-point codes. */
export type QuantType = "int" | "float";
/** `true`: all qparams at run time; `"local"`: local (group) scales dynamic, global scale static. */
export type DynamicMode = boolean | "local";
/** GPTQ activation ordering after alias resolution (`"dynamic"` → `"group"`, `"static"` → `"weight"`). */
export type ActOrder = "group" | "weight";

/** torch dtype strings accepted for `scale_dtype` / `zp_dtype` (stored with the `torch.` prefix). */
export const TORCH_DTYPES = [
  "torch.float8_e4m3fn",
  "torch.float8_e5m2",
  "torch.float8_e8m0fnu",
  "torch.uint8",
  "torch.int8",
  "torch.int16",
  "torch.int32",
  "torch.bfloat16",
  "torch.float16",
  "torch.float32",
  "torch.float64",
] as const;

/** The fields of compressed-tensors' `QuantizationArgs` after validation (strategy always resolved). */
export interface QuantArgs {
  readonly num_bits: number;
  readonly type: QuantType;
  readonly symmetric: boolean;
  /** > 0 = group length along K; -1 = channel; null = none. */
  readonly group_size: number | null;
  readonly strategy: QuantStrategy;
  /** `[rows, cols]` = `[bn, bk]`: rows tile the output dim N, cols tile K (quant-spec §4.6). */
  readonly block_structure: readonly [number, number] | null;
  readonly dynamic: DynamicMode;
  readonly actorder: ActOrder | null;
  /** e.g. `"torch.float8_e4m3fn"` (NVFP4) or `"torch.uint8"` (MX formats); null = the observed dtype. */
  readonly scale_dtype: string | null;
  /** Inferred when not given, as compressed-tensors does. */
  readonly zp_dtype: string | null;
}

/** Programmatic input for {@linkcode quantArgs}: any subset of the fields, defaults filled in. */
export interface QuantArgsInput {
  num_bits?: number;
  type?: QuantType;
  symmetric?: boolean;
  group_size?: number | null;
  strategy?: QuantStrategy | null;
  block_structure?: readonly [number, number] | null;
  dynamic?: DynamicMode;
  actorder?: ActOrder | null;
  scale_dtype?: string | null;
  zp_dtype?: string | null;
}

const FIELDS = [
  "num_bits",
  "type",
  "symmetric",
  "group_size",
  "strategy",
  "block_structure",
  "dynamic",
  "actorder",
  "scale_dtype",
  "zp_dtype",
  "observer",
  "observer_kwargs",
] as const;

/**
 * Build validated QuantArgs from a partial description (defaults: 8-bit int, symmetric, static,
 * strategy inferred). Throws {@linkcode ConfigError} with paths under `path` for invalid combinations.
 *
 * @example
 * ```ts
 * import { quantArgs } from "./args.ts";
 * const fp8Block = quantArgs({ type: "float", strategy: "block", block_structure: [128, 128] });
 * ```
 */
export function quantArgs(input: QuantArgsInput = {}, path = ""): QuantArgs {
  return finalize({
    num_bits: input.num_bits ?? 8,
    type: input.type ?? "int",
    symmetric: input.symmetric ?? true,
    group_size: input.group_size ?? null,
    strategy: input.strategy ?? null,
    block_structure: input.block_structure ? [input.block_structure[0], input.block_structure[1]] : null,
    dynamic: input.dynamic ?? false,
    actorder: input.actorder ?? null,
    scale_dtype: input.scale_dtype === undefined || input.scale_dtype === null
      ? null
      : torchDtype(input.scale_dtype, joinPath(path, "scale_dtype")),
    zp_dtype: input.zp_dtype === undefined || input.zp_dtype === null
      ? null
      : torchDtype(input.zp_dtype, joinPath(path, "zp_dtype")),
  }, path);
}

/**
 * Parse one serialized `QuantizationArgs` object (from a config.json) at JSON path `path`.
 * Checks every field's type, forbids unknown keys, fills defaults and applies the validation rules.
 */
export function parseQuantArgs(raw: unknown, path: string): QuantArgs {
  const o = expectObject(raw, path);
  forbidExtraKeys(o, FIELDS, path, "QuantizationArgs");
  const p = (k: string) => joinPath(path, k);
  const has = (k: string) => o[k] !== undefined;

  const num_bits = has("num_bits") ? expectInt(o.num_bits, p("num_bits")) : 8;
  const type = has("type")
    ? lowerEnum(o.type, ["int", "float"] as const, p("type"), "quantization type")
    : "int";
  const symmetric = has("symmetric") ? expectBool(o.symmetric, p("symmetric")) : true;
  const group_size = has("group_size") && o.group_size !== null
    ? expectInt(o.group_size, p("group_size"))
    : null;
  const strategy = has("strategy") && o.strategy !== null
    ? lowerEnum(o.strategy, QUANT_STRATEGIES, p("strategy"), "strategy")
    : null;
  const block_structure = has("block_structure") && o.block_structure !== null
    ? parseBlockStructure(o.block_structure, p("block_structure"))
    : null;
  const dynamic = has("dynamic") ? parseDynamic(o.dynamic, p("dynamic")) : false;
  const actorder = has("actorder") ? parseActorder(o.actorder, p("actorder")) : null;
  const scale_dtype = has("scale_dtype") && o.scale_dtype !== null
    ? torchDtype(expectString(o.scale_dtype, p("scale_dtype")), p("scale_dtype"))
    : null;
  const zp_dtype = has("zp_dtype") && o.zp_dtype !== null
    ? torchDtype(expectString(o.zp_dtype, p("zp_dtype")), p("zp_dtype"))
    : null;
  if (has("observer") && o.observer !== null) expectString(o.observer, p("observer"));
  if (has("observer_kwargs") && !isObject(o.observer_kwargs)) {
    throw new ConfigError(p("observer_kwargs"), `must be an object, got ${describeValue(o.observer_kwargs)}`);
  }
  return finalize(
    {
      num_bits,
      type,
      symmetric,
      group_size,
      strategy,
      block_structure,
      dynamic,
      actorder,
      scale_dtype,
      zp_dtype,
    },
    path,
  );
}

interface Fields {
  num_bits: number;
  type: QuantType;
  symmetric: boolean;
  group_size: number | null;
  strategy: QuantStrategy | null;
  block_structure: [number, number] | null;
  dynamic: DynamicMode;
  actorder: ActOrder | null;
  scale_dtype: string | null;
  zp_dtype: string | null;
}

function finalize(f: Fields, path: string): QuantArgs {
  const p = (k: string) => joinPath(path, k);
  if (!Number.isInteger(f.num_bits) || f.num_bits < 1 || f.num_bits > 32) {
    throw new ConfigError(p("num_bits"), `must be an integer from 1 to 32, got ${f.num_bits}`);
  }
  if (f.type === "float" && f.num_bits !== 8 && f.num_bits !== 4) {
    throw new ConfigError(
      p("num_bits"),
      `float quantization has 4-bit (e2m1) and 8-bit (e4m3) codes only, got ${f.num_bits}`,
    );
  }
  const g = f.group_size;
  if (g !== null && g < -1) {
    throw new ConfigError(p("group_size"), `must be > 0 (group), -1 (channel) or null, got ${g}`);
  }
  if (f.block_structure) {
    const [r, c] = f.block_structure;
    if (!(Number.isInteger(r) && Number.isInteger(c) && r > 0 && c > 0)) {
      throw new ConfigError(
        p("block_structure"),
        `must be two positive integers [rows, cols], got [${r}, ${c}]`,
      );
    }
  }
  // 1. strategy inference
  let strategy = f.strategy;
  if (strategy === null) {
    if (g === null) strategy = "tensor";
    else if (g > 0) strategy = "group";
    else if (g === -1) strategy = "channel";
    else {
      throw new ConfigError(
        p("group_size"),
        `cannot infer a strategy from group_size ${g}: use > 0 for "group" or -1 for "channel"`,
      );
    }
  }
  // 2. token needs dynamic
  if (strategy === "token" && !f.dynamic) {
    throw new ConfigError(
      p("dynamic"),
      `must be true when strategy is "token" (static per-token quantization is impossible)`,
    );
  }
  // 3. group sizes
  const grouped = strategy === "group" || strategy === "tensor_group";
  if (grouped && g === null) {
    throw new ConfigError(p("group_size"), `required when strategy is "${strategy}"`);
  }
  if (grouped && g !== null && g <= 0) {
    throw new ConfigError(p("group_size"), `must be > 0 when strategy is "${strategy}", got ${g}`);
  }
  if (!grouped && g !== null && g > 0) {
    throw new ConfigError(
      p("group_size"),
      `${g} needs strategy "group" or "tensor_group", got strategy "${strategy}"`,
    );
  }
  // 4. block ⇔ block_structure
  if (strategy === "block" && !f.block_structure) {
    throw new ConfigError(p("block_structure"), `required when strategy is "block"`);
  }
  if (strategy !== "block" && f.block_structure) {
    throw new ConfigError(
      p("block_structure"),
      `only allowed with strategy "block", got strategy "${strategy}"`,
    );
  }
  // 5. actorder
  if (f.actorder === "group" && !grouped) {
    throw new ConfigError(
      p("actorder"),
      `"group" needs strategy "group" or "tensor_group", got "${strategy}"`,
    );
  }
  // 6. dynamic strategies
  if (f.dynamic) {
    if (!["token", "tensor", "tensor_group", "group"].includes(strategy)) {
      throw new ConfigError(
        p("dynamic"),
        `dynamic quantization needs strategy token, tensor, group or tensor_group, got "${strategy}"`,
      );
    }
    if (f.dynamic === "local" && strategy !== "tensor_group") {
      throw new ConfigError(p("dynamic"), `"local" needs strategy "tensor_group", got "${strategy}"`);
    }
  }
  // 7. zp_dtype inference
  const zp_dtype = f.zp_dtype ?? inferZpDtype(f.type, f.num_bits);
  return Object.freeze({
    num_bits: f.num_bits,
    type: f.type,
    symmetric: f.symmetric,
    group_size: g,
    strategy,
    block_structure: f.block_structure
      ? Object.freeze([f.block_structure[0], f.block_structure[1]]) as [number, number]
      : null,
    dynamic: f.dynamic,
    actorder: f.actorder,
    scale_dtype: f.scale_dtype,
    zp_dtype,
  });
}

function inferZpDtype(type: QuantType, bits: number): string {
  if (type === "float") return "torch.float8_e4m3fn";
  if (bits <= 8) return "torch.int8";
  if (bits <= 16) return "torch.int16";
  return "torch.int32";
}

function lowerEnum<T extends string>(v: unknown, values: readonly T[], path: string, what: string): T {
  const s = expectString(v, path).toLowerCase();
  if (!(values as readonly string[]).includes(s)) {
    throw new ConfigError(path, `unknown ${what} ${JSON.stringify(v)}; expected one of ${values.join(", ")}`);
  }
  return s as T;
}

function parseBlockStructure(v: unknown, path: string): [number, number] {
  let parts: unknown[];
  if (typeof v === "string") {
    // legacy "128x128"
    parts = v.split("x").map((s) => (/^\s*\d+\s*$/.test(s) ? Number(s) : NaN));
  } else if (Array.isArray(v)) {
    parts = v;
  } else {
    throw new ConfigError(path, `must be [rows, cols] or "RxC", got ${describeValue(v)}`);
  }
  if (parts.length !== 2 || !parts.every((x) => typeof x === "number" && Number.isInteger(x) && x > 0)) {
    throw new ConfigError(path, `must be two positive integers [rows, cols], got ${describeValue(v)}`);
  }
  return [parts[0] as number, parts[1] as number];
}

function parseDynamic(v: unknown, path: string): DynamicMode {
  if (typeof v === "boolean") return v;
  if (typeof v === "string" && v.toLowerCase() === "local") return "local";
  throw new ConfigError(path, `must be true, false or "local", got ${describeValue(v)}`);
}

function parseActorder(v: unknown, path: string): ActOrder | null {
  if (v === null) return null;
  if (typeof v === "boolean") return v ? "group" : null;
  if (typeof v === "string") {
    const s = v.toLowerCase();
    if (s === "group" || s === "dynamic") return "group";
    if (s === "weight" || s === "static") return "weight";
  }
  throw new ConfigError(
    path,
    `must be "group", "weight", "dynamic", "static", a boolean or null, got ${describeValue(v)}`,
  );
}

function torchDtype(s: string, path: string): string {
  const name = s.startsWith("torch.") ? s : `torch.${s}`;
  if (!(TORCH_DTYPES as readonly string[]).includes(name)) {
    throw new ConfigError(
      path,
      `unknown torch dtype ${JSON.stringify(s)}; expected one of ${TORCH_DTYPES.join(", ")}`,
    );
  }
  return name;
}
