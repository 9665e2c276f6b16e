/**
 * The three things a DDPM-family UNet may be trained to predict, and how to get the clean
 * sample x₀ and the noise ε from any of them, at a timestep with cumulative alpha ᾱ:
 * x_t = sqrt(ᾱ)·x₀ + sqrt(1 - ᾱ)·ε.
 */
export type DdpmPrediction = "epsilon" | "v_prediction" | "sample";

/** x₀ from the model output `m` for latents `x`. */
export function predictX0(prediction: DdpmPrediction, m: number, x: number, alphaProd: number): number {
  switch (prediction) {
    case "epsilon":
      return (x - Math.sqrt(1 - alphaProd) * m) / Math.sqrt(alphaProd);
    case "v_prediction":
      return Math.sqrt(alphaProd) * x - Math.sqrt(1 - alphaProd) * m;
    case "sample":
      return m;
  }
}

/** ε from the model output `m` for latents `x` (its x₀ being `x0`). */
export function predictEpsilon(
  prediction: DdpmPrediction,
  m: number,
  x: number,
  x0: number,
  alphaProd: number,
): number {
  switch (prediction) {
    case "epsilon":
      return m;
    case "v_prediction":
      return Math.sqrt(alphaProd) * m + Math.sqrt(1 - alphaProd) * x;
    case "sample":
      return (x - Math.sqrt(alphaProd) * x0) / Math.sqrt(1 - alphaProd);
  }
}

/** Clamps to ±range: DDIM/LCM's `clip_sample` for pixel-space models. */
export const clip = (x: number, range: number): number => Math.min(Math.max(x, -range), range);
