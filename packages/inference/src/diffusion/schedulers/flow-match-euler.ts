import { checkSameLength, checkStepIndex } from "./checks.ts";
import { type FlowMatchEulerConfig, refuseUnsupported } from "./config.ts";
import { f32, linspace } from "./numeric.ts";
import type { NoiseSource, Scheduler, SchedulerOptions } from "./scheduler.ts";
import { checkSteps, flowStrengthBeginIndex } from "./strength.ts";

/** The keys of a flow-matching config that place μ; missing or null ones take diffusers' defaults. */
export interface ShiftConfig {
  base_image_seq_len?: number | null;
  max_image_seq_len?: number | null;
  base_shift?: number | null;
  max_shift?: number | null;
}

/**
 * diffusers' `calculate_shift`, which the Flux and SD3 pipelines feed the scheduler as `mu`: a
 * line through (base_image_seq_len, base_shift) and (max_image_seq_len, max_shift) read at the
 * image's token count, so larger images spend more of the schedule at high noise.
 *
 * @param imageSeqLen Image tokens the transformer sees ((height / 16) × (width / 16) for Flux).
 * @param config The scheduler config; defaults 256, 4096, 0.5 and 1.15.
 */
export function calculateShift(imageSeqLen: number, config: ShiftConfig = {}): number {
  const baseLen = config.base_image_seq_len ?? 256;
  const maxLen = config.max_image_seq_len ?? 4096;
  const baseShift = config.base_shift ?? 0.5;
  const maxShift = config.max_shift ?? 1.15;
  // Operation for operation as diffusers (float64), so μ agrees to the last bit.
  const m = (maxShift - baseShift) / (maxLen - baseLen);
  const b = baseShift - m * baseLen;
  return imageSeqLen * m + b;
}

/**
 * σ ↦ shift·σ / (1 + (shift - 1)·σ): the static resolution shift (SD3's 3.0), in float64 as
 * numpy computes it or in float32 as torch does (or numpy on a float32 array).
 */
function staticShift(shift: number, sigma: number, single: boolean): number {
  if (!single) return (shift * sigma) / (1 + (shift - 1) * sigma);
  return f32(f32(f32(shift) * sigma) / f32(1 + f32(f32(shift - 1) * sigma)));
}

/** σ ↦ e^μ / (e^μ + (1/σ - 1)): the dynamic shift, same precision rule as {@link staticShift}. */
function timeShift(mu: number, sigma: number, single: boolean): number {
  if (!single) return Math.exp(mu) / (Math.exp(mu) + (1 / sigma - 1));
  const e = f32(Math.exp(mu));
  return f32(e / f32(e + f32(f32(1 / sigma) - 1)));
}

/**
 * The n shifted σs of diffusers' `set_timesteps` (without the final 0), float32 values.
 *
 * The arithmetic follows diffusers' dtypes, which is what makes the numbers match: the SD3 path
 * builds its σs in float64 numpy from the float32 σ_max/σ_min the constructor left, the Flux
 * path casts its σs to a float32 numpy array first, so its shift runs in float32.
 */
function flowSigmas(cfg: FlowMatchEulerConfig, n: number, mode: "flux" | "default", mu: number | null) {
  const T = cfg.num_train_timesteps;
  const shift = (sigma: number, single: boolean) =>
    mu === null ? staticShift(cfg.shift, sigma, single) : timeShift(mu, sigma, single);
  if (mode === "flux") return linspace(1, 1 / n, n).map((s) => f32(shift(f32(s), true)));
  // The constructor's training σs run t/T for t = T…1 in float32, statically shifted unless the
  // shift is dynamic; set_timesteps then spans their two ends and shifts again, so σ_min is
  // shifted twice for a static config. Kept as is: it is what SD3 runs.
  const trainSigma = (t: number) => {
    const s = f32(t / T);
    return cfg.use_dynamic_shifting ? s : staticShift(cfg.shift, s, true);
  };
  const hi = trainSigma(T) * T;
  const lo = trainSigma(1) * T;
  return linspace(hi, lo, n).map((t) => f32(shift(t / T, false)));
}

