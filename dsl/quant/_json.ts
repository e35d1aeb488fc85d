/**
 * Private helpers for reading untrusted JSON with errors that carry a JSON path.
 *
 * @module
 */
import { ConfigError } from "./errors.ts";

/** A plain JSON object. */
export type JsonObject = Record<string, unknown>;

/** `base.key`, `base[3]`, or `base["odd.key"]` for keys that are not identifiers. */
export function joinPath(base: string, key: string | number): string {
  if (typeof key === "number") return `${base}[${key}]`;
  if (/^[A-Za-z0-9_-]+$/.test(key)) return base ? `${base}.${key}` : key;
  return `${base}[${JSON.stringify(key)}]`;
}

/** A short description of a JSON value for "got ..." messages. */
export function describeValue(v: unknown): string {
  if (v === null) return "null";
  if (v === undefined) return "nothing";
  if (Array.isArray(v)) return `array ${clip(JSON.stringify(v))}`;
  if (typeof v === "object") return `object ${clip(JSON.stringify(v))}`;
  if (typeof v === "string") return `string ${JSON.stringify(v)}`;
  return `${typeof v} ${String(v)}`;
}

function clip(s: string): string {
  return s.length > 60 ? s.slice(0, 57) + "..." : s;
}

/** True for a non-null, non-array object. */
export function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** `v` as an object, or a ConfigError at `path`. */
export function expectObject(v: unknown, path: string): JsonObject {
  if (!isObject(v)) throw new ConfigError(path, `must be an object, got ${describeValue(v)}`);
  return v;
}

/** `v` as a string, or a ConfigError at `path`. */
export function expectString(v: unknown, path: string): string {
  if (typeof v !== "string") throw new ConfigError(path, `must be a string, got ${describeValue(v)}`);
  return v;
}

/** `v` as a boolean, or a ConfigError at `path`. */
export function expectBool(v: unknown, path: string): boolean {
  if (typeof v !== "boolean") throw new ConfigError(path, `must be true or false, got ${describeValue(v)}`);
  return v;
}

/** `v` as a finite number, or a ConfigError at `path`. */
export function expectNumber(v: unknown, path: string): number {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new ConfigError(path, `must be a number, got ${describeValue(v)}`);
  }
  return v;
}

/** `v` as an integer, or a ConfigError at `path`. */
export function expectInt(v: unknown, path: string): number {
  if (typeof v !== "number" || !Number.isInteger(v)) {
    throw new ConfigError(path, `must be an integer, got ${describeValue(v)}`);
  }
  return v;
}

/** `v` as an array of strings, or a ConfigError at the path of the first bad element. */
export function expectStringList(v: unknown, path: string): string[] {
  if (!Array.isArray(v)) throw new ConfigError(path, `must be a list of strings, got ${describeValue(v)}`);
  return v.map((s, i) => expectString(s, joinPath(path, i)));
}

/** `v` as `{name: [strings]}`, or a ConfigError at the offending key. */
export function expectStringListMap(v: unknown, path: string): Record<string, string[]> {
  const o = expectObject(v, path);
  const out: Record<string, string[]> = {};
  for (const [k, list] of Object.entries(o)) out[k] = expectStringList(list, joinPath(path, k));
  return out;
}

/** Throws for the first key of `o` not in `allowed` (pydantic `extra="forbid"`). */
export function forbidExtraKeys(
  o: JsonObject,
  allowed: readonly string[],
  path: string,
  model: string,
): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) {
      throw new ConfigError(
        joinPath(path, k),
        `unknown field (${model} forbids extra fields; it has ${allowed.join(", ")})`,
      );
    }
  }
}

/** `oneOf` check for a string enum; the message lists the accepted values. */
export function expectOneOf<T extends string>(
  v: unknown,
  values: readonly T[],
  path: string,
  what: string,
): T {
  const s = expectString(v, path);
  if (!(values as readonly string[]).includes(s)) {
    throw new ConfigError(path, `unknown ${what} ${JSON.stringify(s)}; expected one of ${values.join(", ")}`);
  }
  return s as T;
}
