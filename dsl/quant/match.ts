/**
 * How config targets and ignore entries match module names (quant-spec §1.7, §2.2, §4.6).
 *
 * kiln follows **compressed-tensors** by default (`mode: "compressed-tensors"`):
 * - a `re:` entry is a regex applied with Python's `re.match`: anchored at the start only, so
 *   `re:.*mlp` also matches `x.mlp.down_proj`;
 * - any other entry is an exact layer name, or an exact class name (`"Linear"`);
 * - when several targets match, exact names win, then `re:` targets (alphabetically), then class names.
 *
 * sglang differs (`mode: "sglang"`): a non-regex ignore entry matches as a **case-insensitive substring**
 * (`"self_attn"` ignores every attention projection, `"lm_head"` matches `model.lm_head`), class-name
 * targets match as case-insensitive substrings (`"Linear"` matches `QKVParallelLinear`), name targets are
 * tried in config order rather than by priority, and a target `Linear` is aliased to `FusedMoE`.
 *
 * Fused modules (`qkv_proj`, `gate_up_proj` via `packed_modules_mapping`) are resolved shard by shard;
 * in both modes kiln requires all shards to agree (sglang's rule; compressed-tensors would accept any shard).
 *
 * Names under a multimodal wrapper (`language_model.`, `model.language_model.`, `text_model.`) are also
 * tried without it ({@linkcode nameAliases}): configs name modules relative to the text model (Kimi-K2.5
 * ignores `lm_head`, stored as `language_model.lm_head`), which vLLM handles with its weight-name mapper.
 *
 * Native fp8 / mxfp4 / ModelOpt ignore lists use {@linkcode matchModulePath}: dotted module-path
 * boundaries (`mlp.gate` does not match `mlp.gate_up_proj`) plus `*` globs, each entry tried with and
 * without a leading `model.`.
 *
 * @module
 */
import { ConfigError } from "./errors.ts";
import { joinPath } from "./_json.ts";

/** Matching semantics: compressed-tensors (default) or sglang's. */
export type MatchMode = "compressed-tensors" | "sglang";

/** The packed-module mapping sglang's models declare when a config has none. */
export const DEFAULT_PACKED_MODULES: Readonly<Record<string, readonly string[]>> = Object.freeze({
  qkv_proj: ["q_proj", "k_proj", "v_proj"],
  gate_up_proj: ["gate_proj", "up_proj"],
});

/** sglang's fallback for native fp8 configs without `packed_modules_mapping` (PR #23467). */
export const FP8_FALLBACK_PACKED_MODULES: Readonly<Record<string, readonly string[]>> = Object.freeze({
  qkv_proj: ["q_proj", "k_proj", "v_proj"],
  gate_up_proj: ["gate_proj", "up_proj"],
  in_proj_ba: ["in_proj_b", "in_proj_a"],
  in_proj_qkvz: ["in_proj_qkv", "in_proj_z"],
});

const regexCache = new Map<string, RegExp>();

