import { addNoiseVp } from "./add-noise.ts";
import { checkNextStep, checkSameLength, checkStepIndex } from "./checks.ts";
import { type PndmConfig, refuseUnsupported } from "./config.ts";
import type { NoiseSource, Scheduler, SchedulerOptions } from "./scheduler.ts";
import { integerTimesteps } from "./spacing.ts";
import { checkSteps, strengthBeginIndex } from "./strength.ts";
import { trainSchedule } from "./train-schedule.ts";

/**
 * PLMS timesteps: the n descending timesteps with the second one repeated. PLMS has no history
 * at its first step, so it takes an Euler-like step to t₁, then redoes that same step (the
 * repeated t₁ is where the UNet is evaluated for it) with the average of both slopes.
 */
export function plmsTimesteps(descending: Float64Array): Float64Array {
  if (descending.length < 2) return descending;
  const out = new Float64Array(descending.length + 1);
  out[0] = descending[0] as number;
  out.set(descending.subarray(1), 2);
  out[1] = descending[1] as number;
  return out;
}

/**
 * Pseudo linear multistep sampling (PLMS, Liu et al. 2022) as Stable Diffusion uses it: diffusers'
 * `PNDMScheduler` with `skip_prk_steps` (the Runge–Kutta warm-up is not implemented). Each step
 * combines up to four earlier ε predictions (Adams–Bashforth), so an instance keeps them and
 * must be stepped once per index, in order (it throws otherwise).
 */
export class PNDMScheduler implements Scheduler {
  readonly className = "PNDMScheduler";
  readonly numInferenceSteps: number;
  readonly timesteps: Float64Array;
  readonly sigmas = null;
  readonly initNoiseSigma = 1;
  readonly beginIndex: number;
  readonly #cfg: PndmConfig;
  readonly #alphasCumprod: Float64Array;
  readonly #finalAlphaCumprod: number;
  /** The model outputs of the latest steps (at most four), newest last. */
  #ets: Float32Array[] = [];
  /** The latents the first step started from: the repeated step restarts from them. */
  #firstSample: Float32Array | null = null;
  /** Steps taken so far (diffusers' `counter`). */
  #counter = 0;

  constructor(cfg: PndmConfig, numInferenceSteps: number, options: SchedulerOptions = {}) {
    refuseUnsupported("PNDMScheduler", { "skip_prk_steps false (PRK warm-up)": !cfg.skip_prk_steps });
    checkSteps(numInferenceSteps, cfg.num_train_timesteps);
    this.#cfg = cfg;
    this.#alphasCumprod = trainSchedule(cfg).alphasCumprod;
    this.#finalAlphaCumprod = cfg.set_alpha_to_one ? 1 : (this.#alphasCumprod[0] as number);
    this.numInferenceSteps = numInferenceSteps;
    this.timesteps = plmsTimesteps(
      integerTimesteps(cfg.timestep_spacing, numInferenceSteps, cfg.num_train_timesteps, cfg.steps_offset),
    );
    // diffusers' img2img pipeline slices the PLMS list (one longer than n) at the same index.
    this.beginIndex = strengthBeginIndex(numInferenceSteps, options.strength ?? 1);
  }

  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    return sample;
  }

  step(
    modelOutput: Float32Array,
    stepIndex: number,
    sample: Float32Array,
    _noise: NoiseSource,
  ): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    checkNextStep(stepIndex, this.beginIndex + this.#counter, this.className);
    checkSameLength(modelOutput, sample, "PNDMScheduler.step");
    const stride = Math.floor(this.#cfg.num_train_timesteps / this.numInferenceSteps);
    let t = this.timesteps[stepIndex] as number;
    let prevT = t - stride;
    const counter = this.#counter++;
    if (counter === 1) {
      // The repeated step: redo t₀ → t₁ (this evaluation was at t₁).
      prevT = t;
      t += stride;
    } else {
      this.#ets = [...this.#ets.slice(-3), modelOutput.slice()];
    }
    const ets = this.#ets;
    const e = (back: number, k: number) => (ets[ets.length - back] as Float32Array)[k] as number;
    let from = sample;
    // The Adams–Bashforth combination of the stored outputs (ε, or v before its conversion).
    let output: (k: number) => number;
    if (ets.length === 1 && counter === 0) {
      this.#firstSample = sample.slice();
      output = (k) => modelOutput[k] as number;
    } else if (ets.length === 1 && counter === 1) {
      from = this.#firstSample ?? sample;
      this.#firstSample = null;
      output = (k) => ((modelOutput[k] as number) + e(1, k)) / 2;
    } else if (ets.length === 2) {
      output = (k) => (3 * e(1, k) - e(2, k)) / 2;
    } else if (ets.length === 3) {
      output = (k) => (23 * e(1, k) - 16 * e(2, k) + 5 * e(3, k)) / 12;
    } else {
      output = (k) => (55 * e(1, k) - 59 * e(2, k) + 37 * e(3, k) - 9 * e(4, k)) / 24;
    }
    return this.#prevSample(from, t, prevT, output);
  }

  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    checkSameLength(original, noise, "PNDMScheduler.addNoise");
    return addNoiseVp(original, noise, this.#alphasCumprod[this.timesteps[stepIndex] as number] as number);
  }

  /** Formula (9) of the PNDM paper: the transfer from t to prevT along the predicted ε. */
  #prevSample(x: Float32Array, t: number, prevT: number, output: (k: number) => number): Float32Array {
    const at = this.#alphasCumprod[t] as number;
    const prev = prevT >= 0 ? (this.#alphasCumprod[prevT] as number) : this.#finalAlphaCumprod;
    const bt = 1 - at;
    const sampleCoeff = Math.sqrt(prev / at);
    const denom = at * Math.sqrt(1 - prev) + Math.sqrt(at * bt * prev);
    const v = this.#cfg.prediction_type === "v_prediction";
    return x.map((xi, k) => {
      const m = v ? Math.sqrt(at) * output(k) + Math.sqrt(bt) * xi : output(k);
      return sampleCoeff * xi - ((prev - at) * m) / denom;
    });
  }
}
