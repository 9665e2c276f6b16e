import { z } from "zod";
import { AppError } from "./errors.ts";
import { WebhookEventFilter } from "./webhooks.ts";

/**
 * Generation requests (PROTOCOL §3–4) in every shape real clients send, normalised to one
 * {@link GenerateParams}. Pure: the API parses with it, the worker checks again.
 */

/**
 * The schedulers a request may name (`scheduler`); diffusers' class names are accepted too.
 * `flow_match_euler` samples flow-matching models (Flux, SD3) and only them; the others sample
 * DDPM-trained models (SD 1.x/2.x, SDXL) and only them.
 */
export const SchedulerName = z.enum([
  "euler",
  "euler_a",
  "ddim",
  "lcm",
  "dpmpp_2m",
  "dpmpp_2m_karras",
  "pndm",
  "flow_match_euler",
]);
export type SchedulerName = z.infer<typeof SchedulerName>;

const SCHEDULER_CLASSES: Readonly<Record<string, SchedulerName>> = {
  EulerDiscreteScheduler: "euler",
  EulerAncestralDiscreteScheduler: "euler_a",
  DDIMScheduler: "ddim",
  LCMScheduler: "lcm",
  DPMSolverMultistepScheduler: "dpmpp_2m",
  PNDMScheduler: "pndm",
  FlowMatchEulerDiscreteScheduler: "flow_match_euler",
};

/** A scheduler name as a request gives it (case-insensitive; class names too), or null if unknown. */
export function schedulerNameOf(raw: string): SchedulerName | null {
  const lower = raw
    .trim()
    .toLowerCase()
    .replace(/[\s-]+/g, "_");
  const byName = SchedulerName.safeParse(lower);
  if (byName.success) return byName.data;
  return SCHEDULER_CLASSES[raw.trim()] ?? null;
}

/** Limits of one generation; users tune them through the apps' settings. */
export interface GenerateLimits {
  /** Largest width × height. @defaultValue 1024 × 1024 */
  maxPixels: number;
  /** Largest width or height. @defaultValue 2048 */
  maxSide: number;
  /** Most denoising steps. @defaultValue 100 */
  maxSteps: number;
  /** Largest guidance scale. @defaultValue 30 */
  maxGuidance: number;
  /**
   * Longest text field, in characters: the prompt, the negative prompt (an array joined), any
   * other string of the body (tokens beyond 75 are truncated anyway). @defaultValue 4000
   */
  maxPromptChars: number;
}

export const DEFAULT_GENERATE_LIMITS: GenerateLimits = {
  maxPixels: 1024 * 1024,
  maxSide: 2048,
  maxSteps: 100,
  maxGuidance: 30,
  maxPromptChars: 4000,
};

/** A model's defaults for what a request leaves out (`GET /v1/models` lists them). */
export const GenerateDefaults = z.object({
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  num_inference_steps: z.number().int().positive(),
  guidance_scale: z.number(),
  scheduler: SchedulerName,
  strength: z.number(),
});
export type GenerateDefaults = z.infer<typeof GenerateDefaults>;

/** What a pipeline model does and its defaults (workers announce it with the model). */
export const GenerationInfo = z.object({
  tasks: z.array(z.enum(["text-to-image", "image-to-image"])).min(1),
  defaults: GenerateDefaults,
  /**
   * Width and height must be multiples of this: 8 (one latent) when absent; 16 for Flux and SD3,
   * whose transformers take 2×2 patches of latents.
   */
  size_multiple: z.number().int().positive().optional(),
});
export type GenerationInfo = z.infer<typeof GenerationInfo>;

