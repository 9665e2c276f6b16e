import type { SharedSettings } from "@hybrid/service";
import type { CatalogSettings } from "./catalog.ts";

/** The job catalog's tunables out of parsed settings. */
export const catalogSettingsOf = (
  env: Pick<
    SharedSettings,
    "JOB_ATTEMPTS" | "JOB_RETENTION_SECONDS" | "WEBHOOK_ATTEMPTS" | "WEBHOOK_BACKOFF_MS"
  >,
): CatalogSettings => ({
  attempts: env.JOB_ATTEMPTS,
  retentionSeconds: env.JOB_RETENTION_SECONDS,
  webhookAttempts: env.WEBHOOK_ATTEMPTS,
  webhookBackoffMs: env.WEBHOOK_BACKOFF_MS,
});
