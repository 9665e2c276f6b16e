import type { GenerationInfo, ModelInfo } from "@hybrid/protocol";

/**
 * What a worker advertises for an SD-v1 VAE (decoder and encoder, 4 latent channels, a spatial
 * factor of 8, diffusers' scaling factor), with `overrides` on top.
 */
export function sdV1Model(overrides: Partial<ModelInfo> = {}): ModelInfo {
  return {
    id: "sd-v1",
    family: "sd-v1",
    task: "vae",
    operations: ["decode", "encode"],
    latent_channels: 4,
    latent_rank: 4,
    spatial_compression: 8,
    scaling_factor: 0.18215,
    shift_factor: null,
    dtype: "float32",
    ...overrides,
  };
}

/** A text-to-image pipeline's defaults as an SD-v1 model directory gives them, `overrides` on top. */
export function sdV1Generation(overrides: Partial<GenerationInfo> = {}): GenerationInfo {
  return {
    tasks: ["text-to-image"],
    defaults: {
      width: 512,
      height: 512,
      num_inference_steps: 20,
      guidance_scale: 7.5,
      scheduler: "euler",
      strength: 0.8,
    },
    ...overrides,
  };
}
