import { addNoiseVe } from "./add-noise.ts";
import { checkSameLength, checkStepIndex } from "./checks.ts";
import { type EulerDiscreteConfig, refuseUnsupported } from "./config.ts";
import { f32, interpIndex, linspaceF32 } from "./numeric.ts";
import type { NoiseSource, Scheduler, SchedulerOptions } from "./scheduler.ts";
import { exponentialSigmas, karrasSigmas, sigmaToT } from "./sigma-schedules.ts";
import { spacedTimesteps, type TimestepSpacing } from "./spacing.ts";
import { checkSteps, strengthBeginIndex } from "./strength.ts";
import { type TrainSchedule, trainSchedule } from "./train-schedule.ts";

/** The σ schedule of a k-diffusion-style (Euler) sampler. */
export interface SigmaSchedule {
  readonly train: TrainSchedule;
  /** UNet timesteps, float32 values. */
  readonly timesteps: Float64Array;
  /** σ per step plus the final one (float32, as diffusers stores them). */
  readonly sigmas: Float32Array;
  /** Starting noise scale. */
  readonly initNoiseSigma: number;
}

/** The Euler samplers' timesteps: float32, and `linspace` is not rounded to integers. */
export const eulerTimesteps = (spacing: TimestepSpacing, n: number, T: number, stepsOffset: number) =>
  spacedTimesteps(spacing, n, T, stepsOffset, f32);

/**
 * k-diffusion's starting noise scale: σ_max itself for schedules that start at the last training
 * timestep, sqrt(σ_max² + 1) for `leading` (kept for compatibility with the original SD code).
 */
export function eulerInitNoiseSigma(sigmas: Float32Array, spacing: TimestepSpacing): number {
  const max = sigmas.reduce((m, s) => Math.max(m, s), 0);
  return spacing === "leading" ? f32(Math.sqrt(f32(f32(max * max) + 1))) : max;
}

/** diffusers' `EulerDiscreteScheduler.set_timesteps` for `n` steps. */
export function eulerDiscreteSchedule(cfg: EulerDiscreteConfig, n: number): SigmaSchedule {
  refuseUnsupported("EulerDiscreteScheduler", { use_beta_sigmas: cfg.use_beta_sigmas });
  if ([cfg.use_karras_sigmas, cfg.use_exponential_sigmas].filter(Boolean).length > 1) {
    refuseUnsupported("EulerDiscreteScheduler", { "use_karras_sigmas with use_exponential_sigmas": true });
  }
  const T = cfg.num_train_timesteps;
  const train = trainSchedule(cfg, cfg.rescale_betas_zero_snr, true);
  let timesteps = eulerTimesteps(cfg.timestep_spacing, n, T, cfg.steps_offset);
  let sigmas: Float64Array =
    cfg.interpolation_type === "linear"
      ? timesteps.map((t) => interpIndex(t, train.sigmas))
      : // diffusers' log-linear branch yields n + 1 values from σ_max to σ_min (one more than
        // there are steps) and still appends the final σ; kept as is so the numbers match.
        linspaceF32(train.logSigmas[T - 1] as number, train.logSigmas[0] as number, n + 1).map((l) =>
          f32(Math.exp(l)),
        );
  if (cfg.use_karras_sigmas || cfg.use_exponential_sigmas) {
    const lo = cfg.sigma_min ?? (sigmas[sigmas.length - 1] as number);
    const hi = cfg.sigma_max ?? (sigmas[0] as number);
    sigmas = cfg.use_karras_sigmas ? karrasSigmas(lo, hi, n) : exponentialSigmas(lo, hi, n);
    timesteps = sigmas.map((s) => f32(sigmaToT(s, train.logSigmas)));
  }
  const last = cfg.final_sigmas_type === "sigma_min" ? (train.sigmas[0] as number) : 0;
  const all = Float32Array.from([...sigmas, last]);
  if (cfg.timestep_type === "continuous" && cfg.prediction_type === "v_prediction") {
    // EDM's c_noise = ln(σ)/4, which v-prediction EDM models (CosXL) are trained on.
    timesteps = Float64Array.from(all.subarray(0, all.length - 1), (s) => f32(0.25 * f32(Math.log(s))));
  }
  return { train, timesteps, sigmas: all, initNoiseSigma: eulerInitNoiseSigma(all, cfg.timestep_spacing) };
}

/** Divides by sqrt(σ² + 1) so the UNet sees unit-variance input, as k-diffusion samplers do. */
export function scaleBySigma(sample: Float32Array, sigma: number): Float32Array {
  const scale = Math.sqrt(sigma * sigma + 1);
  return sample.map((x) => x / scale);
}

/** The denoised estimate x₀ from the model output at noise level σ (latents at scale σ). */
export function denoisedAtSigma(
  prediction: "epsilon" | "v_prediction" | "sample" | "original_sample",
  modelOutput: number,
  sample: number,
  sigma: number,
): number {
  switch (prediction) {
    case "epsilon":
      return sample - sigma * modelOutput;
    case "v_prediction":
      return modelOutput * (-sigma / Math.sqrt(sigma * sigma + 1)) + sample / (sigma * sigma + 1);
    case "sample":
    case "original_sample":
      return modelOutput;
  }
}

/**
 * Euler's method on the probability-flow ODE (Karras et al. 2022, algorithm 2 without churn):
 * diffusers' `EulerDiscreteScheduler`, the usual "Euler" of SD front ends.
 */
export class EulerDiscreteScheduler implements Scheduler {
  readonly className = "EulerDiscreteScheduler";
  readonly numInferenceSteps: number;
  readonly timesteps: Float64Array;
  readonly sigmas: Float32Array;
  readonly initNoiseSigma: number;
  readonly beginIndex: number;
  readonly #prediction: EulerDiscreteConfig["prediction_type"];

  constructor(cfg: EulerDiscreteConfig, numInferenceSteps: number, options: SchedulerOptions = {}) {
    checkSteps(numInferenceSteps, cfg.num_train_timesteps);
    const schedule = eulerDiscreteSchedule(cfg, numInferenceSteps);
    this.numInferenceSteps = numInferenceSteps;
    this.timesteps = schedule.timesteps;
    this.sigmas = schedule.sigmas;
    this.initNoiseSigma = schedule.initNoiseSigma;
    this.beginIndex = strengthBeginIndex(numInferenceSteps, options.strength ?? 1);
    this.#prediction = cfg.prediction_type;
  }

  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    return scaleBySigma(sample, this.sigmas[stepIndex] as number);
  }

  step(
    modelOutput: Float32Array,
    stepIndex: number,
    sample: Float32Array,
    _noise: NoiseSource,
  ): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    checkSameLength(modelOutput, sample, "EulerDiscreteScheduler.step");
    const sigma = this.sigmas[stepIndex] as number;
    const dt = (this.sigmas[stepIndex + 1] as number) - sigma;
    return sample.map((x, i) => {
      const denoised = denoisedAtSigma(this.#prediction, modelOutput[i] as number, x, sigma);
      return x + ((x - denoised) / sigma) * dt;
    });
  }

  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    checkSameLength(original, noise, "EulerDiscreteScheduler.addNoise");
    return addNoiseVe(original, noise, this.sigmas[stepIndex] as number);
  }
}