/** A generation after parsing, defaults applied and limits checked: what a `generate` job runs. */
export const GenerateParams = z.object({
  task: z.enum(["text-to-image", "image-to-image"]),
  prompt: z.string(),
  negative_prompt: z.string(),
  /** Null for image-to-image without an explicit size: the init image's size (rounded down to 8). */
  width: z.number().int().positive().nullable(),
  height: z.number().int().positive().nullable(),
  num_inference_steps: z.number().int().positive(),
  guidance_scale: z.number(),
  /** Null: the model's own scheduler config, exactly as shipped. */
  scheduler: SchedulerName.nullable(),
  /** Send a small latent preview with each progress event. */
  previews: z.boolean(),
  /** Image-to-image only: how far the init image is noised (1 ignores it). */
  strength: z.number().min(0).max(1),
  /** Always set: drawn at random when the request gives none, and reported back (`x-seed`). */
  seed: z.number().int().nonnegative(),
  /** Image-to-image: resize the result to this size when given. */
  target_size: z
    .object({ width: z.number().int().positive(), height: z.number().int().positive() })
    .nullable(),
  /**
   * Flux and SD3: tokens of the T5 encoder's sequence (diffusers' `max_sequence_length`); absent:
   * the model's default (Flux dev 512, Flux schnell and SD3 256). Other models ignore it.
   */
  max_sequence_length: z.number().int().min(1).max(512).optional(),
});
export type GenerateParams = z.infer<typeof GenerateParams>;

/** How the answer is written: image bytes (HF task clients) or `{"image": "<base64>"}` (handler clients). */
export const GenerateResponse = z.enum(["image", "json"]);
export type GenerateResponse = z.infer<typeof GenerateResponse>;

const num = z.number().refine(Number.isFinite, "must be a finite number");
const int = z.number().int("must be an integer");
const Size = z.object({ width: int, height: int });

/** Every parameter any client shape may carry, flat or under `parameters`. */
const Parameters = z.looseObject({
  prompt: z.string().optional(),
  negative_prompt: z.union([z.string(), z.array(z.string())]).nullish(),
  height: int.nullish(),
  width: int.nullish(),
  target_size: Size.nullish(),
  guidance_scale: num.nullish(),
  num_inference_steps: int.nullish(),
  /** The handler spec's name for num_inference_steps. */
  inference_steps: int.nullish(),
  scheduler: z.string().nullish(),
  seed: int.nullish(),
  strength: num.nullish(),
  /** Our extension: latent previews in the progress events (SSE, webhooks). */
  previews: z.boolean().nullish(),
  /** Flux and SD3: the T5 sequence length (diffusers' name). */
  max_sequence_length: int.nullish(),
});

/** The JSON body of a generation request, either shape. */
export const GenerateBody = Parameters.extend({
  inputs: z.string(),
  parameters: Parameters.nullish(),
  /** A webhook for JSON clients (binary endpoints use X-Webhook-Url). */
  webhook: z.string().nullish(),
  webhook_events_filter: z.array(WebhookEventFilter).nullish(),
});
export type GenerateBody = z.infer<typeof GenerateBody>;

const FLAT_KEYS = [
  "previews",
  "negative_prompt",
  "height",
  "width",
  "guidance_scale",
  "num_inference_steps",
  "inference_steps",
  "scheduler",
  "seed",
  "strength",
  "max_sequence_length",
] as const;

/** True for the custom-handler shape (parameters at the top level), which answers JSON. */
export const isHandlerStyle = (body: GenerateBody): boolean =>
  !body.parameters && FLAT_KEYS.some((k) => body[k] !== undefined && body[k] !== null);

const invalid = (parameter: string, message: string) =>
  new AppError("invalid_parameter", `Invalid ${parameter}: ${message}.`, { details: { parameter } });

const tooLong = (parameter: string, chars: number, max: number) =>
  new AppError(
    "invalid_parameter",
    `Invalid ${parameter}: ${chars} characters${parameter.endsWith("negative_prompt") ? ' (an array joined with ", ")' : ""}, over the limit of ${max} (MAX_TEXT_CHARS).`,
    { details: { parameter, limit: max } },
  );

/** Most entries of `webhook_events_filter` (there are three kinds; repeats are tolerated). */
export const MAX_WEBHOOK_FILTERS = 16;

