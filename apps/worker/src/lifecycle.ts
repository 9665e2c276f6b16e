import { isTerminal, type JobEventName } from "@hybrid/protocol";
import type { JobStore, PayloadStore } from "@hybrid/queue";
import type { Job, Worker } from "bullmq";
import type { Logger } from "pino";

/**
 * Publishes a job's terminal event (SSE readers, webhooks) once BullMQ has recorded its end, and
 * frees its input payload then — not before: a retry or a crash recovery still needs it.
 */
export function attachLifecycle(worker: Worker, jobs: JobStore, payloads: PayloadStore, log: Logger): void {
  const finish = async (job: Job, state: "completed" | "failed") => {
    // A job nobody follows and no cap counts has no end to publish: no record comes back. A job
    // no request waits for (no reply address: async) is logged from its creation.
    const data = job.data as { input?: unknown; reply?: unknown } | undefined;
    const meta = await jobs.records.finish(job.id ?? "", payloads.keyOf(data?.input), !data?.reply);
    if (!meta) return;
    const view = await jobs.views.build(meta, job, state);
    // A finished job's status (succeeded, failed, canceled) is also the name of its last event.
    if (view && isTerminal(view.status)) await jobs.events.publish(meta, view.status as JobEventName, view);
  };
  const report = (job: Job) => (err: unknown) =>
    log.warn({ jobId: job.id, queue: job.queueName, err: (err as Error).message }, "job event not published");
  worker.on("completed", (job) => {
    finish(job, "completed").catch(report(job));
  });
  worker.on("failed", (job) => {
    // Only a final failure ends the job; a retry will run again.
    if (job?.finishedOn) finish(job, "failed").catch(report(job));
  });
}
