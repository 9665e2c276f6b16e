import { createRequire } from "node:module";
import {
  DecodeQuery,
  DType,
  EncodeQuery,
  ErrorBody,
  ErrorCode,
  errorStatus,
  GenerateBody,
  JobList,
  JobObject,
  ModelInfo,
  QueryBool,
  QueryNumber,
  QueryPositiveInt,
  QueryShape,
} from "@hybrid/protocol";
import { z } from "zod";
import {
  type CreateDocumentOptions,
  createDocument,
  type ZodOpenApiOperationObject,
  type ZodOpenApiPathsObject,
  type ZodOpenApiResponseObject,
  type ZodOpenApiResponsesObject,
} from "zod-openapi";
import { ListQuery } from "./routes/jobs.ts";

/*
 * The OpenAPI 3.1 document of the API (`GET /openapi.json`), generated from the zod schemas the
 * routes parse requests with and the protocol's answer schemas. Answers that app.ts builds inline
 * (the model list, health) are described here, beside the routes' own schemas.
 */

const { version } = createRequire(import.meta.url)("../package.json") as { version: string };

// ---- Answer schemas that have no zod schema of their own elsewhere --------------------------

/** One entry of `GET /v1/models`: what the worker announced, plus the tasks and their URLs. */
export const ModelEntry = ModelInfo.extend({
  tasks: z
    .array(z.enum(["vae", "text-to-image", "image-to-image"]))
    .meta({ description: "`vae`, plus the generation tasks of a pipeline model." }),
  endpoints: z
    .record(z.string(), z.string())
    .meta({ description: "Operation or task → its path.", example: { decode: "/v1/vae/sd-v1-tiny/decode" } }),
});
export const ModelList = z.object({ object: z.literal("list"), data: z.array(ModelEntry) });

export const HealthLive = z.object({ status: z.literal("ok") });
/** `GET /playground/config.json` (apps/api/src/routes/web.ts). */
export const PlaygroundConfig = z.object({
  api_keys: z.boolean().meta({ description: "API keys are on: the page asks for one." }),
  dashboard: z.boolean().meta({ description: "The queue dashboard answers at /admin/queues." }),
  docs: z.boolean().meta({ description: "Swagger UI answers at /docs." }),
});
export const HealthReady = z.object({
  status: z.literal("ready"),
  workers: z.number().int().positive(),
  models: z.array(z.string()),
});

/** The custom-handler answer of a generation (`Accept: application/json` or the handler body shape). */
export const GeneratedImage = z
  .object({
    image: z
      .string()
      .meta({ description: "The image file (JPEG, or PNG with `Accept: image/png`), base64." }),
  })
  .meta({ id: "GeneratedImage" });

/** Every error answer; `estimated_time` comes with 503 `model_loading` (the HF shape). */
const ErrorAnswer = ErrorBody.extend({
  estimated_time: z
    .number()
    .optional()
    .meta({ description: "503 `model_loading`: seconds to wait before trying again." }),
});

// ---- Parameters ------------------------------------------------------------------------------

/**
 * The query helpers parse strings (transforms, preprocess): in the document they read as what a
 * client sends, which is what generated clients should build.
 */
const INPUT_OVERRIDES = new Map<unknown, Record<string, unknown>>([
  [
    QueryShape,
    {
      type: "array",
      items: { type: "integer", minimum: 1 },
      description:
        "The tensor's shape, the key repeated once per dimension as diffusers sends it " +
        "(`shape=1&shape=4&shape=64&shape=64`); `shape=[1,4,64,64]` and `shape=1,4,64,64` work too.",
    },
  ],
  [
    QueryBool,
    { type: "boolean", description: "`True`/`False` (as Python sends them), `true`/`false` or `1`/`0`." },
  ],
  [QueryNumber, { type: "number" }],
  [QueryPositiveInt, { type: "integer", minimum: 1, maximum: 1_000_000 }],
]);

