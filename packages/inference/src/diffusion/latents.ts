// Latent tensors as the pipeline handles them, shaped by the model's geometry: the denoiser's
// packed token view (Flux's 2×2 patches) and a cheap RGB preview.
import type { LatentGeometry } from "../model-dir.ts";

/** `[1, C, h, w]`: the latents of one image of `width` × `height` pixels. */
export function latentShape(
  g: LatentGeometry,
  width: number,
  height: number,
): [number, number, number, number] {
  return [1, g.latentChannels, height / g.spatialFactor, width / g.spatialFactor];
}

/**
 * [B, C, h, w] → [B, (h/p)(w/p), C·p·p]: each p × p patch becomes one token, channels outermost
 * (FluxPipeline._pack_latents for p = 2). p = 1 is the identity.
 */
export function packPatches(
  x: Float32Array,
  shape: readonly number[],
  p: number,
): { data: Float32Array; shape: number[] } {
  const [b, c, h, w] = shape as [number, number, number, number];
  if (p === 1) return { data: x, shape: [...shape] };
  const out = new Float32Array(x.length);
  let dst = 0;
  for (let n = 0; n < b; n++)
    for (let i = 0; i < h / p; i++)
      for (let j = 0; j < w / p; j++)
        for (let ch = 0; ch < c; ch++)
          for (let di = 0; di < p; di++) {
            const row = ((n * c + ch) * h + p * i + di) * w + p * j;
            for (let dj = 0; dj < p; dj++) out[dst++] = x[row + dj]!;
          }
  return { data: out, shape: [b, (h / p) * (w / p), c * p * p] };
}

/** The inverse of {@link packPatches}, back to `[B, C, h, w]` (`shape` is that unpacked shape). */
export function unpackPatches(x: Float32Array, shape: readonly number[], p: number): Float32Array {
  const [b, c, h, w] = shape as [number, number, number, number];
  if (p === 1) return x;
  const out = new Float32Array(x.length);
  let src = 0;
  for (let n = 0; n < b; n++)
    for (let i = 0; i < h / p; i++)
      for (let j = 0; j < w / p; j++)
        for (let ch = 0; ch < c; ch++)
          for (let di = 0; di < p; di++) {
            const row = ((n * c + ch) * h + p * i + di) * w + p * j;
            for (let dj = 0; dj < p; dj++) out[row + dj] = x[src++]!;
          }
  return out;
}

/**
 * Latent → RGB factors by latent channel count: a least-squares projection (the community's
 * "latent preview"), good enough to watch an image form. SD 1.x's factors serve SDXL too.
 */
const PREVIEW_FACTORS: Readonly<Record<number, readonly (readonly [number, number, number])[]>> = {
  4: [
    [0.298, 0.207, 0.208],
    [0.187, 0.286, 0.173],
    [-0.158, 0.189, 0.264],
    [-0.184, -0.271, -0.473],
  ],
};

/**
 * For a channel count without fitted factors: channel k feeds colour k mod 3, each colour the
 * mean of its channels. Not faithful colours, but structure shows as the image forms.
 */
function genericFactors(channels: number): Array<[number, number, number]> {
  const perColour = [0, 1, 2].map((colour) => Math.ceil((channels - colour) / 3));
  return Array.from({ length: channels }, (_, k) => {
    const row: [number, number, number] = [0, 0, 0];
    row[k % 3] = 1 / perColour[k % 3]!;
    return row;
  });
}

/** A cheap RGB preview of [1, C, h, w] latents: a linear projection, no VAE. */
export function latentPreview(latents: Float32Array, channels: number, h: number, w: number): Uint8Array {
  const factors = PREVIEW_FACTORS[channels] ?? genericFactors(channels);
  const plane = h * w;
  const rgb = new Uint8Array(plane * 3);
  for (let i = 0; i < plane; i++)
    for (let c = 0; c < 3; c++) {
      let v = 0;
      for (let k = 0; k < channels; k++) v += latents[k * plane + i]! * factors[k]![c]!;
      rgb[i * 3 + c] = Math.max(0, Math.min(255, Math.round((v + 1) * 127.5)));
    }
  return rgb;
}
