import { AppError, SchedulerName, schedulerNameOf } from "@hybrid/protocol";
import { z } from "zod";
import { parseClassConfig, SchedulerClass, SchedulerConfig } from "./config.ts";
import { DDIMScheduler } from "./ddim.ts";
import { DPMSolverMultistepScheduler } from "./dpm-solver-multistep.ts";
import { EulerAncestralDiscreteScheduler } from "./euler-ancestral.ts";
import { EulerDiscreteScheduler } from "./euler-discrete.ts";
import { FlowMatchEulerDiscreteScheduler } from "./flow-match-euler.ts";
import { LCMScheduler } from "./lcm.ts";
import { PNDMScheduler } from "./pndm.ts";
import type { Scheduler, SchedulerOptions } from "./scheduler.ts";
import { invalidParameter } from "./strength.ts";

export { SchedulerClass, SchedulerConfig } from "./config.ts";
export { calculateShift, type ShiftConfig } from "./flow-match-euler.ts";
export type { NoiseSource, Scheduler, SchedulerOptions } from "./scheduler.ts";
export { SchedulerName };

/** Every name a request may give as `scheduler` (diffusers' class names are accepted too). */
export const schedulerNames: readonly SchedulerName[] = SchedulerName.options;

/**
 * What each public name runs: a class, and the options that define the name, forced over the
 * model's config (so `dpmpp_2m` never picks up Karras σs from a model that ships them on).
 * Everything else — training βs, prediction type, spacing… — comes from the model's config.
 */
const ALGORITHMS: Readonly<
  Record<SchedulerName, { cls: SchedulerClass; overrides: Record<string, unknown> }>
> = {
  euler: {
    cls: "EulerDiscreteScheduler",
    overrides: { use_karras_sigmas: false, use_exponential_sigmas: false, use_beta_sigmas: false },
  },
  euler_a: { cls: "EulerAncestralDiscreteScheduler", overrides: {} },
  ddim: { cls: "DDIMScheduler", overrides: {} },
  lcm: { cls: "LCMScheduler", overrides: {} },
  dpmpp_2m: {
    cls: "DPMSolverMultistepScheduler",
    overrides: { algorithm_type: "dpmsolver++", solver_order: 2, use_karras_sigmas: false },
  },
  dpmpp_2m_karras: {
    cls: "DPMSolverMultistepScheduler",
    overrides: {
      algorithm_type: "dpmsolver++",
      solver_order: 2,
      use_karras_sigmas: true,
      use_exponential_sigmas: false,
    },
  },
  // Only PLMS is implemented, which is how every SD config runs PNDM anyway.
  pndm: { cls: "PNDMScheduler", overrides: { skip_prk_steps: true } },
  flow_match_euler: { cls: "FlowMatchEulerDiscreteScheduler", overrides: {} },
};

/** The classes that sample flow-matching models (velocity on a straight noise–data path). */
const FLOW_CLASSES: ReadonlySet<SchedulerClass> = new Set(["FlowMatchEulerDiscreteScheduler"]);

/**
 * Whether a model is flow-matching (Flux, SD3) rather than DDPM-trained (SD 1.x/2.x, SDXL), by
 * its own `scheduler_config.json`: its class is one of diffusers' `FlowMatch*` schedulers, or
 * (a DPM-Solver config of a flow model, like Sana's) its `prediction_type` is
 * `flow_prediction`. The two families' models predict different things on different noise
 * paths, so a sampler of one family turns the other's outputs into noise, not an image.
 */
export function isFlowMatchConfig(config: SchedulerConfig): boolean {
  const cls = config._class_name;
  return (
    (typeof cls === "string" && cls.startsWith("FlowMatch")) || config.prediction_type === "flow_prediction"
  );
}

/**
 * Refuses a requested sampler of the other family than the model's (see
 * {@link isFlowMatchConfig}), naming the ones that fit.
 */
function checkFamily(name: string, cls: SchedulerClass, config: SchedulerConfig): void {
  const flowModel = isFlowMatchConfig(config);
  if (FLOW_CLASSES.has(cls) === flowModel) return;
  throw invalidParameter(
    "scheduler",
    `"${name}" does not fit this model, which is ${flowModel ? "flow-matching" : "DDPM-trained"} ` +
      `(use ${fittingNames(config).join(", ")})`,
  );
}

