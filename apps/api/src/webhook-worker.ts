import { JobView, jobObjectOf } from "@hybrid/protocol";
import { openJobWorker, type QueueTarget } from "@hybrid/queue";
import { UnrecoverableError, type Worker } from "bullmq";
import type { Logger } from "pino";
import { ANONYMOUS } from "./auth.ts";
import type { KeyStore } from "./keys.ts";
import { deliverWebhook } from "./webhook-sender.ts";

export interface WebhookWorkerOptions {
  /** The deployment's Redis and prefix. */
  target: QueueTarget;
  concurrency: number;
  timeoutMs: number;
  allowedHosts: readonly string[];
  /** Signs deliveries of jobs made without an API key. */
  defaultSecret: string | undefined;
  /** Where the worker's connection errors go (the process's `RedisFaults`); absent: each is logged. */
  onError?: (err: Error) => void;
}

/**
 * Delivers queued webhooks (the catalog's `webhook` kind), signed per the Standard Webhooks
 * spec. It runs in the API process, which holds the keys file and so the per-key secrets;
 * BullMQ retries failed attempts with exponential backoff (network errors, 429 and 5xx), keeping
 * the message id across them.
 */
export function startWebhookWorker(keys: KeyStore, log: Logger, opts: WebhookWorkerOptions): Worker {
  const worker = openJobWorker(
    opts.target,
    "webhook",
    "",
    async (d, job) => {
      const secret = d.owner === ANONYMOUS ? opts.defaultSecret : keys.byId(d.owner)?.webhook_secret;
      if (!secret) throw new UnrecoverableError("No secret to sign with: the API key was revoked.");
      // The queued payload is the job's view: the body is the job object a client reads.
      const payload = JSON.stringify(jobObjectOf(JobView.parse(JSON.parse(d.payload))));
      const { status } = await deliverWebhook(
        { url: d.url, msgId: d.msgId, payload, secret },
        { timeoutMs: opts.timeoutMs, allowedHosts: opts.allowedHosts },
      );
      log.info(
        { jobId: d.jobId, event: d.event, msgId: d.msgId, status, attempt: job.attemptsMade + 1 },
        "webhook delivered",
      );
      return { status };
    },
    { concurrency: opts.concurrency },
  );
  worker.on("failed", (job, err) =>
    log.warn(
      {
        msgId: job?.id,
        attempt: job ? job.attemptsMade : undefined,
        final: Boolean(job?.finishedOn),
        err: err.message,
      },
      "webhook attempt failed",
    ),
  );
  worker.on("error", opts.onError ?? ((err) => log.warn({ err: err.message }, "webhook queue error")));
  return worker;
}
