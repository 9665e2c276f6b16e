import type { JobKind } from "@hybrid/protocol";

/**
 * Every Redis key and BullMQ queue name the service uses, in one place. Everything lives under
 * one prefix, so deployments (and tests) can share a Redis.
 */

/**
 * The BullMQ queue of one (job kind, model): long generation jobs never share a queue, a
 * concurrency or a lock with 30 ms decodes, and each queue's backlog is an autoscaling signal.
 * (BullMQ forbids ':' in queue names.)
 */
export const jobQueueName = (kind: JobKind, model: string) => `${kind}-${model}`;

/** The queue of signed webhook deliveries. */
export const WEBHOOK_QUEUE = "webhooks";

export const payloadKey = (prefix: string, id: string) => `${prefix}:payload:${id}`;
export const workerKey = (prefix: string, workerId: string) => `${prefix}:worker:${workerId}`;
/** The set of worker ids that have announced themselves (dead ones are pruned on read). */
export const workersKey = (prefix: string) => `${prefix}:workers`;

/** Models ever announced, by id (to tell "not loaded yet" from "unknown"). */
export const knownModelsKey = (prefix: string) => `${prefix}:known-models`;
/** A cached generation answer, by request hash. */
export const resultCacheKey = (prefix: string, hash: string) => `${prefix}:result-cache:${hash}`;

/** A job's record beside BullMQ's: its queue, owner, webhook, cancel flag. */
export const jobKey = (prefix: string, id: string) => `${prefix}:job:${id}`;
/** A job's event log (a Redis stream): SSE replays it, Last-Event-ID indexes it. */
export const jobEventsKey = (prefix: string, id: string) => `${prefix}:job:${id}:events`;
/** Pub/sub channel announcing every new job event (SSE readers fan it out in-process). */
export const jobEventsChannel = (prefix: string) => `${prefix}:job-events`;
/** Pub/sub channel telling workers to abort a running job. */
export const cancelChannel = (prefix: string) => `${prefix}:cancel`;
/** An owner's jobs by creation time (`GET /v1/jobs`). */
export const ownerJobsKey = (prefix: string, owner: string) => `${prefix}:owner:${owner}:jobs`;
/** An owner's unfinished jobs (the per-key cap on queued jobs). */
export const ownerActiveKey = (prefix: string, owner: string) => `${prefix}:owner:${owner}:active`;
/** An idempotency key of an owner → the job it created. */
export const idempotencyKey = (prefix: string, owner: string, key: string) =>
  `${prefix}:idempotency:${owner}:${key}`;
