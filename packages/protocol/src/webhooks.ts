import { z } from "zod";
import type { JobEventName } from "./job-events.ts";

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