/**
 * Size checks on a generation's parsed JSON, before the schema reads it: a body may be large
 * (an image-to-image body carries a base64 image), but no text in it is. Every string is capped
 * at `maxChars`, the keys the protocol reads and any other, at any depth; `negative_prompt` as
 * an array is counted joined; `inputs` is exempt where it may be an image (`asked` other than
 * text-to-image: the body limit bounds it). A missing or non-string `inputs` gets a message
 * saying what it is. Iterative: a deeply nested body cannot exhaust the stack.
 */
export function checkGenerateJson(
  json: unknown,
  maxChars: number,
  asked: "text-to-image" | "image-to-image" | "auto",
): void {
  if (typeof json !== "object" || json === null || Array.isArray(json))
    throw new AppError(
      "invalid_parameter",
      'The body must be a JSON object: {"inputs": "<prompt>", "parameters": {...}}.',
    );
  const inputs = (json as Record<string, unknown>).inputs;
  if (typeof inputs !== "string") throw missingInputs(asked, inputs === undefined || inputs === null);
  const stack: Array<{ path: string; value: unknown }> = [];
  for (const [k, v] of Object.entries(json)) {
    if (k === "inputs" && asked !== "text-to-image") continue;
    stack.push({ path: k, value: v });
  }
  while (stack.length > 0) {
    const { path, value } = stack.pop()!;
    const key = path.slice(path.lastIndexOf(".") + 1);
    if (typeof value === "string") {
      if (value.length > maxChars) throw tooLong(path, value.length, maxChars);
    } else if (Array.isArray(value)) {
      if (key === "negative_prompt") {
        // Counted as resolveGenerate joins it, with ", " between the entries.
        let chars = Math.max(0, value.length - 1) * 2;
        for (const v of value) if (typeof v === "string") chars += v.length;
        if (chars > maxChars) throw tooLong(path, chars, maxChars);
      }
      if (key === "webhook_events_filter" && value.length > MAX_WEBHOOK_FILTERS)
        throw invalid(path, `${value.length} entries, over the limit of ${MAX_WEBHOOK_FILTERS}`);
      value.forEach((v, i) => {
        stack.push({ path: `${path}.${i}`, value: v });
      });
    } else if (typeof value === "object" && value !== null) {
      for (const [k, v] of Object.entries(value)) stack.push({ path: `${path}.${k}`, value: v });
    }
  }
}

/** `inputs` missing (or not a string): say what it is for the route asked. */
function missingInputs(asked: "text-to-image" | "image-to-image" | "auto", missing: boolean): AppError {
  const what =
    asked === "text-to-image"
      ? 'it is the prompt, and it is required: {"inputs": "a photo of a cat", "parameters": {...}}'
      : asked === "image-to-image"
        ? 'it is the init image as base64 (PNG, JPEG or WebP), and it is required: {"inputs": "<base64 image>", "parameters": {"prompt": "..."}}, or send the image bytes as the body'
        : 'it is the prompt (or, for image-to-image, the init image as base64), and it is required: {"inputs": "a photo of a cat", "parameters": {...}}';
  return new AppError(
    "invalid_parameter",
    `${missing ? "Missing inputs" : "Invalid inputs: not a string"}: ${what}.`,
    { details: { parameter: "inputs" } },
  );
}

/**
 * The generation a request asks for: flat fields and `parameters` merged (`parameters` wins),
 * model defaults for what is missing, every limit checked. Errors are 400 `invalid_parameter`
 * naming the parameter.
 */
