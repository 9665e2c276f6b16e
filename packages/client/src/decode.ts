import { type ImageOutput, readOutput, type VideoOutput } from "./output.ts";
import { pythonQuery } from "./query.ts";
import { encodeTensor, type TensorInput, type TensorOutput } from "./tensor.ts";
import { modelSegments, type PreparedRequest } from "./transport.ts";

/** What to decode and how: the arguments of diffusers' `remote_decode`. */
export interface DecodeParams {
  /** The latents: `[B, C, h, w]`, packed Flux `[B, seq, 64]` (with `height`/`width`), or video `[B, C, f, h, w]`. */
  tensor: TensorInput;
  /**
   * `"pil"`: an image (`imageFormat`) from image models, float16 `[N, 3, H, W]` frames in [0, 1]
   * from video models; `"pt"`: a pixel tensor (see `partialPostprocess`); `"mp4"`: a video.
   * @defaultValue "pil"
   */
  outputType?: "pil" | "pt" | "mp4";
  /** The image format of `"pil"` answers. @defaultValue "jpg" */
  imageFormat?: "jpg" | "jpeg" | "png";
  /**
   * With `"pt"`: `true` gives uint8 `[N, H, W, 3]` (channels-last, denormalised); `false` the
   * decoder's raw float16/bfloat16 NCHW output in about [-1, 1].
   * @defaultValue false
   */
  partialPostprocess?: boolean;
  /**
   * Let the server scale the latents with the model's own factors (`latents / scale + shift`).
   * As in diffusers: when true and `scalingFactor` is given, that factor is sent instead; when
   * false, no factor is sent at all (the latents are already scaled).
   * @defaultValue true
   */
  doScaling?: boolean;
  /** `latents / scalingFactor + shiftFactor` before decoding (sent only with `doScaling`). */
  scalingFactor?: number;
  /** Added after scaling (sent only with `doScaling`). */
  shiftFactor?: number;
  /** Image height in pixels, for packed (3-D) Flux latents; sent only with `width`. */
  height?: number;
  /** Image width in pixels, for packed (3-D) Flux latents; sent only with `height`. */
  width?: number;
}

/** A decode's answer: an image, a tensor, or a video, told apart by `kind`. */
export type DecodeResult = ImageOutput | TensorOutput | VideoOutput;

/**
 * The request diffusers' `remote_decode` sends (current diffusers: `prepare_decode`), byte for
 * byte: the same query keys in the same order, Python `requests` encoding, the raw tensor body,
 * an `Accept` of any type so the server answers what `output_type` means for the model.
 */
export function prepareDecode(model: string, p: DecodeParams): PreparedRequest {
  const t = encodeTensor(p.tensor);
  const doScaling = p.doScaling ?? true;
  const query = pythonQuery({
    image_format: p.imageFormat ?? "jpg",
    output_type: p.outputType ?? "pil",
    partial_postprocess: p.partialPostprocess ?? false,
    shape: t.shape,
    dtype: t.dtype,
    scaling_factor: doScaling ? p.scalingFactor : undefined,
    shift_factor: doScaling ? p.shiftFactor : undefined,
    do_scaling: doScaling && p.scalingFactor === undefined ? true : undefined,
    height: p.height !== undefined && p.width !== undefined ? p.height : undefined,
    width: p.height !== undefined && p.width !== undefined ? p.width : undefined,
  });
  return {
    method: "POST",
    path: `/v1/vae/${modelSegments(model)}/decode?${query}`,
    headers: { Accept: "*/*" },
    body: t.bytes,
  };
}

/** Reads a decode answer. */
export async function readDecode(res: Response): Promise<DecodeResult> {
  const out = await readOutput(res);
  if (out.kind === "json") throw new TypeError("A decode answered JSON, not an image, tensor or video.");
  return out;
}
