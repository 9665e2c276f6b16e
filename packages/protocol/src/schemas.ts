import { z } from "zod";
import { GenerationInfo } from "./generate.ts";
import { lastValue, QueryBool, QueryNumber, QueryPositiveInt, QueryShape } from "./query.ts";
import { DType, InputDType } from "./tensor.ts";

/** Model families we know the latent layout of. */
export const Family = z.enum(["sd-v1", "sdxl", "sd3", "flux", "hunyuan-video"]);
export type Family = z.infer<typeof Family>;

/** What each family's real diffusers export declares (values from the published configs). */
export interface FamilySpec {
  latentChannels: number;
  scalingFactor: number;
  shiftFactor: number | null;
  /** Temporal compression of video VAEs (frames = (f - 1) * t + 1); absent for images. */
  temporalCompression?: number;
  pipelineClass: string;
  vaeClass: string;
}

export const FAMILIES: Readonly<Record<Family, FamilySpec>> = {
  "sd-v1": {
    latentChannels: 4,
    scalingFactor: 0.18215,
    shiftFactor: null,
    pipelineClass: "StableDiffusionPipeline",
    vaeClass: "AutoencoderKL",
  },
  sdxl: {
    latentChannels: 4,
    scalingFactor: 0.13025,
    shiftFactor: null,
    pipelineClass: "StableDiffusionXLPipeline",
    vaeClass: "AutoencoderKL",
  },
  // stabilityai/stable-diffusion-3-medium-diffusers (3.5 uses the same VAE).
  sd3: {
    latentChannels: 16,
    scalingFactor: 1.5305,
    shiftFactor: 0.0609,
    pipelineClass: "StableDiffusion3Pipeline",
    vaeClass: "AutoencoderKL",
  },
  flux: {
    latentChannels: 16,
    scalingFactor: 0.3611,
    shiftFactor: 0.1159,
    pipelineClass: "FluxPipeline",
    vaeClass: "AutoencoderKL",
  },
  "hunyuan-video": {
    latentChannels: 16,
    scalingFactor: 0.476986,
    shiftFactor: null,
    temporalCompression: 4,
    pipelineClass: "HunyuanVideoPipeline",
    vaeClass: "AutoencoderKLHunyuanVideo",
  },
};

// uint8 is an answer dtype only: latents and images to encode come as floats.
const dtypeParam = z.preprocess(lastValue, InputDType);

/** Query of `POST /v1/vae/{model}/decode`, exactly as diffusers' `remote_decode` forms it (PROTOCOL.md §1). */
export const DecodeQuery = z.looseObject({
  shape: QueryShape,
  dtype: dtypeParam.default("float32"),
  output_type: z.enum(["pil", "pt", "mp4"]).default("pil"),
  image_format: z
    .enum(["jpg", "jpeg", "png"])
    .transform((f) => (f === "jpeg" ? "jpg" : f))
    .default("jpg"),
  partial_postprocess: QueryBool.default(false),
  scaling_factor: QueryNumber.optional(),
  shift_factor: QueryNumber.optional(),
  do_scaling: QueryBool.optional(),
  height: QueryPositiveInt.optional(),
  width: QueryPositiveInt.optional(),
  // Sent by some clients; the only transfer type is binary, so they change nothing.
  input_tensor_type: z.string().optional(),
  output_tensor_type: z.string().optional(),
});
export type DecodeQuery = z.infer<typeof DecodeQuery>;

/** Query of `POST /v1/vae/{model}/encode` (PROTOCOL.md §2). `shape`/`dtype` only for a raw tensor body. */
export const EncodeQuery = z.looseObject({
  shape: QueryShape.optional(),
  dtype: dtypeParam.optional(),
  scaling_factor: QueryNumber.optional(),
  shift_factor: QueryNumber.optional(),
  do_scaling: QueryBool.optional(),
  sample: QueryBool.default(false),
  seed: QueryPositiveInt.optional(),
});
export type EncodeQuery = z.infer<typeof EncodeQuery>;

/** What a worker advertises about a model it serves; `GET /v1/models` lists these. */
export const ModelInfo = z.object({
  id: z.string(),
  family: Family,
  task: z.literal("vae"),
  /** Operations this model answers: a decoder only, or decoder and encoder. */
  operations: z.array(z.enum(["decode", "encode"])),
  latent_channels: z.number().int().positive(),
  /** 4 for images `[B, C, h, w]`, 5 for video `[B, C, f, h, w]`. */
  latent_rank: z.union([z.literal(4), z.literal(5)]),
  spatial_compression: z.number().int().positive(),
  temporal_compression: z.number().int().positive().optional(),
  scaling_factor: z.number(),
  shift_factor: z.number().nullable(),
  /** Element type the ONNX graph takes (inputs are converted to it). */
  dtype: z.enum(["float32", "float16"]),
  /** A whole diffusion pipeline: what it generates and its defaults. */
  generation: GenerationInfo.optional(),
});
export type ModelInfo = z.infer<typeof ModelInfo>;

