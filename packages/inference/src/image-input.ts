// Image intake for the VAE endpoints (images to encode) and the pipelines (image-to-image): one
// decode with the same limits and errors, one resize.
import { AppError } from "@hybrid/protocol";
import sharp from "sharp";
import { decodeImage, ImageDecodeError } from "./image.ts";

/** Interleaved 8-bit RGB (`[height, width, 3]`). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/**
 * Decodes an uploaded PNG, JPEG or WebP to RGB.
 *
 * @throws AppError `too_large` over `maxPixels` pixels, `invalid_image` when it does not decode.
 */
export async function readImage(bytes: Uint8Array, maxPixels: number): Promise<RgbImage> {
  try {
    return await decodeImage(bytes, { maxPixels });
  } catch (e) {
    if (!(e instanceof ImageDecodeError)) throw e;
    if (e.reason === "too_large")
      throw new AppError("too_large", `The image is over the limit of ${maxPixels} pixels.`, { cause: e });
    throw new AppError("invalid_image", `The image could not be decoded: ${e.message}`, { cause: e });
  }
}

/** Resizes RGB bytes to `width` × `height` (Lanczos, no aspect kept); the same bytes when the size is already right. */
export async function resizeRgb(
  rgb: Uint8Array,
  w: number,
  h: number,
  width: number,
  height: number,
): Promise<Uint8Array> {
  if (w === width && h === height) return rgb;
  const out = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
    .resize(width, height, { fit: "fill", kernel: "lanczos3" })
    .raw()
    .toBuffer();
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** `n` rounded down to a multiple of `multiple`, as diffusers' VaeImageProcessor sizes images. */
export const floorToMultiple = (n: number, multiple: number) => n - (n % multiple);

/**
 * @throws AppError `invalid_image` when a side is under `multiple` pixels (the VAE needs at least
 * one latent per side).
 */
export function requireMinSize(width: number, height: number, multiple: number): void {
  if (width < multiple || height < multiple)
    throw new AppError("invalid_image", `The image must be at least ${multiple}x${multiple} pixels.`);
}