export function resolveGenerate(
  task: GenerateParams["task"],
  prompt: string,
  p: z.infer<typeof Parameters>,
  defaults: GenerateDefaults,
  limits: GenerateLimits,
  randomSeed: () => number,
  /** Width and height are multiples of it (the model's `size_multiple`). */
  sizeMultiple = 8,
): GenerateParams {
  // Image-to-image may go without a prompt (the HF task allows a bare image body).
  if (task === "text-to-image" && prompt.trim() === "") throw invalid("inputs", "the prompt is empty");
  if (prompt.length > limits.maxPromptChars)
    throw tooLong(task === "text-to-image" ? "inputs" : "prompt", prompt.length, limits.maxPromptChars);
  const negative = Array.isArray(p.negative_prompt)
    ? p.negative_prompt.join(", ")
    : (p.negative_prompt ?? "");
  if (negative.length > limits.maxPromptChars)
    throw tooLong("negative_prompt", negative.length, limits.maxPromptChars);
  const target = p.target_size ?? null;
  // Text-to-image takes its size from target_size when only that is given (older clients);
  // image-to-image generates at the init image's size (the caller's defaults) and resizes to it.
  const t2i = task === "text-to-image";
  const sized = t2i ? target : null;
  const width = p.width ?? sized?.width ?? (t2i ? defaults.width : null);
  const height = p.height ?? sized?.height ?? (t2i ? defaults.height : null);
  for (const [name, v] of [
    ["width", width],
    ["height", height],
  ] as const) {
    if (v === null) continue;
    if (v < 64 || v % sizeMultiple !== 0)
      throw invalid(name, `${v} is not a multiple of ${sizeMultiple} of at least 64`);
    if (v > limits.maxSide) throw invalid(name, `${v} is larger than ${limits.maxSide}`);
  }
  if (width !== null && height !== null && width * height > limits.maxPixels)
    throw invalid("width", `${width}x${height} is more than the ${limits.maxPixels} pixels allowed`);
  const steps = p.num_inference_steps ?? p.inference_steps ?? defaults.num_inference_steps;
  const stepsName = p.num_inference_steps != null ? "num_inference_steps" : "inference_steps";
  if (steps < 1 || steps > limits.maxSteps)
    throw invalid(stepsName, `${steps} is not between 1 and ${limits.maxSteps}`);
  const guidance = p.guidance_scale ?? defaults.guidance_scale;
  if (guidance < 0 || guidance > limits.maxGuidance)
    throw invalid("guidance_scale", `${guidance} is not between 0 and ${limits.maxGuidance}`);
  const strength = p.strength ?? defaults.strength;
  if (strength < 0 || strength > 1) throw invalid("strength", `${strength} is not between 0 and 1`);
  let scheduler: SchedulerName | null = null;
  if (p.scheduler != null) {
    const named = schedulerNameOf(p.scheduler);
    if (!named)
      throw invalid(
        "scheduler",
        `unknown scheduler "${p.scheduler}" (one of ${SchedulerName.options.join(", ")})`,
      );
    scheduler = named;
  }
  const maxSequence = p.max_sequence_length;
  if (maxSequence != null && (maxSequence < 1 || maxSequence > 512))
    throw invalid("max_sequence_length", `${maxSequence} is not between 1 and 512`);
  if (p.seed != null && (p.seed < 0 || p.seed > 0xffffffff))
    throw invalid("seed", `${p.seed} is not between 0 and ${0xffffffff}`);
  if (target) {
    for (const [name, v] of [
      ["target_size.width", target.width],
      ["target_size.height", target.height],
    ] as const)
      if (v < 8 || v > limits.maxSide) throw invalid(name, `${v} is not between 8 and ${limits.maxSide}`);
    if (target.width * target.height > limits.maxPixels)
      throw invalid("target_size", `more than the ${limits.maxPixels} pixels allowed`);
  }
  return {
    task,
    prompt,
    negative_prompt: negative,
    width,
    height,
    num_inference_steps: steps,
    guidance_scale: guidance,
    scheduler,
    strength: task === "text-to-image" ? 1 : strength,
    seed: p.seed ?? randomSeed(),
    previews: p.previews ?? false,
    target_size: task === "image-to-image" ? target : null,
    ...(maxSequence != null ? { max_sequence_length: maxSequence } : {}),
  };
}

/** Merges a body's flat fields with its `parameters` (which win) into one parameter set. */
export function parametersOf(body: GenerateBody): z.infer<typeof Parameters> {
  const merged: Record<string, unknown> = {};
  for (const source of [body, body.parameters ?? {}]) {
    for (const [k, v] of Object.entries(source))
      if (v !== undefined && v !== null && k !== "parameters") merged[k] = v;
  }
  return Parameters.parse(merged);
}
