import { z } from "zod";
import { ErrorCode } from "./errors.ts";
import { DecodeJob, EncodeJob, JobResult } from "./schemas.ts";

/**
 * The job catalog's schemas: for each kind of queued work, the BullMQ job data the API enqueues
 * and the result the worker returns. Queue options for each kind live beside it in
 * `@hybrid/queue` (catalog.ts). Generation joins as `generate` with its own entry.
 */
export const JobKind = z.enum(["decode", "encode"]);
export type JobKind = z.infer<typeof JobKind>;

export const JOB_SCHEMAS = {
  decode: { data: DecodeJob, result: JobResult },
  encode: { data: EncodeJob, result: JobResult },
} as const satisfies Record<JobKind, { data: z.ZodType; result: z.ZodType }>;

/** Job data of any kind: the union of the catalog's data schemas, told apart by `kind`. */
export const JobData = z.discriminatedUnion("kind", [JOB_SCHEMAS.decode.data, JOB_SCHEMAS.encode.data]);
export type JobData = z.infer<typeof JobData>;

/** Where a job is, as clients see it. A retry waiting for its backoff is `queued`. */
export const JobStatus = z.enum(["queued", "running", "succeeded", "failed", "canceled"]);
export type JobStatus = z.infer<typeof JobStatus>;

export const isTerminal = (s: JobStatus): boolean => s === "succeeded" || s === "failed" || s === "canceled";

/** Progress of a running job: steps done out of the total (a diffusion step, a frame batch). */
export const JobProgress = z.object({
  step: z.number().int().nonnegative(),
  total: z.number().int().positive(),
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
  urls: z.object({ self: z.string(), result: z.string(), events: z.string(), cancel: z.string() }),
});
export type JobObject = z.infer<typeof JobObject>;

/** A page of `GET /v1/jobs`, newest first. `next_cursor` is null on the last page. */
export const JobList = z.object({
  object: z.literal("list"),
  data: z.array(JobObject),
  next_cursor: z.string().nullable(),
});
export type JobList = z.infer<typeof JobList>;

/** The SSE event names of `GET /v1/jobs/{id}/events`; the last one of a stream is terminal. */
export const JobEventName = z.enum(["queued", "started", "progress", "succeeded", "failed", "canceled"]);
export type JobEventName = z.infer<typeof JobEventName>;

/** What a webhook subscribes to: `start`, every `progress`, and `completed` (any terminal state). */
export const WebhookEventFilter = z.enum(["start", "progress", "completed"]);
export type WebhookEventFilter = z.infer<typeof WebhookEventFilter>;

/** Which filter entry a job event falls under (`queued` is never delivered). */
export function webhookFilterOf(event: JobEventName): WebhookEventFilter | null {
  switch (event) {
    case "queued":
      return null;
    case "started":
      return "start";
    case "progress":
      return "progress";
    default:
      return "completed";
  }
}

/** A webhook attached to a job at submit. */
export const WebhookSpec = z.object({
  url: z.string().url().max(2048),
  events: z.array(WebhookEventFilter).min(1).default(["completed"]),
});
export type WebhookSpec = z.infer<typeof WebhookSpec>;
