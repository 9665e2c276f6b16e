import { f32, linspaceF32 } from "./numeric.ts";

/** The fields of a scheduler config that fix the training noise schedule. */
export interface BetaConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: "linear" | "scaled_linear" | "squaredcos_cap_v2";
  trained_betas: readonly number[] | null;
}

/**
 * The noise schedule the model was trained with, indexed by training timestep 0…T-1. Every
 * value is a float32 (held in a float64 array), computed the way diffusers' torch code does, so
 * that later float64 numpy arithmetic on it lands on the same numbers as the reference.
 */
export interface TrainSchedule {
  /** ᾱ_t, the cumulative product of (1 - β). */
  readonly alphasCumprod: Float64Array;
  /** σ_t = sqrt((1 - ᾱ_t) / ᾱ_t): the noise level of the variance-exploding view, ascending in t. */
  readonly sigmas: Float64Array;
  /** ln σ_t (numpy computes it in float32). */
  readonly logSigmas: Float64Array;
}

/** diffusers' `betas_for_alpha_bar` with the cosine ᾱ of improved DDPM ("squaredcos_cap_v2"). */
function cosineBetas(steps: number): Float64Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const out = new Float64Array(steps);
  for (let i = 0; i < steps; i++) {
    out[i] = f32(Math.min(1 - alphaBar((i + 1) / steps) / alphaBar(i / steps), 0.999));
  }
  return out;
}

/** The βs of `beta_schedule` (or `trained_betas`, which wins as in diffusers), in float32. */
export function betasOf(cfg: BetaConfig): Float64Array {
  const T = cfg.num_train_timesteps;
  if (cfg.trained_betas) return Float64Array.from(cfg.trained_betas, f32);
  switch (cfg.beta_schedule) {
    case "linear":
      return linspaceF32(cfg.beta_start, cfg.beta_end, T);
    case "scaled_linear":
      // Latent diffusion's schedule: linear in sqrt(β).
      return linspaceF32(Math.sqrt(cfg.beta_start), Math.sqrt(cfg.beta_end), T).map((b) => f32(b * b));
    case "squaredcos_cap_v2":
      return cosineBetas(T);
  }
}

/** torch's float32 `cumprod` of (1 - β): it accumulates in double and stores each prefix as float32. */
function cumprodOfAlphas(betas: Float64Array): Float64Array {
  const out = new Float64Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc *= f32(1 - (betas[i] as number));
    out[i] = f32(acc);
  }
  return out;
}

/**
 * "Common Diffusion Noise Schedules and Sample Steps are Flawed" (Lin et al. 2023), algorithm 1:
 * shift and scale sqrt(ᾱ) so that the last timestep is pure noise (zero terminal SNR).
 */
export function rescaleZeroTerminalSnr(betas: Float64Array): Float64Array {
  const root = cumprodOfAlphas(betas).map((a) => f32(Math.sqrt(a)));
  const first = root[0] as number;
  const last = root[root.length - 1] as number;
  const scale = f32(first / f32(first - last));
  const bar = root.map((r) => {
    const shifted = f32(f32(r - last) * scale);
    return f32(shifted * shifted);
  });
  const out = new Float64Array(betas.length);
  out[0] = f32(1 - (bar[0] as number));
  for (let i = 1; i < bar.length; i++) out[i] = f32(1 - f32((bar[i] as number) / (bar[i - 1] as number)));
  return out;
}

/**
 * Builds the training schedule. `zeroSnr` applies {@link rescaleZeroTerminalSnr}; `pinLast`
 * then sets ᾱ_T to 2⁻²⁴ (the smallest fp16 subnormal) so that σ_T stays finite, as the
 * sigma-based schedulers (Euler, DPM-Solver) do and the alpha-based ones don't.
 */
export function trainSchedule(cfg: BetaConfig, zeroSnr = false, pinLast = false): TrainSchedule {
  let betas = betasOf(cfg);
  if (zeroSnr) betas = rescaleZeroTerminalSnr(betas);
  const alphasCumprod = cumprodOfAlphas(betas);
  if (zeroSnr && pinLast) alphasCumprod[alphasCumprod.length - 1] = 2 ** -24;
  const sigmas = alphasCumprod.map((a) => f32(Math.sqrt(f32(f32(1 - a) / a))));
  const logSigmas = sigmas.map((s) => f32(Math.log(s)));
  return { alphasCumprod, sigmas, logSigmas };
}
