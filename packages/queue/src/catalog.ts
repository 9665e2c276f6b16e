import { JOB_SCHEMAS, WebhookDelivery, WebhookDeliveryResult } from "@hybrid/protocol";
import type { JobsOptions, WorkerOptions } from "bullmq";
import type { z } from "zod";
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

/** What a worker process brings to the choice of a queue's concurrency. */
export interface WorkerCapacity {
  /** Jobs run side by side (session threads for model work; HTTP calls for webhooks). */
  concurrency: number;
  /** Entries a VAE run may batch together (1: no batching). */
  maxBatchSize: number;
  /**
   * Jobs a VAE queue takes beyond those it can run at once (0 when absent): the next job's
   * record and input are read while the model runs, so a session thread does not sit idle for
   * the Redis round trips between two short jobs.
   */
  prefetch?: number;
}

/** One kind of queued work: everything that differs between kinds lives here and nowhere else. */
export interface CatalogEntry {
  /** The BullMQ job data, parsed by every worker before its handler sees it. */
  data: z.ZodType;
  /** What the handler returns (BullMQ's `returnvalue`). */
  result: z.ZodType;
  /** The queue of a job of this kind (model work: one per model). */
  queue(model: string): string;
  attempts(s: CatalogSettings): number;
  /** First retry delay in ms; it doubles each try. */
  backoffMs(s: CatalogSettings): number;
  /** Seconds a completed / failed job stays readable. */
  retention(s: CatalogSettings): { completed: number; failed: number };
  /** ms a worker holds a job's lock between renewals; a crashed worker's job runs again after ~1.5×. */
  lockMs: number;
  /** Jobs one worker process runs side by side on one queue of this kind. */
  concurrency(c: WorkerCapacity): number;
}

const modelWork = {
  attempts: (s: CatalogSettings) => s.attempts,
  // By age only: a count limit would make a job unreadable under load long before its time.
  retention: (s: CatalogSettings) => ({ completed: s.retentionSeconds, failed: s.retentionSeconds }),
} as const;

/**
 * The job catalog: for each kind of queued work, its data and result schemas, queue, attempts,
 * backoff, retention, lock and default concurrency. Adding a kind is one entry here (and its
 * schemas in `@hybrid/protocol`); the handlers of the apps are maps over these keys, so a kind
 * without a handler does not compile.
 */
export const CATALOG = {
  decode: {
    ...JOB_SCHEMAS.decode,
    ...modelWork,
    queue: (model: string) => jobQueueName("decode", model),
    // A decode is tens of milliseconds: retry soon.
    backoffMs: () => 500,
    lockMs: 30_000,
    // With batching, a VAE queue holds enough jobs in flight to fill a batch per session thread,
    // and the prefetched ones beside them.
    concurrency: (c: WorkerCapacity) => c.concurrency * c.maxBatchSize + (c.prefetch ?? 0),
  },
  encode: {
    ...JOB_SCHEMAS.encode,
    ...modelWork,
    queue: (model: string) => jobQueueName("encode", model),
    backoffMs: () => 500,
    lockMs: 30_000,
    concurrency: (c: WorkerCapacity) => c.concurrency * c.maxBatchSize + (c.prefetch ?? 0),
  },
  generate: {
    ...JOB_SCHEMAS.generate,
    ...modelWork,
    queue: (model: string) => jobQueueName("generate", model),
    // A generation runs for seconds: a failed one backs off longer before it takes a GPU again.
    backoffMs: () => 2000,
    // Renewed by the main thread every half lock whatever the run does (it is on a session
    // thread); longer than a decode's so a busy machine's late renewal does not re-run seconds of work.
    lockMs: 60_000,
    // No prefetch: a generation runs for seconds, next to which its reads are nothing, and a job
    // taken early would wait here while another worker could run it.
    concurrency: (c: WorkerCapacity) => c.concurrency,
  },
  webhook: {
    data: WebhookDelivery,
    result: WebhookDeliveryResult,
    queue: () => WEBHOOK_QUEUE,
    attempts: (s: CatalogSettings) => s.webhookAttempts,
    backoffMs: (s: CatalogSettings) => s.webhookBackoffMs,
    // Delivered ones are kept an hour for inspection, failed ones a day.
    retention: () => ({ completed: 3600, failed: 24 * 3600 }),
    // One attempt is an HTTP call with its own timeout (WEBHOOK_TIMEOUT_MS), well within this.
    lockMs: 30_000,
    concurrency: (c: WorkerCapacity) => c.concurrency,
  },
} as const satisfies Record<string, CatalogEntry>;

/** Every kind of queued work: the model kinds (`JobKind`) and webhook deliveries. */
export type QueueKind = keyof typeof CATALOG;
/** The job data of a kind, as its worker's handler gets it (parsed). */
export type JobDataOf<K extends QueueKind> = z.infer<(typeof CATALOG)[K]["data"]>;
/** What a kind's handler returns. */
export type JobResultOf<K extends QueueKind> = z.infer<(typeof CATALOG)[K]["result"]>;

/**
 * The catalog's BullMQ side: the API, the worker and the tests take queue names and options
 * from here (and open workers with `openJobWorker`, which applies them).
 */
export const jobCatalog = {
  entries: CATALOG,
  /** The queue of a job of `kind` for `model`. */
  queue: (kind: QueueKind, model: string): string => CATALOG[kind].queue(model),
  webhookQueue: WEBHOOK_QUEUE,

  /** Options of a job of `kind` when it is added. */
  jobOptions(kind: QueueKind, s: CatalogSettings): JobsOptions {
    const e: CatalogEntry = CATALOG[kind];
    const kept = e.retention(s);
    return {
      attempts: e.attempts(s),
      backoff: { type: "exponential", delay: e.backoffMs(s) },
      removeOnComplete: { age: kept.completed },
      removeOnFail: { age: kept.failed },
    };
  },

  /**
   * Options of a worker of `kind`: its lock (the kind's own unless `lockMs` overrides it) and
   * the stalled-job check. BullMQ checks for stalled jobs every 30 s by default whatever the
   * lock: checking every half lock hands a crashed worker's job to another worker within about
   * 1.5× the lock duration instead.
   */
  workerOptions(
    kind: QueueKind,
    lockMs: number = CATALOG[kind].lockMs,
  ): Pick<WorkerOptions, "lockDuration" | "stalledInterval" | "maxStalledCount" | "metrics"> {
    return {
      lockDuration: lockMs,
      stalledInterval: Math.max(250, Math.floor(lockMs / 2)),
      // A job may lose its worker twice (kill -9, OOM, a machine gone) before it is failed.
      maxStalledCount: 2,
      // Per-minute counts of finished jobs, kept by BullMQ's own scripts (no extra commands):
      // the API reads them for a queue's drain rate when it refuses work.
      metrics: { maxDataPoints: 60 },
    };
  },
} as const;