const overrideInputs: CreateDocumentOptions["override"] = ({ jsonSchema, zodSchema, io }) => {
  if (io !== "input") return;
  const replacement = INPUT_OVERRIDES.get(zodSchema);
  const schema = jsonSchema as Record<string, unknown>;
  if (replacement) {
    for (const key of Object.keys(schema)) delete schema[key];
    Object.assign(schema, replacement);
    return;
  }
  // zod leaves out the default of a parsed (piped) parameter; ours are all valid inputs too.
  const def = zodSchema._zod.def as { type: string; defaultValue?: unknown };
  if (def.type === "default" && schema.default === undefined) {
    const value = def.defaultValue;
    if (["string", "number", "boolean"].includes(typeof value)) schema.default = value;
  }
};

const ModelPath = z.object({
  model: z.string().meta({ description: "A model id (`GET /v1/models`).", example: "sd-v1-tiny" }),
});
const JobPath = z.object({ id: z.string().meta({ description: "The job id (`x-job-id`, `id`)." }) });

const waitForModel = z
  .boolean()
  .optional()
  .meta({
    param: { id: "WaitForModel" },
    description:
      "`true`: when the model's workers are restarting, wait for one (up to the request timeout) " +
      "instead of answering 503 `model_loading`. Default `false`.",
  });

/** The headers every inference endpoint reads (one submit path: sync, `wait=N`, async, webhooks). */
const SubmitHeaders = z.object({
  Prefer: z
    .string()
    .optional()
    .meta({
      param: { id: "Prefer" },
      description:
        "`respond-async`: answer 202 with the job at once. `wait=N`: the result if it is ready within " +
        "N seconds, else 202 with the job. Without it the request waits for its result (504 `timeout` " +
        "with `job_id` after the request timeout; the job goes on).",
      example: "respond-async",
    }),
  "Idempotency-Key": z
    .string()
    .regex(/^[\x21-\x7e]{1,255}$/)
    .optional()
    .meta({
      param: { id: "IdempotencyKey" },
      description:
        "The same key with the same request answers the job it created (for 24 h by default); with " +
        "another request, 422 `idempotency_conflict`. A sync request with a key is not canceled when " +
        "the client hangs up.",
    }),
  "X-Webhook-Url": z
    .url()
    .optional()
    .meta({
      param: { id: "WebhookUrl" },
      description:
        "Deliver the job object to this URL (Standard Webhooks signature, retried with backoff). " +
        "Private and loopback hosts are refused unless allowed by the operator.",
    }),
  "X-Webhook-Events": z
    .string()
    .optional()
    .meta({
      param: { id: "WebhookEvents" },
      description:
        "Comma-separated events to deliver: `start`, `progress`, `completed` (default `completed`).",
      example: "start,completed",
    }),
  "x-wait-for-model": waitForModel,
});

const GenerateHeaders = SubmitHeaders.extend({
  "x-use-cache": z
    .boolean()
    .optional()
    .meta({
      param: { id: "UseCache" },
      description:
        "Default `true`: a synchronous request with a `seed` seen before is answered from the cache " +
        "(`x-cache: HIT`). `false` always generates.",
    }),
});

// ---- Responses -------------------------------------------------------------------------------

const binary = { type: "string", format: "binary" } as const;
const text = { type: "string" } as const;

const jobIdHeader = z.string().meta({ description: "The job that produced this answer." });

const STATUS_TEXT: Record<number, string> = {
  400: "Bad request",
  401: "No or wrong API key (only when the service has API keys)",
  403: "The API key may not use this model",
  404: "Not found",
  405: "Method not allowed",
  409: "Conflict",
  410: "Gone",
  413: "Too large",
  415: "Unsupported media type",
  422: "Idempotency conflict",
  429: "Too many requests; see Retry-After",
  500: "Internal error",
  503: "Unavailable; see Retry-After (HF clients retry)",
  504: "The job did not finish within the request timeout; it goes on (`job_id`)",
};

/**
 * An error answer: `ErrorBody` whose `code` is one of those the status stands for. Without a
 * note it is the shared component `Error<status>`.
 */