/** A latent/image scaling to apply: decode `x / scale + shift`, encode `(x - shift) * scale`. */
export const Scaling = z.object({ scale: z.number(), shift: z.number() }).nullable();
export type Scaling = z.infer<typeof Scaling>;

/** The answer a decode job must produce (one row of PROTOCOL.md §1's table). */
export const DecodeOutput = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("image"), format: z.enum(["jpg", "png"]) }),
  z.object({ kind: z.literal("mp4") }),
  z.object({ kind: z.literal("unit-float16") }),
  z.object({ kind: z.literal("uint8") }),
  z.object({ kind: z.literal("raw"), dtype: z.enum(["float16", "bfloat16"]) }),
]);
export type DecodeOutput = z.infer<typeof DecodeOutput>;

/** A Redis key holding payload bytes (never the bytes themselves: BullMQ stores job data as JSON). */
export const PayloadRef = z.string().min(1).max(200);

/**
 * The API process waiting for a job's answer (a sync request): the worker sends the answer to
 * it directly (`<prefix>:reply:<api>` on pub/sub). `keep`: the answer must stay fetchable after
 * it is sent (`Prefer: wait=N`, an Idempotency-Key), so the worker stores it first; otherwise it
 * is only stored when no API receives the reply.
 */
export const ReplyTo = z.object({ api: z.string().regex(/^[\w-]{1,64}$/), keep: z.boolean() });
export type ReplyTo = z.infer<typeof ReplyTo>;

/** BullMQ job data of a decode: small JSON only. */
export const DecodeJob = z.object({
  kind: z.literal("decode"),
  model: z.string(),
  input: PayloadRef,
  reply: ReplyTo.optional(),
  shape: z.array(z.number().int().positive()),
  dtype: InputDType,
  scaling: Scaling,
  packed: z.object({ height: z.number().int().positive(), width: z.number().int().positive() }).nullable(),
  output: DecodeOutput,
});
export type DecodeJob = z.infer<typeof DecodeJob>;

/** BullMQ job data of an encode. `input` is an image file (sniffed) or a raw tensor. */
export const EncodeJob = z.object({
  kind: z.literal("encode"),
  model: z.string(),
  input: PayloadRef,
  reply: ReplyTo.optional(),
  tensor: z.object({ shape: z.array(z.number().int().positive()), dtype: InputDType }).nullable(),
  scaling: Scaling,
  sample: z.boolean(),
  seed: z.number().int().nonnegative().nullable(),
  outputDtype: z.enum(["float32", "float16", "bfloat16"]),
});
export type EncodeJob = z.infer<typeof EncodeJob>;

/**
 * A job's return value: where the answer bytes are and what describes them, as typed fields (the
 * API turns them into headers and body; nothing here is HTTP).
 */
export const JobResult = z.object({
  result: PayloadRef,
  contentType: z.string(),
  bytes: z.number().int().nonnegative(),
  shape: z.array(z.number().int().nonnegative()).optional(),
  dtype: DType.optional(),
  /** A generation's seed (the API answers it as `x-seed`). */
  seed: z.number().int().nonnegative().optional(),
  /** A generation's prompt was cut to what its text encoder takes (`x-prompt-truncated: true`). */
  promptTruncated: z.literal(true).optional(),
  /** Shown in the job object's `warnings`. */
  warnings: z.array(z.string()).optional(),
  /**
   * Where the worker's time went, in ms: waiting in the queue, reading the input, the run (the model plus pre- and
   * postprocessing and image encoding; `modelMs` of it in the model itself), storing the answer.
   */
  timings: z
    .object({
      /** From the job's enqueueing to this attempt's start (two clocks: ms precision at best). */
      queueMs: z.number().nonnegative().optional(),
      readMs: z.number().nonnegative(),
      runMs: z.number().nonnegative(),
      modelMs: z.number().nonnegative().optional(),
      writeMs: z.number().nonnegative(),
    })
    .optional(),
  /**
   * The bytes went straight to the waiting API (`reply`) and were not stored by the worker: a
   * waiter that sees the job completed takes them from the reply, not from `result`.
   */
  inline: z.literal(true).optional(),
});
export type JobResult = z.infer<typeof JobResult>;