/** The public names that can sample the model of `config`. */
function fittingNames(config: SchedulerConfig): SchedulerName[] {
  const flowModel = isFlowMatchConfig(config);
  return schedulerNames.filter((n) => FLOW_CLASSES.has(ALGORITHMS[n].cls) === flowModel);
}

/** The class and forced options of a requested scheduler name. */
function algorithmOf(name: string): { cls: SchedulerClass; overrides: Record<string, unknown> } {
  const known = schedulerNameOf(name);
  if (!known) {
    throw invalidParameter("scheduler", `unknown scheduler "${name}" (one of ${schedulerNames.join(", ")})`);
  }
  return ALGORITHMS[known];
}

/** The class the model's own config names. */
function modelClassOf(config: SchedulerConfig): SchedulerClass {
  const name = config._class_name;
  if (name === undefined) {
    throw new AppError("internal", "The model's scheduler config has no _class_name.");
  }
  const cls = SchedulerClass.safeParse(name);
  if (!cls.success) {
    throw new AppError(
      "unsupported_operation",
      `The model's scheduler ${name} is not supported; choose one with scheduler (${fittingNames(config).join(", ")}).`,
      { details: { parameter: "scheduler" } },
    );
  }
  return cls.data;
}

/**
 * A scheduler for one generation of `numInferenceSteps` steps, built from a model's
 * `scheduler_config.json` the way diffusers builds it.
 *
 * @param config The parsed JSON of `scheduler_config.json`; its `_class_name` picks the
 *   algorithm unless `overrideName` does.
 * @param overrideName A public {@link SchedulerName} (or a diffusers class name, or a spelling
 *   `schedulerNameOf` accepts). It swaps the algorithm and keeps the model's training schedule,
 *   as `OtherScheduler.from_config(pipe.scheduler.config)` does; the options that define the name
 *   (Karras σs, DPM-Solver++ order 2, PLMS) are forced. Leave it out to run the model's own.
 * @param options Image-to-image `strength`, DDIM's `eta`; for flow matching the image token
 *   count (`imageSeqLen`, required when the config shifts dynamically) and `flowSigmas`.
 * @throws AppError `invalid_parameter` (parameter `scheduler`, `num_inference_steps` or
 *   `strength`) for a bad request, including a scheduler of the other family than the model's
 *   (flow-matching or DDPM, see {@link isFlowMatchConfig}); `unsupported_operation` when the
 *   model's config needs a feature not implemented here; `internal` when the model's config is
 *   malformed.
 */
export function createScheduler(
  config: unknown,
  numInferenceSteps: number,
  overrideName?: SchedulerName | string | null,
  options: SchedulerOptions = {},
): Scheduler {
  const raw = SchedulerConfig.safeParse(config);
  if (!raw.success) {
    throw new AppError("internal", "The model's scheduler config is not a JSON object.", {
      cause: raw.error,
      details: z.treeifyError(raw.error),
    });
  }
  const { cls, overrides } = overrideName
    ? algorithmOf(overrideName)
    : { cls: modelClassOf(raw.data), overrides: {} };
  if (overrideName) checkFamily(overrideName, cls, raw.data);
  const cfg = <C extends SchedulerClass>(c: C) => parseClassConfig(c, raw.data, overrides);
  switch (cls) {
    case "EulerDiscreteScheduler":
      return new EulerDiscreteScheduler(cfg(cls), numInferenceSteps, options);
    case "EulerAncestralDiscreteScheduler":
      return new EulerAncestralDiscreteScheduler(cfg(cls), numInferenceSteps, options);
    case "DDIMScheduler":
      return new DDIMScheduler(cfg(cls), numInferenceSteps, options);
    case "LCMScheduler":
      return new LCMScheduler(cfg(cls), numInferenceSteps, options);
    case "DPMSolverMultistepScheduler":
      return new DPMSolverMultistepScheduler(cfg(cls), numInferenceSteps, options);
    case "PNDMScheduler":
      return new PNDMScheduler(cfg(cls), numInferenceSteps, options);
    case "FlowMatchEulerDiscreteScheduler":
      return new FlowMatchEulerDiscreteScheduler(cfg(cls), numInferenceSteps, options);
  }
}
