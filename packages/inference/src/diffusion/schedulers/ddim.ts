import { addNoiseVp } from "./add-noise.ts";
import { checkSameLength, checkStepIndex } from "./checks.ts";
import { type DdimConfig, refuseUnsupported } from "./config.ts";
import { clip, predictEpsilon, predictX0 } from "./ddpm-parameterization.ts";
import type { NoiseSource, Scheduler, SchedulerOptions } from "./scheduler.ts";
import { integerTimesteps } from "./spacing.ts";
import { checkSteps, invalidParameter, strengthBeginIndex } from "./strength.ts";
import { trainSchedule } from "./train-schedule.ts";

/**
 * DDIM (Song et al. 2020), diffusers' `DDIMScheduler`: deterministic at η = 0; η > 0 adds fresh
 * noise at every step. Stateless between steps.
 */
export class DDIMScheduler implements Scheduler {
  readonly className = "DDIMScheduler";
  readonly numInferenceSteps: number;
  readonly timesteps: Float64Array;
  readonly sigmas = null;
  readonly initNoiseSigma = 1;
  readonly beginIndex: number;
  readonly #cfg: DdimConfig;
  readonly #alphasCumprod: Float64Array;
  /** ᾱ "before" timestep 0, where the last step lands. */
  readonly #finalAlphaCumprod: number;
  readonly #eta: number;

  constructor(cfg: DdimConfig, numInferenceSteps: number, options: SchedulerOptions = {}) {
    refuseUnsupported("DDIMScheduler", { thresholding: cfg.thresholding });
    const T = cfg.num_train_timesteps;
    checkSteps(numInferenceSteps, T);
    const eta = options.eta ?? 0;
    if (!(eta >= 0)) throw invalidParameter("eta", `${eta} is not a number of at least 0`);
    this.#cfg = cfg;
    this.#alphasCumprod = trainSchedule(cfg, cfg.rescale_betas_zero_snr).alphasCumprod;
    this.#finalAlphaCumprod = cfg.set_alpha_to_one ? 1 : (this.#alphasCumprod[0] as number);
    this.#eta = eta;
    this.numInferenceSteps = numInferenceSteps;
    this.timesteps = integerTimesteps(cfg.timestep_spacing, numInferenceSteps, T, cfg.steps_offset);
    this.beginIndex = strengthBeginIndex(numInferenceSteps, options.strength ?? 1);
  }

  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    return sample;
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, noise: NoiseSource): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    checkSameLength(modelOutput, sample, "DDIMScheduler.step");
    const cfg = this.#cfg;
    const t = this.timesteps[stepIndex] as number;
    // diffusers steps back by ⌊T/n⌋ whatever the spacing, not to the next scheduled timestep.
    const prevT = t - Math.floor(cfg.num_train_timesteps / this.numInferenceSteps);
    const at = this.#alphasCumprod[t] as number;
    const prev = prevT >= 0 ? (this.#alphasCumprod[prevT] as number) : this.#finalAlphaCumprod;
    // σ_t of the DDIM paper (eq. 16) times η.
    const std = this.#eta * Math.sqrt(((1 - prev) / (1 - at)) * (1 - at / prev));
    const direction = Math.sqrt(Math.max(0, 1 - prev - std * std));
    const fresh = this.#eta > 0 ? noise(sample.length) : null;
    if (fresh) checkSameLength(fresh, sample, "DDIMScheduler noise");
    return sample.map((x, i) => {
      const m = modelOutput[i] as number;
      let x0 = predictX0(cfg.prediction_type, m, x, at);
      const eps = predictEpsilon(cfg.prediction_type, m, x, x0, at);
      if (cfg.clip_sample) x0 = clip(x0, cfg.clip_sample_range);
      const next = Math.sqrt(prev) * x0 + direction * eps;
      return fresh ? next + std * (fresh[i] as number) : next;
    });
  }

  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    checkSameLength(original, noise, "DDIMScheduler.addNoise");
    return addNoiseVp(original, noise, this.#alphasCumprod[this.timesteps[stepIndex] as number] as number);
  }
}
