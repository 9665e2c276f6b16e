import { AppError, serializeJobError } from "@hybrid/protocol";
import { type Job, UnrecoverableError, Worker } from "bullmq";
import { CATALOG, type JobDataOf, type JobResultOf, jobCatalog, type QueueKind } from "./catalog.ts";
import { bullConnection } from "./connection.ts";
import { bullPrefix } from "./names.ts";

/** Where the queues are: the deployment's Redis and key prefix (`REDIS_URL`, `QUEUE_PREFIX`). */
export interface QueueTarget {
  redisUrl: string;
  prefix: string;
}

/**
 * Runs one job of kind `K`: gets its data already parsed with the catalog's schema, the BullMQ
 * job (id, attempts, timestamps) and the signal BullMQ aborts when the job is canceled.
 */
export type JobHandler<K extends QueueKind> = (
  data: JobDataOf<K>,
  job: Job,
  signal: AbortSignal | undefined,
) => Promise<JobResultOf<K>>;

/** A handler for each of `K`'s kinds: leave one out and it does not compile. */
export type JobHandlers<K extends QueueKind> = { [P in K]: JobHandler<P> };

export interface JobWorkerOptions {
  /** Recorded on each job it takes (BullMQ's `processedBy`): which worker ran what. */
  name?: string;
  /** Jobs run side by side; the kind's default needs the worker's capacity, so it is given. */
  concurrency: number;
  /** Overrides the kind's lock duration (ms). */
  lockMs?: number;
}

/**
 * Opens a BullMQ worker on the queue of `kind` (for `model`), with the catalog's options and the
 * queue's prefix: the one place workers are opened, so the apps never see BullMQ's prefix or
 * connection rules. Data that does not parse fails the job at once (no retry).
 */
export function openJobWorker<K extends QueueKind>(
  target: QueueTarget,
  kind: K,
  model: string,
  handler: JobHandler<K>,
  opts: JobWorkerOptions,
): Worker {
  const name = jobCatalog.queue(kind, model);
  const schema = CATALOG[kind].data;
  return new Worker(
    name,
    async (job: Job, _token?: string, signal?: AbortSignal) => {
      const parsed = schema.safeParse(job.data);
      if (!parsed.success)
        throw new UnrecoverableError(
          serializeJobError(
            new AppError("invalid_request", `The job data is not a valid ${kind} job.`, {
              details: parsed.error.issues,
            }),
          ),
        );
      return handler(parsed.data as JobDataOf<K>, job, signal);
    },
    {
      connection: bullConnection(target.redisUrl),
      prefix: bullPrefix(target.prefix, name),
      ...(opts.name ? { name: opts.name } : {}),
      concurrency: opts.concurrency,
      ...jobCatalog.workerOptions(kind, opts.lockMs),
    },
  );
}
