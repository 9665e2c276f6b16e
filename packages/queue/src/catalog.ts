import { JOB_SCHEMAS, type JobKind } from "@hybrid/protocol";
import type { JobsOptions, WorkerOptions } from "bullmq";
import { jobQueueName, WEBHOOK_QUEUE } from "./names.ts";

/** The tunables the catalog turns into BullMQ options (all from settings). */
export interface CatalogSettings {
  /** Tries per job for transient failures (bad input is never retried). */
  attempts: number;
  /** Seconds a finished job stays readable. */
  retentionSeconds: number;
  /** Tries per webhook delivery. */
  webhookAttempts: number;
  /** First webhook retry delay in ms (doubles each try). */
  webhookBackoffMs: number;
}

/** Per kind: what differs between kinds of work. Generation adds its own entry. */
const KINDS: Record<JobKind, { backoffMs: number }> = {
  // A decode is tens of milliseconds: retry soon.
  decode: { backoffMs: 500 },
  encode: { backoffMs: 500 },
  // A generation runs for seconds: a failed one backs off longer before it takes a GPU again.
  generate: { backoffMs: 2000 },
};

/**
 * The job catalog's queue side: for each kind, its schemas, its queue, and the BullMQ options
 * of its jobs and workers. The API, the worker and the tests take names and options from here.
 */
export const jobCatalog = {
  schemas: JOB_SCHEMAS,
  queue: jobQueueName,

  /** Options of a job of `kind` when it is added. */
  jobOptions(kind: JobKind, s: CatalogSettings): JobsOptions {
    return {
      attempts: s.attempts,
      backoff: { type: "exponential", delay: KINDS[kind].backoffMs },
      // By age only: a count limit would make a job unreadable under load long before its time.
      removeOnComplete: { age: s.retentionSeconds },
      removeOnFail: { age: s.retentionSeconds },
    };
  },

  /**
   * Options of a worker of any kind, from its lock duration. BullMQ checks for stalled jobs
   * every 30 s by default whatever the lock: checking every half lock hands a crashed worker's
   * job to another worker within about 1.5× the lock duration instead.
   */
  workerOptions(
    lockDurationMs: number,
  ): Pick<WorkerOptions, "lockDuration" | "stalledInterval" | "maxStalledCount" | "metrics"> {
    return {
      // Per-minute counts of finished jobs, kept by BullMQ's own scripts (no extra commands):
      // the API reads them for a queue's drain rate when it refuses work.
      metrics: { maxDataPoints: 60 },
      lockDuration: lockDurationMs,
      stalledInterval: Math.max(250, Math.floor(lockDurationMs / 2)),
      // A job may lose its worker twice (kill -9, OOM, a machine gone) before it is failed.
      maxStalledCount: 2,
    };
  },

  webhookQueue: WEBHOOK_QUEUE,

  /** Options of one webhook delivery: exponential backoff, kept a day for inspection. */
  webhookOptions(s: CatalogSettings): JobsOptions {
    return {
      attempts: s.webhookAttempts,
      backoff: { type: "exponential", delay: s.webhookBackoffMs },
      removeOnComplete: { age: 3600 },
      removeOnFail: { age: 24 * 3600 },
    };
  },
} as const;
