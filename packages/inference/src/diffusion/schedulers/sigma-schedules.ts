import { linspace } from "./numeric.ts";

/**
 * The fractional training timestep whose σ is `sigma`: linear interpolation in ln σ between the
 * two neighbouring training timesteps (clamped to 0…T-1), as k-diffusion and diffusers do.
 *
 * @param logSigmas ln σ_t of the training schedule, ascending in t.
 */
export function sigmaToT(sigma: number, logSigmas: Float64Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  // The last training timestep whose σ is not above `sigma` (0 when none is), kept one short of
  // the end so that there is a neighbour above it.
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - (logSigmas[i] as number) >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low] as number;
  const hi = logSigmas[low + 1] as number;
  const w = Math.min(Math.max((lo - logSigma) / (lo - hi), 0), 1);
  return (1 - w) * low + w * (low + 1);
}

/**
 * Karras et al. (2022) σ ramp: `n` values from σ_max down to σ_min, evenly spaced in σ^(1/ρ)
 * with ρ = 7, which spends more steps at low noise than an even split in t.
 */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number): Float64Array {
  const rho = 7;
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return linspace(0, 1, n).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** `n` σ values from σ_max down to σ_min, evenly spaced in ln σ. */
export function exponentialSigmas(sigmaMin: number, sigmaMax: number, n: number): Float64Array {
  return linspace(Math.log(sigmaMax), Math.log(sigmaMin), n).map(Math.exp);
}
