import { z } from "zod";
import { ModelInfo } from "./schemas.ts";

/*
 * The JSON answers of the API's own routes, declared once: the API builds its answers typed by
 * them, the OpenAPI document is generated from them, and the SDK and the playground read them.
 * The job object and its list live in jobs.ts, the error body in errors.ts.
 */

/** What a model can be asked to do: `vae`, plus the generation tasks of a pipeline model. */
export const ModelTask = z.enum(["vae", "text-to-image", "image-to-image"]);
export type ModelTask = z.infer<typeof ModelTask>;

/** One entry of `GET /v1/models`: what the worker announced, plus the tasks and their URLs. */
export const ModelEntry = ModelInfo.extend({
  task: ModelTask.meta({
    description:
      "The model's main task: a pipeline's first generation task (`text-to-image`), else `vae`. " +
      "Everything it does is in `tasks`.",
  }),
  tasks: z.array(ModelTask).meta({ description: "`vae`, plus the generation tasks of a pipeline model." }),
  endpoints: z
    .record(z.string(), z.string())
    .meta({ description: "Operation or task → its path.", example: { decode: "/v1/vae/sd-v1-tiny/decode" } }),
});
export type ModelEntry = z.infer<typeof ModelEntry>;

/** `GET /v1/models`: the models live workers serve (only those the caller's key may use). */
export const ModelList = z.object({ object: z.literal("list"), data: z.array(ModelEntry) });
export type ModelList = z.infer<typeof ModelList>;

/** `GET /health/live`: the process is up. */
export const HealthLive = z.object({ status: z.literal("ok") });
export type HealthLive = z.infer<typeof HealthLive>;

/** `GET /health/ready`: Redis answers and live workers serve these models (ids sorted). */
export const HealthReady = z.object({
  status: z.literal("ready"),
  workers: z.number().int().positive(),
  models: z.array(z.string()),
  providers: z.record(z.string(), z.array(z.string())).optional().meta({
    description:
      "For each model, the onnxruntime execution providers its sessions run on across live workers (`cuda`, `tensorrt`, `cpu`; sorted), as the workers found when loading them.",
  }),
});
export type HealthReady = z.infer<typeof HealthReady>;

/** `GET /playground/config.json`: what the playground needs to know before its first API call. */
export const PlaygroundConfig = z.object({
  api_keys: z
    .boolean()
    .meta({ description: "API keys are on: the page asks for one and sends it as a bearer token." }),
  dashboard: z
    .boolean()
    .meta({ description: "The queue dashboard answers at /admin/queues (open, or behind ADMIN_KEY)." }),
  docs: z.boolean().meta({ description: "Swagger UI answers at /docs." }),
});
export type PlaygroundConfig = z.infer<typeof PlaygroundConfig>;

/**
 * A generation answered as JSON: the custom-handler body shape (flat parameters) or
 * `Accept: application/json`, synchronously or as the job's result.
 */
export const GeneratedImage = z.object({
  image: z.string().meta({ description: "The image file (JPEG, or PNG with `Accept: image/png`), base64." }),
});
export type GeneratedImage = z.infer<typeof GeneratedImage>;
