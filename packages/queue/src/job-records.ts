import { JobKind, JobProgress, WebhookSpec } from "@hybrid/protocol";
import type { RedisClient } from "./connection.ts";
import { jobEventsChannel, jobEventsKey, jobKey, ownerActiveKey, ownerJobsKey } from "./names.ts";

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
  /** The last progress reported (see `JobEvents.publish`). */
  progress?: JobProgress | null;
  /**
   * Whether the job's events are written to its log (and so reach SSE readers and webhooks).
   * A plain sync job nobody follows writes none: it is on from the start for async jobs and
   * jobs with a webhook, and an SSE reader turns it on when it attaches ({@link JobRecords.follow}).
   */
  logged: boolean;
  /** Whether the job counts toward its owner's cap on unfinished jobs (its key has one). */
  capped: boolean;
  /** The answer is an image the client reads as `{"image": "<base64>"}` (custom-handler clients). */
  imageAsJson: boolean;
}

/** Most entries a job's event log keeps (a long generation's progress events are trimmed first). */
export const EVENT_LOG_MAX = 2000;

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
// oldest score kept, ttl, and the owner's cap: '' when the job does not count toward one, '0'
// when it counts without a check, else the cap. At the cap nothing is written and the number of
// unfinished jobs is returned; otherwise -1. Count and reserve are one script, so parallel
// submissions cannot all pass a count taken before any of them is indexed.
const INDEX_JOB_LUA = `
if ARGV[5] ~= '' and ARGV[5] ~= '0' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
  local n = redis.call('ZCARD', KEYS[2])
  if n >= tonumber(ARGV[5]) then return n end
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if ARGV[5] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return -1
`;

type Scripted = Record<string, (...args: (string | number)[]) => Promise<unknown>>;

/**
 * Job records: the small hash beside BullMQ's job that says who owns it, where it is queued,
 * what follows it, and whether a cancel was asked for; and the owner's index of jobs. A record
 * lives as long as the job is readable (`JOB_RETENTION_SECONDS`).
 */
