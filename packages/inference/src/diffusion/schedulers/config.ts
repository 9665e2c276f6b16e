import { AppError } from "@hybrid/protocol";
import { z } from "zod";

/**
 * `scheduler_config.json` of a diffusers model, and the per-class views of it. Each class schema
 * keeps only the keys that class's `__init__` takes and fills the rest with that class's
 * defaults — exactly what diffusers' `SomeScheduler.from_config(config)` does — so that the
 * same file can drive any scheduler a request asks for.
 */

/** The diffusers scheduler classes implemented here. */
export const SchedulerClass = z.enum([
  "EulerDiscreteScheduler",
  "EulerAncestralDiscreteScheduler",
  "DDIMScheduler",
  "LCMScheduler",
  "DPMSolverMultistepScheduler",
  "PNDMScheduler",
  "FlowMatchEulerDiscreteScheduler",
]);
export type SchedulerClass = z.infer<typeof SchedulerClass>;

/** A model's `scheduler_config.json`: `_class_name` names the scheduler; other keys are kept as they are. */
export const SchedulerConfig = z.looseObject({ _class_name: z.string().optional() });
export type SchedulerConfig = z.infer<typeof SchedulerConfig>;

/** diffusers writes `null` for "use the default" (`"trained_betas": null`), so null and absent mean the same. */
function withDefault<T extends z.ZodType>(schema: T, fallback: z.output<T>) {
  return schema.nullish().transform((v): z.output<T> => v ?? fallback);
}

const flag = (fallback: boolean) => withDefault(z.boolean(), fallback);
const num = (fallback: number) => withDefault(z.number(), fallback);
const optionalNum = z
  .number()
  .nullish()
  .transform((v) => v ?? null);

/** How the training βs are laid out: linear, linear in sqrt(β) (SD's), or the cosine ᾱ of improved DDPM. */
export const BetaSchedule = z.enum(["linear", "scaled_linear", "squaredcos_cap_v2"]);
/** How inference timesteps are picked from the training range (see `spacing.ts`). */
export const TimestepSpacing = z.enum(["linspace", "leading", "trailing"]);
const FinalSigmasType = z.enum(["zero", "sigma_min"]);

interface BetaDefaults {
  beta_start: number;
  beta_end: number;
  beta_schedule: z.infer<typeof BetaSchedule>;
}
/** DDPM's defaults, which every class but LCM keeps. */
const DDPM: BetaDefaults = { beta_start: 0.0001, beta_end: 0.02, beta_schedule: "linear" };
/** Latent diffusion's schedule, LCM's defaults. */
const LDM: BetaDefaults = { beta_start: 0.00085, beta_end: 0.012, beta_schedule: "scaled_linear" };

/** The training-schedule keys every class takes, and the spacing keys all but LCM use. */
function common(d: BetaDefaults, spacing: z.infer<typeof TimestepSpacing>) {
  return {
    num_train_timesteps: withDefault(z.number().int().min(2), 1000),
    beta_start: num(d.beta_start),
    beta_end: num(d.beta_end),
    beta_schedule: withDefault(BetaSchedule, d.beta_schedule),
    trained_betas: z
      .array(z.number())
      .nullish()
      .transform((v) => v ?? null),
    timestep_spacing: withDefault(TimestepSpacing, spacing),
    steps_offset: withDefault(z.number().int().nonnegative(), 0),
  };
}

/** DDIM/LCM's x₀ post-processing; dynamic thresholding (pixel-space models) is refused later. */
const clipping = (clip: boolean) => ({
  clip_sample: flag(clip),
  clip_sample_range: num(1),
  thresholding: flag(false),
});

/**
 * Keys a class does not take but reads anyway when they are in the file: diffusers registers a
 * loaded file's leftover keys on the config, and the σ converters look `sigma_min`/`sigma_max`
 * up there.
 */
const sigmaBounds = { sigma_min: optionalNum, sigma_max: optionalNum };