/**
 * Euler's method on a rectified-flow ODE: diffusers' `FlowMatchEulerDiscreteScheduler`, which
 * Flux.1 and Stable Diffusion 3/3.5 ship with. The model predicts the velocity v = ε - x₀ along
 * the straight path x_σ = σ·ε + (1 - σ)·x₀, so a step is x + (σ_next - σ)·v, and the latents are
 * never rescaled (initNoiseSigma 1, scaleModelInput the identity).
 *
 * Timesteps are σ × num_train_timesteps (floats in (0, 1000]); Flux's transformer takes them
 * divided by 1000, which is the pipeline's business.
 */
export class FlowMatchEulerDiscreteScheduler implements Scheduler {
  readonly className = "FlowMatchEulerDiscreteScheduler";
  readonly numInferenceSteps: number;
  readonly timesteps: Float64Array;
  readonly sigmas: Float32Array;
  readonly initNoiseSigma = 1;
  readonly beginIndex: number;
  /** μ of the dynamic shift, null for a static one. */
  readonly mu: number | null;

  /**
   * @throws AppError `unsupported_operation` for config options not reproduced here;
   *   `invalid_parameter` for a bad step count or strength.
   * @throws TypeError when the config shifts dynamically and `options.imageSeqLen` is missing
   *   (the pipeline's bug, not the request's).
   */
  constructor(cfg: FlowMatchEulerConfig, numInferenceSteps: number, options: SchedulerOptions = {}) {
    refuseUnsupported("FlowMatchEulerDiscreteScheduler", {
      use_karras_sigmas: cfg.use_karras_sigmas,
      use_exponential_sigmas: cfg.use_exponential_sigmas,
      use_beta_sigmas: cfg.use_beta_sigmas,
      invert_sigmas: cfg.invert_sigmas,
      shift_terminal: Boolean(cfg.shift_terminal),
      [`time_shift_type ${cfg.time_shift_type}`]: cfg.time_shift_type !== "exponential",
      stochastic_sampling: cfg.stochastic_sampling,
    });
    checkSteps(numInferenceSteps, cfg.num_train_timesteps);
    this.mu = cfg.use_dynamic_shifting ? calculateShift(requireImageSeqLen(options.imageSeqLen), cfg) : null;
    const sigmas = flowSigmas(cfg, numInferenceSteps, options.flowSigmas ?? "default", this.mu);
    this.numInferenceSteps = numInferenceSteps;
    this.sigmas = Float32Array.from([...sigmas, 0]);
    this.timesteps = sigmas.map((s) => f32(s * cfg.num_train_timesteps));
    this.beginIndex = flowStrengthBeginIndex(numInferenceSteps, options.strength ?? 1);
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
    checkSameLength(modelOutput, sample, "FlowMatchEulerDiscreteScheduler.step");
    const dt = f32((this.sigmas[stepIndex + 1] as number) - (this.sigmas[stepIndex] as number));
    return sample.map((x, i) => x + f32(dt * (modelOutput[i] as number)));
  }

  /** diffusers' `scale_noise`: the point σ·ε + (1 - σ)·x₀ of the straight path at this step's σ. */
  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    checkSameLength(original, noise, "FlowMatchEulerDiscreteScheduler.addNoise");
    const sigma = this.sigmas[stepIndex] as number;
    const keep = f32(1 - sigma);
    return original.map((x, i) => f32(sigma * (noise[i] as number)) + f32(keep * x));
  }
}

/** The image token count a dynamically shifting config needs: without it μ, and every σ, is NaN. */
function requireImageSeqLen(imageSeqLen: number | undefined): number {
  if (imageSeqLen === undefined) {
    throw new TypeError(
      "FlowMatchEulerDiscreteScheduler: the model's config sets use_dynamic_shifting, so options.imageSeqLen " +
        "(the transformer's image token count) is required.",
    );
  }
  if (!Number.isInteger(imageSeqLen) || imageSeqLen < 1) {
    throw new RangeError(
      `FlowMatchEulerDiscreteScheduler: imageSeqLen ${imageSeqLen} is not a positive integer.`,
    );
  }
  return imageSeqLen;
}
