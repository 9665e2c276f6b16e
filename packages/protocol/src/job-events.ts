import { z } from "zod";

/** The SSE event names of `GET /v1/jobs/{id}/events`; the last one of a stream is terminal. */
export const JobEventName = z.enum(["queued", "started", "progress", "succeeded", "failed", "canceled"]);
export type JobEventName = z.infer<typeof JobEventName>;