/** `EulerDiscreteScheduler`'s view of the config. */
export const EulerDiscreteConfig = z.object({
  ...common(DDPM, "linspace"),
  prediction_type: withDefault(z.enum(["epsilon", "v_prediction", "sample", "original_sample"]), "epsilon"),
  interpolation_type: withDefault(z.enum(["linear", "log_linear"]), "linear"),
  use_karras_sigmas: flag(false),
  use_exponential_sigmas: flag(false),
  use_beta_sigmas: flag(false),
  ...sigmaBounds,
  timestep_type: withDefault(z.enum(["discrete", "continuous"]), "discrete"),
  rescale_betas_zero_snr: flag(false),
  final_sigmas_type: withDefault(FinalSigmasType, "zero"),
});
export type EulerDiscreteConfig = z.infer<typeof EulerDiscreteConfig>;

/** `EulerAncestralDiscreteScheduler`'s view of the config. */
export const EulerAncestralConfig = z.object({
  ...common(DDPM, "linspace"),
  // diffusers accepts "sample" here but raises when stepping; refuse it up front.
  prediction_type: withDefault(z.enum(["epsilon", "v_prediction"]), "epsilon"),
  rescale_betas_zero_snr: flag(false),
});
export type EulerAncestralConfig = z.infer<typeof EulerAncestralConfig>;

/** `DDIMScheduler`'s view of the config. */
export const DdimConfig = z.object({
  ...common(DDPM, "leading"),
  prediction_type: withDefault(z.enum(["epsilon", "v_prediction", "sample"]), "epsilon"),
  ...clipping(true),
  set_alpha_to_one: flag(true),
  rescale_betas_zero_snr: flag(false),
});
export type DdimConfig = z.infer<typeof DdimConfig>;

/** `LCMScheduler`'s view of the config (it ignores `timestep_spacing` and `steps_offset`). */
export const LcmConfig = z.object({
  ...common(LDM, "leading"),
  prediction_type: withDefault(z.enum(["epsilon", "v_prediction", "sample"]), "epsilon"),
  original_inference_steps: withDefault(z.number().int().positive(), 50),
  ...clipping(false),
  set_alpha_to_one: flag(true),
  timestep_scaling: num(10),
  rescale_betas_zero_snr: flag(false),
});
export type LcmConfig = z.infer<typeof LcmConfig>;

/** `DPMSolverMultistepScheduler`'s view of the config. */
export const DpmSolverConfig = z.object({
  ...common(DDPM, "linspace"),
  solver_order: withDefault(z.number().int().min(1).max(3), 2),
  prediction_type: withDefault(z.enum(["epsilon", "v_prediction", "sample", "flow_prediction"]), "epsilon"),
  // "deis" is diffusers' deprecated alias of dpmsolver++, as bh1/bh2/logrho are of midpoint.
  algorithm_type: withDefault(
    z.enum(["dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++", "deis"]),
    "dpmsolver++",
  ).transform((v) => (v === "deis" ? "dpmsolver++" : v)),
  solver_type: withDefault(z.enum(["midpoint", "heun", "logrho", "bh1", "bh2"]), "midpoint").transform((v) =>
    v === "heun" ? "heun" : "midpoint",
  ),
  lower_order_final: flag(true),
  euler_at_final: flag(false),
  use_karras_sigmas: flag(false),
  use_exponential_sigmas: flag(false),
  use_beta_sigmas: flag(false),
  use_lu_lambdas: flag(false),
  use_flow_sigmas: flag(false),
  use_dynamic_shifting: flag(false),
  ...sigmaBounds,
  final_sigmas_type: withDefault(FinalSigmasType, "zero"),
  // JSON has no -Infinity; diffusers' default means "no clipping".
  lambda_min_clipped: withDefault(
    z.custom<number>((v) => typeof v === "number" && !Number.isNaN(v)),
    Number.NEGATIVE_INFINITY,
  ),
  variance_type: z
    .enum(["learned", "learned_range"])
    .nullish()
    .transform((v) => v ?? null),
  thresholding: flag(false),
  rescale_betas_zero_snr: flag(false),
});
export type DpmSolverConfig = z.infer<typeof DpmSolverConfig>;

