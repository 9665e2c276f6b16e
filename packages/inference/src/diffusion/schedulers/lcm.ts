import { addNoiseVp } from "./add-noise.ts";
import { checkSameLength, checkStepIndex } from "./checks.ts";
import { type LcmConfig, refuseUnsupported } from "./config.ts";
import { clip, predictX0 } from "./ddpm-parameterization.ts";
import { linspace } from "./numeric.ts";
import type { NoiseSource, Scheduler, SchedulerOptions } from "./scheduler.ts";
import { invalidParameter } from "./strength.ts";
import { trainSchedule } from "./train-schedule.ts";

/** σ_data of the consistency-model boundary condition (Song et al. 2023), fixed at 0.5 by LCM. */
const SIGMA_DATA = 0.5;

/**
 * LCM's timesteps: the distillation schedule has `original_inference_steps` points k-1, 2k-1, …
 * (k = ⌊T / original⌋), cut to its first ⌊original × strength⌋ for image-to-image; n of them
 * are taken at evenly spaced positions from the top, flooring.
 *
 * @throws AppError `invalid_parameter` when n steps can't be taken from that schedule.
 */
export function lcmTimesteps(cfg: LcmConfig, n: number, strength: number): Float64Array {
  const T = cfg.num_train_timesteps;
  const original = cfg.original_inference_steps;
  if (!(strength >= 0 && strength <= 1))
    throw invalidParameter("strength", `${strength} is not between 0 and 1`);
  if (original > T) {
    refuseUnsupported("LCMScheduler", { "original_inference_steps above num_train_timesteps": true });
  }
  const k = Math.floor(T / original);
  // Python's int() truncates the float product.
  const origin = Math.trunc(original * strength);
  if (!Number.isInteger(n) || n < 1 || n > T || Math.floor(origin / n) < 1 || n > original) {
    throw invalidParameter(
      strength < 1 ? "strength" : "num_inference_steps",
      `LCM takes 1 to ${origin} steps at strength ${strength}, not ${n}`,
    );
  }
  // Descending: position p of the reversed schedule is timestep (origin - p) × k - 1.
  return linspace(0, origin, n + 1)
    .subarray(0, n)
    .map((p) => (origin - Math.floor(p)) * k - 1);
}

/**
 * Latent Consistency Model multistep sampling (Luo et al. 2023), diffusers' `LCMScheduler`: each
 * step predicts the clean latents in one go through the consistency boundary condition, then
 * (except at the last step) re-noises them to the next timestep with fresh noise.
 *
 * Image-to-image differs from the other samplers as diffusers' LCM pipeline does: `strength`
 * shortens the distillation schedule the n steps are drawn from, and all n steps run
 * ({@link beginIndex} is 0).
 */
export class LCMScheduler implements Scheduler {
  readonly className = "LCMScheduler";
  readonly numInferenceSteps: number;
  readonly timesteps: Float64Array;
  readonly sigmas = null;
  readonly initNoiseSigma = 1;
  readonly beginIndex = 0;
  readonly #cfg: LcmConfig;
  readonly #alphasCumprod: Float64Array;

  constructor(cfg: LcmConfig, numInferenceSteps: number, options: SchedulerOptions = {}) {
    refuseUnsupported("LCMScheduler", { thresholding: cfg.thresholding });
    this.#cfg = cfg;
    this.#alphasCumprod = trainSchedule(cfg, cfg.rescale_betas_zero_snr).alphasCumprod;
    this.numInferenceSteps = numInferenceSteps;
    this.timesteps = lcmTimesteps(cfg, numInferenceSteps, options.strength ?? 1);
  }

  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    return sample;
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, noise: NoiseSource): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    checkSameLength(modelOutput, sample, "LCMScheduler.step");
    const cfg = this.#cfg;
    const t = this.timesteps[stepIndex] as number;
    const last = stepIndex === this.timesteps.length - 1;
    const at = this.#alphasCumprod[t] as number;
    // The consistency function's skip/output weights: c_skip → 1 and c_out → 0 as t → 0.
    const scaled = t * cfg.timestep_scaling;
    const cSkip = SIGMA_DATA ** 2 / (scaled ** 2 + SIGMA_DATA ** 2);
    const cOut = scaled / Math.sqrt(scaled ** 2 + SIGMA_DATA ** 2);
    const denoised = sample.map((x, i) => {
      let x0 = predictX0(cfg.prediction_type, modelOutput[i] as number, x, at);
      if (cfg.clip_sample) x0 = clip(x0, cfg.clip_sample_range);
      return cOut * x0 + cSkip * x;
    });
    if (last) return denoised;
    const prev = this.#alphasCumprod[this.timesteps[stepIndex + 1] as number] as number;
    const fresh = noise(sample.length);
    checkSameLength(fresh, sample, "LCMScheduler noise");
    const a = Math.sqrt(prev);
    const b = Math.sqrt(1 - prev);
    return denoised.map((d, i) => a * d + b * (fresh[i] as number));
  }

  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    checkSameLength(original, noise, "LCMScheduler.addNoise");
    return addNoiseVp(original, noise, this.#alphasCumprod[this.timesteps[stepIndex] as number] as number);
  }
}
