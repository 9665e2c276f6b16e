import { checkNextStep, checkSameLength, checkStepIndex } from "./checks.ts";
import { type DpmSolverConfig, refuseUnsupported } from "./config.ts";
import { arange, f32, interpIndex, linspace, reversed, roundHalfEven } from "./numeric.ts";
import type { NoiseSource, Scheduler, SchedulerOptions } from "./scheduler.ts";
import { exponentialSigmas, karrasSigmas, sigmaToT } from "./sigma-schedules.ts";
import { trailingTimesteps } from "./spacing.ts";
import { checkSteps, strengthBeginIndex } from "./strength.ts";
import { type TrainSchedule, trainSchedule } from "./train-schedule.ts";

/**
 * The training timesteps above the one where log-SNR λ drops below `lambda_min_clipped` are
 * cut from the schedule (a stability fix for cosine schedules); returns how many remain.
 */
function unclippedTimesteps(train: TrainSchedule, lambdaMin: number): number {
  let clipped = 0;
  for (const a of train.alphasCumprod) {
    const lambda = f32(Math.log(f32(Math.sqrt(a)))) - f32(Math.log(f32(Math.sqrt(f32(1 - a)))));
    if (lambda < lambdaMin) clipped++;
  }
  return train.alphasCumprod.length - clipped;
}

/** DPM-Solver's timesteps: n of n + 1 points, dropping the one at 0. */
function dpmTimesteps(cfg: DpmSolverConfig, n: number, last: number): Float64Array {
  switch (cfg.timestep_spacing) {
    case "linspace":
      return reversed(linspace(0, last - 1, n + 1).map(roundHalfEven)).subarray(0, n);
    case "leading": {
      const ratio = Math.floor(last / (n + 1));
      return reversed(arange(0, n + 1, 1).map((i) => i * ratio))
        .subarray(0, n)
        .map((t) => t + cfg.steps_offset);
    }
    case "trailing":
      return trailingTimesteps(n, cfg.num_train_timesteps, last);
  }
}

/** σ (VE) → the VP pair (α_t, σ_t) = (1, σ) / sqrt(σ² + 1), and the log-SNR λ = ln α_t - ln σ_t. */
function vp(sigma: number): { alpha: number; sigma: number; lambda: number } {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  const s = sigma * alpha;
  // At σ = 0 this is +∞, which the first-order update handles (e^{-∞} = 0).
  return { alpha, sigma: s, lambda: Math.log(alpha) - Math.log(s) };
}

/**
 * DPM-Solver / DPM-Solver++ multistep (Lu et al. 2022), diffusers'
 * `DPMSolverMultistepScheduler`: with `dpmsolver++`, order 2 and Karras σs it is "DPM++ 2M
 * Karras". Each step reuses the model outputs of earlier steps, so an instance keeps them and
 * must be stepped once per index, in order (it throws otherwise).
 */
export class DPMSolverMultistepScheduler implements Scheduler {
  readonly className = "DPMSolverMultistepScheduler";
  readonly numInferenceSteps: number;
  readonly timesteps: Float64Array;
  readonly sigmas: Float32Array;
  readonly initNoiseSigma = 1;
  readonly beginIndex: number;
  readonly #cfg: DpmSolverConfig;
  /** Converted model outputs (x₀ for ++, ε otherwise) of the latest steps, newest last. */
  readonly #history: Float32Array[] = [];
  /** Steps taken so far: the solver order ramps up from 1 while there is too little history. */
  #taken = 0;

