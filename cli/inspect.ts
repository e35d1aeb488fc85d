/**
 * `deno task inspect <config.json | model dir | quantization_config.json> [options]`: print the per-layer
 * quantization plan of a model as a table that groups repeated layers, or as JSON.
 *
 * Module names come from, in order: `--modules`, the model directory's `model.safetensors.index.json`, the
 * headers of its `.safetensors` files, or the architecture fields of `config.json` (a template; targets
 * that match nothing are then warnings, not errors).
 *
 * Options:
 *   --json                  machine-readable output
 *   --modules a,b,c | @file module (or tensor) names, comma-separated or one per line in a file
 *   --matching sglang       sglang's name matching instead of compressed-tensors' (see dsl/quant/match.ts)
 *   --cc 90                 check schemes against a device of this compute capability
 *   --moe-backend B         auto | marlin | triton | flashinfer_trtllm
 *
 * @example
 * ```sh
 * deno task inspect /models/DeepSeek-V3 --cc 90
 * ```
 * @module
 */
import { ConfigError } from "../dsl/quant/errors.ts";
import { findQuantizationConfig, parseQuantConfig } from "../dsl/quant/config.ts";
import { modulesFromArchitecture } from "../dsl/quant/arch.ts";
import { type ModuleInfo, modulesFromModuleNames, modulesFromTensorNames } from "../dsl/quant/modules.ts";
import type { MatchMode } from "../dsl/quant/match.ts";
import type { MoeBackend } from "../dsl/quant/select.ts";
import { planModel, type QuantPlan } from "../dsl/quant/plan.ts";
import { formatPlan, groupPlan } from "../dsl/quant/plan_format.ts";
import { SafetensorsError } from "../dsl/safetensors.ts";
import { checkpointTensorNames } from "../runtime/safetensors_file.ts";

/** Options of {@linkcode inspect}. */
export interface InspectOptions {
  readonly modules?: readonly string[];
  readonly matching?: MatchMode;
  readonly capability?: number;
  readonly moeBackend?: MoeBackend;
}

/** What {@linkcode inspect} found. `plan` is null for a model without a quantization config. */
export interface InspectResult {
  readonly plan: QuantPlan | null;
  /** Where the module names came from. */
  readonly moduleSource: string;
  readonly text: string;
  readonly json: unknown;
}

const PARAM_RE =
  /\.(weight|bias|weight_packed|weight_shape|weight_scale|weight_scale_inv|weight_scale_2|input_scale|weight_zero_point|weight_g_idx|weight_global_scale|input_global_scale|k_scale|v_scale|output_scale|qweight|qzeros|scales|g_idx)$/;

async function readJson(path: string): Promise<unknown> {
  const text = await Deno.readTextFile(path);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError("", `${path} is not valid JSON: ${(e as Error).message}`);
  }
}

function fromNames(names: readonly string[]): ModuleInfo[] {
  return names.length > 0 && names.every((n) => PARAM_RE.test(n))
    ? modulesFromTensorNames(names)
    : modulesFromModuleNames(names);
}

