import type { GenerateHeaders, HeaderValues, SchedulerName } from "@hybrid/protocol";
import { toBase64 } from "./base64.ts";
import { readOutput } from "./output.ts";
import { type CallOptions, modelSegments, type PreparedRequest } from "./transport.ts";

/** Parameters shared by text-to-image and image-to-image. Left out: the model's defaults. */
export interface GenerationParams {
  /** What to steer away from. */
  negativePrompt?: string | readonly string[];
  /** Output width in pixels: a multiple of 8 (16 for Flux and SD3), at least 64. */
  width?: number;
  /** Output height in pixels: a multiple of 8 (16 for Flux and SD3), at least 64. */
  height?: number;
  /** Denoising steps. */
  numInferenceSteps?: number;
  /** Classifier-free guidance scale. */
  guidanceScale?: number;
  /** A scheduler name (`euler`, `euler_a`, `ddim`, `lcm`, `dpmpp_2m`, …) or a diffusers class name. */
  scheduler?: SchedulerName | (string & {});
  /** Same request and seed give the same bytes (0 to 2^32 - 1). @defaultValue drawn by the server */
  seed?: number;
  /** Attach a small JPEG preview to each progress event (SSE and webhooks). @defaultValue false */
  previews?: boolean;
  /** Flux and SD3: tokens of the T5 sequence (1–512). @defaultValue the model's (256, Flux dev 512) */
  maxSequenceLength?: number;
  /** The answer's format. @defaultValue "jpeg" */
  format?: "jpeg" | "png";
}

/** A text-to-image request. */
export interface TextToImageParams extends GenerationParams {
  prompt: string;
}

/** An image-to-image request. */
export interface ImageToImageParams extends GenerationParams {
  /** The init image: PNG, JPEG or WebP bytes. */
  image: Uint8Array;
  /** @defaultValue "" */
  prompt?: string;
  /** How far the init image is noised: 0 keeps it, 1 ignores it. @defaultValue the model's (0.8) */
  strength?: number;
  /** Resize the result to this size. */
  targetSize?: { width: number; height: number };
}

/** Options of a synchronous generation. */
export interface GenerateCallOptions extends CallOptions {
  /**
   * A seeded request answered before may be answered from the server's cache (`x-cache: HIT`).
   * @defaultValue true
   */
  useCache?: boolean;
}

/** A generated image. */
export interface GenerateResult {
  bytes: Uint8Array;
  /** `image/jpeg` or `image/png`. */
  contentType: string;
  /** The seed used: the one given, or the one the server drew. */
  seed: number;
  /** The job that made it (`x-job-id`); absent for a cache hit served without one. */
  jobId: string | undefined;
  /** The prompt was longer than a text encoder takes (CLIP's 77 tokens, T5's sequence) and was cut. */
  promptTruncated: boolean;
}

function parameters(p: GenerationParams): Record<string, unknown> {
  const out: Record<string, unknown> = {
    negative_prompt: p.negativePrompt,
    width: p.width,
    height: p.height,
    num_inference_steps: p.numInferenceSteps,
    guidance_scale: p.guidanceScale,
    scheduler: p.scheduler,
    seed: p.seed,
    previews: p.previews,
    max_sequence_length: p.maxSequenceLength,
  };
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}

const accept = (p: GenerationParams) => (p.format === "png" ? "image/png" : "image/jpeg");

/** `POST /v1/text-to-image/{model}` in the HF task shape: `{inputs, parameters}`, image bytes back. */
export function prepareTextToImage(model: string, p: TextToImageParams): PreparedRequest {
  return {
    method: "POST",
    path: `/v1/text-to-image/${modelSegments(model)}`,
    headers: { "Content-Type": "application/json", Accept: accept(p) },
    body: JSON.stringify({ inputs: p.prompt, parameters: parameters(p) }),
  };
}

/** `POST /v1/image-to-image/{model}` in the HF task shape: base64 `inputs`, image bytes back. */
export function prepareImageToImage(model: string, p: ImageToImageParams): PreparedRequest {
  const params = parameters(p);
  if (p.prompt !== undefined) params.prompt = p.prompt;
  if (p.strength !== undefined) params.strength = p.strength;
  if (p.targetSize !== undefined)
    params.target_size = { width: p.targetSize.width, height: p.targetSize.height };
  return {
    method: "POST",
    path: `/v1/image-to-image/${modelSegments(model)}`,
    headers: { "Content-Type": "application/json", Accept: accept(p) },
    body: JSON.stringify({ inputs: toBase64(p.image), parameters: params }),
  };
}

/** Headers of a synchronous generation's options. */
export const generateHeaders = (o: GenerateCallOptions): HeaderValues<GenerateHeaders> =>
  o.useCache === undefined ? {} : { "x-use-cache": String(o.useCache) };

/** Reads a generation's answer (synchronous, or a job's result). */
export async function readGenerate(res: Response): Promise<GenerateResult> {
  const out = await readOutput(res);
  if (out.kind !== "image") throw new TypeError("A generation answered something other than an image.");
  const seed = Number(res.headers.get("x-seed"));
  return {
    bytes: out.bytes,
    contentType: out.contentType,
    seed: Number.isSafeInteger(seed) ? seed : Number.NaN,
    jobId: res.headers.get("x-job-id") ?? undefined,
    promptTruncated: res.headers.get("x-prompt-truncated") === "true",
  };
}
