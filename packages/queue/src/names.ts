/** Everything the service keeps in Redis lives under one prefix, so deployments (and tests) can share a Redis. */
export const DEFAULT_PREFIX = "hybrid";

/**
 * The BullMQ queue of one model. One queue per served model: adding workers for a model is how it
 * scales, and the queue's backlog is the autoscaling signal. (BullMQ forbids ':' in queue names.)
 */
export const queueName = (modelId: string) => `model-${modelId}`;

export const payloadKey = (prefix: string, id: string) => `${prefix}:payload:${id}`;
export const workerKey = (prefix: string, workerId: string) => `${prefix}:worker:${workerId}`;
/** The set of worker ids that have announced themselves (dead ones are pruned on read). */
export const workersKey = (prefix: string) => `${prefix}:workers`;
