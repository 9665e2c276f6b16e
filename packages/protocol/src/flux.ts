import { AppError } from "./errors.ts";

/** Latent grid of a packed Flux sequence for an image of `height × width` pixels (diffusers' rule). */
export function fluxLatentSize(height: number, width: number, vaeScaleFactor = 8) {
  return {
    h: 2 * Math.floor(height / (vaeScaleFactor * 2)),
    w: 2 * Math.floor(width / (vaeScaleFactor * 2)),
  };
}

/**
 * Shape check for packed latents `[B, (H/16)*(W/16), C*4]`; returns the unpacked `[B, C, h, w]`.
 * Throws `invalid_shape` when the sequence length does not match height/width.
 */
export function unpackedFluxShape(shape: readonly number[], height: number, width: number): number[] {
  const [b, seq, packedChannels] = shape as [number, number, number];
  const { h, w } = fluxLatentSize(height, width);
  if (shape.length !== 3 || h === 0 || w === 0 || seq !== (h / 2) * (w / 2) || packedChannels % 4 !== 0) {
    throw new AppError(
      "invalid_shape",
      `Packed latents ${JSON.stringify(shape)} do not match height=${height}, width=${width}: expected [B, ${(h / 2) * (w / 2)}, C*4].`,
    );
  }
  return [b, packedChannels / 4, h, w];
}

/**
 * FluxPipeline._unpack_latents: view [B, h/2, w/2, C, 2, 2] → permute (0,3,1,4,2,5) → [B, C, h, w].
 */
export function unpackFluxLatents(
  packed: Float32Array,
  shape: readonly number[],
  height: number,
  width: number,
) {
  const outShape = unpackedFluxShape(shape, height, width);
  const [b, c, h, w] = outShape as [number, number, number, number];
  const out = new Float32Array(packed.length);
  const hw = h / 2;
  const ww = w / 2;
  let src = 0;
  for (let n = 0; n < b; n++) {
    const base = n * c * h * w;
    for (let i = 0; i < hw; i++) {
      for (let j = 0; j < ww; j++) {
        for (let ch = 0; ch < c; ch++) {
          for (let di = 0; di < 2; di++) {
            const row = base + ch * h * w + (2 * i + di) * w + 2 * j;
            out[row] = packed[src++]!;
            out[row + 1] = packed[src++]!;
          }
        }
      }
    }
  }
  return { data: out, shape: outShape };
}

/** FluxPipeline._pack_latents, the inverse of {@link unpackFluxLatents}: [B, C, h, w] → [B, (h/2)(w/2), C*4]. */
export function packFluxLatents(latents: Float32Array, shape: readonly number[]) {
  const [b, c, h, w] = shape as [number, number, number, number];
  if (shape.length !== 4 || h % 2 !== 0 || w % 2 !== 0) {
    throw new AppError(
      "invalid_shape",
      `Cannot pack latents of shape ${JSON.stringify(shape)}: need [B, C, even h, even w].`,
    );
  }
  const out = new Float32Array(latents.length);
  let dst = 0;
  for (let n = 0; n < b; n++) {
    const base = n * c * h * w;
    for (let i = 0; i < h / 2; i++) {
      for (let j = 0; j < w / 2; j++) {
        for (let ch = 0; ch < c; ch++) {
          for (let di = 0; di < 2; di++) {
            const row = base + ch * h * w + (2 * i + di) * w + 2 * j;
            out[dst++] = latents[row]!;
            out[dst++] = latents[row + 1]!;
          }
        }
      }
    }
  }
  return { data: out, shape: [b, (h / 2) * (w / 2), c * 4] };
}
