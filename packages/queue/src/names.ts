import type { JobKind } from "@hybrid/protocol";

/**
 * Every Redis key and BullMQ queue name the service uses, in one place. Everything lives under
 * one prefix, so deployments (and tests) can share a Redis.
 *
 * Redis Cluster: a MULTI/EXEC, a Lua script or a multi-key command may only touch keys of one
 * hash slot, and a key's slot is that of the text between its first `{` and the next `}` (its hash
 * tag) when there is one. So keys used together carry the same tag, and nothing else shares one:
 * - a BullMQ queue's keys: `{<queue>}` (BullMQ's scripts touch many keys of one queue at once);
 * - a job's record and event log: `{<job id>}`;
 * - an owner's job indexes: `{<owner>}`;
 * - the worker directory: `{directory}` (small, and read with MGET);
 * - the result cache's index: `{result-cache}` (its entries themselves are untagged);
 * - payloads, cached results, idempotency keys and rate-limit counters are each used alone, so
 *   they carry no tag and spread over the cluster's slots (payloads are the bulk of the data).
 * Pub/sub channels use classic PUBLISH/SUBSCRIBE, which a cluster carries to every node. A prefix
 * with braces in it would put everything in one slot (correct, but on one node). On a single
 * Redis the braces are just characters of the key.
 */

/**
 * The BullMQ queue of one (job kind, model): long generation jobs never share a queue, a
 * concurrency or a lock with 30 ms decodes, and each queue's backlog is an autoscaling signal.
 * (BullMQ forbids ':' in queue names.)
 */
export const jobQueueName = (kind: JobKind, model: string) => `${kind}-${model}`;

/** The queue of signed webhook deliveries. */
export const WEBHOOK_QUEUE = "webhooks";

/**
 * The BullMQ `prefix` of one queue: `<prefix>:{<queue>}`, so its keys read
 * `<prefix>:{<queue>}:<queue>:wait` and so on. The hash tag keeps each queue's keys in one slot of
 * a Redis Cluster while different queues spread over it, and queue names stay free of braces
 * (in metrics, the dashboard and the catalog). Every `Queue`, `QueueEvents` and `Worker` of a
 * queue must be opened with this prefix.
 */
export const bullPrefix = (prefix: string, queue: string) => `${prefix}:{${queue}}`;

/**
 * Jobs admitted to a queue but not yet added to it (see `JobProducer.admit`): in the queue's
 * slot, beside BullMQ's keys but outside their `<queue>:` namespace, so no job id can name it.
 */
export const backlogReservationsKey = (prefix: string, queue: string) =>
  `${bullPrefix(prefix, queue)}:reserved`;

/** Payload bytes: untagged, so they spread over a cluster's slots. */
export const payloadKey = (prefix: string, id: string) => `${prefix}:payload:${id}`;
/** A live worker's announcement (a heartbeat key with a TTL). */
export const workerKey = (prefix: string, workerId: string) => `${prefix}:{directory}:worker:${workerId}`;
/** The set of worker ids that have announced themselves (dead ones are pruned on read). */
export const workersKey = (prefix: string) => `${prefix}:{directory}:workers`;

/** Models ever announced, by id (to tell "not loaded yet" from "unknown"). */
export const knownModelsKey = (prefix: string) => `${prefix}:{directory}:known-models`;
/**
 * A cached generation answer, by its owner (each API key has a cache of its own) and request hash.
 * Used alone: untagged.
 */
export const resultCacheKey = (prefix: string, owner: string, hash: string) =>
  `${prefix}:result-cache:${owner}:${hash}`;
/** The result cache's index (its entries by age, their sizes, their total): one slot. */
export const resultCacheIndexKey = (prefix: string, part: "entries" | "sizes" | "bytes") =>
  `${prefix}:{result-cache}:${part}`;

/** A job's record beside BullMQ's: its queue, owner, webhook, cancel flag. */
export const jobKey = (prefix: string, id: string) => `${prefix}:job:{${id}}`;
/** A job's event log (a Redis stream): SSE replays it, Last-Event-ID indexes it. Same slot as its record. */
export const jobEventsKey = (prefix: string, id: string) => `${prefix}:job:{${id}}:events`;
/** The message id of a job's newest progress webhook: older pending ones are skipped. Same slot as its record. */
export const jobWebhookProgressKey = (prefix: string, id: string) => `${prefix}:job:{${id}}:webhook-progress`;
/** Pub/sub channel announcing every new job event (SSE readers fan it out in-process). */
export const jobEventsChannel = (prefix: string) => `${prefix}:job-events`;
/** Pub/sub channel of one API process: the answers of the jobs it waits for (sharded on a cluster). */
export const replyChannel = (prefix: string, api: string) => `${prefix}:reply:${api}`;
/** Pub/sub channel telling workers to abort a running job. */
export const cancelChannel = (prefix: string) => `${prefix}:cancel`;
/** An owner's jobs by creation time (`GET /v1/jobs`). */
export const ownerJobsKey = (prefix: string, owner: string) => `${prefix}:owner:{${owner}}:jobs`;
/** An owner's unfinished jobs (the per-key cap on queued jobs). Same slot as the owner's jobs. */
export const ownerActiveKey = (prefix: string, owner: string) => `${prefix}:owner:{${owner}}:active`;
/** An idempotency key of an owner → the job it created (used alone: untagged). */
export const idempotencyKey = (prefix: string, owner: string, key: string) =>
  `${prefix}:idempotency:${owner}:${key}`;
