import { createHash } from "node:crypto";
import {
  AppError,
  isTerminal,
  type JobEventName,
  type JobKind,
  JobKind as JobKindSchema,
  type JobObject,
  JobProgress,
  JobResult,
  type JobStatus,
  parseJobError,
  type WebhookDelivery,
  WebhookSpec,
  webhookFilterOf,
} from "@hybrid/protocol";
import type { Job } from "bullmq";
import type { ChainableCommander } from "ioredis";
import { type CatalogSettings, jobCatalog } from "./catalog.ts";
import type { RedisClient } from "./connection.ts";
import {
  cancelChannel,
  idempotencyKey,
  jobEventsChannel,
  jobEventsKey,
  jobKey,
  ownerActiveKey,
  ownerJobsKey,
} from "./names.ts";
import type { PayloadStore } from "./payload-store.ts";
import type { Queues } from "./queues.ts";

/** What the service records about a job beside BullMQ's own hash. */
export interface JobMeta {
  id: string;
  kind: JobKind;
  model: string;
  queue: string;
  /** Who may see it: an API key's id, or "anonymous" when the service runs without keys. */
  owner: string;
  /** ms since the epoch. */
  createdAt: number;
  webhook: WebhookSpec | null;
  /** ms since the epoch when a cancel was asked for. */
  canceledAt: number | null;
  /** The last progress reported (see {@link JobStore.publish}). */
  progress?: JobProgress | null;
  /**
   * Whether the job's events are written to its log (and so reach SSE readers and webhooks).
   * A plain sync job nobody follows writes none: it is on from the start for async jobs and
   * jobs with a webhook, and an SSE reader turns it on when it attaches ({@link JobStore.follow}).
   */
  logged: boolean;
  /** Whether the job counts toward its owner's cap on unfinished jobs (its key has one). */
  capped: boolean;
  /** The answer is an image the client reads as `{"image": "<base64>"}` (custom-handler clients). */
  imageAsJson: boolean;
}

/** One entry of a job's event log. `seq` is the Redis stream id, also the SSE event id. */
export interface JobEvent {
  seq: string;
  event: JobEventName;
  job: JobObject;
}

export interface JobStoreOptions {
  prefix: string;
  catalog: CatalogSettings;
}

const EVENT_LOG_MAX = 2000;

const APPEND_EVENT = "hybridAppendJobEvent";
// KEYS: the job's event stream. ARGV: max log length, event, data, ttl, job id, channel. The
// stream id (the event's seq) is known only inside Redis, so the SSE notice carrying it is
// published from here too. One key only: on a Redis Cluster a script may not touch keys of two
// slots, and the owner's unfinished set lives in the owner's slot (see `publish`).
const APPEND_EVENT_LUA = `
local seq = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'event', ARGV[2], 'data', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[6], cjson.encode({id = ARGV[5], seq = seq, event = ARGV[2], data = ARGV[3]}))
return seq
`;

const CREATE_RECORD = "hybridCreateJobRecord";
// KEYS: the job's record, its event stream (one slot). ARGV: ttl, max log length, the `queued`
// event's name ('' for none) and data, job id, SSE channel, then the record's field/value pairs.
const CREATE_RECORD_LUA = `
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('EXPIRE', KEYS[1], ARGV[1])
if ARGV[3] ~= '' then
  local seq = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[3], 'data', ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[1])
  redis.call('PUBLISH', ARGV[6], cjson.encode({id = ARGV[5], seq = seq, event = ARGV[3], data = ARGV[4]}))
end
return 1
`;

const INDEX_JOB = "hybridIndexOwnerJob";
// KEYS: the owner's jobs, the owner's unfinished jobs (one slot). ARGV: created at, job id,
// oldest score kept, ttl, '1' when the job counts toward the owner's cap.
const INDEX_JOB_LUA = `
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if ARGV[5] == '1' then
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 1
`;

type Scripted = Record<string, (...args: (string | number)[]) => Promise<unknown>>;

/**
 * The job resource: what a client reads at `/v1/jobs/{id}`, lists, streams and cancels. BullMQ
 * keeps each job's state, timestamps, progress and result; this store adds what BullMQ does not
 * know (owner, webhook, cancel), a per-job event log (a Redis stream, so late SSE readers replay
 * it), per-owner indexes, and publishes every event to SSE readers and webhooks.
 */
