import { readOutput } from "./output.ts";
import { pythonQuery } from "./query.ts";
import { encodeTensor, type TensorInput } from "./tensor.ts";
import { modelSegments, type PreparedRequest } from "./transport.ts";

/** How to encode: the arguments of diffusers' `remote_encode`, plus sampling. */
export interface EncodeParams {
  /** Scale the latents after encoding: `(latents - shiftFactor) * scalingFactor`. */
  scalingFactor?: number;
  /** Subtracted before scaling. */
  shiftFactor?: number;
  /** Scale with the model's own factors (when `scalingFactor` is not given). */
  doScaling?: boolean;
  /** Sample the latent distribution instead of taking its mean. @defaultValue false */
  sample?: boolean;
  /** Makes `sample` reproducible (on this service): an integer from 1 to 1000000. */
  seed?: number;
}

/** Encoded latents `[B, C, H/8, W/8]`, as float32 values whatever the wire dtype. */
export interface EncodeResult {
  data: Float32Array;
  shape: number[];
  /** The dtype on the wire: `float32` for image files, else the input tensor's. */
  dtype: "float32" | "float16" | "bfloat16";
}

/** What to encode: an image file (PNG, JPEG, WebP) or an image tensor `[B, 3, H, W]` in [-1, 1]. */
export type EncodeInput = Uint8Array | TensorInput;

/** The request diffusers' `remote_encode` sends (`prepare_encode`), plus `sample`/`seed`. */
export function prepareEncode(model: string, image: EncodeInput, p: EncodeParams = {}): PreparedRequest {
  const tensor = image instanceof Uint8Array ? null : encodeTensor(image);
  const query = pythonQuery({
    scaling_factor: p.scalingFactor,
    shift_factor: p.shiftFactor,
    shape: tensor?.shape,
    dtype: tensor?.dtype,
    do_scaling: p.doScaling,
    sample: p.sample,
    seed: p.seed,
  });
  return {
    method: "POST",
    path: `/v1/vae/${modelSegments(model)}/encode${query ? `?${query}` : ""}`,
    headers: { Accept: "*/*" },
    body: tensor ? tensor.bytes : (image as Uint8Array),
  };
}

/** Reads an encode answer. */
export async function readEncode(res: Response): Promise<EncodeResult> {
  const out = await readOutput(res);
  if (out.kind !== "tensor" || out.dtype === "uint8")
    throw new TypeError("An encode answered something other than float latents.");
  return { data: out.data, shape: out.shape, dtype: out.dtype };
}