export class JobRecords {
  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    /** Seconds a record (and its log and indexes) lives. */
    readonly retentionSeconds: number,
  ) {
    if (!(CREATE_RECORD in redis))
      redis.defineCommand(CREATE_RECORD, { numberOfKeys: 2, lua: CREATE_RECORD_LUA });
    if (!(INDEX_JOB in redis)) redis.defineCommand(INDEX_JOB, { numberOfKeys: 2, lua: INDEX_JOB_LUA });
  }

  /**
   * Puts a job in its owner's indexes: the owner's jobs and, when it is `capped`, the owner's
   * unfinished jobs, which at `cap` (when given) it does not join: then nothing is written and
   * the number of unfinished jobs found is returned; otherwise null.
   */
  async index(meta: JobMeta, cap: number | null = null): Promise<number | null> {
    const n = await (this.redis as unknown as Scripted)[INDEX_JOB]!(
      ownerJobsKey(this.prefix, meta.owner),
      ownerActiveKey(this.prefix, meta.owner),
      meta.createdAt,
      meta.id,
      Date.now() - this.retentionSeconds * 1000,
      this.retentionSeconds,
      meta.capped ? (cap ?? 0) : "",
    );
    return Number(n) < 0 ? null : Number(n);
  }

  /**
   * Records a new job (and its `queued` event, `queued` being its log's first entry when it is
   * logged) before it is enqueued: a fast worker always finds its record, and its `started`
   * always follows `queued`. Two scripts sent together (one round trip): the record and its log
   * in the job's slot, the owner's indexes in the owner's (unless `indexed`: a capped job's
   * admission put it there already, see {@link index}). They need not be atomic together:
   * readers skip index entries without a record, and a record no index names is never listed;
   * if either fails, both are undone.
   */
  async create(meta: JobMeta, queued: string | null, indexed = false): Promise<void> {
    const fields: string[] = [
      "kind",
      meta.kind,
      "model",
      meta.model,
      "queue",
      meta.queue,
      "owner",
      meta.owner,
    ];
    fields.push("createdAt", String(meta.createdAt));
    if (meta.webhook) fields.push("webhook", JSON.stringify(meta.webhook));
    if (meta.logged) fields.push("logged", "1");
    if (meta.capped) fields.push("capped", "1");
    if (meta.imageAsJson) fields.push("imageAsJson", "1");
    const r = this.redis as unknown as Scripted;
    const done = await Promise.allSettled([
      indexed ? Promise.resolve(null) : this.index(meta),
      r[CREATE_RECORD]!(
        jobKey(this.prefix, meta.id),
        jobEventsKey(this.prefix, meta.id),
        this.retentionSeconds,
        EVENT_LOG_MAX,
        queued === null ? "" : "queued",
        queued ?? "",
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

  /** A job's record, or null when there is none (never was, or past its retention). */
  async get(id: string): Promise<JobMeta | null> {
    return recordOf(id, await this.redis.hgetall(jobKey(this.prefix, id)));
  }

  /**
   * A worker's reads at a job's start: its record and its input bytes, sent together. `payload`
   * is a key the payload store vouched for, or null. Two plain commands sent in the same tick:
   * the keys live in different slots on a cluster, and one script instead measured no faster
   * under load.
   */
  async start(id: string, payload: string | null): Promise<{ meta: JobMeta | null; payload: Buffer | null }> {
    const [meta, bytes] = await Promise.all([this.get(id), payload ? this.redis.getBuffer(payload) : null]);
    return { meta, payload: bytes };
  }

  /**
   * At a job's end (BullMQ has recorded it): deletes its input (no retry needs it any more) and
   * returns its record if its end is to be published, i.e. it is followed (`logged`) or counts
   * toward a cap; null otherwise, or when it has no record. Read now, not at the start: an SSE
   * reader may have started following the job meanwhile. A job nobody follows, most sync jobs,
   * costs two flags read beside the delete rather than its whole record; `followed` (an async
   * job, logged from its creation) reads the whole record in that same round trip instead.
   */
  async finish(id: string, payload: string | null, followed = false): Promise<JobMeta | null> {
    if (followed) {
      const [meta] = await Promise.all([this.get(id), payload ? this.redis.del(payload) : null]);
      return meta && (meta.logged || meta.capped) ? meta : null;
    }
    const [[logged, capped]] = await Promise.all([
      this.redis.hmget(jobKey(this.prefix, id), "logged", "capped"),
      payload ? this.redis.del(payload) : null,
    ]);
    if (logged !== "1" && capped !== "1") return null;
    return this.get(id);
  }

  /**
   * Turns a job's event log on (an SSE reader attached to a job nobody followed): its workers
   * log its events from their next one on. Returns the record as it is now.
   */
  async follow(meta: JobMeta): Promise<JobMeta> {
    if (meta.logged) return meta;
    await this.redis.hset(jobKey(this.prefix, meta.id), "logged", "1");
    return { ...meta, logged: true };
  }

  /** Marks the job canceled (the time it was asked); returns the record so marked. */
  async markCanceled(meta: JobMeta): Promise<JobMeta> {
    const canceledAt = Date.now();
    await this.redis.hset(jobKey(this.prefix, meta.id), "canceledAt", String(canceledAt));
    return { ...meta, canceledAt };
  }

  /** Ids of an owner's jobs, newest first, from `cursor` (exclusive) on: `limit` + 1 of them at most. */
  async page(owner: string, limit: number, cursor?: string): Promise<string[] | null> {
    const key = ownerJobsKey(this.prefix, owner);
    await this.redis.zremrangebyscore(key, "-inf", Date.now() - this.retentionSeconds * 1000);
    let start = 0;
    if (cursor) {
      const rank = await this.redis.zrevrank(key, cursor);
      if (rank === null) return null;
      start = rank + 1;
    }
    return this.redis.zrevrange(key, start, start + limit);
  }
}

/** A record from its hash's fields, or null when they are not a record's (none, or past retention). */
function recordOf(id: string, h: Record<string, string>): JobMeta | null {
  const kind = JobKind.safeParse(h.kind);
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