export class JobStore {
  private readonly prefix: string;
  private readonly retention: number;

  constructor(
    private readonly redis: RedisClient,
    private readonly queues: Queues,
    private readonly payloads: PayloadStore,
    private readonly opts: JobStoreOptions,
  ) {
    this.prefix = opts.prefix;
    this.retention = opts.catalog.retentionSeconds;
    if (!(APPEND_EVENT in redis))
      redis.defineCommand(APPEND_EVENT, { numberOfKeys: 1, lua: APPEND_EVENT_LUA });
    if (!(CREATE_RECORD in redis))
      redis.defineCommand(CREATE_RECORD, { numberOfKeys: 2, lua: CREATE_RECORD_LUA });
    if (!(INDEX_JOB in redis)) redis.defineCommand(INDEX_JOB, { numberOfKeys: 2, lua: INDEX_JOB_LUA });
  }

  /** Queues the append of one event (log, expiry, SSE notice) on `tx`, a transaction in the job's slot. */
  private appendEvent(tx: ChainableCommander, meta: JobMeta, event: JobEventName, data: string) {
    (tx as unknown as Record<string, (...a: (string | number)[]) => ChainableCommander>)[APPEND_EVENT]!(
      jobEventsKey(this.prefix, meta.id),
      EVENT_LOG_MAX,
      event,
      data,
      this.retention,
      meta.id,
      jobEventsChannel(this.prefix),
    );
  }