/** Build the plan of a config file or model directory. */
export async function inspect(path: string, opts: InspectOptions = {}): Promise<InspectResult> {
  const st = await Deno.stat(path);
  const dir = st.isDirectory ? path : null;
  const configPath = dir ? `${dir.replace(/\/$/, "")}/config.json` : path;
  const root = await readJson(configPath);
  if (typeof root !== "object" || root === null || Array.isArray(root)) {
    throw new ConfigError("", `${configPath} must hold a JSON object`);
  }
  const obj = root as Record<string, unknown>;
  // A bare quantization_config (as in fixtures) or a full config.json.
  const bare = obj.quant_method !== undefined || obj.config_groups !== undefined ||
    obj.quant_algo !== undefined;
  const found = bare ? { config: obj, path: "" } : findQuantizationConfig(obj);
  if (!found) {
    const text = `${configPath}: no quantization_config: the model is not quantized`;
    return { plan: null, moduleSource: "none", text, json: { quantized: false } };
  }
  const config = parseQuantConfig(found.config, { path: found.path });

  let modules: ModuleInfo[] | null = null;
  let moduleSource = "";
  let strict = true;
  const notes: string[] = [];
  if (opts.modules) {
    modules = fromNames(opts.modules);
    moduleSource = "--modules";
  } else if (dir) {
    const names = await checkpointTensorNames(dir);
    if (names) {
      modules = modulesFromTensorNames(names);
      moduleSource = "checkpoint tensor names";
    }
  }
  if (!modules) {
    const derived = bare ? null : modulesFromArchitecture(obj);
    if (!derived) {
      throw new ConfigError(
        "",
        `${configPath}: no module names (no checkpoint, no architecture fields): pass --modules`,
      );
    }
    modules = derived.modules;
    moduleSource = `derived from config.json (${derived.template})`;
    notes.push(...derived.notes);
    strict = false;
  }
  const plan = planModel(config, modules, {
    matching: opts.matching,
    capability: opts.capability,
    moeBackend: opts.moeBackend,
    strictTargets: strict,
  });
  const text = [
    `${configPath} — modules: ${moduleSource}`,
    ...notes.map((n) => `note: ${n}`),
    formatPlan(plan),
  ].join("\n");
  const json = {
    quantized: true,
    moduleSource,
    notes,
    source: plan.source,
    quantMethod: plan.quantMethod,
    format: plan.format,
    matching: plan.matching,
    capability: plan.capability,
    rows: groupPlan(plan).map((r) => ({
      where: r.where,
      modules: r.modules,
      count: r.count,
      status: r.plan.status,
      value: r.value,
    })),
    modules: plan.modules,
    kvCache: plan.kvCache,
    warnings: plan.warnings,
    planNotes: plan.notes,
  };
  return { plan, moduleSource, text, json };
}

/** Output sinks of {@linkcode main}. */
export interface Io {
  out(s: string): void;
  err(s: string): void;
}

const USAGE =
  "usage: deno task inspect <config.json | model dir> [--json] [--modules a,b,c | --modules @file] " +
  "[--matching compressed-tensors|sglang] [--cc 90] [--moe-backend auto|marlin|triton|flashinfer_trtllm]";

/** Run the CLI; returns the exit status (0 ok, 1 bad config or checkpoint, 2 usage). */
export async function main(
  args: readonly string[],
  io: Io = { out: (s) => console.log(s), err: (s) => console.error(s) },
): Promise<number> {
  let path: string | null = null;
  let json = false;
  const opts: { modules?: string[]; matching?: MatchMode; capability?: number; moeBackend?: MoeBackend } = {};
  try {
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      const next = () => {
        if (i + 1 >= args.length) throw new UsageError(`${a} needs a value`);
        return args[++i];
      };
      if (a === "--json") json = true;
      else if (a === "--modules") {
        const v = next();
        const list = v.startsWith("@") ? (await Deno.readTextFile(v.slice(1))).split(/\r?\n/) : v.split(",");
        opts.modules = list.map((s) => s.trim()).filter((s) => s.length > 0);
      } else if (a === "--matching") {
        const v = next();
        if (v !== "compressed-tensors" && v !== "sglang") {
          throw new UsageError(`--matching must be compressed-tensors or sglang, got ${v}`);
        }
        opts.matching = v;
      } else if (a === "--cc") {
        const v = next();
        if (!/^\d+$/.test(v)) throw new UsageError(`--cc must be an integer such as 90, got ${v}`);
        opts.capability = Number(v);
      } else if (a === "--moe-backend") {
        const v = next();
        if (!["auto", "marlin", "triton", "flashinfer_trtllm"].includes(v)) {
          throw new UsageError(`unknown --moe-backend ${v}`);
        }
        opts.moeBackend = v as MoeBackend;
      } else if (a === "-h" || a === "--help") {
        io.out(USAGE);
        return 0;
      } else if (a.startsWith("-")) throw new UsageError(`unknown option ${a}`);
      else if (path === null) path = a;
      else throw new UsageError(`unexpected argument ${a}`);
    }
    if (path === null) throw new UsageError("missing <config.json | model dir>");
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`error: ${e.message}\n${USAGE}`);
      return 2;
    }
    throw e;
  }
  try {
    const r = await inspect(path, opts);
    io.out(json ? JSON.stringify(r.json, null, 2) : r.text);
    return 0;
  } catch (e) {
    if (e instanceof ConfigError || e instanceof SafetensorsError || e instanceof Deno.errors.NotFound) {
      io.err(`error: ${(e as Error).message}`);
      return 1;
    }
    throw e;
  }
}

class UsageError extends Error {}

if (import.meta.main) Deno.exit(await main(Deno.args));
