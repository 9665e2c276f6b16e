import { AppError } from "./errors.ts";
import { unpackedFluxShape } from "./flux.ts";
import type { DecodeOutput, DecodeQuery, ModelInfo, Scaling } from "./schemas.ts";
import {
  BYTES_PER_ELEMENT,
  checkJobOutput,
  checkTensorBytes,
  DEFAULT_LIMITS,
  elementCount,
  type InputDType,
  type TensorLimits,
} from "./tensor.ts";

/** Shapes a validated decode will have. */
export interface DecodePlan {
  /** Latents as the model takes them (after any Flux unpacking). */
  latentShape: number[];
  /** The decoded pixels: `[B, 3, H, W]` or `[B, 3, F, H, W]`. */
  outputShape: number[];
}

/**
 * Every check a decode request needs before a worker spends time on it: byte length, rank,
 * channels, packed-latent dimensions, output size. Pure: the API runs it before enqueueing and
 * the worker again before running (jobs can come from other producers).
 */
export function planDecode(
  req: {
    shape: number[];
    dtype: InputDType;
    byteLength: number;
    packed: { height: number; width: number } | null;
  },
  model: ModelInfo,
  limits: TensorLimits = DEFAULT_LIMITS,
): DecodePlan {
  elementCount(req.shape, limits);
  let latent = req.shape;
  if (latent.length < 3 || latent.length > 5) {
    throw new AppError(
      "invalid_shape",
      `Latents must be 3-D (packed), 4-D or 5-D, got ${latent.length}-D ${JSON.stringify(latent)}.`,
    );
  }
  if (latent.length === 3) {
    if (!req.packed) {
      throw new AppError(
        "missing_dimensions",
        "3-D (packed) latents need the height and width query parameters of the image.",
      );
    }
    if (model.family !== "flux") {
      throw new AppError(
        "invalid_shape",
        `Model ${model.id} (${model.family}) does not take packed 3-D latents.`,
      );
    }
    latent = unpackedFluxShape(latent, req.packed.height, req.packed.width);
  }
  const layout = model.latent_rank === 5 ? "[B, C, frames, h, w]" : "[B, C, h, w]";
  if (latent.length !== model.latent_rank) {
    throw new AppError(
      "invalid_shape",
      `Model ${model.id} takes ${model.latent_rank}-D latents ${layout}${model.family === "flux" ? " or packed [B, seq, C*4]" : ""}, got ${JSON.stringify(req.shape)}.`,
    );
  }
  const [batch, channels] = latent as [number, number];
  // Channels before the body's length: latents of another family (16 channels sent to a
  // 4-channel model) are a wrong shape, and saying so beats "the body has N bytes".
  if (channels !== model.latent_channels) {
    throw new AppError(
      "invalid_shape",
      `Model ${model.id} expects ${model.latent_channels} latent channels, got ${channels} (shape ${JSON.stringify(latent)}, channels are dimension 1): latents of another model family?`,
      { details: { expected_channels: model.latent_channels, received_channels: channels } },
    );
  }
  checkTensorBytes(req.byteLength, req.shape, req.dtype, limits);
  if (batch > limits.maxBatch)
    throw new AppError("too_large", `Batch ${batch} is over the limit of ${limits.maxBatch}.`);
  const s = model.spatial_compression;
  const h = latent[latent.length - 2]! * s;
  const w = latent[latent.length - 1]! * s;
  if (h * w > limits.maxOutputPixels) {
    throw new AppError(
      "too_large",
      `Output ${w}x${h} is over the limit of ${limits.maxOutputPixels} pixels per image.`,
    );
  }
  if (model.latent_rank === 5) {
    const frames = (latent[2]! - 1) * (model.temporal_compression ?? 1) + 1;
    if (frames > limits.maxFrames)
      throw new AppError("too_large", `${frames} frames is over the limit of ${limits.maxFrames}.`);
    return { latentShape: latent, outputShape: [batch, 3, frames, h, w] };
  }
  return { latentShape: latent, outputShape: [batch, 3, h, w] };
}

/**
 * Refuses a decode whose answer is over the per-job caps (MAX_JOB_PIXELS, MAX_OUTPUT_BYTES).
 * Counts what the worker computes: an image answer decodes only the first latent of the batch
 * (all its frames for a video model); every other answer the whole batch. The API runs it
 * before queueing, the worker again before running. Returns the most bytes the answer can take
 * (an image or video: its raw pixels), which the API reserves in its Redis memory budget.
 */
