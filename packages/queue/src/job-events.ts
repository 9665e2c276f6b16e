import {
  isTerminal,
  type JobEventName,
  type JobView,
  type WebhookDelivery,
  webhookFilterOf,
} from "@hybrid/protocol";
import type { ChainableCommander } from "ioredis";
import { type CatalogSettings, jobCatalog } from "./catalog.ts";
import type { RedisClient } from "./connection.ts";
import { EVENT_LOG_MAX, type JobMeta } from "./job-records.ts";
import { jobEventsChannel, jobEventsKey, jobKey, jobWebhookProgressKey, ownerActiveKey } from "./names.ts";
import type { Queues } from "./queues.ts";

/** One entry of a job's event log. `seq` is the Redis stream id, also the SSE event id. */
export interface JobEvent {
  seq: string;
  event: JobEventName;
  job: JobView;
}

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

/**
 * A job's events: its log (a Redis stream, so late SSE readers replay it), the notice to SSE
 * readers (one pub/sub channel for every job: `JobEventHub` fans it out per process), and the
 * webhook deliveries its webhook asked for. Only a logged job writes them (see `JobMeta.logged`).
 */
export class JobEvents {
  constructor(
    private readonly redis: RedisClient,
    private readonly queues: Queues,
    private readonly prefix: string,
    private readonly catalog: CatalogSettings,
  ) {
    if (!(APPEND_EVENT in redis))
      redis.defineCommand(APPEND_EVENT, { numberOfKeys: 1, lua: APPEND_EVENT_LUA });
  }

  /** Queues the append of one event (log, expiry, SSE notice) on `tx`, in the job's slot. */
  private append(tx: ChainableCommander, meta: JobMeta, event: JobEventName, data: string) {
    (tx as unknown as Record<string, (...a: (string | number)[]) => ChainableCommander>)[APPEND_EVENT]!(
      jobEventsKey(this.prefix, meta.id),
      EVENT_LOG_MAX,
      event,
      data,
      this.catalog.retentionSeconds,
      meta.id,
      jobEventsChannel(this.prefix),
    );
  }

  /**
   * Appends an event to the job's log, tells SSE readers, and queues a webhook delivery when the
   * job has a webhook that asked for this kind of event; for a job that is not logged, only what
   * other readers need (progress on the record, the cap). A terminal event also takes the job
   * off its owner's unfinished set. Returns the event's seq (null when not logged).
   */
  async publish(meta: JobMeta, event: JobEventName, job: JobView): Promise<string | null> {
    // The owner's set is in another slot, so it is a command of its own, sent first (one Redis
    // runs them in order: a client told of the end finds the cap freed). It need not be atomic
    // with the event: `OwnerCaps.unfinished` re-checks the jobs left in it, as after a crash in between.
    const released =
      meta.capped && isTerminal(job.status)
        ? this.redis.zrem(ownerActiveKey(this.prefix, meta.owner), meta.id)
        : undefined;
    const data = meta.logged ? JSON.stringify(job) : "";
    // The log and the record share the job's slot: one pipeline, one round trip.
    const tx = this.redis.pipeline();
    if (meta.logged) this.append(tx, meta, event, data);
    if (event === "progress" && job.progress) {
      // The job view reads progress from here: one round trip per step, not BullMQ's too.
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
      // Progress is coalesced: the newest event's id is noted before its delivery is queued, and
      // a delivery of an older one finds itself superseded (see `isLatestProgress`), so a slow
      // receiver gets the latest state instead of a backlog of stale steps.
      if (event === "progress")
        await this.redis.set(
          jobWebhookProgressKey(this.prefix, meta.id),
          msgId,
          "EX",
          this.catalog.retentionSeconds,
        );
      const q = this.queues.queue(jobCatalog.webhookQueue);
      await q.waitUntilReady();
      // The message id is the BullMQ job id: retries keep it, and a repeat publish is a no-op.
      await q.add(event, delivery, { ...jobCatalog.jobOptions("webhook", this.catalog), jobId: msgId });
    }
    return seq;
  }

  /**
   * Whether a progress delivery (its message id) is still the job's newest: an older one is
   * skipped rather than sent. True when nothing is noted (a delivery queued before notes existed).
   */
  async isLatestProgress(jobId: string, msgId: string): Promise<boolean> {
    const newest = await this.redis.get(jobWebhookProgressKey(this.prefix, jobId));
    return newest === null || newest === msgId;
  }

  /** The job's events after `after` (a seq), oldest first. */
  async read(id: string, after?: string): Promise<JobEvent[]> {
    const entries = await this.redis.xrange(jobEventsKey(this.prefix, id), after ? `(${after}` : "-", "+");
    return entries.map(([seq, fields]) => parseEvent(seq, fields));
  }
}

/** An event log entry (or an SSE notice, in the same field layout). */
export function parseEvent(seq: string, fields: string[]): JobEvent {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
  return { seq, event: f.event as JobEventName, job: JSON.parse(f.data ?? "null") as JobView };
}
