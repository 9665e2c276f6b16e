// The VAE's numeric operations, run inside a session thread: one copy serves the VAE endpoints
// (decode/encode tasks, batched or not) and the diffusion pipelines (decoding the denoised
// latents, encoding an init image). Float32Array in, Float32Array out.

import { gaussian } from "../random.ts";
import { fromOrtTensor, toOrtTensor } from "../sessions/ort-tensor.ts";
import { getSession, type SessionSettings } from "../sessions/session-cache.ts";

/** A float tensor out of `session.run`: its output's name, values, shape, and how long the run took. */
export interface ModelOutput {
  name: string;
  data: Float32Array;
  shape: number[];
  modelMs: number;
}

/** diffusers' latent scaling: the denoiser's latents are (VAE latents − shift) × scale. */
export interface LatentScaling {
  scale: number;
  shift: number;
}

/**
 * Runs a graph's first input → first output on float32 values (cast to the input's dtype) and
 * returns the output as float32.
 */
export async function runGraph(
  path: string,
  values: Float32Array,
  shape: readonly number[],
  settings: SessionSettings,
): Promise<ModelOutput> {
  const { session, inputs, outputs } = await getSession(path, settings);
  const input = inputs[0]!;
  const output = outputs[0]!;
  const feeds = { [input.name]: toOrtTensor(values, shape, input.type) };
  const t0 = performance.now();
  const result = await session.run(feeds, [output.name]);
  const modelMs = performance.now() - t0;
  return {
    name: output.name,
    modelMs,
    ...fromOrtTensor(result[output.name] as Parameters<typeof fromOrtTensor>[0]),
  };
}

/** Denoiser latents → VAE latents (latents / scale + shift), in place; returns `values`. */
export function unscaleLatents(values: Float32Array, { scale, shift }: LatentScaling): Float32Array {
  for (let i = 0; i < values.length; i++) values[i] = values[i]! / scale + shift;
  return values;
}

/** VAE latents → denoiser latents ((latents − shift) × scale), in place; returns `values`. */
export function scaleLatents(values: Float32Array, { scale, shift }: LatentScaling): Float32Array {
  for (let i = 0; i < values.length; i++) values[i] = (values[i]! - shift) * scale;
  return values;
}

/**
 * The latents in a VAE encoder's output. optimum exports either `latent_sample` [B, C, h, w] or
 * `latent_parameters` [B, 2C, h, w] (mean then log-variance along channels, diffusers'
 * DiagonalGaussianDistribution): of those, the mean, or a sample drawn with `sample.seed`.
 */
export function encoderLatents(
  out: ModelOutput,
  sample: { seed: number | null } | null,
): { data: Float32Array; shape: number[] } {
  const [b, c2, h, w] = out.shape as [number, number, number, number];
  if (out.name !== "latent_parameters") return { data: out.data, shape: [b, c2, h, w] };
  const channels = c2 / 2;
  const plane = h * w;
  const latents = new Float32Array(b * channels * plane);
  const noise = sample ? gaussian(latents.length, sample.seed) : null;
  for (let n = 0; n < b; n++) {
    for (let c = 0; c < channels; c++) {
      const mean = (n * c2 + c) * plane;
      const logvar = (n * c2 + channels + c) * plane;
      const dst = (n * channels + c) * plane;
      for (let i = 0; i < plane; i++) {
        let v = out.data[mean + i]!;
        if (noise) v += Math.exp(0.5 * Math.min(20, Math.max(-30, out.data[logvar + i]!))) * noise[dst + i]!;
        latents[dst + i] = v;
      }
    }
  }
  return { data: latents, shape: [b, channels, h, w] };
}

/**
 * Decodes latents to pixels in [-1, 1] (NCHW, or NCTHW for video VAEs), unscaling them first when
 * `scaling` is given. `latents` is overwritten.
 */
export function vaeDecode(
  path: string,
  latents: Float32Array,
  shape: readonly number[],
  scaling: LatentScaling | null,
  settings: SessionSettings,
): Promise<ModelOutput> {
  return runGraph(path, scaling ? unscaleLatents(latents, scaling) : latents, shape, settings);
}

/**
 * Encodes NCHW pixels in [-1, 1] to latents (the mean, or a seeded sample), scaled into the
 * denoiser's space when `scaling` is given.
 */
export async function vaeEncode(
  path: string,
  pixels: Float32Array,
  shape: readonly number[],
  opts: { scaling: LatentScaling | null; sample: { seed: number | null } | null },
  settings: SessionSettings,
): Promise<{ data: Float32Array; shape: number[]; modelMs: number }> {
  const out = await runGraph(path, pixels, shape, settings);
  const latents = encoderLatents(out, opts.sample);
  if (opts.scaling) scaleLatents(latents.data, opts.scaling);
  return { ...latents, modelMs: out.modelMs };
}
