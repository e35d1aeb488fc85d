/**
 * Errors of the quant-scheme DSL. Every error about a config names the JSON path of the offending field
 * (relative to the `quantization_config` object, or prefixed with where that object sat in `config.json`),
 * so a person can find it: `config_groups.group_0.weights.group_size: required when strategy is "group"`.
 *
 * @module
 */

/** A quantization config (or one of its fields) is malformed or contradicts the compressed-tensors rules. */
export class ConfigError extends Error {
  override name = "ConfigError";
  /**
   * @param path JSON path of the offending field, e.g. `config_groups.group_0.weights.group_size`
   *   (`""` for the config itself).
   * @param reason What is wrong, phrased to follow `path: `.
   */
  constructor(readonly path: string, readonly reason: string) {
    super(path ? `${path}: ${reason}` : reason);
  }
}

/**
 * A config that is well-formed but describes something kiln does not read yet (another `quant_method`,
 * online transforms, an fp8 format other than e4m3 ...). The message starts with `not supported yet: `.
 */
export class UnsupportedConfigError extends ConfigError {
  override name = "UnsupportedConfigError";
  constructor(path: string, what: string) {
    super(path, `not supported yet: ${what}`);
  }
}

/**
 * Planning a model found a contradiction between the config and the model's modules: shards of one fused
 * module (q/k/v, gate/up) that resolve to different schemes, MoE projections that disagree, or a config
 * target that matches no module. Carries the module (when there is one) and the config path behind it.
 */
export class PlanError extends ConfigError {
  override name = "PlanError";
  constructor(path: string, readonly module: string | null, reason: string) {
    super(path, module ? `module ${module}: ${reason}` : reason);
  }
}
