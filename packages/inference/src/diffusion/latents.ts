// Latent tensors as the pipeline handles them, shaped by the model's geometry: the denoiser's
// packed token view (Flux's 2×2 patches) and a cheap RGB preview.
import type { Family } from "@hybrid/protocol";
import type { LatentGeometry, PipelineDir } from "../model-dir.ts";

/** `[1, C, h, w]`: the latents of one image of `width` × `height` pixels. */
export function latentShape(
  g: LatentGeometry,
  width: number,
  height: number,
): [number, number, number, number] {
  return [1, g.latentChannels, height / g.spatialFactor, width / g.spatialFactor];
}

/**
 * Side, in latents, of the patches a pipeline's denoiser takes: Flux's pipeline packs 2×2, SD3's
 * transformer patchifies 2×2 itself, a UNet takes single latents. Image sizes are whole patches,
 * and the flow schedules count the image's tokens in them.
 */
export function sizePatch(files: Pick<PipelineDir, "geometry" | "transformer">): number {
  return Math.max(files.geometry.patchSize, files.transformer?.patch_size ?? 1);
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

type Factors = readonly (readonly [number, number, number])[];

/**
 * The 16-channel families' factors, which differ per VAE: the community's least-squares fits
 * (the ones ComfyUI's previews use), applied to the latents the transformer sees.
 */
const FAMILY_PREVIEW_FACTORS: Partial<Record<Family, Factors>> = {
  flux: [
    [-0.0404, 0.0159, 0.0609],
    [0.0043, 0.0298, 0.085],
    [0.0328, -0.0749, -0.0503],
    [-0.0245, 0.0085, 0.0549],
    [0.0966, 0.0894, 0.053],
    [0.0035, 0.0399, 0.0123],
    [0.0583, 0.1184, 0.1262],
    [-0.0191, -0.0206, -0.0306],
    [-0.0324, 0.0055, 0.1001],
    [0.0955, 0.0659, -0.0545],
    [-0.0504, 0.0231, -0.0013],
    [0.05, -0.0008, -0.0088],
    [0.0982, 0.0941, 0.0976],
    [-0.1233, -0.028, -0.0897],
    [-0.0005, -0.053, -0.002],
    [-0.1273, -0.0932, -0.068],
  ],
  sd3: [
    [-0.0645, 0.0177, 0.1052],
    [0.0028, 0.0312, 0.065],
    [0.1848, 0.0762, 0.036],
    [0.0944, 0.036, 0.0889],
    [0.0897, 0.0506, -0.0364],
    [-0.002, 0.1203, 0.0284],
    [0.0855, 0.0118, 0.0283],
    [-0.0539, 0.0658, 0.1047],
    [-0.0057, 0.0116, 0.07],
    [-0.0412, 0.0281, -0.0039],
    [0.1106, 0.1171, 0.122],
    [-0.0248, 0.0682, -0.0481],
    [0.0815, 0.0846, 0.1207],
    [-0.012, -0.0055, -0.0867],
    [-0.0749, -0.0634, -0.0456],
    [-0.1418, -0.1457, -0.1259],
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

/**
 * A cheap RGB preview of [1, C, h, w] latents: a linear projection, no VAE. The family picks
 * its fitted factors when it has its own (the 16-channel VAEs of Flux and SD3 differ).
 */
export function latentPreview(
  latents: Float32Array,
  channels: number,
  h: number,
  w: number,
  family?: Family,
): Uint8Array {
  const own = family ? FAMILY_PREVIEW_FACTORS[family] : undefined;
  const factors =
    (own?.length === channels ? own : undefined) ?? PREVIEW_FACTORS[channels] ?? genericFactors(channels);
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