function errorResponse(status: number, note?: string): ZodOpenApiResponseObject {
  const codes = ErrorCode.options.filter((c) => errorStatus[c] === status);
  const headers: Record<string, z.ZodType> = {};
  if (status === 429 || status === 503)
    headers["Retry-After"] = z.string().meta({ description: "Seconds to wait before trying again." });
  if (status === 401)
    headers["WWW-Authenticate"] = z.string().meta({ description: "The scheme to authenticate with." });
  return {
    ...(note ? {} : { id: `Error${status}` }),
    description: `${STATUS_TEXT[status] ?? "Error"}: ${codes.map((c) => `\`${c}\``).join(", ")}.${note ? ` ${note}` : ""}`,
    ...(Object.keys(headers).length > 0 ? { headers: z.object(headers) } : {}),
    content: {
      "application/json": {
        schema: {
          allOf: [
            { $ref: "#/components/schemas/ErrorBody" },
            { type: "object", properties: { code: { type: "string", enum: codes } } },
          ],
        },
      },
    },
  };
}

// zod-openapi registers a response component by object identity: one object per status.
const sharedErrors = new Map<number, ZodOpenApiResponseObject>();
const errors = (...statuses: number[]): ZodOpenApiResponsesObject =>
  Object.fromEntries(
    statuses.map((s) => {
      let response = sharedErrors.get(s);
      if (!response) {
        response = errorResponse(s);
        sharedErrors.set(s, response);
      }
      return [String(s), response];
    }),
  );

/** Every status a submission can answer besides its result and 202. */
const SUBMIT_ERRORS = [400, 401, 403, 404, 409, 410, 413, 422, 429, 500, 503, 504];
/** Reading a job: another key's job is as absent as a missing one (404). */
const JOB_ERRORS = [401, 404, 500, 503];

const acceptedResponse: ZodOpenApiResponseObject = {
  id: "Accepted",
  description:
    "Accepted (`Prefer: respond-async`, or `wait=N` ran out): the job. Poll `urls.self`, stream " +
    "`urls.events`, fetch `urls.result` when it has succeeded.",
  headers: z.object({
    Location: z.string().meta({ description: "The job's URL (`/v1/jobs/{id}`)." }),
    "x-job-id": jobIdHeader,
    "Preference-Applied": z.string().optional().meta({ description: "`respond-async` or `wait=N`." }),
  }),
  content: { "application/json": { schema: JobObject } },
};

const tensorHeaders = {
  shape: z
    .string()
    .optional()
    .meta({ description: "Tensor answers: the shape.", example: "[1, 512, 512, 3]" }),
  dtype: DType.optional().meta({ description: "Tensor answers: the element type." }),
};

const decodeResult: ZodOpenApiResponseObject = {
  description:
    "The decoded latents (PROTOCOL §1): an image (`output_type=pil`; JPEG or PNG per `image_format` " +
    "and Accept), an mp4 (`output_type=mp4`, video models), or a raw tensor (`output_type=pt`, or " +
    "`pil` with a processor on the client: uint8 channels-last with `partial_postprocess=True`, " +
    "float16/bfloat16 otherwise) described by the `shape` and `dtype` headers.",
  headers: z.object({ "x-job-id": jobIdHeader, ...tensorHeaders }),
  content: {
    "image/jpeg": { schema: binary },
    "image/png": { schema: binary },
    "video/mp4": { schema: binary },
    "tensor/binary": { schema: binary },
  },
};

const encodeResult: ZodOpenApiResponseObject = {
  description: "The latents (PROTOCOL §2), little-endian, described by the `shape` and `dtype` headers.",
  headers: z.object({ "x-job-id": jobIdHeader, ...tensorHeaders }),
  content: { "tensor/binary": { schema: binary } },
};

const generationHeaders = {
  "x-seed": z
    .string()
    .meta({ description: "The seed used (given, or drawn for this request).", example: "42" }),
  "x-job-id": jobIdHeader.optional(),
  "x-cache": z
    .enum(["HIT", "MISS"])
    .optional()
    .meta({ description: "Seeded synchronous requests: whether the answer came from the cache." }),
  "x-prompt-truncated": z
    .literal("true")
    .optional()
    .meta({ description: "The prompt was longer than the text encoder takes (77 tokens)." }),
};

const generateResult: ZodOpenApiResponseObject = {
  id: "GenerationResult",
  description:
    "The image: bytes (JPEG; PNG with `Accept: image/png`) for HF task clients, or " +
    '`{"image": "<base64>"}` for the custom-handler body shape (flat parameters) or ' +
    "`Accept: application/json`.",
  headers: z.object(generationHeaders),
  content: {
    "image/jpeg": { schema: binary },
    "image/png": { schema: binary },
    "application/json": { schema: GeneratedImage },
  },
};

const submitResponses = (ok: ZodOpenApiResponseObject): ZodOpenApiResponsesObject => ({
  "200": ok,
  "202": acceptedResponse,
  ...errors(...SUBMIT_ERRORS),
});

// ---- Operations ------------------------------------------------------------------------------

const imageBody = {
  "image/png": { schema: binary },
  "image/jpeg": { schema: binary },
  "image/webp": { schema: binary },
};

function generateOperation(
  operationId: string,
  summary: string,
  description: string,
  images: boolean,
): ZodOpenApiOperationObject {
  return {
    operationId,
    tags: ["generation"],
    summary,
    description,
    requestParams: { path: ModelPath, header: GenerateHeaders },
    requestBody: {
      required: true,
      content: { "application/json": { schema: GenerateBody }, ...(images ? imageBody : {}) },
    },
    responses: submitResponses(generateResult),
  };
}

const publicOp = { security: [] };

const paths: ZodOpenApiPathsObject = {
  "/v1/vae/{model}/decode": {
    post: {
      operationId: "decode",
      tags: ["vae"],
      summary: "Decode latents",
      description:
        "Latents → image, tensor or mp4, exactly as diffusers' `remote_decode` asks (PROTOCOL §1). " +
        "The answer follows `output_type`, `image_format`, `partial_postprocess` and Accept.",
      requestParams: { path: ModelPath, query: DecodeQuery, header: SubmitHeaders },
      requestBody: {
        required: true,
        description: "The latents' bytes, little-endian, `dtype` elements in `shape` order.",
        content: { "tensor/binary": { schema: binary }, "application/octet-stream": { schema: binary } },
      },
      responses: submitResponses(decodeResult),
    },
  },
  "/v1/vae/{model}/encode": {
    post: {
      operationId: "encode",
      tags: ["vae"],
      summary: "Encode an image",
      description:
        "A PNG/JPEG/WebP image, or a `[B, 3, H, W]` tensor in [-1, 1] with `shape` and `dtype`, → " +
        "latents (PROTOCOL §2). `sample=True` (with an optional `seed`) samples instead of taking the mean.",
      requestParams: { path: ModelPath, query: EncodeQuery, header: SubmitHeaders },
      requestBody: {
        required: true,
        content: { ...imageBody, "tensor/binary": { schema: binary } },
      },
      responses: submitResponses(encodeResult),
    },
  },
  "/v1/text-to-image/{model}": {
    post: generateOperation(
      "textToImage",
      "Generate an image from a prompt",
      "PROTOCOL §3. Parameters flat (the custom-handler shape, answered as JSON) or under " +
        "`parameters` (the HF task shape, answered as image bytes).",
      false,
    ),
  },
  "/v1/image-to-image/{model}": {
    post: generateOperation(
      "imageToImage",
      "Generate an image from an image and a prompt",
      "PROTOCOL §4. The init image as base64 in `inputs` (prompt in `parameters.prompt`), or the raw " +
        "image as the body (no parameters).",
      true,
    ),
  },
  "/models/{model}": {
    post: generateOperation(
      "runModel",
      "The HF Inference API shape",
      "What `@huggingface/inference` sends with `endpointUrl` `<server>/models/{model}`: " +
        "text-to-image or image-to-image, read from the body (an image in `inputs`, or as the body, " +
        "is image-to-image).",
      true,
    ),
  },
  "/v1/jobs": {
    get: {
      operationId: "listJobs",
      tags: ["jobs"],
      summary: "The caller's jobs, newest first",
      requestParams: { query: ListQuery },
      responses: {
        "200": {
          description: "A page of jobs.",
          content: { "application/json": { schema: JobList.meta({ id: "JobList" }) } },
        },
        ...errors(400, 401, 500, 503),
      },
    },
  },
  "/v1/jobs/{id}": {
    get: {
      operationId: "getJob",
      tags: ["jobs"],
      summary: "A job",
      requestParams: { path: JobPath },
      responses: {
        "200": { description: "The job.", content: { "application/json": { schema: JobObject } } },
        ...errors(...JOB_ERRORS),
      },
    },
  },
  "/v1/jobs/{id}/result": {
    get: {
      operationId: "getJobResult",
      tags: ["jobs"],
      summary: "A job's result",
      description:
        "The bytes, status and headers the synchronous call answers. A failed job answers its error " +
        "(its code's status).",
      requestParams: { path: JobPath },
      responses: {
        "200": {
          description: "The result, exactly as the synchronous request answers it.",
          headers: z.object({ ...tensorHeaders, ...generationHeaders, "x-job-id": jobIdHeader }).partial(),
          content: {
            ...decodeResult.content,
            "application/json": { schema: GeneratedImage },
          },
        },
        ...errors(400, 401, 404, 409, 410, 413, 500, 503),
      },
    },
  },
  "/v1/jobs/{id}/events": {
    get: {
      operationId: "streamJobEvents",
      tags: ["jobs"],
      summary: "Stream a job's events (Server-Sent Events)",
      description:
        "Replays the job's events (after `Last-Event-ID`, or from the start), follows new ones live, " +
        "and ends after the terminal one. Each event is `id: <seq>`, `event: queued | started | " +
        "progress | succeeded | failed | canceled`, `data: <JobObject as JSON>`; `: keep-alive` " +
        "comments in between.",
      requestParams: {
        path: JobPath,
        query: z.object({
          last_event_id: z
            .string()
            .optional()
            .meta({ description: "Like `Last-Event-ID`, for clients that cannot set headers." }),
        }),
        header: z.object({
          "Last-Event-ID": z
            .string()
            .optional()
            .meta({ description: "Resume after this event id (browsers send it on reconnect)." }),
        }),
      },
      responses: {
        "200": {
          description: "The event stream; each event's `data` is a `JobObject`.",
          content: {
            "text/event-stream": { schema: { ...text, description: "Server-Sent Events; data: JobObject." } },
          },
        },
        ...errors(...JOB_ERRORS),
      },
    },
  },
  "/v1/jobs/{id}/cancel": {
    post: {
      operationId: "cancelJob",
      tags: ["jobs"],
      summary: "Cancel a job",
      requestParams: { path: JobPath },
      responses: {
        "200": {
          description: "The job had already succeeded or failed: unchanged.",
          content: { "application/json": { schema: JobObject } },
        },
        "202": {
          description:
            "Canceled (a queued job at once), or the cancel is on its way to the worker running it.",
          content: { "application/json": { schema: JobObject } },
        },
        ...errors(...JOB_ERRORS),
      },
    },
  },
  "/v1/models": {
    get: {
      operationId: "listModels",
      tags: ["models"],
      summary: "The models live workers serve",
      description: "Only those the caller's API key may use.",
      responses: {
        "200": { description: "The models.", content: { "application/json": { schema: ModelList } } },
        ...errors(401, 500, 503),
      },
    },
  },
  "/health/live": {
    get: {
      operationId: "healthLive",
      tags: ["health"],
      summary: "The process is up",
      ...publicOp,
      responses: { "200": { description: "Up.", content: { "application/json": { schema: HealthLive } } } },
    },
  },
  "/health/ready": {
    get: {
      operationId: "healthReady",
      tags: ["health"],
      summary: "Redis answers and a worker serves a model",
      ...publicOp,
      responses: {
        "200": { description: "Ready.", content: { "application/json": { schema: HealthReady } } },
        ...errors(503),
      },
    },
  },
  "/metrics": {
    get: {
      operationId: "metrics",
      tags: ["operations"],
      summary: "Prometheus metrics",
      description: "Without auth, like `/health/*`. Off (404) with `METRICS_ENABLED=false`.",
      ...publicOp,
      responses: {
        "200": {
          description: "The Prometheus text exposition format.",
          content: { "text/plain": { schema: text } },
        },
      },
    },
  },
  "/openapi.json": {
    get: {
      operationId: "openapi",
      tags: ["operations"],
      summary: "This document",
      ...publicOp,
      responses: {
        "200": {
          description: "The OpenAPI 3.1 document.",
          content: { "application/json": { schema: { type: "object" } } },
        },
      },
    },
  },
  "/docs": {
    get: {
      operationId: "docs",
      tags: ["operations"],
      summary: "Interactive documentation (Swagger UI, served locally)",
      ...publicOp,
      responses: {
        "200": { description: "The Swagger UI page.", content: { "text/html": { schema: text } } },
      },
    },
  },
  "/": {
    get: {
      operationId: "playground",
      tags: ["operations"],
      summary: "The playground: a page to try every endpoint",
      description:
        "Static files built from `apps/web` (no CDN; it works offline). Public: the page asks for an API " +
        "key when keys are on. 503 with a hint when the page was not built.",
      ...publicOp,
      responses: {
        "200": { description: "The playground's page.", content: { "text/html": { schema: text } } },
        "503": { description: "The playground is not built.", content: { "text/html": { schema: text } } },
      },
    },
  },
  "/playground/config.json": {
    get: {
      operationId: "playgroundConfig",
      tags: ["operations"],
      summary: "What the playground needs to know before its first call",
      ...publicOp,
      responses: {
        "200": {
          description: "Whether to ask for a key, and which links to show.",
          content: { "application/json": { schema: PlaygroundConfig } },
        },
      },
    },
  },
  "/admin/queues": {
    get: {
      operationId: "dashboard",
      tags: ["operations"],
      summary: "The queue dashboard (Bull Board)",
      description:
        "Every job queue of the models live workers serve, and the webhook queue, read-only. Without " +
        "API keys it is open like the rest; with keys it needs `ADMIN_KEY` (HTTP Basic with it as " +
        "the password, any user name, or `Authorization: Bearer <ADMIN_KEY>`), and is off (404) " +
        "when `ADMIN_KEY` is unset.",
      security: [{ adminBasic: [] }, { adminBearer: [] }, {}],
      responses: {
        "200": { description: "The dashboard's page.", content: { "text/html": { schema: text } } },
        "401": errorResponse(401, "With API keys: the admin key is missing or wrong."),
        "404": errorResponse(404, "With API keys but no `ADMIN_KEY`: the dashboard is off."),
      },
    },
  },
};

