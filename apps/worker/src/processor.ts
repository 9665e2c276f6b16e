import type { VaeRuntime } from "@hybrid/inference";
import { AppError, isAppError, JobData, type JobResult, serializeJobError } from "@hybrid/protocol";
import type { JobStore, PayloadStore } from "@hybrid/queue";
import { type Job, UnrecoverableError } from "bullmq";
import type { Logger } from "pino";

const canceled = () => new AppError("canceled", "The job was canceled.");

/**
 * Runs one job: read its payload, run the model, store the answer bytes, return where they are.
 * Bad input (and a cancel) fails at once (UnrecoverableError); anything else rethrows so BullMQ
 * retries it. `signal` aborts when the job is canceled while it runs: a VAE run cannot stop
 * half-way, so its result is discarded.
 */
export function createProcessor(runtime: VaeRuntime, store: PayloadStore, jobs: JobStore, log: Logger) {
  return async (job: Job, _token?: string, signal?: AbortSignal): Promise<JobResult> => {
    const jlog = log.child({
      jobId: job.id,
      queue: job.queueName,
      model: job.data?.model,
      attempt: job.attemptsMade + 1,
    });
    const started = performance.now();
    try {
      const parsed = JobData.safeParse(job.data);
      if (!parsed.success)
        throw new AppError("invalid_request", "The job data is not a valid job of any kind.", {
          details: parsed.error.issues,
        });
      const data = parsed.data;
      // The record (cancel flag, `started` event) and the input are read side by side.
      const [meta, input] = await Promise.all([job.id ? jobs.meta(job.id) : null, store.get(data.input)]);
      if (meta?.canceledAt) throw canceled();
      jlog.info({ kind: data.kind, queuedMs: Date.now() - job.timestamp }, "job started");
      if (meta) {
        const object = await jobs.build(meta, job, "active");
        if (object) await jobs.publish(meta, "started", object);
      }
      if (!input)
        throw new AppError("payload_expired", "The job's input expired before a worker picked it up.");
      const read = performance.now();
      const answer =
        data.kind === "decode" ? await runtime.decode(data, input) : await runtime.encode(data, input);
      if (signal?.aborted) throw canceled();
      const ran = performance.now();
      const result = await store.put(answer.bytes);
      const done = performance.now();
      jlog.info(
        {
          kind: data.kind,
          bytes: answer.bytes.byteLength,
          queuedMs: Date.now() - job.timestamp - Math.round(done - started),
          readMs: Math.round(read - started),
          runMs: Math.round(ran - read),
          writeMs: Math.round(done - ran),
        },
        "job done",
      );
      return {
        result,
        contentType: answer.contentType,
        bytes: answer.bytes.byteLength,
        ...(answer.shape ? { shape: answer.shape } : {}),
        ...(answer.dtype ? { dtype: answer.dtype } : {}),
      };
    } catch (e) {
      if (isAppError(e) && e.status < 500) {
        jlog.info({ code: e.code, err: e.message }, e.code === "canceled" ? "job canceled" : "job rejected");
        throw new UnrecoverableError(serializeJobError(e));
      }
      jlog.error({ err: e }, "job failed");
      const err = new Error(
        serializeJobError(isAppError(e) ? e : new AppError("internal", "The worker failed to run the job.")),
      );
      err.cause = e;
      throw err;
    }
  };
}
