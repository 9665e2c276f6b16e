import { gaussian } from "@hybrid/inference";
import { encodeFromFloat32 } from "@hybrid/protocol";
import sharp from "sharp";
import type { TorchDType } from "./diffusers-client.ts";

/** Seeded standard-normal values, like torch.randn for latents. */
export const randn = (n: number, seed = 1) => gaussian(n, seed);

export function latents(shape: number[], dtype: TorchDType = "float32", seed = 1) {
  const values = randn(
    shape.reduce((a, b) => a * b, 1),
    seed,
  );
  return { values, tensor: { data: encodeFromFloat32(values, dtype), shape, dtype } };
}

export const isJpeg = (b: Uint8Array) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
export const isPng = (b: Uint8Array) => b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47;
export const isMp4 = (b: Uint8Array) => Buffer.from(b.subarray(4, 8)).toString("latin1") === "ftyp";

export function range(values: ArrayLike<number>) {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let finite = true;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) finite = false;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max, finite };
}

/** A PIL-like RGB image saved as PNG, of width x height. */
export async function pngOf(width: number, height: number) {
  const rgb = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      rgb[i] = (x * 255) / width;
      rgb[i + 1] = (y * 255) / height;
      rgb[i + 2] = ((x + y) * 7) & 0xff;
    }
  return new Uint8Array(
    await sharp(rgb, { raw: { width, height, channels: 3 } })
      .png()
      .toBuffer(),
  );
}

/** `[width, height]` of an image answer (a Blob, as `@huggingface/inference` returns it), read by sharp. */
export async function blobSize(blob: Blob): Promise<[number | undefined, number | undefined]> {
  const meta = await sharp(Buffer.from(await blob.arrayBuffer())).metadata();
  return [meta.width, meta.height];
}
