import { z } from "zod";
import { ErrorCode } from "./errors.ts";
import { GenerateParams, GenerateResponse } from "./generate.ts";
import { JobEventName } from "./job-events.ts";
import { DecodeJob, EncodeJob, JobResult, PayloadRef, ReplyTo } from "./schemas.ts";

/** BullMQ job data of a generation: small JSON only (the init image is a payload key). */
export const GenerateJob = z.object({
  kind: z.literal("generate"),
  model: z.string(),
  /** Image-to-image: the init image file; null for text-to-image. */
  input: PayloadRef.nullable(),
  reply: ReplyTo.optional(),
  params: GenerateParams,
  /** Image bytes, or the `{"image": "<base64>"}` JSON the custom-handler clients read. */
  response: GenerateResponse,
  format: z.enum(["png", "jpeg"]),
});
export type GenerateJob = z.infer<typeof GenerateJob>;

/**
 * The job catalog's schemas: for each kind of queued work, the BullMQ job data the API enqueues
 * and the result the worker returns. Queue options for each kind live beside it in
 * `@hybrid/queue` (catalog.ts). Generation joins as `generate` with its own entry.
 */
export const JobKind = z.enum(["decode", "encode", "generate"]);
export type JobKind = z.infer<typeof JobKind>;

export const JOB_SCHEMAS = {
  decode: { data: DecodeJob, result: JobResult },
  encode: { data: EncodeJob, result: JobResult },
  generate: { data: GenerateJob, result: JobResult },
} as const satisfies Record<JobKind, { data: z.ZodType; result: z.ZodType }>;

/** Job data of any kind: the union of the catalog's data schemas, told apart by `kind`. */
export const JobData = z.discriminatedUnion("kind", [
  JOB_SCHEMAS.decode.data,
  JOB_SCHEMAS.encode.data,
  JOB_SCHEMAS.generate.data,
]);
export type JobData = z.infer<typeof JobData>;

/**
 * A webhook delivery as queued (the `webhook` kind of the catalog): everything but the secret,
 * which the deliverer looks up by owner. `msgId` is also the BullMQ job id, so retries keep it.
 */
export const WebhookDelivery = z.object({
  msgId: z.string().min(1),
  jobId: z.string().min(1),
  owner: z.string().min(1),
  url: z.string().url(),
  event: JobEventName,
  /** The job object as JSON: the body of the call, exactly as signed. */
  payload: z.string(),
});
export type WebhookDelivery = z.infer<typeof WebhookDelivery>;

/** What a webhook delivery returns: the receiver's HTTP status. */
export const WebhookDeliveryResult = z.object({ status: z.number().int() });
export type WebhookDeliveryResult = z.infer<typeof WebhookDeliveryResult>;

/** Where a job is, as clients see it. A retry waiting for its backoff is `queued`. */
export const JobStatus = z.enum(["queued", "running", "succeeded", "failed", "canceled"]);
export type JobStatus = z.infer<typeof JobStatus>;

export const isTerminal = (s: JobStatus): boolean => s === "succeeded" || s === "failed" || s === "canceled";

/** Progress of a running job: steps done out of the total (a diffusion step, a frame batch). */
export const JobProgress = z.object({
  step: z.number().int().nonnegative(),
  total: z.number().int().positive(),
  /** In progress events of generations that asked for previews: a small JPEG data URL. */
  preview: z.string().optional(),
});
export type JobProgress = z.infer<typeof JobProgress>;

/** The job resource: `GET /v1/jobs/{id}`, every SSE event's `data`, every webhook's body. */
export const JobObject = z.object({
  id: z.string(),
  kind: JobKind,
  model: z.string(),
  status: JobStatus,
  /** Jobs ahead of this one in its queue (0: next); null unless queued. */
  queue_position: z.number().int().nonnegative().nullable(),
  progress: JobProgress.nullable(),
  created_at: z.string(),
  started_at: z.string().nullable(),
  completed_at: z.string().nullable(),
  /** Tries that have ended so far (a failed try that is retried counts; the one running does not). */
  attempts: z.number().int().nonnegative(),
  metrics: z.object({
    /** From submission to the (last) start. */
    queue_ms: z.number().nullable(),
    /** From the (last) start to the end. */
    run_ms: z.number().nullable(),
  }),
  error: z.object({ code: ErrorCode, message: z.string() }).nullable(),
  /** A generation's seed (given, or drawn for it); null for other kinds. */
  seed: z.number().int().nonnegative().nullable(),
  /** Things the client should know about a finished job (e.g. its prompt was truncated). */
  warnings: z.array(z.string()),
  urls: z.object({ self: z.string(), result: z.string(), events: z.string(), cancel: z.string() }),
});
export type JobObject = z.infer<typeof JobObject>;

/**
 * A job object without its URLs: what the queue side builds, stores in event logs and queues for
 * webhooks. The API adds `urls` (its own routes) before a client sees it; `urls` is the job
 * object's last key, so the bytes come out the same.
 */
export const JobView = JobObject.omit({ urls: true });
export type JobView = z.infer<typeof JobView>;

/** The job object a client reads: the view with the URLs of the job's routes. */
export function jobObjectOf(view: JobView): JobObject {
  const self = `/v1/jobs/${encodeURIComponent(view.id)}`;
  return {
    ...view,
    urls: { self, result: `${self}/result`, events: `${self}/events`, cancel: `${self}/cancel` },
  };
}

/** A page of `GET /v1/jobs`, newest first. `next_cursor` is null on the last page. */
export const JobList = z.object({
  object: z.literal("list"),
  data: z.array(JobObject),
  next_cursor: z.string().nullable(),
});
export type JobList = z.infer<typeof JobList>;