/** `PNDMScheduler`'s view of the config. */
export const PndmConfig = z.object({
  ...common(DDPM, "leading"),
  prediction_type: withDefault(z.enum(["epsilon", "v_prediction"]), "epsilon"),
  skip_prk_steps: flag(false),
  set_alpha_to_one: flag(false),
});
export type PndmConfig = z.infer<typeof PndmConfig>;

/**
 * `FlowMatchEulerDiscreteScheduler`'s view of the config (Flux, SD3). It has no training βs:
 * σ runs linearly from 1 (pure noise) to 0 (data), bent by `shift`, or per image size by
 * `use_dynamic_shifting` with μ interpolated between the two `*_image_seq_len` points.
 */
export const FlowMatchEulerConfig = z
  .object({
    num_train_timesteps: withDefault(z.number().int().min(2), 1000),
    shift: withDefault(z.number().positive(), 1),
    use_dynamic_shifting: flag(false),
    base_shift: num(0.5),
    max_shift: num(1.15),
    base_image_seq_len: withDefault(z.number().int().positive(), 256),
    max_image_seq_len: withDefault(z.number().int().positive(), 4096),
    invert_sigmas: flag(false),
    // diffusers tests it for truth, so 0 means "off" as null does.
    shift_terminal: optionalNum,
    use_karras_sigmas: flag(false),
    use_exponential_sigmas: flag(false),
    use_beta_sigmas: flag(false),
    time_shift_type: withDefault(z.enum(["exponential", "linear"]), "exponential"),
    stochastic_sampling: flag(false),
  })
  // μ is a line through (base_image_seq_len, base_shift) and (max_image_seq_len, max_shift).
  .refine((c) => c.base_image_seq_len !== c.max_image_seq_len, {
    message: "base_image_seq_len and max_image_seq_len must differ",
    path: ["max_image_seq_len"],
  });
export type FlowMatchEulerConfig = z.infer<typeof FlowMatchEulerConfig>;

/** Each class's view of the config, for {@link parseClassConfig}. */
export const classConfigs = {
  EulerDiscreteScheduler: EulerDiscreteConfig,
  EulerAncestralDiscreteScheduler: EulerAncestralConfig,
  DDIMScheduler: DdimConfig,
  LCMScheduler: LcmConfig,
  DPMSolverMultistepScheduler: DpmSolverConfig,
  PNDMScheduler: PndmConfig,
  FlowMatchEulerDiscreteScheduler: FlowMatchEulerConfig,
} as const;

/** The resolved config of class `C`. */
export type ClassConfig<C extends SchedulerClass> = z.output<(typeof classConfigs)[C]>;

/**
 * `config` as class `cls` sees it (keys it doesn't take dropped, its defaults filled in), with
 * `overrides` applied on top as `from_config(config, **overrides)` would.
 *
 * @throws AppError `internal` when the model's config is malformed: it comes with the model, not
 * with the request.
 */
export function parseClassConfig<C extends SchedulerClass>(
  cls: C,
  config: SchedulerConfig,
  overrides: Record<string, unknown> = {},
): ClassConfig<C> {
  // Widened to one schema type: a union of the classes' schemas would not type-check as one call.
  const schema: z.ZodType = classConfigs[cls];
  const parsed = schema.safeParse({ ...config, ...overrides });
  if (!parsed.success) {
    throw new AppError("internal", `The model's scheduler config is invalid for ${cls}.`, {
      cause: parsed.error,
      details: z.treeifyError(parsed.error),
    });
  }
  return parsed.data as ClassConfig<C>;
}

/**
 * Refuses a config option this implementation does not reproduce, rather than silently
 * producing numbers diffusers would not.
 *
 * @throws AppError `unsupported_operation` naming the option.
 */
export function refuseUnsupported(cls: SchedulerClass, options: Record<string, boolean>): void {
  const set = Object.entries(options)
    .filter(([, on]) => on)
    .map(([name]) => name);
  if (set.length > 0) {
    throw new AppError(
      "unsupported_operation",
      `${cls} with ${set.join(", ")} is not supported; choose another scheduler.`,
      { details: { parameter: "scheduler", options: set } },
    );
  }
}