  /**
   * Records a new job (and its `queued` event when it is logged) before it is enqueued: a fast
   * worker always finds its record, and its `started` always follows `queued`. Two scripts sent
   * together (one round trip): the record and its log in the job's slot, the owner's indexes in
   * the owner's. They need not be atomic together: readers skip index entries without a record,
   * and a record no index names is never listed; if either fails, both are undone.
   */
  async create(meta: JobMeta): Promise<void> {
    const fields: string[] = [
      "kind",
      meta.kind,
      "model",
      meta.model,
      "queue",
      meta.queue,
      "owner",
      meta.owner,
      "createdAt",
      String(meta.createdAt),
    ];
    if (meta.webhook) fields.push("webhook", JSON.stringify(meta.webhook));
    if (meta.logged) fields.push("logged", "1");
    if (meta.capped) fields.push("capped", "1");
    if (meta.imageAsJson) fields.push("imageAsJson", "1");
    const queued = meta.logged ? await this.build(meta, null, "pending") : null;
    const r = this.redis as unknown as Scripted;
    const done = await Promise.allSettled([
      r[INDEX_JOB]!(
        ownerJobsKey(this.prefix, meta.owner),
        ownerActiveKey(this.prefix, meta.owner),
        meta.createdAt,
        meta.id,
        Date.now() - this.retention * 1000,
        this.retention,
        meta.capped ? "1" : "0",
      ),
      r[CREATE_RECORD]!(
        jobKey(this.prefix, meta.id),
        jobEventsKey(this.prefix, meta.id),
        this.retention,
        EVENT_LOG_MAX,
        queued ? "queued" : "",
        queued ? JSON.stringify(queued) : "",
        meta.id,
        jobEventsChannel(this.prefix),
        ...fields,
      ),
    ]);
    const failed = done.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) {
      await this.discard(meta).catch(() => {});
      throw failed.reason;
    }
  }

  /**
   * Turns a job's event log on (an SSE reader attached to a job nobody followed): its workers
   * log the events from their next one on. Returns the record as it is now.
   */
  async follow(meta: JobMeta): Promise<JobMeta> {
    if (meta.logged) return meta;
    await this.redis.hset(jobKey(this.prefix, meta.id), "logged", "1");
    return { ...meta, logged: true };
  }

  /** Forgets a job that never made it into its queue (the enqueue failed). */
  async discard(meta: JobMeta): Promise<void> {
    // The record (job's slot) and the owner's indexes (owner's slot): one command each.
    await Promise.all([
      this.redis.del(jobKey(this.prefix, meta.id)),
      this.redis
        .multi()
        .zrem(ownerJobsKey(this.prefix, meta.owner), meta.id)
        .zrem(ownerActiveKey(this.prefix, meta.owner), meta.id)
        .exec(),
    ]);
  }

  async meta(id: string): Promise<JobMeta | null> {
    const h = await this.redis.hgetall(jobKey(this.prefix, id));
    const kind = JobKindSchema.safeParse(h.kind);
    if (!kind.success || !h.queue || !h.owner) return null;
    return {
      id,
      kind: kind.data,
      model: h.model ?? "",
      queue: h.queue,
      owner: h.owner,
      createdAt: Number(h.createdAt),
      webhook: h.webhook ? WebhookSpec.parse(JSON.parse(h.webhook)) : null,
      canceledAt: h.canceledAt ? Number(h.canceledAt) : null,
      progress: h.progress ? (JobProgress.safeParse(JSON.parse(h.progress)).data ?? null) : null,
      logged: h.logged === "1",
      capped: h.capped === "1",
      imageAsJson: h.imageAsJson === "1",
    };
  }

  /**
   * The job's BullMQ job (null once removed) and its state. The state is read first: a job that
   * moves on between the two reads then shows its older state with newer fields (harmless),
   * never "completed" without its finish time.
   */
  async bullJob(meta: JobMeta): Promise<{ job: Job | null; state: string }> {
    const queue = this.queues.queue(meta.queue);
    const state = await queue.getJobState(meta.id);
    const job = (await queue.getJob(meta.id)) ?? null;
    return { job, state: job ? state : "missing" };
  }

  /** The job object of `GET /v1/jobs/{id}`, or null when there is no such job (never was, or past its retention). */
  async describe(id: string): Promise<JobObject | null> {
    const meta = await this.meta(id);
    if (!meta) return null;
    const { job, state } = await this.bullJob(meta);
    return this.build(meta, job, state);
  }

  /** The job object from a record and a BullMQ job the caller already holds (a worker in its handlers). */
  async build(meta: JobMeta, job: Job | null, state: string): Promise<JobObject | null> {
    // "pending": recorded, about to be added to its queue (the `queued` event is written first).
    if (!job && state !== "pending" && meta.canceledAt === null) return null;
    const error = job?.failedReason && state === "failed" ? parseJobError(job.failedReason) : null;
    let status: JobStatus;
    if (!job) status = state === "pending" && meta.canceledAt === null ? "queued" : "canceled";
    else if (error?.code === "canceled") status = "canceled";
    else if (state === "completed") status = "succeeded";
    else if (state === "failed") status = "failed";
    else if (state === "active") status = "running";
    else status = "queued";
    const progress = JobProgress.safeParse(meta.progress ?? job?.progress);
    const startedAt = status === "queued" ? null : (job?.processedOn ?? null);
    const finishedAt = job?.finishedOn ?? (status === "canceled" ? meta.canceledAt : null);
    const iso = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString() : null);
    const self = `/v1/jobs/${encodeURIComponent(meta.id)}`;
    return {
      id: meta.id,
      kind: meta.kind,
      model: meta.model,
      status,
      queue_position: state === "waiting" ? await this.position(meta) : null,
      progress: progress.success ? progress.data : null,
      created_at: iso(meta.createdAt)!,
      started_at: iso(startedAt),
      completed_at: isTerminal(status) ? iso(finishedAt) : null,
      attempts: job?.attemptsMade ?? 0,
      metrics: {
        queue_ms: startedAt ? Math.max(0, startedAt - meta.createdAt) : null,
        run_ms: startedAt && finishedAt && isTerminal(status) ? Math.max(0, finishedAt - startedAt) : null,
      },
      seed: seedOf(job),
      warnings: JobResult.safeParse(job?.returnvalue).data?.warnings ?? [],
      error:
        status === "canceled"
          ? { code: "canceled", message: "The job was canceled." }
          : error && { code: error.code, message: error.message },
      urls: { self, result: `${self}/result`, events: `${self}/events`, cancel: `${self}/cancel` },
    };
  }

  /**
   * Jobs ahead of this one. BullMQ pushes new jobs at the head of `wait` and takes from the
   * tail; while a queue is paused they sit in `paused` (and still read as "waiting"). Both lists
   * are the queue's, so they share its slot and one transaction reads them.
   */
  private async position(meta: JobMeta): Promise<number | null> {
    const q = this.queues.queue(meta.queue);
    const tx = this.redis.multi();
    for (const list of [q.toKey("wait"), q.toKey("paused")]) tx.lpos(list, meta.id).llen(list);
    const r = ((await tx.exec()) ?? []).map(([, v]) => v);
    for (let i = 0; i + 1 < r.length; i += 2) {
      const [pos, len] = [r[i], r[i + 1]];
      if (typeof pos === "number" && typeof len === "number") return Math.max(0, len - 1 - pos);
    }
    return null;
  }

  /** An owner's jobs, newest first. The cursor is the id of the last job of the previous page. */
  async list(
    owner: string,
    limit: number,
    cursor?: string,
  ): Promise<{ jobs: JobObject[]; next: string | null }> {
    const key = ownerJobsKey(this.prefix, owner);
    await this.redis.zremrangebyscore(key, "-inf", Date.now() - this.retention * 1000);
    let start = 0;
    if (cursor) {
      const rank = await this.redis.zrevrank(key, cursor);
      if (rank === null) return { jobs: [], next: null };
      start = rank + 1;
    }
    // One more than asked tells whether there is a next page.
    const ids = await this.redis.zrevrange(key, start, start + limit);
    const page = ids.slice(0, limit);
    const jobs = (await Promise.all(page.map((id) => this.describe(id)))).filter(
      (j): j is JobObject => j !== null,
    );
    return { jobs, next: ids.length > limit ? (page[page.length - 1] ?? null) : null };
  }

  /**
   * Unfinished jobs of an owner (for the per-key cap); entries past retention are dropped. At
   * `verifyFrom` or more, each entry's job is checked and finished ones dropped: a job leaves the
   * set with its terminal event, which is written just after BullMQ records the end (or never,
   * if that process died in between) — the cap must not count such jobs.
   */
  async activeCount(owner: string, verifyFrom = Number.POSITIVE_INFINITY): Promise<number> {
    const key = ownerActiveKey(this.prefix, owner);
    const [, count] = (await this.redis
      .multi()
      .zremrangebyscore(key, "-inf", Date.now() - this.retention * 1000)
      .zcard(key)
      .exec()) ?? [
      [null, 0],
      [null, 0],
    ];
    const n = Number(count?.[1] ?? 0);
    if (n < verifyFrom) return n;
    const ids = await this.redis.zrange(key, 0, -1);
    const done = await Promise.all(
      ids.map(async (id) => {
        const job = await this.describe(id);
        return !job || isTerminal(job.status) ? id : null;
      }),
    );
    const finished = done.filter((id): id is string => id !== null);
    if (finished.length > 0) await this.redis.zrem(key, ...finished);
    return ids.length - finished.length;
  }

  /**
   * Appends an event to the job's log, tells SSE readers, and queues a webhook delivery when the
   * job has a webhook that asked for this kind of event; for a job that is not logged, only what
   * other readers need (progress on the record, the cap). A terminal event also takes the job
   * off its owner's unfinished set. Returns the event's seq (null when not logged).
   */
  async publish(meta: JobMeta, event: JobEventName, job: JobObject): Promise<string | null> {
    // The owner's set is in another slot, so it is a command of its own, sent first (one Redis
    // runs them in order: a client told of the end finds the cap freed). It need not be atomic
    // with the event: `activeCount` re-checks the jobs left in it, as after a crash in between.
    const released =
      meta.capped && isTerminal(job.status)
        ? this.redis.zrem(ownerActiveKey(this.prefix, meta.owner), meta.id)
        : undefined;
    // The log and the record share the job's slot: one pipeline, one round trip.
    const data = meta.logged ? JSON.stringify(job) : "";
    const tx = this.redis.pipeline();
    if (meta.logged) this.appendEvent(tx, meta, event, data);
    if (event === "progress" && job.progress) {
      // The job object reads progress from here: one round trip per step, not BullMQ's too.
      const { step, total } = job.progress;
      tx.hset(jobKey(this.prefix, meta.id), "progress", JSON.stringify({ step, total }));
    }
    const [results] = await Promise.all([tx.length > 0 ? tx.exec() : null, released]);
    if (!meta.logged) return null;
    const [[err, seqValue] = [null, null]] = results ?? [];
    if (err) throw err;
    const seq = String(seqValue);
    const filter = webhookFilterOf(event);
    if (meta.webhook && filter && meta.webhook.events.includes(filter)) {
      const msgId = `msg_${meta.id}_${seq}`;
      const delivery: WebhookDelivery = {
        msgId,
        jobId: meta.id,
        owner: meta.owner,
        url: meta.webhook.url,
        event,
        payload: data,
      };
      const q = this.queues.queue(jobCatalog.webhookQueue);
      await q.waitUntilReady();
      // The message id is the BullMQ job id: retries keep it, and a repeat publish is a no-op.
      await q.add(event, delivery, { ...jobCatalog.jobOptions("webhook", this.opts.catalog), jobId: msgId });
    }
    return seq;
  }

  /** The job's events after `after` (a seq), oldest first. */
  async events(id: string, after?: string): Promise<JobEvent[]> {
    const entries = await this.redis.xrange(jobEventsKey(this.prefix, id), after ? `(${after}` : "-", "+");
    return entries.map(([seq, fields]) => parseEvent(seq, fields));
  }

  /**
   * Cancels a job: a queued one is removed at once; a running one is flagged and its worker told
   * to stop at its next checkpoint; a finished one is left as it is. Returns the job as it is now.
   */
  async cancel(meta: JobMeta): Promise<JobObject | null> {
    const { job, state } = await this.bullJob(meta);
    if (!job || state === "completed" || state === "failed") return this.build(meta, job, state);
    const canceledAt = Date.now();
    await this.redis.hset(jobKey(this.prefix, meta.id), "canceledAt", String(canceledAt));
    const flagged = { ...meta, canceledAt };
    if (state !== "active") {
      // Fails when a worker took the job meanwhile: then it is running and is told below.
      const removed = await job.remove().then(
        () => true,
        () => false,
      );
      if (removed) {
        await this.payloads.delete(String((job.data as { input?: unknown }).input ?? ""));
        const object = await this.build(flagged, null, "missing");
        if (object) await this.publish(flagged, "canceled", object);
        return object;
      }
    }
    await this.redis.publish(cancelChannel(this.prefix), meta.id);
    const now = await this.bullJob(flagged);
    return this.build(flagged, now.job, now.state);
  }

  /** Whether a cancel was asked for (a worker checks before it starts a job). */
  async isCanceled(id: string): Promise<boolean> {
    return (await this.redis.hexists(jobKey(this.prefix, id), "canceledAt")) === 1;
  }

  /**
   * Claims an idempotency key for a new job: returns null when the claim is ours, or the job id
   * and request fingerprint that claimed it before (for 24 h).
   */
  async claimIdempotencyKey(
    owner: string,
    key: string,
    jobId: string,
    fingerprint: string,
    ttlSeconds: number,
  ): Promise<{ jobId: string; fingerprint: string } | null> {
    const k = idempotencyKey(this.prefix, owner, createHash("sha256").update(key).digest("hex"));
    const value = JSON.stringify({ jobId, fingerprint });
    const set = await this.redis.set(k, value, "EX", ttlSeconds, "NX");
    if (set === "OK") return null;
    const prior = await this.redis.get(k);
    if (!prior) return null;
    return JSON.parse(prior) as { jobId: string; fingerprint: string };
  }

  /** Frees an idempotency key whose job could not be created. */
  async releaseIdempotencyKey(owner: string, key: string): Promise<void> {
    await this.redis.del(idempotencyKey(this.prefix, owner, createHash("sha256").update(key).digest("hex")));
  }
}

/** A generation's seed, from its job data. */
function seedOf(job: Job | null): number | null {
  const seed = (job?.data as { params?: { seed?: unknown } } | undefined)?.params?.seed;
  return typeof seed === "number" ? seed : null;
}

export function parseEvent(seq: string, fields: string[]): JobEvent {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
  return { seq, event: f.event as JobEventName, job: JSON.parse(f.data ?? "null") as JobObject };
}

/** Thrown where a job id names nothing the caller may see. */
export const jobNotFound = (id: string) =>
  new AppError("not_found", `No job ${id} (it never existed, expired, or belongs to another key).`);