  constructor(cfg: DpmSolverConfig, numInferenceSteps: number, options: SchedulerOptions = {}) {
    const cls = "DPMSolverMultistepScheduler";
    refuseUnsupported(cls, {
      [`algorithm_type ${cfg.algorithm_type}`]: cfg.algorithm_type.startsWith("sde-"),
      use_beta_sigmas: cfg.use_beta_sigmas,
      use_lu_lambdas: cfg.use_lu_lambdas,
      use_flow_sigmas: cfg.use_flow_sigmas,
      use_dynamic_shifting: cfg.use_dynamic_shifting,
      thresholding: cfg.thresholding,
      [`prediction_type ${cfg.prediction_type}`]: cfg.prediction_type === "flow_prediction",
      [`variance_type ${cfg.variance_type}`]: cfg.variance_type !== null,
      "use_karras_sigmas with use_exponential_sigmas": cfg.use_karras_sigmas && cfg.use_exponential_sigmas,
      // diffusers refuses this pair too: without ++ the last step can't land on σ = 0.
      "final_sigmas_type zero without dpmsolver++":
        cfg.algorithm_type === "dpmsolver" && cfg.final_sigmas_type === "zero",
    });
    checkSteps(numInferenceSteps, cfg.num_train_timesteps);
    this.#cfg = cfg;
    const train = trainSchedule(cfg, cfg.rescale_betas_zero_snr, true);
    const T = cfg.num_train_timesteps;
    let timesteps = dpmTimesteps(cfg, numInferenceSteps, unclippedTimesteps(train, cfg.lambda_min_clipped));
    let sigmas: Float64Array;
    if (cfg.use_karras_sigmas || cfg.use_exponential_sigmas) {
      const lo = cfg.sigma_min ?? (train.sigmas[0] as number);
      const hi = cfg.sigma_max ?? (train.sigmas[T - 1] as number);
      sigmas = cfg.use_karras_sigmas
        ? karrasSigmas(lo, hi, numInferenceSteps)
        : exponentialSigmas(lo, hi, numInferenceSteps);
      timesteps = sigmas.map((s) => sigmaToT(s, train.logSigmas));
      // Karras timesteps are rounded (except for cosine schedules); the int64 cast truncates.
      if (cfg.use_karras_sigmas && cfg.beta_schedule !== "squaredcos_cap_v2") {
        timesteps = timesteps.map(roundHalfEven);
      }
      timesteps = timesteps.map(Math.trunc);
    } else {
      sigmas = timesteps.map((t) => interpIndex(t, train.sigmas));
    }
    const last = cfg.final_sigmas_type === "sigma_min" ? (train.sigmas[0] as number) : 0;
    this.sigmas = Float32Array.from([...sigmas, last]);
    this.timesteps = timesteps;
    this.numInferenceSteps = timesteps.length;
    this.beginIndex = strengthBeginIndex(this.numInferenceSteps, options.strength ?? 1);
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
    checkNextStep(stepIndex, this.beginIndex + this.#taken, this.className);
    checkSameLength(modelOutput, sample, "DPMSolverMultistepScheduler.step");
    const cfg = this.#cfg;
    const n = this.timesteps.length;
    // Short schedules (< 15 steps) finish with lower orders for stability; a final σ of 0 always
    // ends with a first-order step.
    const shortFinish = cfg.lower_order_final && n < 15;
    const finalFirst =
      stepIndex === n - 1 && (cfg.euler_at_final || shortFinish || cfg.final_sigmas_type === "zero");
    const finalSecond = stepIndex === n - 2 && shortFinish;

    const s0 = vp(this.sigmas[stepIndex] as number);
    this.#history.push(this.#convert(modelOutput, sample, s0));
    if (this.#history.length > cfg.solver_order) this.#history.shift();

    const warm = this.#taken;
    let order: number;
    if (cfg.solver_order === 1 || warm < 1 || finalFirst) order = 1;
    else if (cfg.solver_order === 2 || warm < 2 || finalSecond) order = 2;
    else order = 3;
    this.#taken++;
    return this.#update(order, stepIndex, sample);
  }

  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array {
    checkStepIndex(stepIndex, this.timesteps.length);
    checkSameLength(original, noise, "DPMSolverMultistepScheduler.addNoise");
    // The latents here are variance-preserving: α_t·x₀ + σ_t·ε with (α_t, σ_t) from the step's σ.
    const { alpha, sigma } = vp(this.sigmas[stepIndex] as number);
    return original.map((x, i) => alpha * x + sigma * (noise[i] as number));
  }

  /**
   * The model output as the solver's variable: x₀ for DPM-Solver++, ε for DPM-Solver. Always a
   * copy: the caller may reuse its output buffer, and the history must not change under us.
   */
  #convert(m: Float32Array, x: Float32Array, at: { alpha: number; sigma: number }): Float32Array {
    const { alpha, sigma } = at;
    const plus = this.#cfg.algorithm_type === "dpmsolver++";
    switch (this.#cfg.prediction_type) {
      case "epsilon":
        return plus ? x.map((xi, i) => (xi - sigma * (m[i] as number)) / alpha) : m.slice();
      case "sample":
        return plus ? m.slice() : x.map((xi, i) => (xi - alpha * (m[i] as number)) / sigma);
      default:
        return plus
          ? x.map((xi, i) => alpha * xi - sigma * (m[i] as number))
          : x.map((xi, i) => alpha * (m[i] as number) + sigma * xi);
    }
  }

  /** The multistep update of `order` from step `i` to step `i + 1` (Lu et al. 2022, §3.3–3.4 / alg. 2). */
  #update(order: number, i: number, x: Float32Array): Float32Array {
    const plus = this.#cfg.algorithm_type === "dpmsolver++";
    const heun = this.#cfg.solver_type === "heun";
    const t = vp(this.sigmas[i + 1] as number);
    const s0 = vp(this.sigmas[i] as number);
    const h = t.lambda - s0.lambda;
    const hist = this.#history;
    const m0 = hist[hist.length - 1] as Float32Array;
    // ++ works in x₀ (data prediction), plain in ε (noise prediction): the same integrator with
    // the exponent's sign and the weights (α_t vs σ_t) swapped.
    const keep = plus ? t.sigma / s0.sigma : t.alpha / s0.alpha;
    const w = plus ? t.alpha : t.sigma;
    const e = plus ? Math.exp(-h) - 1 : Math.exp(h) - 1;
    // x_t = keep·x - w·e·D0 + c1·D1 + c2·D2 (D1, D2 finite differences of the history).
    const c0 = -w * e;
    if (order === 1) return x.map((xi, k) => keep * xi + c0 * (m0[k] as number));

    const m1 = hist[hist.length - 2] as Float32Array;
    const s1 = vp(this.sigmas[i - 1] as number);
    const r0 = (s0.lambda - s1.lambda) / h;
    if (order === 2) {
      let c1: number;
      if (!heun) c1 = -0.5 * w * e;
      else c1 = plus ? w * (e / h + 1) : -w * (e / h - 1);
      return x.map((xi, k) => {
        const d1 = ((m0[k] as number) - (m1[k] as number)) / r0;
        return keep * xi + c0 * (m0[k] as number) + c1 * d1;
      });
    }

    const m2 = hist[hist.length - 3] as Float32Array;
    const s2 = vp(this.sigmas[i - 2] as number);
    const r1 = (s1.lambda - s2.lambda) / h;
    const c1 = plus ? w * (e / h + 1) : -w * (e / h - 1);
    const c2 = plus ? -w * ((e + h) / (h * h) - 0.5) : -w * ((e - h) / (h * h) - 0.5);
    return x.map((xi, k) => {
      const a = m0[k] as number;
      const b = m1[k] as number;
      const d10 = (a - b) / r0;
      const d11 = (b - (m2[k] as number)) / r1;
      const d1 = d10 + (r0 / (r0 + r1)) * (d10 - d11);
      const d2 = (d10 - d11) / (r0 + r1);
      return keep * xi + c0 * a + c1 * d1 + c2 * d2;
    });
  }
}