let built: ReturnType<typeof createDocument> | undefined;

/** The OpenAPI 3.1 document of the API; built on first use, then kept. */
export function openApiDocument(): ReturnType<typeof createDocument> {
  built ??= createDocument(
    {
      openapi: "3.1.0",
      info: {
        title: "hybrid-inference",
        version,
        description:
          "Hugging Face-compatible remote VAE (decode/encode) and text-to-image / image-to-image " +
          "endpoints, run as queued jobs. With API keys configured every route but `/health/*`, " +
          "`/metrics`, `/openapi.json` and `/docs` needs `Authorization: Bearer <key>`; without keys " +
          "the service is open. Every error is JSON `ErrorBody`.",
      },
      tags: [
        { name: "vae", description: "Remote VAE (diffusers `remote_decode` / `remote_encode`)." },
        { name: "generation", description: "Text-to-image and image-to-image." },
        { name: "jobs", description: "Every inference request is a job: read, list, stream, cancel." },
        { name: "models", description: "What the workers serve." },
        { name: "health", description: "Probes." },
        { name: "operations", description: "Metrics, documentation, dashboard." },
      ],
      security: [{ bearerAuth: [] }],
      paths,
      components: {
        securitySchemes: {
          bearerAuth: {
            type: "http",
            scheme: "bearer",
            description: "An API key (`pnpm keys create NAME`). Only when the service has keys.",
          },
          adminBasic: {
            type: "http",
            scheme: "basic",
            description: "The dashboard in a browser: any user name, `ADMIN_KEY` as the password.",
          },
          adminBearer: { type: "http", scheme: "bearer", description: "`ADMIN_KEY`." },
        },
        schemas: { ErrorBody: ErrorAnswer, ErrorCode, JobObject, GenerateBody, ModelEntry },
      },
    },
    { override: overrideInputs },
  );
  return built;
}
