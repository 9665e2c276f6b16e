/**
 * diffusers' two `add_noise` forms, for image-to-image: noising clean latents x₀ to the level a
 * schedule starts from.
 */

/** Variance-preserving (DDPM) form: sqrt(ᾱ)·x₀ + sqrt(1 - ᾱ)·ε. */
export function addNoiseVp(original: Float32Array, noise: Float32Array, alphaCumprod: number): Float32Array {
  const a = Math.sqrt(alphaCumprod);
  const b = Math.sqrt(1 - alphaCumprod);
  return original.map((x, i) => a * x + b * (noise[i] as number));
}

/** Variance-exploding (k-diffusion) form, for latents kept at scale σ: x₀ + σ·ε. */
export function addNoiseVe(original: Float32Array, noise: Float32Array, sigma: number): Float32Array {
  return original.map((x, i) => x + (noise[i] as number) * sigma);
}
