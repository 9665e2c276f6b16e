import type { SchedulerClass } from "./config.ts";

/**
 * Draws `n` standard-normal values. Schedulers that inject noise (ancestral Euler, LCM, DDIM
 * with η > 0) call it once per step, at the point diffusers draws, so a seeded source gives the
 * same stream as a seeded `torch.Generator` fed the same values.
 */
export type NoiseSource = (n: number) => Float32Array;

/** Per-generation options of {@link Scheduler}s. */
export interface SchedulerOptions {
  /**
   * Image-to-image strength in [0, 1]: how much of the schedule is run on the noised init
   * image. 1 runs all of it (the init image is fully noised). @defaultValue 1
   */
  strength?: number;
  /** DDIM's η: 0 is deterministic DDIM, 1 is DDPM-like ancestral sampling. @defaultValue 0 */
  eta?: number;
  /**
   * Flow matching only: how many image tokens the transformer sees, (height / 16) × (width / 16)
   * for Flux and SD3 (8× VAE, 2×2 patches). A model whose config sets `use_dynamic_shifting`
   * (Flux.1-dev) shifts its σs by μ = `calculateShift(imageSeqLen, config)`, as diffusers'
   * pipelines do, so it is required there; other configs ignore it.
   */
  imageSeqLen?: number;
  /**
   * Flow matching only: the σs the schedule is shifted from, which is the one thing the Flux and
   * SD3 pipelines call the scheduler differently for.
   * - `"flux"`: linspace(1, 1/n, n), which the Flux pipelines pass as `sigmas`.
   * - `"default"`: the scheduler's own `set_timesteps(n)`, linspace between the σ_max and σ_min
   *   of its training range (SD3's pipelines).
   * @defaultValue "default"
   */
  flowSigmas?: "flux" | "default";
}

/**
 * A diffusion sampler, stepping latents from noise toward an image the way one diffusers
 * scheduler class does, number for number.
 *
 * One instance serves one generation: the multistep samplers (DPM-Solver++, PLMS) keep the
 * model outputs of earlier steps inside, so steps must be taken once each, in order, from
 * {@link beginIndex} to the end:
 *
 * ```ts
 * let x = initialLatents; // txt2img: noise × initNoiseSigma; img2img: addNoise(…, beginIndex)
 * for (let i = s.beginIndex; i < s.timesteps.length; i++) {
 *   const eps = unet(s.scaleModelInput(x, i), s.timesteps[i]);
 *   x = s.step(eps, i, x, noise);
 * }
 * ```
 */
export interface Scheduler {
  /** The diffusers class this reproduces. */
  readonly className: SchedulerClass;
  /** Denoising steps asked for (the schedule may hold more entries: PLMS repeats one). */
  readonly numInferenceSteps: number;
  /**
   * What the UNet gets as `timestep` at each step index, in order (integers except for Euler and
   * flow matching).
   */
  readonly timesteps: Float64Array;
  /** The noise level σ at each step index plus the final one, for σ-based samplers; null otherwise. */
  readonly sigmas: Float32Array | null;
  /** Standard deviation of the starting noise: txt2img latents are standard normal × this. */
  readonly initNoiseSigma: number;
  /** The first step index to run: 0 for txt2img, later for image-to-image by `strength`. */
  readonly beginIndex: number;
  /**
   * Scales the latents before the UNet: Euler divides by sqrt(σ² + 1); the others return
   * `sample` itself, unchanged.
   */
  scaleModelInput(sample: Float32Array, stepIndex: number): Float32Array;
  /** One denoising step: the latents of the next (less noisy) step, in a new array. */
  step(modelOutput: Float32Array, stepIndex: number, sample: Float32Array, noise: NoiseSource): Float32Array;
  /**
   * Image-to-image: noises clean latents to the level of `stepIndex` (diffusers' `add_noise`).
   * Used with {@link beginIndex}.
   */
  addNoise(original: Float32Array, noise: Float32Array, stepIndex: number): Float32Array;
}