export function checkDecodeOutput(
  plan: DecodePlan,
  output: DecodeOutput,
  limits: Pick<TensorLimits, "maxJobPixels" | "maxOutputBytes"> = DEFAULT_LIMITS,
): number {
  const s = plan.outputShape;
  const frames = s.length === 5 ? s[2]! : 1;
  const items = output.kind === "image" ? 1 : s[0]!;
  const pixels = items * frames * s[s.length - 2]! * s[s.length - 1]!;
  // RGB values per pixel, at the answer's element size; compressed answers are checked once encoded.
  const bytesPerPixel: Record<DecodeOutput["kind"], number | null> = {
    "unit-float16": 3 * 2,
    uint8: 3,
    raw: 3 * 2,
    image: null,
    mp4: null,
  };
  const per = bytesPerPixel[output.kind];
  checkJobOutput(
    `Decoding ${JSON.stringify(plan.latentShape)} to ${items * frames} image(s) of ${s[s.length - 1]}x${s[s.length - 2]}`,
    pixels,
    per === null ? null : pixels * per,
    limits,
  );
  // What the answer will take in Redis at most: compressed answers are bounded by their pixels.
  return pixels * (per ?? 3);
}

/**
 * Which row of PROTOCOL.md §1's response table a request asks for, from its query and its
 * `Accept` header (diffusers picks the header from output_type/image_format/processor).
 */
export function decodeOutputFor(
  q: Pick<DecodeQuery, "output_type" | "partial_postprocess" | "image_format" | "dtype">,
  accept: string | undefined,
  model: ModelInfo,
): DecodeOutput {
  const a = (accept ?? "").toLowerCase();
  if (q.output_type === "mp4") {
    if (model.latent_rank !== 5)
      throw new AppError(
        "unsupported_operation",
        `output_type=mp4 needs a video model; ${model.id} decodes images.`,
      );
    return { kind: "mp4" };
  }
  if (q.output_type === "pt") {
    if (q.partial_postprocess) return { kind: "uint8" };
    return { kind: "raw", dtype: q.dtype === "bfloat16" ? "bfloat16" : "float16" };
  }
  // pil: a client holding a processor (always, for video) asks for the tensor it will finish itself.
  if (a.includes("tensor/binary")) return { kind: "unit-float16" };
  if (a.includes("image/png")) return { kind: "image", format: "png" };
  if (a.includes("image/jpeg") || a.includes("image/jpg")) return { kind: "image", format: "jpg" };
  if (model.latent_rank === 5 && !a.includes("image/")) return { kind: "unit-float16" };
  return { kind: "image", format: q.image_format === "png" ? "png" : "jpg" };
}

/**
 * Scaling from the query, as diffusers' client sends it: an explicit `scaling_factor` wins (with
 * `shift_factor` if given); `do_scaling=True` without a factor uses the model's own factors (an
 * explicit `shift_factor` still wins over the model's shift); otherwise none (already scaled).
 */
export function scalingFor(
  q: {
    scaling_factor?: number | undefined;
    shift_factor?: number | undefined;
    do_scaling?: boolean | undefined;
  },
  model: ModelInfo,
): Scaling {
  if (q.scaling_factor !== undefined) {
    if (q.scaling_factor === 0) throw new AppError("invalid_parameter", "scaling_factor must not be 0.");
    return { scale: q.scaling_factor, shift: q.shift_factor ?? 0 };
  }
  if (q.do_scaling) return { scale: model.scaling_factor, shift: q.shift_factor ?? model.shift_factor ?? 0 };
  if (q.shift_factor !== undefined) return { scale: 1, shift: q.shift_factor };
  return null;
}

/** Checks a raw image tensor sent for encoding: `[B, 3, H, W]`, sides multiples of the compression. */
export function planEncodeTensor(
  req: { shape: number[]; dtype: InputDType; byteLength: number },
  model: ModelInfo,
  limits: TensorLimits = DEFAULT_LIMITS,
): void {
  checkTensorBytes(req.byteLength, req.shape, req.dtype, limits);
  const [b, c, h, w] = req.shape as [number, number, number, number];
  const s = model.spatial_compression;
  if (req.shape.length !== 4 || c !== 3 || h % s !== 0 || w % s !== 0) {
    throw new AppError(
      "invalid_shape",
      `Image tensors must be [B, 3, H, W] with H and W multiples of ${s}, got ${JSON.stringify(req.shape)}.`,
    );
  }
  if (b > limits.maxBatch)
    throw new AppError("too_large", `Batch ${b} is over the limit of ${limits.maxBatch}.`);
  if (h * w > limits.maxOutputPixels)
    throw new AppError("too_large", `Image ${w}x${h} is over the limit of ${limits.maxOutputPixels} pixels.`);
  // The answer: [B, C, H/s, W/s] latents in the input's dtype.
  checkJobOutput(
    `Encoding ${JSON.stringify(req.shape)}`,
    b * h * w,
    b * model.latent_channels * (h / s) * (w / s) * BYTES_PER_ELEMENT[req.dtype],
    limits,
  );
}