/** Translate the Python-only regex syntax that appears in configs to JavaScript. */
function pythonToJs(pattern: string): string {
  return pattern.replace(/\(\?P</g, "(?<").replace(/\(\?P=(\w+)\)/g, "\\k<$1>").replace(/\\Z/g, "$");
}

/**
 * The start-anchored RegExp of a `re:` entry (Python `re.match`). Throws {@linkcode ConfigError} at
 * `path` when the pattern does not compile.
 */
export function compileRegexEntry(entry: string, path = ""): RegExp {
  const hit = regexCache.get(entry);
  if (hit) return hit;
  const pattern = entry.slice(3);
  let re: RegExp;
  try {
    re = new RegExp(`^(?:${pythonToJs(pattern)})`);
  } catch (e) {
    throw new ConfigError(
      path,
      `invalid regular expression ${JSON.stringify(pattern)}: ${(e as Error).message}`,
    );
  }
  regexCache.set(entry, re);
  return re;
}

/** Compile every `re:` entry of a target or ignore list now, so a bad regex fails with its JSON path. */
export function validatePatterns(entries: readonly string[], path: string): void {
  entries.forEach((e, i) => {
    if (e.startsWith("re:")) compileRegexEntry(e, joinPath(path, i));
  });
}

const WRAPPER_RE = /^(?:model\.)?(?:language_model|text_model)\.(.+)$/;

/** The names a module is matched under: itself, and itself without a multimodal wrapper prefix. */
export function nameAliases(name: string): string[] {
  const m = WRAPPER_RE.exec(name);
  return m ? [name, m[1]] : [name];
}

/** compressed-tensors `match_name`: `re:` regex (prefix-anchored) or exact equality. */
export function matchName(name: string, entry: string): boolean {
  return entry.startsWith("re:") ? compileRegexEntry(entry).test(name) : name === entry;
}

/** Class match: exact (compressed-tensors) or case-insensitive substring (sglang). */
export function matchClass(classes: readonly string[], entry: string, mode: MatchMode): boolean {
  if (entry.startsWith("re:")) return classes.some((c) => compileRegexEntry(entry).test(c));
  if (mode === "sglang") return classes.some((c) => c.toLowerCase().includes(entry.toLowerCase()));
  return classes.includes(entry);
}

/**
 * The first ignore entry that matches a (non-fused) module, or null. compressed-tensors: name or class;
 * sglang: `re:` regex or case-insensitive substring of the name.
 */
export function ignoreEntryFor(
  name: string,
  classes: readonly string[],
  ignore: readonly string[],
  mode: MatchMode,
): string | null {
  const names = nameAliases(name);
  for (const e of ignore) {
    if (e.startsWith("re:")) {
      const re = compileRegexEntry(e);
      if (names.some((n) => re.test(n))) return e;
    } else if (mode === "sglang") {
      if (name.toLowerCase().includes(e.toLowerCase())) return e;
    } else if (names.includes(e) || classes.includes(e)) {
      return e;
    }
  }
  return null;
}

/**
 * The target a module matches, or null.
 *
 * compressed-tensors: an exact-name target, else the alphabetically first matching `re:` target, else a
 * class target. sglang: the first name/regex target in config order, else the first class target whose
 * name is a substring of a class.
 */
export function findTarget(
  name: string,
  classes: readonly string[],
  targets: readonly string[],
  mode: MatchMode,
): string | null {
  const names = nameAliases(name);
  const byName = (t: string) => names.some((n) => matchName(n, t));
  if (mode === "sglang") {
    for (const t of targets) if (byName(t)) return t;
    for (const t of targets) if (!t.startsWith("re:") && matchClass(classes, t, "sglang")) return t;
    return null;
  }
  for (const t of targets) if (!t.startsWith("re:") && names.includes(t)) return t;
  const regexes = targets.filter((t) => t.startsWith("re:")).sort();
  for (const t of regexes) if (byName(t)) return t;
  for (const t of targets) if (!t.startsWith("re:") && classes.includes(t)) return t;
  return null;
}

/** The shard names of a fused module name (`…qkv_proj` → `…q_proj`, `…k_proj`, `…v_proj`), or null. */
export function fusedShards(
  name: string,
  mapping: Readonly<Record<string, readonly string[]>>,
): string[] | null {
  const dot = name.lastIndexOf(".");
  const last = name.slice(dot + 1);
  const shards = Object.hasOwn(mapping, last) ? mapping[last] : undefined;
  if (!shards) return null;
  const parent = name.slice(0, dot + 1);
  return shards.map((s) => parent + s);
}

function globToRegex(glob: string): string {
  return glob.split("").map((
    c,
  ) => (c === "*" ? ".*" : c === "?" ? "." : c.replace(/[.+^${}()|[\]\\]/g, "\\$&"))).join("");
}

const globCache = new Map<string, RegExp>();

/**
 * sglang's `_module_path_match` for native fp8 ignore lists, extended with globs: true when `entry`
 * equals `name`, is a dotted prefix of it, or appears as whole dotted segments inside it. `*` matches any
 * characters (dots included), `?` one character. `re:` entries are regexes as elsewhere.
 */
export function matchModulePath(entry: string, name: string): boolean {
  if (entry.startsWith("re:")) return compileRegexEntry(entry).test(name);
  const e = entry.replace(/\.+$/, "");
  const n = name.replace(/\.+$/, "");
  if (e.includes("*") || e.includes("?")) {
    let re = globCache.get(e);
    if (!re) {
      re = new RegExp(`^(?:.*\\.)?${globToRegex(e)}(?:\\..*)?$`);
      globCache.set(e, re);
    }
    return re.test(n);
  }
  if (e === n || n.startsWith(e + ".")) return true;
  return `.${n}.`.includes(`.${e}.`);
}

/**
 * The first module-path ignore entry matching `name` (each entry tried with and without `model.`, as
 * sglang's `Fp8Config.from_config` adds both), or null.
 */
export function modulePathEntryFor(name: string, entries: readonly string[]): string | null {
  for (const entry of entries) {
    if (entry.startsWith("re:")) {
      if (matchModulePath(entry, name)) return entry;
      continue;
    }
    const base = entry.startsWith("model.") ? entry.slice(6) : entry;
    if (matchModulePath(base, name) || matchModulePath(`model.${base}`, name)) return entry;
  }
  return null;
}
