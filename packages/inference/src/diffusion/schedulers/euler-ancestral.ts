import { addNoiseVe } from "./add-noise.ts";
import { checkSameLength, checkStepIndex } from "./checks.ts";
import type { EulerAncestralConfig } from "./config.ts";
import { denoisedAtSigma, eulerInitNoiseSigma, eulerTimesteps, scaleBySigma } from "./euler-discrete.ts";
import { interpIndex } from "./numeric.ts";
import type { NoiseSource, Scheduler, SchedulerOptions } from "./scheduler.ts";
import { checkSteps, strengthBeginIndex } from "./strength.ts";
import { trainSchedule } from "./train-schedule.ts";

/**
 * Ancestral Euler (k-diffusion's `sample_euler_ancestral`, "Euler a"): each step goes down to a
 * lower σ deterministically, then adds fresh noise back up to the next σ. diffusers'
 * `EulerAncestralDiscreteScheduler`; it draws noise at every step, the last one included.
 */
export class EulerAncestralDiscreteScheduler implements Scheduler {
  readonly className = "EulerAncestralDiscreteScheduler";
  readonly numInferenceSteps: number;
  readonly timesteps: Float64Array;
  readonly sigmas: Float32Array;
  readonly initNoiseSigma: number;
  readonly beginIndex: number;
  readonly #prediction: EulerAncestralConfig["prediction_type"];

  constructor(cfg: EulerAncestralConfig, numInferenceSteps: number, options: SchedulerOptions = {}) {
    checkSteps(numInferenceSteps, cfg.num_train_timesteps);
    const train = trainSchedule(cfg, cfg.rescale_betas_zero_snr, true);
    this.timesteps = eulerTimesteps(
      cfg.timestep_spacing,
      numInferenceSteps,
      cfg.num_train_timesteps,
      cfg.steps_offset,
    );
    this.sigmas = Float32Array.from([...this.timesteps.map((t) => interpIndex(t, train.sigmas)), 0]);
    this.initNoiseSigma = eulerInitNoiseSigma(this.sigmas, cfg.timestep_spacing);
    this.numInferenceSteps = numInferenceSteps;
    this.beginIndex = strengthBeginIndex(numInferenceSteps, options.strength ?? 1);
    this.#prediction = cfg.prediction_type;
  }

  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    return scaleBySigma(sample, this.sigmas[stepIndex] as number);
  }

  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, noise: NoiseSource): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    checkSameLength(modelOutput, sample, "EulerAncestralDiscreteScheduler.step");
    const from = this.sigmas[stepIndex] as number;
    const to = this.sigmas[stepIndex + 1] as number;
    // Split the move to `to` into a deterministic part down to σ_down and fresh noise σ_up, with
    // σ_down² + σ_up² = σ_to², so the marginal at `to` is right.
    const up = Math.sqrt((to * to * (from * from - to * to)) / (from * from));
    const down = Math.sqrt(Math.max(0, to * to - up * up));
    const eps = noise(sample.length);
    checkSameLength(eps, sample, "EulerAncestralDiscreteScheduler noise");
    return sample.map((x, i) => {
      const denoised = denoisedAtSigma(this.#prediction, modelOutput[i] as number, x, from);
      return x + ((x - denoised) / from) * (down - from) + (eps[i] as number) * up;
    });
  }

  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    checkSameLength(original, noise, "EulerAncestralDiscreteScheduler.addNoise");
    return addNoiseVe(original, noise, this.sigmas[stepIndex] as number);
  }
}
