import { ErrorCode, errorStatus, JobObject } from "@hybrid/protocol";
import { z } from "zod";
import type {
  ZodOpenApiOperationObject,
  ZodOpenApiPathsObject,
  ZodOpenApiResponseObject,
  ZodOpenApiResponsesObject,
} from "zod-openapi";

/*
 * What the routers' OpenAPI paths (`routes/*.openapi.ts`) share: parameters, error answers, the
 * 202 job answer. openapi.ts assembles the paths into the document.
 */

export const binary = { type: "string", format: "binary" } as const;
export const text = { type: "string" } as const;

/** Routes outside the API-key check (`/health/*`, docs, the playground, metrics). */
export const publicOp = { security: [] };

export const ModelPath = z.object({
  model: z.string().meta({
    description:
      "A model id (`GET /v1/models`): a short one, or a Hub-style `owner/name` with its slash " +
      "percent-encoded (`%2F`; the `{owner}/{name}` form of this route takes it literal). " +
      "A malformed id is 400 `invalid_parameter`, one no worker serves 404 `unknown_model`.",
    example: "sd-v1-tiny",
  }),
});

/** The two path parameters of a Hub-style model id (`owner/name`) written with a literal slash. */
export const OwnerNamePath = z.object({
  owner: z.string().meta({
    description: "The owner part of a Hub-style model id (`owner/name`, as on the Hugging Face Hub).",
    example: "black-forest-labs",
  }),
  name: z.string().meta({ description: "The name part of a Hub-style model id.", example: "FLUX.1-schnell" }),
});

/**
 * `paths` plus, for each one naming `{model}`, its twin naming `{owner}/{name}`: the same
 * operation for a Hub-style id with a literal slash (`/models/black-forest-labs/FLUX.1-schnell`,
 * as `{base}/models/{repo id}` builds it), its operationId suffixed `ByRepoId`.
 */
export function withRepoIdPaths(paths: ZodOpenApiPathsObject): ZodOpenApiPathsObject {
  const out: ZodOpenApiPathsObject = {};
  for (const [path, item] of Object.entries(paths)) {
    out[path] = item;
    if (!path.includes("{model}")) continue;
    const twin: Record<string, unknown> = {};
    for (const [method, op] of Object.entries(item) as [string, ZodOpenApiOperationObject][]) {
      twin[method] = {
        ...op,
        operationId: `${op.operationId}ByRepoId`,
        summary: `${op.summary} (Hub-style model id)`,
        requestParams: { ...op.requestParams, path: OwnerNamePath },
      };
    }
    out[path.replace("{model}", "{owner}/{name}")] = twin;
  }
  return out;
}
export const JobPath = z.object({ id: z.string().meta({ description: "The job id (`x-job-id`, `id`)." }) });

/** An image body: the formats the encoder and image-to-image accept (sniffed, never by header). */
export const imageBody = {
  "image/png": { schema: binary },
  "image/jpeg": { schema: binary },
  "image/webp": { schema: binary },
};

/** `Idempotency-Key` → `IdempotencyKey`, `x-use-cache` → `UseCache`: a header's component id. */
const paramId = (name: string): string =>
  name
    .replace(/^x-/i, "")
    .split("-")
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join("");

// zod-openapi registers a parameter component by object identity: one schema per header, shared
// by every operation (GenerateHeaders' fields are SubmitHeaders' own objects).
const headerParamsSeen = new WeakMap<z.ZodType, z.ZodType>();

/**
 * Request headers declared in `@hybrid/protocol` as shared parameter components
 * (`#/components/parameters/<Id>`), for an operation's `requestParams.header`.
 */
export function headerParams(headers: z.ZodObject): z.ZodObject {
  const shape: Record<string, z.ZodType> = {};
  for (const [name, schema] of Object.entries(headers.shape as Record<string, z.ZodType>)) {
    let param = headerParamsSeen.get(schema);
    if (!param) {
      param = schema.meta({ param: { id: paramId(name) } });
      headerParamsSeen.set(schema, param);
    }
    shape[name] = param;
  }
  return z.object(shape);
}

export const jobIdHeader = z.string().meta({ description: "The job that produced this answer." });

const STATUS_TEXT: Record<number, string> = {
  400: "Bad request",
  401: "No or wrong API key (only when the service has API keys)",
  403: "Refused: a Host name this service does not answer (`ALLOWED_HOSTS`), or, while it has no API keys, a request from another site's page",
  404: "Not found",
  405: "Method not allowed",
  409: "Conflict",
  410: "Gone",
  413: "Too large",
  415: "Unsupported media type (`text/plain`, form and multipart bodies are refused: they are what another site's page can send unasked)",
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
export function errorResponse(status: number, note?: string): ZodOpenApiResponseObject {
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

/** The shared error answers (`Error<status>`) of these statuses. */
export const errors = (...statuses: number[]): ZodOpenApiResponsesObject =>
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
const SUBMIT_ERRORS = [400, 401, 403, 404, 409, 410, 413, 415, 422, 429, 500, 503, 504];

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

/** The answers of a submission (one submit path): its result, 202 with the job, or an error. */
export const submitResponses = (ok: ZodOpenApiResponseObject): ZodOpenApiResponsesObject => ({
  "200": ok,
  "202": acceptedResponse,
  ...errors(...SUBMIT_ERRORS),
});
