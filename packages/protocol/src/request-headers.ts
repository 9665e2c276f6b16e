import { z } from "zod";

/*
 * The request headers the API reads, declared once, as a client sends them: the OpenAPI document
 * describes them from here, the SDK names them from here, and the API reads them by these names
 * (lower-cased, as Node delivers them). `Accept` is read too but is no parameter: OpenAPI
 * describes it through each answer's content types.
 */

/** The headers every inference endpoint reads (one submit path: sync, `wait=N`, async, webhooks). */
export const SubmitHeaders = z.object({
  Prefer: z
    .string()
    .optional()
    .meta({
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
      description:
        "The same key with the same request answers the job it created (for 24 h by default); with " +
        "another request, 422 `idempotency_conflict`. A sync request with a key is not canceled when " +
        "the client hangs up.",
    }),
  "X-Webhook-Url": z
    .url()
    .optional()
    .meta({
      description:
        "Deliver the job object to this URL (Standard Webhooks signature, retried with backoff). " +
        "Private and loopback hosts are refused unless allowed by the operator.",
    }),
  "X-Webhook-Events": z.string().optional().meta({
    description: "Comma-separated events to deliver: `start`, `progress`, `completed` (default `completed`).",
    example: "start,completed",
  }),
  "x-wait-for-model": z
    .boolean()
    .optional()
    .meta({
      description:
        "`true`: when the model's workers are restarting, wait for one (up to the request timeout) " +
        "instead of answering 503 `model_loading`. Default `false`.",
    }),
});
export type SubmitHeaders = z.infer<typeof SubmitHeaders>;

/** The headers of the generation endpoints: the submit headers and the result cache's switch. */
export const GenerateHeaders = SubmitHeaders.extend({
  "x-use-cache": z
    .boolean()
    .optional()
    .meta({
      description:
        "Default `true`: a synchronous request with a `seed` seen before is answered from the cache " +
        "(`x-cache: HIT`). `false` always generates.",
    }),
});
export type GenerateHeaders = z.infer<typeof GenerateHeaders>;

/** The header of `GET /v1/jobs/{id}/events` (SSE) that resumes a stream. */
export const JobEventsHeaders = z.object({
  "Last-Event-ID": z
    .string()
    .optional()
    .meta({ description: "Resume after this event id (browsers send it on reconnect)." }),
});
export type JobEventsHeaders = z.infer<typeof JobEventsHeaders>;

/** The query of `GET /v1/jobs/{id}/events`: `Last-Event-ID` for clients that cannot set headers. */
export const JobEventsQuery = z.object({
  last_event_id: z
    .string()
    .optional()
    .meta({ description: "Like `Last-Event-ID`, for clients that cannot set headers." }),
});
export type JobEventsQuery = z.infer<typeof JobEventsQuery>;

/** A request's headers as a client sends them: each one named in `T`, as text. */
export type HeaderValues<T> = { [K in keyof T]?: string };

/**
 * Reads a yes/no header (`x-use-cache`, `x-wait-for-model`): its opposite of `fallback`, in any
 * case, flips it; anything else, absence included, is `fallback`, so an odd value never fails a
 * request.
 */
export function headerFlag(value: string | string[] | undefined, fallback: boolean): boolean {
  return String(value ?? "").toLowerCase() === String(!fallback) ? !fallback : fallback;
}
